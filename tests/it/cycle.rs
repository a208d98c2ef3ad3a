//! `channel-sync once` end to end: the real binary, a copy of the sample
//! program it may change, and a fake Slack webhook on port 0.

use std::path::PathBuf;

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{NOW, TestConfig, copy_sample};

/// A program under test: its own copy of the sample, state and output.
struct Program {
    dir: tempfile::TempDir,
    webhook: String,
    extra_config: String,
    /// `[state]` lines beyond `path`, and the environment they need (the
    /// PostgreSQL variant).
    state_extra: String,
    env: Vec<(&'static str, String)>,
    db: Option<crate::pg::TestDb>,
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Program {
    fn new(slack: &MockServer) -> Program {
        let dir = tempfile::tempdir().unwrap();
        copy_sample(dir.path());
        Program {
            dir,
            webhook: format!("{}/hook", slack.uri()),
            extra_config: String::new(),
            state_extra: String::new(),
            env: Vec::new(),
            db: None,
        }
    }

    /// The same program with its state in a fresh PostgreSQL database
    /// (`None`, NOTE printed, without a server).
    fn on_postgres(slack: &MockServer, test: &str) -> Option<Program> {
        let db = crate::pg::TestDb::create(test)?;
        let mut p = Program::new(slack);
        p.state_extra = db.state_toml();
        p.env.push(db.env());
        p.db = Some(db);
        Some(p)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state/channel-sync.db")
    }

    fn scorecards(&self) -> PathBuf {
        self.dir.path().join("out/scorecards.csv")
    }

    fn config(&self) -> PathBuf {
        TestConfig::bundled()
            .state(&self.state())
            .files(&self.data(), &self.dir.path().join("out"))
            .merge(&format!("[state]\n{}", self.state_extra))
            .set("alerts.slack.per_second", 1000)
            .merge(&format!("[alerts.slack]\n{}", self.extra_config))
            .write(&self.dir.path().join("config.toml"))
    }

    /// Runs `once` (off the async runtime, which serves the fake Slack).
    async fn once(&self, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"));
        cmd.args(["once", "--config"])
            .arg(self.config())
            .args(["--now", NOW])
            .args(extra)
            .env_remove("RUST_LOG")
            .env("CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL", &self.webhook);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Rewrites one CSV of the program's data, cell by cell.
    fn edit(&self, file: &str, edit: impl Fn(&mut Vec<(String, String)>)) {
        let p = self.data().join(file);
        let mut reader = csv::Reader::from_path(&p).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        let mut w = csv::Writer::from_path(&p).unwrap();
        w.write_record(&header).unwrap();
        for row in rows {
            let mut cells: Vec<(String, String)> = header.iter().cloned().zip(row).collect();
            edit(&mut cells);
            if cells.is_empty() {
                continue; // deleted
            }
            w.write_record(cells.iter().map(|(_, v)| v)).unwrap();
        }
        w.flush().unwrap();
    }

    /// Writes a CSV's data rows in reverse order.
    fn reverse_rows(&self, file: &str) {
        let p = self.data().join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader.headers().unwrap().clone();
        let mut rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert!(rows.len() > 1, "{file}");
        rows.reverse();
        let mut w = csv::Writer::from_path(&p).unwrap();
        w.write_record(&header).unwrap();
        for row in rows {
            w.write_record(&row).unwrap();
        }
        w.flush().unwrap();
    }

    fn append(&self, file: &str, values: &[(&str, &str)]) {
        let p = self.data().join(file);
        let header: Vec<String> = csv::Reader::from_path(&p)
            .unwrap()
            .headers()
            .unwrap()
            .iter()
            .map(String::from)
            .collect();
        let row: Vec<String> = header
            .iter()
            .map(|h| {
                values
                    .iter()
                    .find(|(k, _)| k == h)
                    .map_or(String::new(), |(_, v)| v.to_string())
            })
            .collect();
        let mut text = std::fs::read_to_string(&p).unwrap();
        let mut w = csv::Writer::from_writer(vec![]);
        w.write_record(&row).unwrap();
        text.push_str(&String::from_utf8(w.into_inner().unwrap()).unwrap());
        std::fs::write(p, text).unwrap();
    }
}

fn set(cells: &mut [(String, String)], id: &str, column: &str, value: &str) {
    if cells.iter().any(|(k, v)| k == "id" && v == id) {
        for (k, v) in cells.iter_mut() {
            if k == column {
                *v = value.to_string();
            }
        }
    }
}

async fn slack_ok() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    server
}

/// A Slack that answers `failure` to the first `times` posts, then "ok".
async fn slack_failing(failure: ResponseTemplate, times: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(failure)
        .up_to_n_times(times)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    server
}

/// The posted bodies, as JSON.
async fn posted(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// The finding key a message is about (from its context line), else "digest".
fn about(body: &Value) -> String {
    let blocks = body["blocks"].as_array().unwrap();
    let last = blocks.last().unwrap()["elements"][0]["text"]
        .as_str()
        .unwrap_or_default();
    // "channel-sync · <key> · <kind or resolved>"
    last.split(" · ").nth(1).unwrap_or("digest").to_string()
}

fn header(body: &Value) -> String {
    body["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

const SAMPLE_FINDINGS: usize = 14;

#[tokio::test(flavor = "multi_thread")]
async fn the_first_cycle_alerts_each_finding_and_an_identical_one_nothing() {
    let slack = slack_ok().await;
    let p = Program::new(&slack);
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("14 open: 14 new"), "{}", run.stdout);
    assert!(run.stdout.contains("14 sent, 0 failed"), "{}", run.stdout);
    let bodies = posted(&slack).await;
    assert_eq!(bodies.len(), SAMPLE_FINDINGS);
    let mut keys: Vec<String> = bodies.iter().map(about).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), SAMPLE_FINDINGS, "one message per finding");
    for b in &bodies {
        assert!(
            b["text"].as_str().is_some_and(|t| !t.is_empty()),
            "a text fallback"
        );
        assert!(b["blocks"].as_array().unwrap().len() <= 50);
    }
    let card = std::fs::read_to_string(p.scorecards()).unwrap();
    assert!(
        card.starts_with("partner_id,partner_name,tier,period,reps,")
            && card.contains(
                "P-1,Northwind Solutions,gold,2026-Q3,7,3,0.428571,252000.00,127840.00,4,0,5"
            )
            && card.contains("P-4,Litware Advisors,,2026-Q3,"),
        "{card}"
    );

    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0));
    assert!(
        run.stdout.contains("0 new, 0 changed, 0 resolved"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("0 records written"), "{}", run.stdout);
    assert_eq!(
        posted(&slack).await.len(),
        SAMPLE_FINDINGS,
        "nothing more posted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_bring_exactly_the_renotifications_and_resolutions_due() {
    let slack = slack_ok().await;
    let p = Program::new(&slack);
    assert_eq!(p.once(&[], &[]).await.code, Some(0));
    slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;

    // The open direct opportunity O-002 is won: its conflict turns critical.
    p.edit("opportunities.csv", |c| {
        set(c, "O-002", "status", "won");
        set(c, "O-002", "close_date", "2026-11-20");
    });
    // The partner comes back on O-015: that bypass is resolved.
    p.edit("opportunities.csv", |c| {
        set(c, "O-015", "partner_id", "P-2")
    });
    // A third partner opens a deal on Baker & Sons: a new party.
    p.append(
        "opportunities.csv",
        &[
            ("id", "O-900"),
            ("account_id", "A-05"),
            ("status", "open"),
            ("created_at", "2026-11-20T10:00:00Z"),
            ("partner_id", "P-3"),
            ("name", "Baker - third claim"),
        ],
    );
    // Reordering rows and touching nothing material changes nothing.
    p.reverse_rows("registrations.csv");
    p.reverse_rows("opportunities.csv");
    p.edit("registrations.csv", |c| set(c, "R-05", "amount", "1"));

    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let mut got: Vec<(String, String)> = posted(&slack)
        .await
        .iter()
        .map(|b| (about(b), header(b)))
        .collect();
    got.sort();
    let got: Vec<(String, String)> = got.into_iter().map(|(k, h)| (h, k)).collect();
    let heads: Vec<&str> = got.iter().map(|(h, _)| h.as_str()).collect();
    let keys: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "direct_vs_partner:R-01:O-002",
            "partner_bypassed:R-12:O-015",
            "partner_vs_partner:A-05",
        ],
        "{heads:?}"
    );
    assert!(
        heads[0].contains("Updated: Direct deal") && heads[0].contains("critical"),
        "{heads:?}"
    );
    assert!(
        heads[1].contains("Resolved: Registered deal lost its partner"),
        "{heads:?}"
    );
    assert!(
        heads[2].contains("Updated: Two partners claim one customer"),
        "{heads:?}"
    );
    let changed = posted(&slack).await;
    let why: Vec<String> = changed
        .iter()
        .filter_map(|b| b["blocks"][1]["text"]["text"].as_str().map(String::from))
        .filter(|t| t.starts_with("*What changed:*"))
        .collect();
    assert!(
        why.iter()
            .any(|t| t.contains("severity rose to critical") && t.contains("won: O-002")),
        "{why:?}"
    );
    assert!(why.iter().any(|t| t.contains("new: O-900, P-3")), "{why:?}");

