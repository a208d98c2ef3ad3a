//! Microsoft Teams end to end: the real binary, the sample program, and a
//! fake Power Automate Workflows endpoint on port 0 that checks what Teams
//! checks (a `message` with one Adaptive Card of schema 1.5 at most, under
//! ~28 KB) and can be told to refuse.

use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::method};

use crate::helpers::{NOW, TestConfig, copy_sample};

const SAMPLE_FINDINGS: usize = 14;
/// Teams' limit for a card posted through a webhook (about 28 KB).
const LIMIT: usize = 28 * 1024;

/// The fake Workflows trigger: answers the queued failures first, then
/// checks each card: 202 when Teams would take it, 400 or 413 when not.
struct Workflows {
    failures: Mutex<Vec<ResponseTemplate>>,
}

/// Why Teams would refuse this body, if it would.
fn refusal(body: &[u8]) -> Option<(u16, String)> {
    if body.len() > LIMIT {
        return Some((413, "Request Entity too large".into()));
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let card = &v["attachments"][0]["content"];
    let version: f64 = card["version"]
        .as_str()
        .unwrap_or("9")
        .parse()
        .unwrap_or(9.0);
    let texts_ok = card["body"].as_array().is_some_and(|b| {
        !b.is_empty()
            && b.iter()
                .all(|e| e["type"] != "TextBlock" || e["text"].as_str().is_some())
    });
    let ok = v["type"] == "message"
        && v["attachments"].as_array().is_some_and(|a| a.len() == 1)
        && v["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
        && card["type"] == "AdaptiveCard"
        && version <= 1.5
        && texts_ok;
    (!ok).then(|| (400, "BadRequest: not an Adaptive Card message".into()))
}

impl Respond for Workflows {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.failures.lock().unwrap().pop() {
            return failure;
        }
        match refusal(&request.body) {
            Some((status, why)) => ResponseTemplate::new(status).set_body_string(why),
            None if serde_json::from_slice::<Value>(&request.body).is_err() => {
                ResponseTemplate::new(400).set_body_string("BadRequest: not JSON")
            }
            None => ResponseTemplate::new(202),
        }
    }
}

/// A fake Teams that answers `failures` (in order) before checking cards.
async fn teams(mut failures: Vec<ResponseTemplate>) -> MockServer {
    failures.reverse();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Workflows {
            failures: Mutex::new(failures),
        })
        .mount(&server)
        .await;
    server
}

struct Program {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    extra_config: String,
}

struct Run {
    code: Option<i32>,
    stdout: String,
}

