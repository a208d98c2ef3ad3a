//! Slack incoming webhooks: one typed client holding one `reqwest::Client`,
//! a rate limiter per webhook, and the retry policy.
//!
//! Outcomes follow Slack's documented errors (classified on the body string,
//! not the status): `200 ok` is delivered; `429` waits for `Retry-After` (up
//! to `alerts.slack.max_retry_wait_secs` within a cycle, else the message
//! waits for the next cycle); 5xx, timeouts and connection errors are retried
//! with backoff, then wait for the next cycle; a webhook that is disabled or
//! whose channel is archived or gone takes no more messages this cycle, and
//! its messages wait for the next; a message Slack calls malformed
//! (`invalid_payload`, `no_text`, ...) is parked, as sending it again cannot
//! help. Webhook URLs are secrets and never appear in a log or an error.

pub mod render;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;

use crate::config::{Secret, SlackSettings};

/// Errors that mean "this message is malformed": retrying cannot help.
const MALFORMED: [&str; 4] = [
    "invalid_payload",
    "no_text",
    "too_many_attachments",
    "user_not_found",
];

/// Errors that mean "this webhook cannot post now": an operator must act;
/// the message is kept for the next cycle.
const WEBHOOK_DOWN: [&str; 10] = [
    "channel_is_archived",
    "channel_not_found",
    "action_prohibited",
    "posting_to_general_channel_denied",
    "no_service",
    "no_service_id",
    "no_active_hooks",
    "invalid_token",
    "no_team",
    "team_disabled",
];

const ATTEMPTS: u32 = 4;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Not delivered; try again next cycle.
    Retry(String),
    /// This webhook cannot take messages now; stop using it this cycle.
    WebhookDown(String),
    /// Slack refuses this message as malformed; do not send it again.
    Parked(String),
}

pub struct SlackClient {
    http: reqwest::Client,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    webhooks: BTreeMap<String, Secret>,
    limiters: BTreeMap<String, DefaultDirectRateLimiter>,
    max_retry_wait: Duration,
    backoff: Duration,
}

impl SlackClient {
    /// The client for the configured webhooks (`default` and the routes).
    pub fn new(settings: &SlackSettings) -> anyhow::Result<SlackClient> {
        let mut webhooks = BTreeMap::new();
        if let Some(url) = &settings.webhook_url {
            webhooks.insert("default".to_string(), url.clone());
        }
        for (name, route) in &settings.routes {
            if let Some(url) = &route.webhook_url {
                webhooks.insert(name.clone(), url.clone());
            }
        }
        let per_second = NonZeroU32::new(settings.per_second).unwrap_or(NonZeroU32::MIN);
        let limiters = webhooks
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    RateLimiter::direct(Quota::per_second(per_second)),
                )
            })
            .collect();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(settings.timeout_secs.clamp(1, 10)))
            .user_agent(concat!("channel-sync/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(SlackClient {
            http,
            metrics: None,
            webhooks,
            limiters,
            max_retry_wait: Duration::from_secs(settings.max_retry_wait_secs),
            backoff: Duration::from_millis(200),
        })
    }

    /// Counts requests and rate-limiter waits in `metrics`.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The routes that have a webhook.
    pub fn routes(&self) -> impl Iterator<Item = &String> {
        self.webhooks.keys()
    }

    /// Posts one message body (JSON) to a route's webhook.
    pub async fn post(&self, route: &str, body: &str) -> Delivery {
        let (Some(url), Some(limiter)) = (self.webhooks.get(route), self.limiters.get(route))
        else {
            return Delivery::Retry(format!("no webhook configured for route '{route}'"));
        };
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if limiter.check().is_err() {
                if let Some(m) = &self.metrics {
                    m.rate_limited("slack");
                }
                limiter.until_ready().await;
            }
            let response = self
                .http
                .post(url.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await;
            if let Some(m) = &self.metrics {
                m.request("slack", response.as_ref().ok().map(|r| r.status().as_u16()));
            }
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    // Without the URL: it is a secret.
                    last = format!("request failed: {}", e.without_url());
                    self.pause(attempt).await;
                    continue;
                }
            };
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response.text().await.unwrap_or_default();
            let error = text.trim();
            if status.is_success() {
                return Delivery::Sent;
            }
            if status.as_u16() == 429 {
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                last = format!("rate limited (Retry-After {}s)", wait.as_secs());
                if wait > self.max_retry_wait || attempt + 1 == ATTEMPTS {
                    return Delivery::Retry(last);
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            if MALFORMED.contains(&error) {
                return Delivery::Parked(format!("{status}: {error}"));
            }
            if WEBHOOK_DOWN.contains(&error) {
                return Delivery::WebhookDown(format!("{status}: {error}"));
            }
            last = format!("{status}: {}", error.chars().take(200).collect::<String>());
            if status.is_server_error() {
                self.pause(attempt).await;
                continue;
            }
            // Another client error: not understood, so not retried now.
            return Delivery::Retry(last);
        }
        Delivery::Retry(last)
    }

    /// Exponential backoff with jitter between attempts.
    async fn pause(&self, attempt: u32) {
        if attempt + 1 == ATTEMPTS {
            return;
        }
        let base = self.backoff * 2u32.pow(attempt);
        let jitter = rand::rng().random_range(0.0..0.5);
        tokio::time::sleep(base.mul_f64(1.0 + jitter)).await;
    }
}
