//! `channel-sync decide` and what decisions do (issue 15), through the real
//! binary on a copy of the sample (files source).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{NOW, TestConfig, copy_sample, repo};

/// The bundled configuration on a copy of the sample in `dir`, with the
/// TOML fragment `extra` on top (its keys override).
pub fn config(dir: &Path, extra: &str) -> PathBuf {
    TestConfig::bundled()
        .state(&dir.join("state/channel-sync.db"))
        .files(&dir.join("data"), &dir.join("out"))
        .merge(extra)
        .write(&dir.join("config.toml"))
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

/// Runs `once --now NOW` with the fake Slack's webhook.
async fn once_at(config: &Path, now: &str, slack: &wiremock::MockServer) -> crate::helpers::Run {
    crate::helpers::run_async(
        vec![
            "once".into(),
            "--config".into(),
            config.display().to_string(),
            "--now".into(),
            now.into(),
        ],
        vec![(
            "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL".into(),
            format!("{}/hook", slack.uri()),
        )],
    )
    .await
}

/// The outbox messages created at `at`, as (finding key, reason, body).
pub fn messages_at(state: &Path, at: &str) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT COALESCE(finding_key, ''), reason, body FROM outbox WHERE created_at = ?1 ORDER BY id",
        )
        .unwrap();
    stmt.query_map([at], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn reminded(state: &Path, at: &str) -> Vec<String> {
    messages_at(state, at)
        .into_iter()
        .filter(|(_, reason, _)| reason == "reminder")
        .map(|(k, _, _)| k)
        .collect()
}

/// The `open_conflicts` column of the files sink's scorecards, by partner.
fn open_conflicts(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join("out/scorecards.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (cells[0].to_string(), cells[cells.len() - 1].to_string())
        })
        .collect()
}

const PVP: &str = "partner_vs_partner:A-16";

