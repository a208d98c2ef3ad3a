//! Two daemons on one PostgreSQL state (issue 18): one leads and runs the
//! cycles, the other stands by; the leader is killed with SIGKILL while it
//! sends, and the other takes over. Every alert arrives (the one in flight
//! at most twice), every write-back is applied, and no two cycles ever run
//! at once.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestConfig, copy_sample};
use crate::pg::TestDb;

const SAMPLE_NOW: &str = "2026-11-26T00:00:00Z";
/// Alerts the sample program raises on its first cycle.
const SAMPLE_FINDINGS: usize = 14;

/// One daemon process and its log lines, stamped as they arrive.
struct Replica {
    child: Child,
    logs: Arc<Mutex<Vec<(Instant, Value)>>>,
    addr: String,
}

impl Replica {
    fn start(config: &Path, slack: &MockServer, db: &TestDb) -> Replica {
        let (k, v) = db.env();
        let mut child = Command::new(env!("CARGO_BIN_EXE_channel-sync"))
            .args(["run", "--now", SAMPLE_NOW, "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env(
                "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL",
                format!("{}/hook", slack.uri()),
            )
            .env(k, v)
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
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push((Instant::now(), value));
                }
            }
        });
        let mut r = Replica {
            child,
            logs,
            addr: String::new(),
        };
        let started = Instant::now();
        while r.addr.is_empty() {
            if let Some(l) = r.lines("Ops server listening.").first() {
                r.addr = l.1["addr"].as_str().unwrap().to_string();
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no ops server");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn lines(&self, message: &str) -> Vec<(Instant, Value)> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l["message"] == message)
            .cloned()
            .collect()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("http://{}{path}", self.addr)).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// `channel_sync_leader` from `/metrics`.
    async fn leads(&self) -> bool {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .any(|l| l.starts_with("channel_sync_leader ") && l.ends_with(" 1"))
    }

    /// The cycles this replica ran: (start, end) as the test saw the logs;
    /// a cycle cut short by a kill ends at `killed`.
    fn cycles(&self, killed: Option<Instant>) -> Vec<(Instant, Instant)> {
        let logs = self.logs.lock().unwrap();
        let mut out = Vec::new();
        let mut open: Option<Instant> = None;
        for (at, l) in logs.iter() {
            match l["message"].as_str().unwrap_or_default() {
                "Cycle started." => open = Some(*at),
                "Cycle finished." | "Cycle failed; the schedule goes on." => {
                    if let Some(s) = open.take() {
                        out.push((s, *at));
                    }
                }
                _ => {}
            }
        }
        if let (Some(s), Some(k)) = (open, killed) {
            out.push((s, k));
        }
        out
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The finding key a message is about (from its context line).
fn about(body: &Value) -> String {
    let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
    let last = blocks
        .last()
        .map(|b| {
            b["elements"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    last.split(" · ").nth(1).unwrap_or("digest").to_string()
}

async fn posted(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| about(&serde_json::from_slice(&r.body).unwrap_or(Value::Null)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_one_leader_a_killed_leader_loses_nothing() {
    let Some(db) = TestDb::create("two_replicas") else {
        return;
    };
    // A slow Slack: the first cycle's 14 alerts take several seconds, so the
    // kill lands mid-send.
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("ok")
                .set_delay(Duration::from_millis(400)),
        )
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let config = TestConfig::bundled()
        .schedule("* * * * * *", true)
        .listen_on_any_port()
        .set("server.shutdown_grace", "10s")
        .state(&dir.path().join("unused.db"))
        .merge(&format!("[state]\n{}", db.state_toml()))
        .files(&data, &dir.path().join("out"))
        .set("alerts.slack.per_second", 1000)
        .write(&dir.path().join("config.toml"));
    let a = Replica::start(&config, &slack, &db);
    let b = Replica::start(&config, &slack, &db);

    // Wait until one of them is sending.
    let started = Instant::now();
    while slack.received_requests().await.unwrap_or_default().len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "no alerts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a_leads, b_leads) = (a.leads().await, b.leads().await);
    assert!(
        a_leads != b_leads,
        "exactly one leader: a {a_leads}, b {b_leads}"
    );
    let (mut leader, standby) = if a_leads { (a, b) } else { (b, a) };
    let (code, body) = standby.get("/readyz").await;
    assert_eq!(
        (code, body.as_str()),
        (200, "ready: standby (another replica leads)")
    );

    // SIGKILL mid-send.
    leader.child.kill().unwrap();
    let killed = Instant::now();
    leader.child.wait().unwrap();
    let before = posted(&slack).await.len();
    assert!(before < SAMPLE_FINDINGS, "killed mid-send ({before} sent)");

    // The standby takes over within the schedule (+30 s) and finishes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let keys = posted(&slack).await;
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        let cards =
            std::fs::read_to_string(dir.path().join("out/scorecards.csv")).unwrap_or_default();
        if unique.len() >= SAMPLE_FINDINGS
            && cards.lines().count() == 6
            && !standby.lines("Cycle finished.").is_empty()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not finish: {} of {SAMPLE_FINDINGS} alerts",
            unique.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_over = standby.lines("Cycle started.")[0].0;
    assert!(
        took_over.duration_since(killed) < Duration::from_secs(31),
        "failover took {:?}",
        took_over.duration_since(killed)
    );
    assert!(standby.leads().await, "the survivor leads");
    // Let it run a few more (idle) cycles: nothing more goes out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let keys = posted(&slack).await;
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), SAMPLE_FINDINGS, "every alert delivered");
    assert!(
        keys.len() - unique.len() <= 1,
        "at most the one in flight twice: {keys:?}"
    );
    let cards = std::fs::read_to_string(dir.path().join("out/scorecards.csv")).unwrap();
    assert!(
        cards.contains("P-5,Adatum Consulting,gold,2026-Q3,2,1,0.500000,209080.00,32400.00,3,1,2"),
        "every write-back applied: {cards}"
    );

    // Never two cycles at once: the two replicas' cycles do not overlap...
    let mut cycles: Vec<(Instant, Instant, &str)> = leader
        .cycles(Some(killed))
        .into_iter()
        .map(|(s, e)| (s, e, "killed"))
        .chain(
            standby
                .cycles(None)
                .into_iter()
                .map(|(s, e)| (s, e, "survivor")),
        )
        .collect();
    cycles.sort();
    for w in cycles.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "two cycles at once: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    assert!(cycles.iter().any(|c| c.2 == "killed"));
    // ...and the runs table holds exactly the cycles that finished, each ok
    // (the killed one recorded nothing).
    let finished = standby.lines("Cycle finished.").len();
    let runs: Vec<String> = db.query(|c| {
        c.query("SELECT outcome FROM runs ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    });
    assert!(runs.iter().all(|o| o == "ok"), "{runs:?}");
    assert!(
        runs.len() == finished || runs.len() == finished + 1,
        "{} runs for {finished} finished cycles",
        runs.len()
    );
    assert_eq!(db.count("outbox WHERE status <> 'sent'"), 0);
}