impl Program {
    fn new(teams: &MockServer) -> Program {
        let dir = tempfile::tempdir().unwrap();
        copy_sample(dir.path());
        Program {
            dir,
            env: vec![(
                "CHANNEL_SYNC__ALERTS__TEAMS__WEBHOOK_URL".into(),
                format!(
                    "{}/workflows/abc/triggers/manual/paths/invoke?sig=SECRET",
                    teams.uri()
                ),
            )],
            extra_config: String::new(),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config(&self) -> PathBuf {
        let dir = self.dir.path();
        TestConfig::bundled()
            .state(&dir.join("state/channel-sync.db"))
            .files(&self.data(), &dir.join("out"))
            .set("alerts.teams.per_second", 1000)
            .set("alerts.teams.max_retry_wait_secs", 5)
            .set("alerts.slack.per_second", 1000)
            .merge(&format!("[alerts.slack]\n{}", self.extra_config))
            .write(&dir.join("config.toml"))
    }

    async fn once(&self, extra: &[&str]) -> Run {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"));
        cmd.args(["once", "--config"])
            .arg(self.config())
            .args(["--now", NOW])
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stdout.contains("SECRET") && !stderr.contains("SECRET"),
            "the URL is a secret"
        );
        Run {
            code: out.status.code(),
            stdout: format!("{stdout}{stderr}"),
        }
    }
}

/// The cards the fake received, as JSON.
async fn cards(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// Every text of a card, joined.
fn texts(card: &Value) -> String {
    card["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_finding_arrives_once_as_an_adaptive_card_teams_accepts() {
    let fake = teams(vec![]).await;
    let p = Program::new(&fake);
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("{SAMPLE_FINDINGS} sent, 0 failed")),
        "{}",
        run.stdout
    );
    let got = cards(&fake).await;
    assert_eq!(got.len(), SAMPLE_FINDINGS);
    for c in &got {
        assert_eq!(refusal(&serde_json::to_vec(c).unwrap()), None, "{c}");
        assert!(texts(c).contains("channel-sync · "), "{c}");
    }
    // The same data again: nothing new to tell.
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(cards(&fake).await.len(), SAMPLE_FINDINGS);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_reaches_slack_and_teams_alike() {
    let fake = teams(vec![]).await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let mut p = Program::new(&fake);
    p.env.push((
        "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL".into(),
        format!("{}/hook", slack.uri()),
    ));
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("{} sent", 2 * SAMPLE_FINDINGS)),
        "{}",
        run.stdout
    );
    assert_eq!(cards(&fake).await.len(), SAMPLE_FINDINGS);
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        SAMPLE_FINDINGS
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_console_address_each_alert_links_to_its_finding_page() {
    let fake = teams(vec![]).await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let mut p = Program::new(&fake);
    p.env.push((
        "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL".into(),
        format!("{}/hook", slack.uri()),
    ));
    p.extra_config = "[console]\npublic_url = \"https://cs.example.com/\"\n".into();
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let got = cards(&fake).await;
    assert_eq!(got.len(), SAMPLE_FINDINGS);
    let mut conflicts = 0;
    for c in &got {
        assert_eq!(refusal(&serde_json::to_vec(c).unwrap()), None, "{c}");
        let footer = texts(c);
        let key = footer
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("channel-sync · "))
            .and_then(|l| l.split(" · ").next())
            .unwrap()
            .replace('\\', "");
        let actions = c["attachments"][0]["content"]["actions"]
            .as_array()
            .unwrap();
        let link = actions
            .iter()
            .find(|a| {
                a["url"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://cs.example.com/finding?key=")
            })
            .unwrap_or_else(|| panic!("{c}"));
        assert_eq!(link["type"], "Action.OpenUrl");
        let url = reqwest::Url::parse(link["url"].as_str().unwrap()).unwrap();
        let (_, got_key) = url.query_pairs().find(|(k, _)| k == "key").unwrap();
        assert_eq!(got_key, key, "{c}");
        if link["title"] == "Decide in the console" {
            conflicts += 1;
        }
        // Nothing that posts back: Teams gets links only.
        assert!(actions.iter().all(|a| a["type"] == "Action.OpenUrl"), "{c}");
    }
    assert!(conflicts > 0 && conflicts < SAMPLE_FINDINGS, "{conflicts}");
    let bodies = slack.received_requests().await.unwrap();
    assert_eq!(bodies.len(), SAMPLE_FINDINGS);
    for b in bodies {
        let b = String::from_utf8_lossy(&b.body).into_owned();
        assert!(
            b.contains("<https://cs.example.com/finding?key=") && b.contains("|Open in console>"),
            "{b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn above_the_threshold_teams_gets_one_digest_card() {
    let fake = teams(vec![]).await;
    let mut p = Program::new(&fake);
    p.extra_config = "max_per_cycle = 5\n".into();
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let got = cards(&fake).await;
    assert_eq!(got.len(), 1);
    assert!(
        texts(&got[0]).contains(&format!("{SAMPLE_FINDINGS} alerts this cycle")),
        "{}",
        got[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_teams_refuses_is_parked_not_resent() {
    let fake = teams(vec![
        ResponseTemplate::new(400).set_body_string("BadRequest"),
        ResponseTemplate::new(413).set_body_string("Request Entity too large"),
    ])
    .await;
    let p = Program::new(&fake);
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stdout.contains("12 sent, 0 failed, 2 parked"),
        "{}",
        run.stdout
    );
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(
        cards(&fake).await.len(),
        SAMPLE_FINDINGS,
        "the parked ones are not resent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_waited_out_in_the_same_cycle() {
    let fake = teams(vec![
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
    ])
    .await;
    let p = Program::new(&fake);
    let started = std::time::Instant::now();
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert!(
        run.stdout.contains(&format!("{SAMPLE_FINDINGS} sent")),
        "{}",
        run.stdout
    );
    assert_eq!(cards(&fake).await.len(), SAMPLE_FINDINGS + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_waits_for_the_next_cycle() {
    let fake = teams(vec![ResponseTemplate::new(502)]).await;
    let p = Program::new(&fake);
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(run.stdout.contains("0 sent, 1 failed"), "{}", run.stdout);
    let run = p.once(&[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("{SAMPLE_FINDINGS} sent")),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_shows_the_teams_cards_and_posts_nothing() {
    let fake = teams(vec![]).await;
    let p = Program::new(&fake);
    let run = p.once(&["--dry-run"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout.contains("to 'default' on teams (new: "),
        "{}",
        run.stdout
    );
    assert!(cards(&fake).await.is_empty());
}

#[test]
fn an_office_365_connector_url_is_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[crm]\nkind = \"files\"\n[crm.files]\ndir = \"sample\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(["check-config", "--config"])
        .arg(&config)
        .current_dir(crate::helpers::repo())
        .env(
            "CHANNEL_SYNC__ALERTS__TEAMS__WEBHOOK_URL",
            "https://contoso.webhook.office.com/webhookb2/x",
        )
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("alerts.teams.webhook_url"), "{all}");
    assert!(all.contains("Workflows"), "{all}");
    assert!(!all.contains("contoso"), "the URL is a secret: {all}");
}

/// `run` with `review.cron` every second and the default route on both
/// channels: the review digest reaches the fake Workflows endpoint as one
/// Adaptive Card Teams accepts (the four numbers with their change, best and
/// worst partners, dormant partners, disputes, the console link) and the
/// fake Slack as Block Kit; the cycle's own cron never fires.
#[tokio::test(flavor = "multi_thread")]
async fn the_scheduled_review_digest_reaches_teams_and_slack() {
    let fake = teams(vec![]).await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let config = crate::helpers::TestConfig::bundled()
        .schedule("0 0 0 1 1 *", false)
        .listen_on_any_port()
        .state(&dir.path().join("state.db"))
        .files(&data, &dir.path().join("out"))
        .set("review.cron", "* * * * * *")
        .set("console.public_url", "https://cs.example.com/console/")
        .write(&dir.path().join("c.toml"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(["run", "--now", NOW, "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env(
            "CHANNEL_SYNC__ALERTS__TEAMS__WEBHOOK_URL",
            format!(
                "{}/workflows/abc/triggers/manual/paths/invoke?sig=SECRET",
                fake.uri()
            ),
        )
        .env(
            "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL",
            format!("{}/hook", slack.uri()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (mut card, mut blocks) = (None, None);
    while std::time::Instant::now() < deadline && (card.is_none() || blocks.is_none()) {
        if card.is_none() {
            card = cards(&fake).await.into_iter().next();
        }
        if blocks.is_none() {
            blocks = slack
                .received_requests()
                .await
                .unwrap_or_default()
                .first()
                .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let card = card.expect("a Teams digest within 30 s");
    let blocks = blocks.expect("a Slack digest within 30 s");
    // The fake answered 202: Teams would take it (schema, size).
    let raw = serde_json::to_vec(&card).unwrap();
    assert!(refusal(&raw).is_none(), "{card}");
    assert!(raw.len() < LIMIT);
    let all = texts(&card);
    assert!(all.contains("Channel review, 2026-Q3"), "{all}");
    let content = &card["attachments"][0]["content"];
    let facts: Vec<(String, String)> = content["body"][1]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().to_string(),
                f["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            (
                "Partner-sourced pipeline created".to_string(),
                "362,000 (+17,030 vs previous quarter)".to_string()
            ),
            (
                "Partner-sourced revenue".to_string(),
                "331,470 (+312,470 vs previous quarter)".to_string()
            ),
            (
                "Active-seller rate".to_string(),
                "43.8% (7 of 16 reps) (+32.0 pts vs previous quarter)".to_string()
            ),
            (
                "Partner-program ROI".to_string(),
                // EXPECTED.md §6.5: 3.192638 against 2026-Q2's
                // (19,000 - 46,000) / 46,000 = -0.586957.
                "319.3% (+378.0 pts vs previous quarter)".to_string()
            ),
        ]
    );
    for part in [
        "**Best by active-seller rate:** Fabrikam Partners 66.7%",
        "**Worst:** Tailspin Resellers 0.0%",
        "**Dormant partners:** none",
        "**Disputes:** 9 conflict(s) open now (no history)",
    ] {
        assert!(all.contains(part), "missing {part} in {all}");
    }
    assert_eq!(
        content["actions"][0],
        serde_json::json!({"type": "Action.OpenUrl", "title": "Open the review", "url": "https://cs.example.com/console/review"})
    );
    assert!(
        blocks
            .to_string()
            .contains("<https://cs.example.com/console/review|Open the review in the console>"),
        "{blocks}"
    );
}

/// A digest that Slack refuses and Teams takes stays pending on Slack only:
/// the next tick posts it to Slack again and not a second time to Teams.
#[tokio::test(flavor = "multi_thread")]
async fn a_digest_is_posted_again_only_where_it_failed() {
    use channel_sync::daemon::{Clock, Daemon};
    let fake = teams(vec![]).await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_string("forbidden"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let data = copy_sample(dir.path());
    let settings = crate::helpers::TestConfig::bundled()
        .files(&data, &dir.path().join("out"))
        .state(&dir.path().join("state.db"))
        .slack(&format!("{}/hook", slack.uri()))
        .set(
            "alerts.teams.webhook_url",
            format!("{}/workflows/abc/triggers/manual/paths/invoke", fake.uri()),
        )
        .set("alerts.slack.per_second", 1000)
        .set("alerts.teams.per_second", 1000)
        .settings();
    let clock = Clock::starting_at(channel_sync::values::parse_timestamp(NOW).unwrap());
    let d = Daemon::new(settings, clock).unwrap();
    assert!(!d.post_digest().await, "Slack refused the first post");
    assert_eq!((digests(&slack).await, digests(&fake).await), (1, 1));
    d.tick().await;
    assert_eq!(
        (digests(&slack).await, digests(&fake).await),
        (2, 1),
        "the tick posts the pending digest to Slack only"
    );
    d.tick().await;
    assert_eq!((digests(&slack).await, digests(&fake).await), (2, 1));
}

/// How many review digests `server` received.
async fn digests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("Channel review"))
        .count()
}