/// The last run's open findings of a kind (what the metric shows).
fn last_open_by_kind(state: &Path, kind: &str) -> u64 {
    let conn = rusqlite::Connection::open(state).unwrap();
    let summary: String = conn
        .query_row(
            "SELECT summary FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
    v["open_by_kind"][kind].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_decided_conflict_stays_quiet_and_a_snoozed_one_is_reminded_only_after_its_day() {
    let slack = crate::helpers::fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    let config = config(
        dir.path(),
        "[alerts.slack]\nrepeat_after = \"1d\"\nper_second = 1000\nmax_per_cycle = 100\n",
    );
    let cfg = config.to_str().unwrap();
    let state = dir.path().join("state/channel-sync.db");

    let r = once_at(&config, "2026-11-26T00:00:00Z", &slack).await;
    r.assert_ok();
    let pvp_open_before = last_open_by_kind(&state, "partner_vs_partner");
    let before = open_conflicts(dir.path());
    assert_eq!(before["P-3"], "2");
    assert_eq!(before["P-5"], "2");

    let (code, out, err) = run(&[
        "decide",
        PVP,
        "--outcome",
        "not_a_conflict",
        "--by",
        "ana",
        "--config",
        cfg,
        "--now",
        "2026-11-26T01:00:00Z",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = run(&[
        "decide",
        KEY,
        "--outcome",
        "snooze",
        "--until",
        "2026-11-29",
        "--by",
        "ana",
        "--config",
        cfg,
        "--now",
        "2026-11-26T01:00:00Z",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Two days on: reminders for the others, none for the decided and the
    // snoozed conflicts; the decided one leaves open_conflicts.
    let day2 = "2026-11-28T00:00:00Z";
    let r = once_at(&config, day2, &slack).await;
    r.assert_ok();
    let day2_reminders = reminded(&state, day2);
    assert!(
        day2_reminders.contains(&"direct_vs_partner:R-02:O-006".to_string()),
        "{day2_reminders:?}"
    );
    assert!(
        !day2_reminders.contains(&PVP.to_string()),
        "{day2_reminders:?}"
    );
    assert!(
        !day2_reminders.contains(&KEY.to_string()),
        "{day2_reminders:?}"
    );
    // The decided one is no longer open: not in the count, not in the
    // metric's open findings by kind (the snoozed one still is).
    assert!(
        r.stdout.contains("; 1 decided (not counted as open)"),
        "{}",
        r.stdout
    );
    assert_eq!(
        last_open_by_kind(&state, "partner_vs_partner"),
        pvp_open_before - 1
    );
    let after = open_conflicts(dir.path());
    assert_eq!(after["P-3"], "1", "{after:?}");
    assert_eq!(after["P-5"], "1", "{after:?}");
    assert_eq!(after["P-1"], before["P-1"], "{after:?}");

    // The snooze's last day still holds; the day after, the reminder comes.
    let day4 = "2026-11-29T12:00:00Z";
    once_at(&config, day4, &slack).await;
    assert!(!reminded(&state, day4).contains(&KEY.to_string()));
    let day5 = "2026-11-30T12:00:00Z";
    once_at(&config, day5, &slack).await;
    let day5_reminders = reminded(&state, day5);
    assert!(
        day5_reminders.contains(&KEY.to_string()),
        "{day5_reminders:?}"
    );
    assert!(
        !day5_reminders.contains(&PVP.to_string()),
        "{day5_reminders:?}"
    );
}

#[tokio::test]
async fn a_decided_conflict_that_gains_an_opportunity_comes_back_and_says_why() {
    let slack = crate::helpers::fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let config = config(
        dir.path(),
        "[alerts.slack]\nper_second = 1000\nmax_per_cycle = 100\n",
    );
    let cfg = config.to_str().unwrap();
    let state = dir.path().join("state/channel-sync.db");
    once_at(&config, "2026-11-26T00:00:00Z", &slack).await;
    let (code, out, err) = run(&[
        "decide",
        PVP,
        "--outcome",
        "partner_keeps",
        "--by",
        "ana@example.com",
        "--config",
        cfg,
        "--now",
        "2026-11-26T01:00:00Z",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");

    // A cycle with nothing new: still decided, nothing said.
    once_at(&config, "2026-11-26T02:00:00Z", &slack).await;
    assert!(messages_at(&state, "2026-11-26T02:00:00Z").is_empty());

    // A third partner's opportunity on the account: material.
    let mut opps = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("opportunities.csv"))
        .unwrap();
    use std::io::Write as _;
    writeln!(
        opps,
        "O-099,A-16,Massive Dynamic - New,U-5,Discovery,open,10000,USD,2026-11-01T09:00:00Z,2027-03-31,P-1,PR-01,,"
    )
    .unwrap();
    drop(opps);
    let at = "2026-11-27T00:00:00Z";
    let r = once_at(&config, at, &slack).await;
    r.assert_ok();
    let sent = messages_at(&state, at);
    let back: Vec<_> = sent.iter().filter(|(k, _, _)| k == PVP).collect();
    assert_eq!(back.len(), 1, "{sent:?}");
    assert_eq!(back[0].1, "changed");
    assert!(back[0].2.contains("reopened"), "{}", back[0].2);
    assert!(back[0].2.contains("O-099"), "{}", back[0].2);
    assert!(back[0].2.contains("partner keeps"), "{}", back[0].2);
    let rows = trail(&state);
    assert_eq!(
        rows.last().unwrap(),
        &(
            PVP.to_string(),
            "reopened".to_string(),
            "channel-sync".to_string()
        )
    );
    // Open again: the next cycle does not reopen it twice.
    once_at(&config, "2026-11-27T01:00:00Z", &slack).await;
    assert_eq!(trail(&state).len(), rows.len());
}

#[tokio::test]
async fn findings_filters_by_status_decision_and_partner_and_show_tells_the_story() {
    let slack = crate::helpers::fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    let config = config(
        dir.path(),
        "[alerts.slack]\nper_second = 1000\nmax_per_cycle = 100\n",
    );
    let cfg = config.to_str().unwrap();
    once_at(&config, "2026-11-26T00:00:00Z", &slack).await;
    for args in [
        vec![
            "--outcome",
            "direct_keeps",
            "--note",
            "owner got there first",
        ],
        vec!["--outcome", "assign", "--to", "U123"],
    ] {
        let mut a = vec!["decide", KEY, "--by", "ana@example.com"];
        a.extend(args);
        a.extend(["--config", cfg, "--now", "2026-11-27T00:00:00Z"]);
        let (code, out, err) = run(&a);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let (code, out, err) = run(&[
        "decide",
        PVP,
        "--outcome",
        "snooze",
        "--until",
        "2026-12-10",
        "--by",
        "bo",
        "--config",
        cfg,
        "--now",
        "2026-11-27T00:00:00Z",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let now = "2026-12-01T00:00:00Z";
    let list = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec![
            "findings", "--config", cfg, "--format", "json", "--now", now,
        ];
        a.extend(extra);
        let (code, out, err) = run(&a);
        assert_eq!(code, 0, "{out}\n{err}");
        serde_json::from_str(&out).unwrap()
    };
    let keys = |l: &[serde_json::Value]| -> Vec<String> {
        l.iter()
            .map(|f| f["key"].as_str().unwrap().to_string())
            .collect()
    };
    // The default: open and snoozed, not decided.
    let default = list(&[]);
    assert_eq!(default.len(), 13);
    assert!(!keys(&default).contains(&KEY.to_string()));
    let decided = list(&["--status", "decided"]);
    assert_eq!(keys(&decided), vec![KEY.to_string()]);
    assert_eq!(decided[0]["decision"], "direct_keeps");
    assert_eq!(decided[0]["decided_by"], "ana@example.com");
    assert_eq!(decided[0]["assignee"], "U123");
    assert_eq!(decided[0]["age_days"], 5);
    assert_eq!(keys(&list(&["--status", "snoozed"])), vec![PVP.to_string()]);
    assert_eq!(list(&["--status", "open"]).len(), 12);
    assert_eq!(
        keys(&list(&[
            "--status",
            "decided",
            "--decision",
            "direct_keeps"
        ])),
        vec![KEY.to_string()]
    );
    assert!(list(&["--status", "decided", "--decision", "split"]).is_empty());
    assert_eq!(
        keys(&list(&["--assignee", "u123", "--status", "decided"])),
        vec![KEY.to_string()]
    );
    // A partner by part of its name; by kind; by severity; by age.
    let tailspin = list(&["--partner", "tailspin"]);
    assert!(
        tailspin
            .iter()
            .all(|f| f["partner_ids"].to_string().contains("P-3")),
        "{tailspin:?}"
    );
    assert_eq!(tailspin.len(), 3, "{tailspin:?}");
    assert_eq!(list(&["--kind", "partner_bypassed"]).len(), 2);
    assert_eq!(list(&["--severity", "info"]).len(), 2);
    assert!(list(&["--min-age", "6"]).is_empty());
    assert_eq!(list(&["--min-age", "5"]).len(), 13);

    // show: the timeline from first seen through the alert to the decisions.
    let (code, out, err) = run(&["findings", "show", KEY, "--config", cfg, "--now", now]);
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "Status:   decided (direct_keeps, by ana@example.com), 5 day(s) old",
        "Assigned: U123",
        "2026-11-26T00:00:00Z  first_seen",
        "2026-11-26T00:00:00Z  alert       to 'default', sent",
        "2026-11-27T00:00:00Z  decision    direct_keeps by ana@example.com: owner got there first",
        "2026-11-27T00:00:00Z  decision    assign to U123 by ana@example.com",
        "opportunity O-005",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    let (code, _, err) = run(&["findings", "show", "nope", "--config", cfg, "--now", now]);
    assert_ne!(code, 0);
    assert!(err.contains("no finding with key 'nope'"), "{err}");
}

#[tokio::test]
async fn an_undecided_conflict_is_escalated_once_with_its_age_and_value_at_risk() {
    let slack = crate::helpers::fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    let config = config(
        dir.path(),
        "[alerts]\nescalate_after = \"3d\"\n\n[alerts.slack]\nper_second = 1000\nmax_per_cycle = 100\n",
    );
    let cfg = config.to_str().unwrap();
    let state = dir.path().join("state/channel-sync.db");
    once_at(&config, "2026-11-26T00:00:00Z", &slack).await;
    for (key, args) in [
        (PVP, vec!["--outcome", "split"]),
        (
            "partner_bypassed:R-12:O-015",
            vec!["--outcome", "snooze", "--until", "2026-12-31"],
        ),
    ] {
        let mut a = vec!["decide", key, "--by", "ana"];
        a.extend(args);
        a.extend(["--config", cfg, "--now", "2026-11-26T01:00:00Z"]);
        let (code, out, err) = run(&a);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let escalations = |at: &str| -> Vec<(String, String)> {
        messages_at(&state, at)
            .into_iter()
            .filter(|(_, r, _)| r == "escalation")
            .map(|(k, _, b)| (k, b))
            .collect()
    };
    // Two days: too early.
    once_at(&config, "2026-11-28T00:00:00Z", &slack).await;
    assert!(escalations("2026-11-28T00:00:00Z").is_empty());
    // Four days: every undecided, unsnoozed conflict, once.
    let at = "2026-11-30T00:00:00Z";
    once_at(&config, at, &slack).await;
    let sent = escalations(at);
    let keys: Vec<&str> = sent.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&KEY), "{keys:?}");
    assert!(!keys.contains(&PVP), "decided: {keys:?}");
    assert!(
        !keys.contains(&"partner_bypassed:R-12:O-015"),
        "snoozed: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("registration_")),
        "conflicts only: {keys:?}"
    );
    assert_eq!(keys.len(), 7, "{keys:?}");
    let body = &sent.iter().find(|(k, _)| k == KEY).unwrap().1;
    assert!(
        body.contains("escalated: undecided for 4 days; USD 210,000 at risk"),
        "{body}"
    );
    once_at(&config, "2026-12-01T00:00:00Z", &slack).await;
    assert!(
        escalations("2026-12-01T00:00:00Z").is_empty(),
        "escalated once only"
    );
}
