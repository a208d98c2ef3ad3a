//! Slack buttons through the real daemon (issue 15): `run` with an
//! every-second cron on a copy of the sample, a fake Slack taking both the
//! webhook posts and the `response_url` updates, and signed (or not)
//! interaction posts on `/slack/interactions`.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestConfig, copy_sample};

const SECRET: &str = "test-signing-secret-0123456789";
const KEY: &str = "direct_vs_partner:R-02:O-005";

struct Daemon {
    child: Child,
    logs: Arc<Mutex<Vec<Value>>>,
    dir: tempfile::TempDir,
    addr: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(slack: &wiremock::MockServer) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let data = copy_sample(dir.path());
        let config = TestConfig::bundled()
            .schedule("* * * * * *", true)
            .listen_on_any_port()
            .state(&dir.path().join("state.db"))
            .files(&data, &dir.path().join("out"))
            .set("alerts.slack.per_second", 1000)
            .set("alerts.slack.repeat_after", "2s")
            .set(
                "alerts.slack.response_url_prefix",
                format!("{}/respond", slack.uri()),
            )
            .write(&dir.path().join("config.toml"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_channel-sync"))
            .args(["run", "--now", "2026-11-26T00:00:00Z", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env(
                "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL",
                format!("{}/hook", slack.uri()),
            )
            .env("CHANNEL_SYNC__ALERTS__SLACK__SIGNING_SECRET", SECRET)
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
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let mut d = Daemon {
            child,
            logs,
            dir,
            addr: String::new(),
        };
        let listening = d.wait_for("Ops server listening.", 1);
        d.addr = listening["addr"].as_str().unwrap().to_string();
        d
    }

    fn count(&self, message: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["message"] == message)
            .count()
    }

    fn wait_for(&self, message: &str, count: usize) -> Value {
        let started = Instant::now();
        loop {
            let found: Vec<Value> = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l["message"] == message)
                .cloned()
                .collect();
            if found.len() >= count {
                return found[count - 1].clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no {count}x {message:?}; logs: {:#?}",
                self.logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state.db")
    }
}

fn decisions(state: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt = conn
        .prepare("SELECT finding_key, outcome, decided_by FROM decisions ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &base);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

fn click_body(slack: &wiremock::MockServer, outcome: &str, key: &str) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U123", "username": "ana"},
        "actions": [{"type": "button", "action_id": format!("cs:{outcome}"), "value": key}],
        "response_url": format!("{}/respond/T1/1/abc", slack.uri()),
        // Slack sends the whole message back with a click: an alert's
        // blocks make a payload of several KB.
        "message": {"blocks": (0..12)
            .map(|i| json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "*Field {i}*\nDirect opportunity <https://crm.example/o/{i}|Acme renewal {i}> opened on an account \
                 registered by Northwind Partners on 2026-09-01, protected until 2026-12-30; next step: ask the \
                 account owner to confirm who leads before the quote goes out."
            )}}))
            .chain([json!({"type": "actions", "block_id": "channel-sync-decide", "elements": []})])
            .collect::<Vec<_>>()},
    });
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes();
    assert!(
        body.len() > 4096,
        "a realistic click is several KB: {}",
        body.len()
    );
    body
}

async fn post(d: &Daemon, body: Vec<u8>, ts: Option<i64>, signature: Option<String>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/slack/interactions", d.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(ts) = ts {
        req = req.header("x-slack-request-timestamp", ts.to_string());
    }
    if let Some(s) = signature {
        req = req.header("x-slack-signature", s);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn bodies(slack: &wiremock::MockServer, path_starts: &str) -> Vec<String> {
    slack
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().starts_with(path_starts))
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

fn about(bodies: &[String], key: &str) -> usize {
    let tag = format!("channel-sync · {key} ·");
    bodies.iter().filter(|b| b.contains(&tag)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_clicks_are_verified_recorded_shown_and_stop_reminders() {
    let slack = crate::helpers::fake_slack().await;
    let d = Daemon::start(&slack);
    d.wait_for("Cycle finished.", 1);

    // Conflict alerts carry the buttons, with the finding's key.
    let hooks = bodies(&slack, "/hook").await;
    let alert = hooks
        .iter()
        .find(|b| b.contains(&format!("channel-sync · {KEY} ·")))
        .expect("the conflict was announced");
    let alert: Value = serde_json::from_str(alert).unwrap();
    let actions = alert["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("buttons");
    let ids: Vec<&str> = actions["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "cs:partner_keeps",
            "cs:direct_keeps",
            "cs:not_a_conflict",
            "cs:snooze",
            "cs:assign"
        ]
    );
    assert!(
        actions["elements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["value"] == KEY)
    );

    let now = chrono::Utc::now().timestamp();
    let body = click_body(&slack, "partner_keeps", KEY);

    // Rejected, each changing nothing: unsigned, mis-signed, stale, too big.
    assert_eq!(post(&d, body.clone(), None, None).await, 401);
    assert_eq!(
        post(
            &d,
            body.clone(),
            Some(now),
            Some(sign("another-secret", now, &body))
        )
        .await,
        401
    );
    let old = now - 301;
    assert_eq!(
        post(&d, body.clone(), Some(old), Some(sign(SECRET, old, &body))).await,
        401
    );
    // A well-formed click padded past 1 MB with another form field.
    let mut big = body.clone();
    big.extend(b"&pad=");
    big.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    assert_eq!(
        post(&d, big.clone(), Some(now), Some(sign(SECRET, now, &big))).await,
        400
    );
    assert!(decisions(&d.state()).is_empty());
    assert!(bodies(&slack, "/respond").await.is_empty());

    // Reminders come every 2 s for an undecided conflict.
    let cycles = d.count("Cycle finished.");
    d.wait_for("Cycle finished.", cycles + 3);
    assert!(
        about(&bodies(&slack, "/hook").await, KEY) >= 2,
        "reminded before the click"
    );

    // A correctly signed click: answered at once, recorded, message updated.
    let started = Instant::now();
    assert_eq!(
        post(&d, body.clone(), Some(now), Some(sign(SECRET, now, &body))).await,
        200
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    d.wait_for("Slack message updated with the decision.", 1);
    assert_eq!(
        decisions(&d.state()),
        vec![(
            KEY.to_string(),
            "partner_keeps".to_string(),
            "slack:U123 (ana)".to_string()
        )]
    );
    let updates = bodies(&slack, "/respond").await;
    assert_eq!(updates.len(), 1);
    let update: Value = serde_json::from_str(&updates[0]).unwrap();
    assert_eq!(update["replace_original"], true);
    let text = update.to_string();
    assert!(
        text.contains("Decided: *partner keeps* by <@U123>"),
        "{text}"
    );
    assert!(
        !text.contains("channel-sync-decide"),
        "the buttons are gone: {text}"
    );

    // The same request again is a replay.
    assert_eq!(
        post(&d, body.clone(), Some(now), Some(sign(SECRET, now, &body))).await,
        401
    );
    assert_eq!(decisions(&d.state()).len(), 1);

    // No more reminders for it, while the others go on.
    let told = about(&bodies(&slack, "/hook").await, KEY);
    let other = about(
        &bodies(&slack, "/hook").await,
        "direct_vs_partner:R-02:O-006",
    );
    let cycles = d.count("Cycle finished.");
    d.wait_for("Cycle finished.", cycles + 4);
    let hooks = bodies(&slack, "/hook").await;
    assert_eq!(about(&hooks, KEY), told, "no reminder after the decision");
    assert!(
        about(&hooks, "direct_vs_partner:R-02:O-006") > other,
        "others are still reminded"
    );
}
