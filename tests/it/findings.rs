//! `channel-sync findings`: the open findings the state remembers, through
//! the real binary, after a `once` on a copy of the sample (files source).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{NOW, TestConfig, copy_sample, repo};

fn config(dir: &Path) -> PathBuf {
    TestConfig::bundled()
        .state(&dir.join("state/channel-sync.db"))
        .files(&dir.join("data"), &dir.join("out"))
        .write(&dir.join("config.toml"))
}

fn run(args: &[&str]) -> (i32, String, String) {
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

#[test]
fn findings_lists_what_the_last_cycle_saw_as_text_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    let config = config(dir.path());
    let config = config.to_str().unwrap();

    // Before any cycle: no state, nothing open, and a hint on stderr.
    let (code, out, err) = run(&[
        "findings", "--config", config, "--format", "json", "--now", NOW,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!([])
    );
    assert!(err.contains("channel-sync once"), "{err}");

    let (code, out, err) = run(&["once", "--config", config, "--now", NOW]);
    assert_eq!(code, 0, "{out}\n{err}");

    let (code, out, err) = run(&[
        "findings", "--config", config, "--format", "json", "--now", NOW,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 14, "{out}");
    // The largest value at risk (base currency) first, then the oldest.
    let keys: Vec<&str> = list.iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(
        &keys[..4],
        [
            "direct_vs_partner:R-02:O-005",
            "partner_vs_partner:A-16",
            "registration_expiring:R-11",
            "partner_bypassed:R-12:O-015",
        ]
    );
    assert_eq!(keys[13], "registration_expiring:R-09");
    let risks: Vec<f64> = list
        .iter()
        .map(|f| f["value_at_risk"].as_f64().unwrap())
        .collect();
    assert!(risks.windows(2).all(|w| w[0] >= w[1]), "{risks:?}");
    assert_eq!(list[0]["status"], "open");
    assert_eq!(list[0]["age_days"], 0);
    let won = &list[0];
    assert_eq!(won["severity"], "critical");
    assert_eq!(won["kind"], "direct_vs_partner");
    assert_eq!(won["account_id"], "A-10");
    assert_eq!(won["account_name"], "Stark Industries Inc.");
    assert_eq!(won["partners"], serde_json::json!(["Northwind Solutions"]));
    assert_eq!(won["value_at_risk"], 210000.0);
    assert_eq!(won["currency"], "USD");
    assert_eq!(won["first_seen"], NOW);
    // An unmatched group has no account; a GBP deal is counted in USD
    // (22,000 GBP at 1.27).
    let group = list
        .iter()
        .find(|f| f["key"] == "partner_vs_partner:domain:quantumfjord.no")
        .unwrap();
    assert_eq!(group["account_id"], serde_json::Value::Null);
    let baker = list
        .iter()
        .find(|f| f["key"] == "partner_vs_partner:A-05")
        .unwrap();
    assert_eq!(baker["value_at_risk"], 27940.0);
    // Claims are grouped by partner, in the order of each one's first claim.
    assert_eq!(
        baker["summary"],
        "Baker & Sons Ltd is claimed by 2 partners: Fabrikam Partners (R-07, 2026-10-01; O-013, 2026-10-04) and Litware Advisors (R-08, 2026-10-22); the first claim was R-07."
    );

    let (code, out, _) = run(&[
        "findings", "--config", config, "--format", "csv", "--now", NOW,
    ]);
    assert_eq!(code, 0);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(
            "severity,kind,key,account_id,account_name,partner_ids,partners,first_seen,age_days,value_at_risk,currency,status,decision,decided_by,snoozed_until,assignee,summary"
        )
    );
    assert_eq!(out.lines().count(), 15, "{out}");
    assert!(
        out.contains("critical,direct_vs_partner,direct_vs_partner:R-02:O-005,A-10,Stark Industries Inc.,P-1,Northwind Solutions,2026-11-26T00:00:00Z,0,210000.00,USD,open,,,,,"),
        "{out}"
    );

    let (code, out, _) = run(&["findings", "--config", config, "--now", NOW]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Findings: 14 (4 critical, 8 warning, 2 info)"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.contains("direct_vs_partner:R-02:O-005"))
        .unwrap();
    for cell in [
        "critical",
        "Stark Industries Inc. (A-10)",
        "Northwind Solutions",
        "open",
        "210,000",
    ] {
        assert!(row.contains(cell), "{cell} in {row}");
    }
    assert!(out.contains("At stake (USD)"), "{out}");

    // A conflict the data no longer shows is resolved, and no longer listed.
    let opps = dir.path().join("data/opportunities.csv");
    let kept: String = std::fs::read_to_string(&opps)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("O-015,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&opps, kept).unwrap();
    let (code, out, err) = run(&["once", "--config", config, "--now", NOW]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, out, _) = run(&[
        "findings", "--config", config, "--format", "json", "--now", NOW,
    ]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 13, "{out}");
    assert!(!out.contains("partner_bypassed:R-12:O-015"), "{out}");
}