    // And a third identical cycle is silent again.
    slack.reset().await;
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0));
    assert!(posted(&slack).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn above_the_threshold_one_digest_goes_out() {
    let slack = slack_ok().await;
    let mut p = Program::new(&slack);
    p.extra_config = "max_per_cycle = 5".into();
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let bodies = posted(&slack).await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(header(&bodies[0]), "channel-sync: 14 alerts this cycle");
    let all = bodies[0].to_string();
    assert!(
        all.contains("Direct deal on a partner-registered account: 3 (2 critical)"),
        "{all}"
    );
    assert!(bodies[0]["blocks"].as_array().unwrap().len() <= 50);
    // The digest counts as the alert: nothing more next time.
    assert_eq!(p.once(&[], &[]).await.code, Some(0));
    assert_eq!(posted(&slack).await.len(), 1);
}

/// Slack failing in each documented way during the first cycle, fine in the
/// second: every alert arrives exactly once.
async fn recovers_from(failure: ResponseTemplate) {
    let slack = slack_failing(failure, 1).await;
    let mut p = Program::new(&slack);
    p.extra_config = "max_retry_wait_secs = 5".into();
    // The failure answers the first post; the cycle stops using the webhook.
    let run = p.once(&[], &[]).await;
    assert_eq!(
        run.code,
        Some(1),
        "a failed call is exit 1: {}{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout
            .contains("0 sent, 1 failed, 0 parked, 14 waiting"),
        "{}",
        run.stdout
    );
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("14 sent, 0 failed"), "{}", run.stdout);
    let requests = slack.received_requests().await.unwrap();
    assert_eq!(requests.len(), 15, "one failed attempt, then each once");
    let mut keys: Vec<String> = posted(&slack).await.iter().skip(1).map(about).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), SAMPLE_FINDINGS, "nothing lost, nothing twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_beyond_the_wait_limit_is_retried_next_cycle() {
    recovers_from(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "60")
            .set_body_string("rate_limited"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_is_archived_is_retried_next_cycle() {
    recovers_from(ResponseTemplate::new(410).set_body_string("channel_is_archived")).await;
}

/// A 5xx may have posted the message: not repeated within the cycle (only
/// a 5xx with Retry-After is, see tests/it/reliability.rs); the next cycle
/// sends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried_next_cycle() {
    let slack = slack_failing(
        ResponseTemplate::new(500).set_body_string("rollup_error"),
        1,
    )
    .await;
    let p = Program::new(&slack);
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("0 sent, 1 failed"), "{}", run.stdout);
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        1,
        "not repeated in the cycle"
    );
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0));
    let mut keys: Vec<String> = posted(&slack).await.iter().skip(1).map(about).collect();
    assert_eq!(keys.len(), SAMPLE_FINDINGS);
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), SAMPLE_FINDINGS);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_within_the_wait_limit_is_waited_out_in_the_same_cycle() {
    let slack = slack_failing(
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
        1,
    )
    .await;
    let p = Program::new(&slack);
    let started = std::time::Instant::now();
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert!(run.stdout.contains("14 sent"), "{}", run.stdout);
    assert_eq!(slack.received_requests().await.unwrap().len(), 15);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_payload_is_parked_not_retried() {
    let slack = slack_failing(
        ResponseTemplate::new(400).set_body_string("invalid_payload"),
        1,
    )
    .await;
    let p = Program::new(&slack);
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("13 sent, 0 failed, 1 parked"),
        "{}",
        run.stdout
    );
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0));
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        14,
        "the parked one is not resent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_posts_nothing_writes_nothing_and_leaves_the_state_file_alone() {
    let slack = slack_ok().await;
    let p = Program::new(&slack);
    assert_eq!(p.once(&[], &[]).await.code, Some(0));
    p.edit("opportunities.csv", |c| {
        set(c, "O-015", "partner_id", "P-2")
    });
    p.edit("opportunities.csv", |c| set(c, "O-001", "amount", "90000"));
    let state_before = std::fs::read(p.state()).unwrap();
    let cards_before = std::fs::read(p.scorecards()).unwrap();
    slack.reset().await;

    let run = p.once(&["--dry-run"], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Would send 1 alert(s):"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("resolved: partner_bypassed:R-12:O-015"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Would write 2 record(s) to files:"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("--- write P-1 (partner P-1): sourced_pipeline=257000.00\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "--- write P-2 (partner P-2): sourced_pipeline=104940.00, open_conflicts=1\n"
        ),
        "{}",
        run.stdout
    );
    assert!(posted(&slack).await.is_empty(), "no post");
    assert_eq!(
        std::fs::read(p.state()).unwrap(),
        state_before,
        "state file unchanged"
    );
    assert_eq!(
        std::fs::read(p.scorecards()).unwrap(),
        cards_before,
        "no write"
    );

    // A dry run before any real run creates nothing at all.
    let fresh = Program::new(&slack);
    let run = fresh.once(&["--dry-run"], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Would send 14 alert(s):"),
        "{}",
        run.stdout
    );
    assert!(!fresh.state().exists());
    assert!(!fresh.scorecards().exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn mention_injection_arrives_escaped() {
    let slack = slack_ok().await;
    let p = Program::new(&slack);
    p.edit("partners.csv", |c| {
        set(c, "P-1", "name", "<!channel> Northwind")
    });
    p.edit("accounts.csv", |c| {
        set(c, "A-01", "name", "<@U123> Acme & Co <!here>")
    });
    p.edit("opportunities.csv", |c| {
        set(c, "O-002", "name", "<https://evil.example|click>")
    });
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let raw: Vec<String> = slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect();
    let all = raw.join("\n");
    for bad in ["<!channel>", "<!here>", "<@U123>", "<https://evil"] {
        assert!(!all.contains(bad), "{bad} went out unescaped");
    }
    for good in [
        "&lt;!channel&gt; Northwind",
        "&lt;@U123&gt; Acme &amp; Co &lt;!here&gt;",
        "&lt;https://evil.example|click&gt;",
    ] {
        assert!(all.contains(good), "{good} missing");
    }
}

/// Kills the cycle at each named point, restarts it, and checks that every
/// alert arrived (at most one twice) and every write-back was applied.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_anywhere_loses_nothing() {
    crash_anywhere(false).await;
}

