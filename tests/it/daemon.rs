//! `channel-sync run` as a process: the schedule's logs, the healthcheck's
//! exit codes, signals and the grace deadline (the ops endpoints are tested
//! in process, in ops.rs). Each test starts the real binary with an every-second cron on a
//! copy of the sample program and a fake Slack.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestConfig, copy_sample};

/// The date the sample program is laid out around.
const SAMPLE_NOW: &str = "2026-11-26T00:00:00Z";

struct Daemon {
    child: Child,
    logs: Arc<Mutex<Vec<Value>>>,
    dir: tempfile::TempDir,
    addr: String,
}

impl Daemon {
    /// Starts `run` and waits for the ops server's address in the logs.
    fn start(slack: &MockServer, extra: &str) -> Daemon {
        Daemon::start_with(slack, extra, "cron = \"* * * * * *\"")
    }

    /// As `start`, with the `[schedule]` section given. The daemon's clock is
    /// pinned to the sample's date, so no result depends on today's date.
    fn start_with(slack: &MockServer, extra: &str, schedule: &str) -> Daemon {
        Daemon::start_env(slack, extra, schedule, &[])
    }

    /// As `start_with`, with extra environment variables for the process.
    fn start_env(
        slack: &MockServer,
        extra: &str,
        schedule: &str,
        env: &[(String, String)],
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let data = copy_sample(dir.path());
        let config = TestConfig::bundled()
            .files(&data, &dir.path().join("out"))
            .state(&dir.path().join("state.db"))
            .listen_on_any_port()
            .set("server.shutdown_grace", "10s")
            .set("alerts.slack.per_second", 1000)
            .merge(&format!("[schedule]\n{schedule}\n[alerts.slack]\n{extra}"))
            .write(&dir.path().join("config.toml"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_channel-sync"))
            .args(["run", "--now", SAMPLE_NOW, "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env(
                "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL",
                format!("{}/hook", slack.uri()),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("a log line that is not JSON: {line}"));
                sink.lock().unwrap().push(value);
            }
        });
        let mut daemon = Daemon {
            child,
            logs,
            dir,
            addr: String::new(),
        };
        let listening = daemon.wait_for("Ops server listening.", 1, Duration::from_secs(10));
        daemon.addr = listening["addr"].as_str().unwrap().to_string();
        daemon
    }

