//! What every webhook channel shares: a route's URL (a secret), a rate
//! limiter per webhook, and one upstream client whose retry policy never
//! repeats a post that may have arrived (a repeated post shows twice in the
//! channel). Each channel brings its own judge of the answer.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::Delivery;
use crate::config::Secret;
use crate::http::{Answer, Next, RetryPolicy, Upstream};

/// How a channel's webhooks are paced and waited on.
pub(crate) struct Pace {
    /// Messages per second per webhook (0 counts as 1).
    pub per_second: u32,
    /// How long one post may take.
    pub timeout_secs: u64,
    /// The longest `Retry-After` waited out within a cycle.
    pub max_retry_wait_secs: u64,
}

/// A channel's webhooks by route (`default` and the named routes).
pub(crate) struct Webhooks {
    upstream: Upstream,
    urls: BTreeMap<String, Secret>,
    limiters: BTreeMap<String, DefaultDirectRateLimiter>,
    per_second: u32,
}

impl Webhooks {
    /// `channel` names the upstream in logs and metrics (`slack`, `teams`).
    pub(crate) fn new(
        channel: &'static str,
        urls: BTreeMap<String, Secret>,
        pace: Pace,
    ) -> anyhow::Result<Webhooks> {
        let per_second = NonZeroU32::new(pace.per_second).unwrap_or(NonZeroU32::MIN);
        let limiters = urls
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    RateLimiter::direct(Quota::per_second(per_second)),
                )
            })
            .collect();
        // Limits are per webhook (above); the upstream's own limiter is unused.
        let upstream = Upstream::new(
            channel,
            Quota::per_second(per_second),
            Duration::from_secs(pace.timeout_secs.max(1)),
        )?
        .with_policy(RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(200),
            max_wait: Duration::from_secs(pace.max_retry_wait_secs),
            // A repeated post can show twice in the channel.
            idempotent: false,
        });
        Ok(Webhooks {
            upstream,
            urls,
            limiters,
            per_second: per_second.get(),
        })
    }

    /// Counts requests and rate-limiter waits in `metrics`, if any.
    pub(crate) fn with_metrics(
        mut self,
        metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    ) -> Self {
        self.upstream = self.upstream.with_metrics(metrics);
        self
    }

    /// The routes that have a webhook.
    pub(crate) fn routes(&self) -> BTreeSet<String> {
        self.urls.keys().cloned().collect()
    }

    /// Messages per second per webhook.
    pub(crate) fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Posts one JSON body to a route's webhook, paced by that webhook's
    /// limiter; `judge` reads the channel's answer. A route without a
    /// webhook is a [`Delivery::Retry`] naming `what` (never the URL).
    pub(crate) async fn post(
        &self,
        what: &str,
        route: &str,
        body: &str,
        judge: fn(Answer) -> Next<(), Delivery>,
    ) -> Delivery {
        let (Some(url), Some(limiter)) = (self.urls.get(route), self.limiters.get(route)) else {
            return Delivery::Retry(format!("no {what} configured for route '{route}'"));
        };
        let result = self
            .upstream
            .call_via(
                limiter,
                |_| {
                    let request = self
                        .upstream
                        .http
                        .post(url.expose())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_string());
                    async { Ok::<_, Delivery>(request) }
                },
                judge,
            )
            .await;
        match result {
            Ok(()) => Delivery::Sent,
            Err(d) => d,
        }
    }
}
