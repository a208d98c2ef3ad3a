//! The daemon's ops endpoints in process (`/healthz`, `/readyz`,
//! `/metrics`): `Daemon::router` called with `oneshot`, cycles run with
//! `Daemon::tick`, no binary and no socket. The binary tests in daemon.rs
//! keep only what needs a process: the schedule's logs, exit codes, signals.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use channel_sync::daemon::{Clock, Daemon};
use tower::ServiceExt as _;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{NOW, TestConfig, copy_sample};

/// A Slack that answers "ok" after `delay`.
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

/// The sample program in `dir`, alerting to `slack`.
fn config(dir: &Path, slack: &MockServer) -> TestConfig {
    let data = copy_sample(dir);
    TestConfig::bundled()
        .files(&data, &dir.join("out"))
        .state(&dir.join("state.db"))
        .slack(&format!("{}/hook", slack.uri()))
        .set("alerts.slack.per_second", 1000)
}

/// The daemon's clock pinned to the sample's date.
fn clock() -> Clock {
    Clock::starting_at(channel_sync::values::parse_timestamp(NOW).unwrap())
}

/// GET `path` on the router: status, content type and body.
async fn get(d: &Daemon, path: &str) -> (u16, String, String) {
    let response = d
        .router()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, kind, String::from_utf8(body.to_vec()).unwrap())
}

async fn status(d: &Daemon, path: &str) -> (u16, String) {
    let (status, _, body) = get(d, path).await;
    (status, body)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_at_once_readyz_after_the_first_cycle_and_metrics_count_it() {
    let dir = tempfile::tempdir().unwrap();
    let slack = slack(Duration::ZERO).await;
    let d = Daemon::new(config(dir.path(), &slack).settings(), clock()).unwrap();
    assert_eq!(status(&d, "/healthz").await, (200, "ok".into()));
    assert_eq!(
        status(&d, "/readyz").await,
        (503, "not ready: no cycle yet".into()),
        "not ready before the first cycle"
    );
    assert_eq!(status(&d, "/nothing-here").await.0, 404);

    d.tick().await;
    assert_eq!(status(&d, "/readyz").await, (200, "ready".into()));
    let (code, kind, text) = get(&d, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        kind,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        metric(&text, "channel_sync_cycles_total{outcome=\"ok\"}"),
        1.0
    );
    for (name, value) in [
        ("channel_sync_alerts_total{outcome=\"sent\"}", 14.0),
        ("channel_sync_alerts_total{outcome=\"failed\"}", 0.0),
        ("channel_sync_writebacks_total{outcome=\"done\"}", 5.0),
        (
            "channel_sync_open_findings{kind=\"direct_vs_partner\"}",
            3.0,
        ),
        (
            "channel_sync_records_pulled{source=\"files\",object=\"opportunities\"}",
            60.0,
        ),
        (
            "channel_sync_upstream_requests_total{upstream=\"slack\",status_class=\"2xx\"}",
            14.0,
        ),
    ] {
        assert_eq!(metric(&text, name), value, "{name}");
    }
    assert!(metric(&text, "channel_sync_last_success_timestamp_seconds") > 1.7e9);

    // An identical second cycle posts nothing more.
    d.tick().await;
    let (_, _, text) = get(&d, "/metrics").await;
    assert_eq!(
        metric(&text, "channel_sync_cycles_total{outcome=\"ok\"}"),
        2.0
    );
    assert_eq!(
        metric(&text, "channel_sync_alerts_total{outcome=\"sent\"}"),
        14.0
    );
    assert_eq!(slack.received_requests().await.unwrap().len(), 14);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_cycle_makes_it_unready_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let slack = slack(Duration::ZERO).await;
    let d = Daemon::new(config(dir.path(), &slack).settings(), clock()).unwrap();
    d.tick().await;
    assert_eq!(status(&d, "/readyz").await, (200, "ready".into()));
    // The export disappears: the next cycle fails.
    std::fs::remove_file(dir.path().join("data/accounts.csv")).unwrap();
    d.tick().await;
    let (code, why) = status(&d, "/readyz").await;
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("the last cycle failed"), "{why}");
    assert_eq!(status(&d, "/healthz").await.0, 200, "alive all the same");
    let (_, _, text) = get(&d, "/metrics").await;
    assert_eq!(
        metric(&text, "channel_sync_cycles_total{outcome=\"error\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "channel_sync_cycles_total{outcome=\"ok\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_during_a_cycle_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Every post takes half a second: the first tick is still sending when
    // the second one comes.
    let slack = slack(Duration::from_millis(500)).await;
    let settings = config(dir.path(), &slack)
        .set("alerts.slack.max_per_cycle", 1)
        .settings();
    let d = Daemon::new(settings, clock()).unwrap();
    tokio::join!(d.tick(), d.tick());
    let (_, _, text) = get(&d, "/metrics").await;
    assert_eq!(metric(&text, "channel_sync_cycles_skipped_total"), 1.0);
    assert_eq!(
        metric(&text, "channel_sync_cycles_total{outcome=\"ok\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_the_schedule_and_the_server_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let slack = slack(Duration::ZERO).await;
    let settings = config(dir.path(), &slack)
        .schedule("0 0 0 1 1 *", true)
        .settings();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let d = Daemon::new(settings, clock()).unwrap();
    let router = d.router();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(d.serve(listener, async {
        let _ = stopped.await;
    }));
    // run_at_start: the first cycle makes it ready without waiting for the cron.
    let started = std::time::Instant::now();
    loop {
        let response = router
            .clone()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let over_the_socket = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(over_the_socket.status(), 200);
    stop.send(()).unwrap();
    let code = tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(code, 0, "a clean stop");
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "nothing listens any more"
    );
}
