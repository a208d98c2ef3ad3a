//! What a newcomer meets in the first hour (issue 11): the configuration a
//! command loaded, truthful summaries, a readable dry run, progress, aged-out
//! findings closed quietly, check-config reporting everything at once, the
//! healthcheck's base URL (the deterministic generator's tests are in
//! crates/synth/tests). All through the
//! real binary.

use std::path::PathBuf;

use crate::helpers::{NOW, Run, TestConfig, copy_sample, fake_slack, repo, run_async, slack_texts};

/// A files program in a temporary folder, with the bundled rules.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        copy_sample(dir.path());
        Files { dir }
    }

    fn config(&self) -> PathBuf {
        let dir = self.dir.path();
        TestConfig::bundled()
            .state(&dir.join("state.db"))
            .files(&dir.join("data"), &dir.join("out"))
            .set("alerts.slack.per_second", 1000)
            .write(&dir.join("config.toml"))
    }

    /// `once` as of `now`, with the webhook (or none).
    async fn once(&self, now: &str, extra: &[&str], webhook: Option<&str>) -> Run {
        let mut args = vec![
            "once".to_string(),
            "--config".into(),
            self.config().display().to_string(),
            "--now".into(),
            now.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let env = webhook
            .map(|w| {
                vec![(
                    "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL".to_string(),
                    w.to_string(),
                )]
            })
            .unwrap_or_default();
        run_async(args, env).await
    }
}