/// The same crashes with the state in PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_anywhere_loses_nothing_on_postgres() {
    crash_anywhere(true).await;
}

async fn crash_anywhere(postgres: bool) {
    for point in ["before-commit", "after-commit", "mid-send", "mid-writeback"] {
        let slack = slack_ok().await;
        let p = match postgres {
            false => Program::new(&slack),
            true => match Program::on_postgres(&slack, "a_crash_anywhere_loses_nothing") {
                Some(p) => p,
                None => return,
            },
        };
        let crashed = p.once(&[], &[("CHANNEL_SYNC_CRASH_AT", point)]).await;
        assert_ne!(crashed.code, Some(0), "{point}: the process was killed");
        let run = p.once(&[], &[]).await;
        assert_eq!(run.code, Some(0), "{point}: {}{}", run.stdout, run.stderr);
        let keys: Vec<String> = posted(&slack).await.iter().map(about).collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            SAMPLE_FINDINGS,
            "{point}: every alert delivered"
        );
        let duplicates = keys.len() - unique.len();
        let allowed = usize::from(point == "mid-send");
        assert_eq!(
            duplicates, allowed,
            "{point}: at most the one in flight twice"
        );
        let cards = std::fs::read_to_string(p.scorecards()).unwrap();
        assert_eq!(
            cards.lines().count(),
            6,
            "{point}: every scorecard written\n{cards}"
        );
        assert!(
            cards.contains(
                "P-5,Adatum Consulting,gold,2026-Q3,2,1,0.500000,209080.00,32400.00,3,1,2"
            ),
            "{point}: {cards}"
        );
        // And the restarted state is complete: a third run has nothing to do.
        let run = p.once(&[], &[]).await;
        assert!(
            run.stdout.contains("0 new, 0 changed, 0 resolved"),
            "{point}: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains("0 sent, 0 failed, 0 parked, 0 waiting"),
            "{point}: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains("0 records written"),
            "{point}: {}",
            run.stdout
        );
        if let Some(db) = &p.db {
            // The state really was the database.
            assert!(!p.state().exists(), "{point}: no state file");
            assert_eq!(db.count("findings"), SAMPLE_FINDINGS as i64, "{point}");
            assert!(db.count("written") > 0, "{point}");
            assert!(db.count("runs") >= 2, "{point}");
        }
    }
}

