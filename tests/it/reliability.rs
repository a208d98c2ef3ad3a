//! Issue 12, through the real binary: nothing lost, nothing doubled,
//! nothing leaked. A kill right after a token rotation, a slow Slack, formula
//! cells, two cycles at once, duplicate header columns, the credential at
//! rest, and SIGTERM during `once`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{NOW, TestConfig, copy_sample};
use crate::salesforce::{Org, seed};
use channel_sync_fakes::salesforce::FakeConfig;

/// Alerts the sample program raises on its first cycle.
const SAMPLE_FINDINGS: usize = 14;

/// The sample program in a folder of its own, with a config naming it.
struct Program {
    dir: tempfile::TempDir,
    webhook: String,
    extra: String,
}

impl Program {
    fn new(slack: &MockServer, extra: &str) -> Program {
        let dir = tempfile::tempdir().unwrap();
        copy_sample(dir.path());
        let p = Program {
            dir,
            webhook: format!("{}/hook", slack.uri()),
            extra: extra.into(),
        };
        p.write_config();
        p
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
        self.dir.path().join("config.toml")
    }

    /// Written once: processes started together must not see it half-written.
    fn write_config(&self) {
        let (state_extra, slack_extra) = self.extra.split_once("|").unwrap_or(("", &self.extra));
        TestConfig::bundled()
            .state(&self.state())
            .files(&self.data(), &self.dir.path().join("out"))
            .set("alerts.slack.per_second", 1000)
            .merge(&format!(
                "[state]\n{state_extra}\n[alerts.slack]\n{slack_extra}"
            ))
            .write(&self.config());
    }

    fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_channel-sync"));
        cmd.args(["once", "--config"])
            .arg(self.config())
            .args(["--now", NOW])
            .env_remove("RUST_LOG")
            .env("CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL", &self.webhook);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `once` in the background, output captured.
    fn spawn(&self) -> Child {
        self.command(&[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    async fn once(&self) -> Outcome {
        let mut cmd = self.command(&[]);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        Outcome::from(out)
    }
}

#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<std::process::Output> for Outcome {
    fn from(out: std::process::Output) -> Self {
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

async fn finish(child: Child) -> Outcome {
    tokio::task::spawn_blocking(move || Outcome::from(child.wait_with_output().unwrap()))
        .await
        .unwrap()
}

/// A Slack that takes `delay` to answer "ok" to the first `slow` posts
/// (all of them with `None`), then answers at once.
async fn slack_slow(delay: Duration, slow: Option<u64>) -> MockServer {
    let server = MockServer::start().await;
    let mock = Mock::given(method("POST")).respond_with(
        ResponseTemplate::new(200)
            .set_body_string("ok")
            .set_delay(delay),
    );
    match slow {
        Some(0) => {}
        Some(n) => mock.up_to_n_times(n).mount(&server).await,
        None => mock.mount(&server).await,
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    server
}

/// The finding key each received post is about (from its context line).
async fn posted_keys(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let blocks = body["blocks"].as_array().unwrap();
            let last = blocks.last().unwrap()["elements"][0]["text"]
                .as_str()
                .unwrap_or_default();
            last.split(" · ").nth(1).unwrap_or("digest").to_string()
        })
        .collect()
}

/// How many times each key was delivered, and the largest count.
fn deliveries(keys: &[String]) -> (std::collections::BTreeMap<&str, usize>, usize) {
    let mut by = std::collections::BTreeMap::new();
    for k in keys {
        *by.entry(k.as_str()).or_insert(0) += 1;
    }
    let max = by.values().copied().max().unwrap_or(0);
    (by, max)
}

/// Every file in a folder, read whole.
fn bytes_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KEY_B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

/// Item 1 and 6: the process is killed right after the token endpoint
/// rotated the refresh token (and invalidated the old one); the next cycle
/// signs in with the new one. The token is nowhere in clear in the state
/// folder, byte for byte; a wrong key falls back to the configured token
/// with a warning, and a newly issued token recovers.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_right_after_the_token_call_does_not_lock_the_daemon_out() {
    let mut org = Org::start(FakeConfig {
        rotate_refresh_tokens: true,
        ..FakeConfig::default()
    })
    .await;
    seed(&org.fake);
    org.env.extend([
        (
            "CHANNEL_SYNC__CRM__SALESFORCE__AUTH".into(),
            "refresh_token".into(),
        ),
        (
            "CHANNEL_SYNC__CRM__SALESFORCE__REFRESH_TOKEN".into(),
            "fake-refresh-1".into(),
        ),
        ("CHANNEL_SYNC_CRASH_AT".into(), "after-token".into()),
    ]);
    let run = org.once(&[]).await;
    assert_eq!(run.code, None, "killed at the crash point: {}", run.stderr);
    assert!(
        run.stderr.contains("crashing at after-token"),
        "{}",
        run.stderr
    );
    assert_eq!(
        org.fake.current_refresh_token(),
        "fake-refresh-2",
        "rotated"
    );
    org.env.pop();
    let run = org.once(&[]).await;
    run.assert_ok();
    assert_eq!(
        org.fake.token_grants(),
        ["refresh_token", "refresh_token"],
        "the second process signed in with the rotated token"
    );
    assert_eq!(org.fake.current_refresh_token(), "fake-refresh-3");
    let state_dir = org.state().parent().unwrap().to_path_buf();
    let files = bytes_under(&state_dir);
    assert!(files.iter().any(|(p, _)| p.ends_with("channel-sync.db")));
    for (path, bytes) in &files {
        for token in ["fake-refresh-1", "fake-refresh-2", "fake-refresh-3"] {
            assert!(
                !contains(bytes, token.as_bytes()),
                "{token} in clear in {}",
                path.display()
            );
        }
    }

    // A changed key (here: an explicit one where the derived one was used)
    // cannot read the stored token: a warning says so, the configured token
    // is tried (dead by now: a clear invalid_grant), nothing is printed of
    // any token, and a newly issued token recovers.
    org.env
        .push(("CHANNEL_SYNC__STATE__ENCRYPTION_KEY".into(), KEY_A.into()));
    let run = org.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "cannot be read; falling back to the configured crm.salesforce.refresh_token"
        ) && run.stderr.contains("invalid_grant"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("fake-refresh"), "{}", run.stderr);
    let issued = org.fake.current_refresh_token();
    org.env[2].1 = issued.clone();
    assert_eq!(org.env[2].0, "CHANNEL_SYNC__CRM__SALESFORCE__REFRESH_TOKEN");
    let run = org.once(&[]).await;
    run.assert_ok();
    let run = org.once(&[]).await;
    assert_eq!(
        run.code,
        Some(0),
        "the rotation stored under the new key: {}",
        run.stderr
    );
    let latest = org.fake.current_refresh_token();
    assert_ne!(latest, issued);
    for (path, bytes) in bytes_under(&state_dir) {
        assert!(
            !contains(&bytes, latest.as_bytes()),
            "{latest} in clear in {}",
            path.display()
        );
    }
    // A key that is not 64 hex characters is a configuration error.
    org.env[3].1 = "not-a-key".into();
    let run = org.once(&[]).await;
    assert_eq!(run.code, Some(78), "{}", run.stderr);
    assert!(
        run.stderr.contains("state.encryption_key"),
        "{}",
        run.stderr
    );
    let _ = KEY_B;
}

/// The same credential in a PostgreSQL state: the rotated token is stored
/// sealed there too, and a token stored in clear (as a state copied by
/// `state migrate` from an older SQLite file holds it) is read and signs in.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_token_in_postgresql_is_sealed_and_one_in_clear_still_signs_in() {
    let Some(db) = crate::pg::TestDb::create("sealed_credential") else {
        return;
    };
    let mut org = Org::start(FakeConfig {
        rotate_refresh_tokens: true,
        ..FakeConfig::default()
    })
    .await;
    seed(&org.fake);
    org.extra.push_str(&format!("[state]\n{}", db.state_toml()));
    org.env.extend([
        (
            "CHANNEL_SYNC__CRM__SALESFORCE__AUTH".into(),
            "refresh_token".into(),
        ),
        (
            "CHANNEL_SYNC__CRM__SALESFORCE__REFRESH_TOKEN".into(),
            "fake-refresh-1".into(),
        ),
    ]);
    let (name, password) = db.env();
    org.env.push((name.into(), password));
    let run = org.once(&[]).await;
    run.assert_ok();
    assert_eq!(org.fake.current_refresh_token(), "fake-refresh-2");
    let stored = || -> Vec<String> {
        db.query(|c| {
            c.query("SELECT value FROM credentials", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect()
        })
    };
    let values = stored();
    assert_eq!(values.len(), 1, "{values:?}");
    assert!(
        values[0].starts_with("cs1:") && !values[0].contains("fake-refresh"),
        "{values:?}"
    );
    assert!(!org.state().exists(), "the state is in PostgreSQL");

    db.query(|c| {
        c.execute("UPDATE credentials SET value = 'fake-refresh-2'", &[])
            .unwrap()
    });
    let run = org.once(&[]).await;
    run.assert_ok();
    assert_eq!(
        org.fake.token_grants(),
        ["refresh_token", "refresh_token"],
        "the second run signed in with the token stored in clear"
    );
    assert_eq!(org.fake.current_refresh_token(), "fake-refresh-3");
    let values = stored();
    assert!(
        values
            .iter()
            .all(|v| v.starts_with("cs1:") && !v.contains("fake-refresh")),
        "{values:?}"
    );
}

/// Item 2: a webhook that posts the message but answers after 1.6 s, with
/// `timeout_secs = 1`. The timed-out alert is not repeated within the
/// cycle; the next cycle sends it once more: exactly one duplicate.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_slack_gets_a_timed_out_alert_twice_at_most() {
    let slack = slack_slow(Duration::from_millis(1600), Some(1)).await;
    let p = Program::new(&slack, "timeout_secs = 1");
    let run = p.once().await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("0 sent, 1 failed, 0 parked, 14 waiting"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("may have been delivered"),
        "{}",
        run.stderr
    );
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        1,
        "not repeated after the timeout within the cycle"
    );
    let run = p.once().await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("14 sent, 0 failed"), "{}", run.stdout);
    let keys = posted_keys(&slack).await;
    assert_eq!(
        keys.len(),
        SAMPLE_FINDINGS + 1,
        "one duplicate: the timed-out one"
    );
    let (by, max) = deliveries(&keys);
    assert_eq!(by.len(), SAMPLE_FINDINGS, "every alert arrived");
    assert_eq!(max, 2);
    assert_eq!(
        by[keys[0].as_str()],
        2,
        "the duplicate is the timed-out one"
    );
    let run = p.once().await;
    assert!(
        run.stdout.contains("0 sent, 0 failed, 0 parked, 0 waiting"),
        "{}",
        run.stdout
    );
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        SAMPLE_FINDINGS + 1
    );
}