    fn messages(&self, message: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["message"] == message)
            .cloned()
            .collect()
    }

    /// Waits until `message` was logged `count` times; returns the last.
    fn wait_for(&self, message: &str, count: usize, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let found = self.messages(message);
            if found.len() >= count {
                return found[count - 1].clone();
            }
            assert!(
                started.elapsed() < limit,
                "no {count}x {message:?} after {limit:?}; logs: {:#?}",
                self.logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; returns its code and how long it took.
    fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            assert!(started.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn slack(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("ok")
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_cycles_on_schedule_and_reports_on_its_endpoints() {
    let slack = slack(Duration::ZERO).await;
    let d = Daemon::start(&slack, "");
    let waiting = Duration::from_secs(15);
    let started = d.wait_for("Cycle started.", 1, waiting);
    assert_eq!(
        started["as_of"].as_str().map(|t| &t[..10]),
        Some("2026-11-26"),
        "{started}"
    );
    let first = d.wait_for("Cycle finished.", 1, waiting);
    assert_eq!(first["alerts_sent"], 14);
    assert!(
        first["span"]["run_id"]
            .as_str()
            .is_some_and(|id| id.len() == 16),
        "{first}"
    );
    let second = d.wait_for("Cycle finished.", 2, waiting);
    assert_eq!(second["alerts_sent"], 0, "an identical cycle posts nothing");
    assert_ne!(first["span"]["run_id"], second["span"]["run_id"]);

    assert_eq!(slack.received_requests().await.unwrap().len(), 14);

    // The healthcheck subcommand, for the container.
    let url = format!("http://{}/healthz", d.addr);
    let hc = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_channel-sync"))
            .args(["healthcheck", "--url", &url])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(hc(url.clone()), Some(0));
    assert_eq!(
        hc(format!("http://{}", d.addr)),
        Some(0),
        "the base URL is enough"
    );
    let logged = d.wait_for("Using configuration.", 1, Duration::from_secs(1));
    assert!(
        logged["source"].as_str().is_some_and(
            |s| s.ends_with("config.toml, with 1 CHANNEL_SYNC__* environment override(s)")
        ),
        "{logged}"
    );
    let mut d = d;
    d.signal();
    let (code, _) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert_eq!(hc(url), Some(1), "nothing answers any more");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_cycle_never_overlaps_and_skipped_ticks_are_counted() {
    // Every cycle posts one digest that takes 2.5 s to answer.
    let slack = slack(Duration::from_millis(2500)).await;
    let d = Daemon::start(&slack, "max_per_cycle = 1\nrepeat_after = \"1s\"");
    d.wait_for("Cycle finished.", 2, Duration::from_secs(20));
    let skipped = d.messages("Cycle skipped: the previous one is still running.");
    assert!(!skipped.is_empty(), "ticks during a cycle are skipped");
    // Starts and finishes alternate: never two cycles at once.
    let events: Vec<String> = d
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str().map(String::from))
        .filter(|m| m == "Cycle started." || m == "Cycle finished.")
        .collect();
    for pair in events.chunks(2) {
        if pair.len() == 2 {
            assert_eq!(pair, ["Cycle started.", "Cycle finished."], "{events:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_running_cycle_finish_then_exits_zero() {
    let slack = slack(Duration::from_millis(2000)).await;
    let mut d = Daemon::start(&slack, "max_per_cycle = 1");
    d.wait_for("Cycle started.", 1, Duration::from_secs(10));
    let started = Instant::now();
    while slack.received_requests().await.unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.signal();
    let (code, took) = d.wait_exit(Duration::from_secs(12));
    assert_eq!(code, Some(0), "{:#?}", d.logs.lock().unwrap());
    assert!(took < Duration::from_secs(10), "within the grace period");
    assert_eq!(
        d.messages("Cycle finished.").len(),
        1,
        "the cycle completed"
    );
    assert_eq!(d.messages("Stopped cleanly.").len(), 1);
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        1,
        "the digest went out"
    );
    // The state is consistent: a cycle now has nothing left to send.
    let state = d.dir.path().join("state.db");
    let conn = rusqlite::Connection::open(state).unwrap();
    let pending: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0);
    let runs: i64 = conn
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_or_the_grace_deadline_stops_it_for_certain() {
    // Slack takes 20 s: the cycle cannot finish in time.
    let slow = slack(Duration::from_secs(20)).await;
    let mut d = Daemon::start(&slow, "max_per_cycle = 1\ntimeout_secs = 60");
    d.wait_for("Cycle started.", 1, Duration::from_secs(10));
    let started = Instant::now();
    while slow.received_requests().await.unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.signal();
    d.wait_for(
        "Shutting down: no new cycles; a running one may finish.",
        1,
        Duration::from_secs(5),
    );
    d.signal();
    let (code, took) = d.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(1), "cut short");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The alert stayed in the outbox: nothing was lost.
    let conn = rusqlite::Connection::open(d.dir.path().join("state.db")).unwrap();
    let pending: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 1);

    // The grace deadline, with one signal.
    let mut d = Daemon::start(&slow, "max_per_cycle = 1\ntimeout_secs = 60");
    let config = d.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("shutdown_grace = \"10s\""));
    d.wait_for("Cycle started.", 1, Duration::from_secs(10));
    // Wait until the slow post is in flight (before it the cycle would stop
    // at its safe point and exit cleanly).
    let started = Instant::now();
    while slow.received_requests().await.unwrap().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.signal();
    let (code, took) = d.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(1));
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(13),
        "{took:?}"
    );
}

#[test]
fn check_config_catches_a_bad_cron_and_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    for (body, key) in [
        ("[schedule]\ncron = \"*/15 * * * *\"\n", "schedule.cron"),
        ("[schedule]\ncron = \"0 0 25 * * *\"\n", "schedule.cron"),
        (
            "[server]\nlisten = \"127.0.0.1:0\"\nport = 9090\n",
            "server.port",
        ),
        ("[alerts.slack]\nwebhook = \"x\"\n", "alerts.slack.webhook"),
    ] {
        std::fs::write(&config, body).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_channel-sync"))
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        // The key exactly, as the error names it (`alerts.slack.webhook` must
        // not pass by matching `alerts.slack.webhook_url`).
        assert!(
            err.contains(&format!("configuration: {key}: ")),
            "{key} not named: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn before_the_first_cycle_it_says_when_that_is() {
    let slack = slack(Duration::ZERO).await;
    // New Year only, and not at start: no cycle runs during the test.
    let d = Daemon::start_with(&slack, "", "cron = \"0 0 0 1 1 *\"\nrun_at_start = false");
    let due = d.wait_for("Next cycle due.", 1, Duration::from_secs(10));
    assert_eq!(due["next"], "2027-01-01T00:00:00+00:00", "{due}");
    assert!(d.messages("Cycle started.").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_gives_the_same_first_cycle_with_the_machine_clock_a_year_ahead() {
    let Some(env) = crate::helpers::a_year_ahead() else {
        return;
    };
    let slack = slack(Duration::ZERO).await;
    let d = Daemon::start_env(&slack, "", "cron = \"* * * * * *\"", &env);
    let first = d.wait_for("Cycle finished.", 1, Duration::from_secs(20));
    assert_eq!(first["alerts_sent"], 14, "{first}");
    assert_eq!(first["findings"], 14, "{first}");
    let started = d.wait_for("Cycle started.", 1, Duration::from_secs(1));
    assert_eq!(
        started["as_of"].as_str().map(|t| &t[..10]),
        Some("2026-11-26")
    );
}
