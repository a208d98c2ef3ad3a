//! No result depends on the machine's date. Every entry point takes a pinned
//! clock (`--now`), and these tests run the date-sensitive paths (detect, a
//! cycle, the daemon) with the machine's clock a year ahead and expect the
//! same answers as today.

use crate::helpers::{NOW, TestConfig, a_year_ahead, channel_sync_env, copy_sample};

#[test]
fn the_fake_clock_really_is_a_year_ahead() {
    let Some(env) = a_year_ahead() else { return };
    // Without --now, the report's as_of is the (faked) machine time.
    let out = channel_sync_env(&["detect", "--input", "sample", "--format", "json"], &env);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let as_of = chrono::DateTime::parse_from_rfc3339(report["as_of"].as_str().unwrap()).unwrap();
    let ahead = as_of.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(ahead > chrono::Duration::days(360), "{as_of}");
}

#[test]
fn detect_with_a_pinned_clock_is_the_same_a_year_later() {
    let Some(env) = a_year_ahead() else { return };
    let args = [
        "detect", "--input", "sample", "--now", NOW, "--format", "json",
    ];
    let today = channel_sync_env(&args, &[]);
    let later = channel_sync_env(&args, &env);
    assert_eq!(today.status.code(), later.status.code());
    assert!(!today.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&today.stdout),
        String::from_utf8_lossy(&later.stdout)
    );
}

#[test]
fn a_dry_run_cycle_with_a_pinned_clock_is_the_same_a_year_later() {
    let Some(env) = a_year_ahead() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let config = TestConfig::bundled()
        .state(&dir.path().join("state.db"))
        .files(&data, &dir.path().join("out"))
        .write(&dir.path().join("c.toml"));
    let args = [
        "once",
        "--config",
        config.to_str().unwrap(),
        "--now",
        NOW,
        "--dry-run",
    ];
    let today = channel_sync_env(&args, &[]);
    let later = channel_sync_env(&args, &env);
    let today_out = String::from_utf8_lossy(&today.stdout);
    assert!(today_out.contains("14 new"), "{today_out}");
    assert_eq!(today_out, String::from_utf8_lossy(&later.stdout));
    assert_eq!(today.status.code(), later.status.code());
}