/// Item 2, a Slack that is always slow: an alert is delivered at most twice
/// (then parked as "may have been posted"), whatever the number of cycles.
#[tokio::test(flavor = "multi_thread")]
async fn an_always_slow_slack_never_gets_an_alert_more_than_twice() {
    let slack = slack_slow(Duration::from_millis(1600), None).await;
    let p = Program::new(&slack, "timeout_secs = 1");
    for _ in 0..3 {
        let run = p.once().await;
        assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    }
    let keys = posted_keys(&slack).await;
    assert_eq!(keys.len(), 3, "one post per cycle: the webhook is slow");
    assert_eq!(keys[0], keys[1], "the timed-out alert once more");
    assert_ne!(keys[2], keys[0], "then parked, never a third time");
    let (_, max) = deliveries(&keys);
    assert_eq!(max, 2);
}

/// Item 3: partner ids a spreadsheet would run, read back from
/// `scorecards.csv` with a `'` in front; the other rows are untouched.
#[tokio::test(flavor = "multi_thread")]
async fn formula_cells_are_written_as_text() {
    let slack = slack_slow(Duration::ZERO, Some(0)).await;
    let p = Program::new(&slack, "");
    let evil = [
        "=1+1",
        "+1+1",
        "-1+1",
        "@SUM(1+1)",
        "=cmd|' /C calc'!A0",
        "=HYPERLINK(\"http://evil.example\",\"x\")",
    ];
    // (A leading tab or carriage return is trimmed when the input is read;
    // csv_safe's unit test covers those two prefixes.)
    let partners = p.data().join("partners.csv");
    let mut text = std::fs::read_to_string(&partners).unwrap();
    let mut w = csv::Writer::from_writer(vec![]);
    for (i, id) in evil.iter().enumerate() {
        w.write_record([*id, &format!("Evil {i}"), "", "", ""])
            .unwrap();
    }
    text.push_str(&String::from_utf8(w.into_inner().unwrap()).unwrap());
    std::fs::write(&partners, text).unwrap();
    let run = p.once().await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let mut reader = csv::Reader::from_path(p.scorecards()).unwrap();
    let ids: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    for id in evil {
        assert!(
            ids.contains(&format!("'{id}")),
            "{id:?} not neutralised: {ids:?}"
        );
    }
    assert!(
        ids.iter()
            .all(|c| !c.starts_with(['=', '+', '-', '@', '\t', '\r']))
    );
    assert!(ids.contains(&"P-1".to_string()), "{ids:?}");
    // Upserted by id on the next cycles: no row doubles.
    let run = p.once().await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let rows = csv::Reader::from_path(p.scorecards())
        .unwrap()
        .records()
        .count();
    assert_eq!(rows, 5 + evil.len());
}

