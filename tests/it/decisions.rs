//! `channel-sync decide` and what decisions do (issue 15), through the real
//! binary on a copy of the sample (files source).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{NOW, copy_sample, repo};

pub fn config(dir: &Path, extra: &str) -> PathBuf {
    let base = std::fs::read_to_string(repo().join("config/channel-sync.toml")).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "{base}\n{extra}\n[state]\npath = \"{}\"\n\n[crm]\nkind = \"files\"\n\n[crm.files]\ndir = \"{}\"\nout_dir = \"{}\"\n",
            dir.join("state/channel-sync.db").display(),
            dir.join("data").display(),
            dir.join("out").display(),
        ),
    )
    .unwrap();
    path
}

pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove("CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn trail(state: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt = conn
        .prepare("SELECT finding_key, outcome, decided_by FROM decisions ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

const KEY: &str = "direct_vs_partner:R-02:O-005";

#[test]
fn decide_records_a_decision_and_refuses_bad_ones_without_storing_them() {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    let config = config(dir.path(), "");
    let config = config.to_str().unwrap();
    let state = dir.path().join("state/channel-sync.db");

    // No state yet: the key is unknown (exit 65).
    let (code, _, err) = run(&[
        "decide",
        KEY,
        "--outcome",
        "split",
        "--by",
        "ana",
        "--config",
        config,
    ]);
    assert_eq!(code, 65, "{err}");

    let (code, out, err) = run(&["once", "--config", config, "--now", NOW]);
    assert_eq!(code, 0, "{out}\n{err}");

    let (code, out, err) = run(&[
        "decide",
        KEY,
        "--outcome",
        "partner_keeps",
        "--by",
        "ana@example.com",
        "--note",
        "registered first",
        "--config",
        config,
        "--now",
        NOW,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("partner keeps by ana@example.com"), "{out}");
    assert!(out.contains("now decided"), "{out}");

    for bad in [
        vec!["decide", "nope", "--outcome", "split", "--by", "ana"],
        vec!["decide", KEY, "--outcome", "snooze", "--by", "ana"],
        vec![
            "decide",
            KEY,
            "--outcome",
            "snooze",
            "--by",
            "ana",
            "--until",
            "2026-11-01",
        ],
        vec!["decide", KEY, "--outcome", "assign", "--by", "ana"],
    ] {
        let mut args = bad.clone();
        args.extend(["--config", config, "--now", NOW]);
        let (code, out, err) = run(&args);
        assert_eq!(code, 65, "{bad:?}: {out}\n{err}");
    }
    let (code, _, _) = run(&[
        "decide",
        KEY,
        "--outcome",
        "win",
        "--by",
        "ana",
        "--config",
        config,
    ]);
    assert_eq!(code, 2, "clap refuses an unknown outcome");

    assert_eq!(
        trail(&state),
        vec![(
            KEY.to_string(),
            "partner_keeps".to_string(),
            "ana@example.com".to_string()
        )]
    );
}