#[test]
fn check_config_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let check = |body: &str, env: &[(&str, &str)]| {
        std::fs::write(&config, body).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"));
        cmd.args(["check-config", "--config"]).arg(&config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let files = "[crm]\nkind = \"files\"\n[crm.files]\ndir = \"sample\"\n";
    // A secret in the file is refused, naming the variable to use.
    let out = check(
        &format!(
            "{files}[alerts.slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/X\"\n"
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    // The key and the reason: "alerts.slack.webhook_url" alone would match
    // any message about the webhook.
    assert!(
        err.contains("configuration: alerts.slack.webhook_url: secrets come from the environment only: set CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL instead"),
        "{err}"
    );
    assert!(!err.contains("hooks.slack.com"), "the secret is not echoed");
    // A route without its webhook.
    let out = check(
        &format!("{files}[alerts.slack.routes.critical]\nkinds = [\"direct_vs_partner\"]\n"),
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("configuration: alerts.slack.routes.critical.webhook_url: missing: set CHANNEL_SYNC__ALERTS__SLACK__ROUTES__CRITICAL__WEBHOOK_URL"),
        "{err}"
    );
    // An unknown key is named as unknown, not just mentioned.
    let out = check(&format!("{files}[alerts.slack]\nwebhook = \"x\"\n"), &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("configuration: alerts.slack.webhook: unknown field `webhook`"),
        "{err}"
    );
    // The effective configuration, secret redacted.
    let secret = "https://hooks.slack.com/services/T000/B000/SECRET";
    let out = check(
        files,
        &[("CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL", secret)],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"webhook_url\": \"<redacted>\""), "{text}");
    assert!(!text.contains("SECRET"), "{text}");
    // Missing source settings name the key.
    let out = check("[crm]\nkind = \"files\"\n", &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("configuration: crm.files.dir: required when crm.kind = \"files\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prm_tables_can_come_from_their_own_folder() {
    let slack = slack_ok().await;
    let mut p = Program::new(&slack);
    let prm = p.dir.path().join("prm");
    std::fs::create_dir(&prm).unwrap();
    for table in ["partners", "partner_reps", "registrations"] {
        let name = format!("{table}.csv");
        std::fs::rename(p.data().join(&name), prm.join(&name)).unwrap();
    }
    p.extra_config = format!(
        "\n[prm]\nkind = \"files\"\n\n[prm.files]\ndir = \"{}\"\n",
        prm.display()
    );
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("14 open: 14 new"), "{}", run.stdout);

    // Without the PRM folder setting, the CRM folder lacks the PRM tables.
    p.extra_config = "\n[prm]\nkind = \"files\"\n".into();
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(78));
    assert!(run.stderr.contains("prm.files.dir"), "{}", run.stderr);
}

/// The finding kind a message is about (from its context line).
fn kind_of(body: &Value) -> String {
    let blocks = body["blocks"].as_array().unwrap();
    let last = blocks.last().unwrap()["elements"][0]["text"]
        .as_str()
        .unwrap_or_default();
    last.split(" · ").nth(2).unwrap_or("digest").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scorecards_file_deleted_between_cycles_is_written_again_whole() {
    let slack = slack_ok().await;
    let p = Program::new(&slack);
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let card = std::fs::read_to_string(p.scorecards()).unwrap();
    let rows = card.lines().count() - 1;
    assert!(rows >= 5, "{card}");

    std::fs::remove_file(p.scorecards()).unwrap();
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!("{rows} records written")),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::read_to_string(p.scorecards()).unwrap(), card);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_takes_its_kinds_to_its_own_webhook_with_its_own_digest() {
    let slack = slack_ok().await;
    let critical = slack_ok().await;
    let mut p = Program::new(&slack);
    // 3 direct-vs-partner findings go to the route, the other 11 to the
    // default webhook: above 5, that one gets a digest; the route does not.
    p.extra_config =
        "max_per_cycle = 5\n\n[alerts.slack.routes.critical]\nkinds = [\"direct_vs_partner\"]\n"
            .into();
    let route_url = format!("{}/hook", critical.uri());
    let run = p
        .once(
            &[],
            &[(
                "CHANNEL_SYNC__ALERTS__SLACK__ROUTES__CRITICAL__WEBHOOK_URL",
                route_url.as_str(),
            )],
        )
        .await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let routed = posted(&critical).await;
    assert_eq!(routed.len(), 3, "{routed:?}");
    assert!(
        routed.iter().all(|b| kind_of(b) == "direct_vs_partner"),
        "{routed:?}"
    );
    let default = posted(&slack).await;
    assert_eq!(default.len(), 1, "{default:?}");
    assert_eq!(header(&default[0]), "channel-sync: 11 alerts this cycle");
    assert!(
        !default[0]
            .to_string()
            .contains("Direct deal on a partner-registered account"),
        "{}",
        default[0]
    );
}

/// A dry run on PostgreSQL leaves the database exactly as it was: on a new
/// database (not even the schema is created) and after a real run.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_on_postgres_leaves_the_database_unchanged() {
    let slack = slack_ok().await;
    let Some(p) = Program::on_postgres(&slack, "dry_run_on_postgres") else {
        return;
    };
    let db = p.db.as_ref().unwrap();
    let empty = crate::store_pg::db_snapshot(db);
    let run = p.once(&["--dry-run"], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Would send 14 alert(s):"),
        "{}",
        run.stdout
    );
    assert_eq!(crate::store_pg::db_snapshot(db), empty, "nothing created");
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let after = crate::store_pg::db_snapshot(db);
    assert!(after.len() > empty.len());
    p.edit("partners.csv", |c| set(c, "P-1", "name", "Renamed Partner"));
    let run = p.once(&["--dry-run"], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert_eq!(crate::store_pg::db_snapshot(db), after, "nothing changed");
    assert_eq!(
        posted(&slack).await.len(),
        SAMPLE_FINDINGS,
        "the dry run sent nothing"
    );
}

/// A leader whose lock session ends mid-send (the database cut it: a
/// failover, a partition) stops at the next message, like a shutdown; the
/// next run delivers the rest, the one in flight at most twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_leader_lock_stops_sending_at_the_next_message() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("ok")
                .set_delay(std::time::Duration::from_millis(300)),
        )
        .mount(&slack)
        .await;
    let Some(p) = Program::on_postgres(&slack, "lost_leader_lock") else {
        return;
    };
    let db = p.db.as_ref().unwrap();
    let cut = async {
        while slack.received_requests().await.unwrap_or_default().len() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        db.query(|c| {
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .unwrap()
        })
    };
    let (run, ended) = tokio::join!(p.once(&[], &[]), cut);
    assert_eq!(ended, 1, "the leader's session was cut");
    let sent = posted(&slack).await.len();
    assert!(sent < SAMPLE_FINDINGS, "it stopped sending ({sent} sent)");
    assert!(
        run.stdout.contains("waiting for the next cycle"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let run = p.once(&[], &[]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let keys: Vec<String> = posted(&slack).await.iter().map(about).collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), SAMPLE_FINDINGS, "every alert delivered");
    assert!(keys.len() - unique.len() <= 1, "{keys:?}");
}