/// Item 4: two `once` started together on one state. With no waiting, the
/// second leaves at once naming the holder, and each alert arrives once;
/// with a wait, the second runs after the first, finds everything done, and
/// each alert still arrives once.
#[tokio::test(flavor = "multi_thread")]
async fn two_cycles_at_once_deliver_each_alert_once() {
    for wait in ["0s", "60s"] {
        // Slow enough that the first cycle is still sending when the
        // second starts (14 posts x 150 ms).
        let slack = slack_slow(Duration::from_millis(150), None).await;
        let p = Program::new(&slack, &format!("lock_wait = \"{wait}\"|"));
        let (a, b) = (p.spawn(), p.spawn());
        let pids = [a.id(), b.id()];
        let (a, b) = (finish(a).await, finish(b).await);
        let keys = posted_keys(&slack).await;
        let (by, max) = deliveries(&keys);
        assert_eq!(by.len(), SAMPLE_FINDINGS, "{wait}: every alert arrived");
        assert_eq!(max, 1, "{wait}: none twice: {by:?}");
        let (winner, other) = if a.stdout.contains("14 sent") {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert_eq!(winner.code, Some(0), "{wait}: {winner:?}");
        assert!(winner.stdout.contains("14 sent"), "{wait}: {winner:?}");
        assert!(
            other
                .stderr
                .contains("in use by another channel-sync (pid "),
            "{wait}: {other:?}"
        );
        let holder = pids
            .iter()
            .any(|pid| other.stderr.contains(&format!("(pid {pid} on host ")));
        assert!(holder, "{wait}: names the holder's pid: {}", other.stderr);
        assert!(
            other.stderr.contains(" since 20"),
            "{wait}: {}",
            other.stderr
        );
        if wait == "0s" {
            assert_eq!(other.code, Some(1), "{other:?}");
            assert!(
                other
                    .stderr
                    .contains("waited 0s (state.lock_wait) and gave up"),
                "{}",
                other.stderr
            );
            assert_eq!(other.stdout, "", "it did nothing");
        } else {
            assert_eq!(other.code, Some(0), "{other:?}");
            assert!(
                other.stderr.contains("waiting up to 60s"),
                "{}",
                other.stderr
            );
            assert!(
                other
                    .stdout
                    .contains("0 sent, 0 failed, 0 parked, 0 waiting"),
                "{}",
                other.stdout
            );
        }
    }
}

/// Item 5: a column the table reads given twice: exit 65 naming the file
/// and the column, in `detect` and in `once`; nothing guessed.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_header_columns_are_exit_65() {
    let slack = slack_slow(Duration::ZERO, Some(0)).await;
    let p = Program::new(&slack, "");
    let accounts = p.data().join("accounts.csv");
    let text = std::fs::read_to_string(&accounts).unwrap();
    let (head, rest) = text.split_once('\n').unwrap();
    let rows: Vec<String> = rest
        .lines()
        .map(|l| format!("{l},OTHER-{}", l.len()))
        .collect();
    std::fs::write(&accounts, format!("{head},id\n{}\n", rows.join("\n"))).unwrap();
    let run = p.once().await;
    assert_eq!(run.code, Some(65), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("accounts.csv: line 1: column 'id' appears more than once"),
        "{}",
        run.stderr
    );
    assert!(slack.received_requests().await.unwrap().is_empty());
    let out = crate::helpers::channel_sync(&[
        "detect",
        "--input",
        p.data().to_str().unwrap(),
        "--now",
        NOW,
    ]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("column 'id' appears more than once"));
}