fn hook(slack: &wiremock::MockServer) -> String {
    format!("{}/hook", slack.uri())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_says_which_configuration_it_loaded() {
    // From a folder with no config/: the defaults, said out loud.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(["detect", "--input"])
        .arg(repo().join("sample"))
        .args(["--now", NOW])
        .current_dir(elsewhere.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "using configuration: defaults (no --config, and no config/channel-sync.toml in"
        ),
        "{err}"
    );
    // With --config, the file; environment overrides are counted, never shown.
    let p = Files::new();
    let run = run_async(
        vec![
            "check-config".into(),
            "--config".into(),
            p.config().display().to_string(),
        ],
        vec![("CHANNEL_SYNC__RULES__PROTECTION_DAYS".into(), "61".into())],
    )
    .await;
    assert!(
        run.stderr.contains(&format!(
            "using configuration: {}, with 1 CHANNEL_SYNC__* environment override(s)",
            p.config().display()
        )),
        "{}",
        run.stderr
    );
    // The daemon logs it as a JSON line (tests/it/daemon.rs reads that log).
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_reads_like_slack_and_says_nothing_was_sent() {
    let slack = fake_slack().await;
    let p = Files::new();
    let run = p.once(NOW, &["--dry-run"], Some(&hook(&slack))).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Would send 14 alert(s):"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("\"blocks\""), "no raw JSON by default");
    assert!(!run.stdout.contains("&amp;") && !run.stdout.contains("<http"));
    // Readable: header lines underlined, sections indented.
    assert!(run.stdout.contains("\n====="), "{}", run.stdout);
    assert!(
        run.stdout.contains("alerts      14 would be sent\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("(dry run: nothing was posted, written or stored)")
    );
    assert!(
        run.stdout
            .contains("write-back  5 records would be written")
    );
    assert!(slack_texts(&slack).await.is_empty());

    let json = p
        .once(NOW, &["--dry-run", "--format", "json"], Some(&hook(&slack)))
        .await;
    assert!(json.stdout.contains("\"blocks\""), "{}", json.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_webhook_the_summary_says_what_waits_and_a_dry_run_still_shows_it() {
    let p = Files::new();
    let dry = p.once(NOW, &["--dry-run"], None).await;
    assert!(
        dry.stdout.contains("Would send 14 alert(s):"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("14 would be sent once a Slack webhook is set"),
        "{}",
        dry.stdout
    );
    let real = p.once(NOW, &[], None).await;
    assert_eq!(real.code, Some(0), "{}{}", real.stdout, real.stderr);
    assert!(
        real.stdout.contains(
            "alerts      off: no Slack webhook (CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL); 14 finding(s) will be announced once one is set"
        ),
        "{}",
        real.stdout
    );
    // ... and they are, once it is set.
    let slack = fake_slack().await;
    let later = p.once(NOW, &[], Some(&hook(&slack))).await;
    assert!(
        later.stdout.contains("14 sent, 0 failed"),
        "{}",
        later.stdout
    );
    assert_eq!(slack_texts(&slack).await.len(), 14);
}

#[tokio::test(flavor = "multi_thread")]
async fn sending_says_up_front_how_many_and_how_long() {
    let slack = fake_slack().await;
    let p = Files::new();
    let run = p.once(NOW, &[], Some(&hook(&slack))).await;
    assert!(
        run.stderr.contains(
            "sending 14 alert(s) to 1 webhook(s): about a second at 1000 a second per webhook"
        ),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_alone_ages_findings_out_quietly_and_never_resolves_them() {
    let slack = fake_slack().await;
    let p = Files::new();
    let first = p.once(NOW, &[], Some(&hook(&slack))).await;
    assert!(first.stdout.contains("14 sent"), "{}", first.stdout);
    // R-19 expired on 2026-11-01: past the 30-day look-back one second
    // after 2026-12-01. The data does not change, so nothing is "resolved".
    let later = p
        .once("2026-12-01T00:00:01Z", &[], Some(&hook(&slack)))
        .await;
    let findings = later
        .stdout
        .lines()
        .find(|l| l.starts_with("findings"))
        .unwrap_or_default()
        .to_string();
    assert!(findings.contains(" 0 resolved,"), "{findings}");
    let aged: usize = findings
        .split(", ")
        .find(|s| s.ends_with("aged out"))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(aged >= 1, "{findings}");
    let texts = slack_texts(&slack).await;
    assert!(
        texts.iter().all(|t| !t.contains("Resolved")),
        "nothing announced as resolved"
    );
    let conn = rusqlite::Connection::open(p.dir.path().join("state.db")).unwrap();
    let closed: String = conn
        .query_row(
            "SELECT closed_as FROM findings WHERE key = 'registration_expired:R-19'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(closed, "aged_out");
    let aged_rows: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM findings WHERE closed_as = 'aged_out'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(aged_rows as usize, aged);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_reports_every_problem_at_once_then_ok() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[rules]\nprotection_days = 0\nexpiring_within_days = 9999\n[schedule]\ncron = \"0 0 0 31 2 *\"\n[crm]\nkind = \"files\"\n[crm.files]\ndir = \"/nonexistent/exports\"\n",
    )
    .unwrap();
    let run = run_async(
        vec![
            "check-config".into(),
            "--config".into(),
            bad.display().to_string(),
        ],
        vec![(
            "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL".into(),
            "ftp://hooks.example/T0/B0/SECRETPART".into(),
        )],
    )
    .await;
    assert_eq!(run.code, Some(78), "{}", run.stderr);
    for key in [
        "rules.protection_days",
        "rules.expiring_within_days",
        "schedule.cron: '0 0 0 31 2 *' never fires",
        "crm.files.dir: cannot read the folder /nonexistent/exports",
        "alerts.slack.webhook_url: must be an https URL",
    ] {
        assert!(
            run.stderr.contains(key),
            "{key} missing from:\n{}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("5 problem(s) found"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("SECRETPART"),
        "the webhook is never echoed"
    );
    assert!(!run.stderr.contains("OK:"));

    let p = Files::new();
    let good = run_async(
        vec![
            "check-config".into(),
            "--config".into(),
            p.config().display().to_string(),
        ],
        vec![(
            "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL".into(),
            "https://hooks.slack.com/services/...".into(),
        )],
    )
    .await;
    assert_eq!(good.code, Some(0), "{}", good.stderr);
    assert!(
        good.stderr
            .contains("warning: alerts.slack.webhook_url still holds the README's placeholder"),
        "{}",
        good.stderr
    );
    assert!(
        good.stderr
            .contains("OK: ready for once and run: CRM files, PRM files (beside the CRM's), alerts to 1 webhook(s)"),
        "{}",
        good.stderr
    );
    let printed: serde_json::Value = serde_json::from_str(&good.stdout).unwrap();
    assert_eq!(printed["alerts"]["slack"]["webhook_url"], "<redacted>");
}
