//! The metrics a cycle feeds, from an in-process cycle against the fake
//! HubSpot (the PRM in files): each table's `source` label is where it came
//! from, `api_remaining` follows HubSpot's headers, and a 429 waited out is
//! a rate-limiter wait.

use std::sync::Arc;

use channel_sync::config::Settings;
use channel_sync::cycle::{Options, Runner};
use channel_sync::metrics::Metrics;

use crate::helpers::NOW;
use crate::hubspot::{Account, quick, seed};
use channel_sync_fakes::hubspot::RatePolicy;

/// The value of the metric line that starts with `prefix` (labels included).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cycle_labels_each_table_with_its_source_and_reads_the_rate_headers() {
    let acct = Account::start(quick()).await;
    seed(&acct.fake);
    acct.fake.set_rate_limits(100_000, 250_000);
    acct.fake.set_retry_after(Some(1));
    acct.fake.force_429(RatePolicy::TenSecondlyRolling, 1);
    let mut env = acct.env.clone();
    env.push((
        "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL".into(),
        format!("{}/hook", acct.slack.uri()),
    ));
    let settings = Settings::load_with_env(Some(&acct.config()), env).unwrap();
    let metrics = Arc::new(Metrics::new());
    let runner = Runner::new(settings, Some(metrics.clone())).unwrap();
    let opts = Options {
        now: NOW.parse().unwrap(),
        dry_run: false,
        full: false,
        preview: Default::default(),
        progress: false,
    };
    let mut out = Vec::new();
    let summary = runner.cycle(&opts, &mut out).await.unwrap();
    metrics.cycle_done(&summary, 0.5, 1_764_115_200.0);
    let text = metrics.render();

    for (line, n) in [
        (
            "channel_sync_records_pulled{source=\"hubspot\",object=\"accounts\"}",
            4.0,
        ),
        (
            "channel_sync_records_pulled{source=\"hubspot\",object=\"opportunities\"}",
            3.0,
        ),
        (
            "channel_sync_records_pulled{source=\"files\",object=\"partners\"}",
            2.0,
        ),
        (
            "channel_sync_records_pulled{source=\"files\",object=\"registrations\"}",
            2.0,
        ),
        ("channel_sync_cycles_total{outcome=\"ok\"}", 1.0),
    ] {
        assert_eq!(value(&text, line), Some(n), "{line} in\n{text}");
    }
    // The 429 waited out is a rate-limiter wait; the limiter itself may add
    // more when requests bunch up (a busy machine), never fewer.
    let waits = value(
        &text,
        "channel_sync_rate_limiter_waits_total{upstream=\"hubspot\"}",
    );
    assert!(waits.is_some_and(|w| w >= 1.0), "{text}");
    assert!(
        !text.contains("source=\"files\",object=\"accounts\""),
        "{text}"
    );
    // The 429 waited out is a wait (the client's own limiter may add more).
    let waits = value(
        &text,
        "channel_sync_rate_limiter_waits_total{upstream=\"hubspot\"}",
    );
    assert!(waits.is_some_and(|n| n >= 1.0), "{text}");
    // The daily remainder HubSpot reported last.
    let remaining = value(&text, "channel_sync_api_remaining{upstream=\"hubspot\"}");
    assert_eq!(
        remaining,
        Some((250_000 - acct.fake.daily_used()) as f64),
        "{text}"
    );
}