/// Item 7: SIGTERM while `once` is sending: it stops at the next message,
/// writes back, records the run and exits 0; the next run sends the rest.
/// Every alert arrives exactly once.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_once_stops_cleanly_and_loses_nothing() {
    let slack = slack_slow(Duration::from_millis(300), None).await;
    let p = Program::new(&slack, "");
    let child = p.spawn();
    let pid = child.id();
    let started = Instant::now();
    while slack.received_requests().await.unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no post arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let run = finish(child).await;
    assert_eq!(run.code, Some(0), "a clean stop: {run:?}");
    assert!(
        run.stderr.contains("stopping at the next message"),
        "{}",
        run.stderr
    );
    let sent_first = posted_keys(&slack).await.len();
    assert!(
        (2..SAMPLE_FINDINGS).contains(&sent_first),
        "stopped part way: {sent_first}"
    );
    assert!(
        run.stdout.contains(&format!(
            "{sent_first} sent, 0 failed, 0 parked, {} waiting",
            SAMPLE_FINDINGS - sent_first
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(p.scorecards())
            .unwrap()
            .lines()
            .count(),
        6,
        "written back before stopping"
    );
    let run = p.once().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let keys = posted_keys(&slack).await;
    let (by, max) = deliveries(&keys);
    assert_eq!(
        (by.len(), max),
        (SAMPLE_FINDINGS, 1),
        "nothing lost, nothing twice"
    );
    assert!(run.stdout.contains("0 records written"), "{}", run.stdout);
}

/// Item 2: what cannot have been delivered is retried within the cycle: a
/// 503 with Retry-After, a 429 (tests/it/cycle.rs), a refused connection
/// (src/upstream.rs).
#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_with_retry_after_is_retried_in_the_cycle() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let p = Program::new(&slack, "");
    let run = p.once().await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("14 sent, 0 failed"), "{}", run.stdout);
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        SAMPLE_FINDINGS + 1
    );
}

/// Item 4 and 7: while another process holds the state, `once` waits; a
/// SIGTERM ends the wait at once (exit 0, nothing done). A crash while
/// holding the lock leaves no stale lock: the OS releases it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_held_state_is_waited_for_and_a_dead_holder_leaves_no_lock() {
    use channel_sync::store::lock::{FileLock, WriterLock};
    use std::sync::atomic::AtomicBool;
    let slack = slack_slow(Duration::ZERO, Some(0)).await;
    let p = Program::new(&slack, "lock_wait = \"60s\"|");
    let held = FileLock::for_state(&p.state())
        .acquire(Duration::ZERO, &AtomicBool::new(false))
        .unwrap();
    let child = p.spawn();
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let run = finish(child).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wait ended at the signal"
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let me = format!("(pid {} on host ", std::process::id());
    assert!(
        run.stderr.contains("waiting up to 60s") && run.stderr.contains(&me),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("stopped while waiting"),
        "{}",
        run.stderr
    );
    assert!(
        slack.received_requests().await.unwrap().is_empty(),
        "nothing done"
    );
    drop(held);

    // Killed while holding the lock: the next run does not wait at all.
    let p = Program::new(&slack, "lock_wait = \"0s\"|");
    let out = p
        .command(&[("CHANNEL_SYNC_CRASH_AT", "after-lock")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "killed");
    let run = p.once().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("14 sent"), "{}", run.stdout);
}
