//! Microsoft Teams through Power Automate Workflows webhooks ("When a Teams
//! webhook request is received"): each post is a `message` with one Adaptive
//! Card. Office 365 connectors are retired and not supported.
//!
//! Routes are the route table's (`alerts.slack.routes`): the default route's
//! URL is `alerts.teams.webhook_url`, a route's is its `teams_webhook_url`.
//! Both are secrets (the URL's `sig=` authorises the post): never logged.
//!
//! Outcomes, the same as Slack's: 2xx (Workflows answers 202 Accepted) is
//! delivered; 429 waits for `Retry-After` within the cycle up to
//! `alerts.teams.max_retry_wait_secs`, else the message waits for the next
//! cycle; a 5xx waits for the next cycle (a post is not safe to repeat);
//! 400 (a card the flow refuses) and 413 (too large) are parked; 401, 403,
//! 404 and 410 (a deleted or disabled flow, a bad signature) mean the
//! webhook is down this cycle. A body over [`render::MAX_BYTES`] is parked
//! without being sent. A 202 only says "accepted": a card the flow fails on
//! later is invisible here.

pub(crate) mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::webhooks::{Pace, Webhooks};
use super::{Delivery, Names, Notifier, Posting};
use crate::alerts::Notice;
use crate::config::{AlertSettings, ConsoleSettings, Secret};
use crate::http::{Answer, Next};

pub(crate) struct TeamsClient {
    /// The Workflows URLs by route, their limiters and the HTTP client.
    webhooks: Webhooks,
    /// Where the console's finding pages are (`console.public_url`).
    console: ConsoleSettings,
}

impl TeamsClient {
    /// The client for the configured Workflows URLs (`default` and routes).
    pub(crate) fn new(settings: &AlertSettings) -> anyhow::Result<TeamsClient> {
        let teams = &settings.teams;
        let mut urls: BTreeMap<String, Secret> = BTreeMap::new();
        if let Some(url) = &teams.webhook_url {
            urls.insert("default".to_string(), url.clone());
        }
        for (name, route) in &settings.slack.routes {
            if let Some(url) = &route.teams_webhook_url {
                urls.insert(name.clone(), url.clone());
            }
        }
        let pace = Pace {
            per_second: teams.per_second,
            timeout_secs: teams.timeout_secs,
            max_retry_wait_secs: teams.max_retry_wait_secs,
        };
        Ok(TeamsClient {
            webhooks: Webhooks::new("teams", urls, pace)?,
            console: ConsoleSettings::default(),
        })
    }

    /// Links finding cards to their console page (`console.public_url`).
    pub(crate) fn with_console(mut self, console: &ConsoleSettings) -> Self {
        self.console = console.clone();
        self
    }

    /// Counts requests and rate-limiter waits in `metrics`, if any.
    pub(crate) fn with_metrics_opt(
        mut self,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Self {
        self.webhooks = self.webhooks.with_metrics(metrics);
        self
    }

    /// Posts one body (JSON) to a route's Workflows URL; a card over
    /// [`render::MAX_BYTES`] is parked without being sent.
    pub(crate) async fn post(&self, route: &str, body: &str) -> Delivery {
        if body.len() > render::MAX_BYTES {
            return Delivery::Parked(format!(
                "the card is {} bytes, over Teams' limit of {}",
                body.len(),
                render::MAX_BYTES
            ));
        }
        self.webhooks
            .post("Teams webhook", route, body, judge)
            .await
    }
}

impl Notifier for TeamsClient {
    fn channel(&self) -> &'static str {
        "teams"
    }

    fn routes(&self) -> BTreeSet<String> {
        self.webhooks.routes()
    }

    fn render(&self, notice: &Notice, names: &Names) -> String {
        render::notice(notice, names, Some(&self.console))
    }

    fn preview(&self, body: &str) -> String {
        render::preview(body)
    }

    fn post<'a>(&'a self, route: &'a str, body: &'a str) -> Posting<'a> {
        Box::pin(TeamsClient::post(self, route, body))
    }

    fn per_second(&self) -> u32 {
        self.webhooks.per_second()
    }
}

/// Classifies the Workflows endpoint's answer on its status.
fn judge(answer: Answer) -> Next<(), Delivery> {
    let status = answer.status;
    let said: String = answer.body.trim().chars().take(200).collect();
    // Classic connectors answered 200 with the throttling in the body.
    if (200..300).contains(&status) && !said.contains("HTTP error 429") {
        return Next::Return(());
    }
    if status == 429 || said.contains("HTTP error 429") {
        let wait = answer.retry_after().unwrap_or(Duration::from_secs(1));
        return Next::Wait(
            wait,
            format!("rate limited (Retry-After {}s)", wait.as_secs()),
        );
    }
    let why = format!("{status}: {said}");
    match status {
        400 | 413 => Next::Fail(Delivery::Parked(why)),
        401 | 403 | 404 | 410 => Next::Fail(Delivery::WebhookDown(why)),
        s if s >= 500 => Next::Retry(why),
        _ => Next::Fail(Delivery::Retry(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn answer(status: u16, body: &str, retry_after: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry_after {
            headers.insert("retry-after", HeaderValue::from_str(r).unwrap());
        }
        Answer {
            status,
            headers,
            body: body.into(),
        }
    }

    fn outcome(a: Answer) -> String {
        match judge(a) {
            Next::Return(()) => "sent".into(),
            Next::Wait(d, _) => format!("wait {}", d.as_secs()),
            Next::Retry(_) => "retry".into(),
            Next::Fail(Delivery::Parked(_)) => "parked".into(),
            Next::Fail(Delivery::WebhookDown(_)) => "down".into(),
            Next::Fail(Delivery::Retry(_)) => "next cycle".into(),
            Next::Fail(d) => format!("{d:?}"),
            Next::Reauthenticate => "reauthenticate".into(),
        }
    }

    #[test]
    fn answers_are_classified_like_slack_s() {
        assert_eq!(outcome(answer(202, "", None)), "sent");
        assert_eq!(outcome(answer(200, "1", None)), "sent");
        assert_eq!(outcome(answer(429, "", Some("7"))), "wait 7");
        assert_eq!(
            outcome(answer(
                200,
                "Microsoft Teams endpoint returned HTTP error 429",
                None
            )),
            "wait 1"
        );
        assert_eq!(outcome(answer(400, "bad card", None)), "parked");
        assert_eq!(
            outcome(answer(413, "Request Entity too large", None)),
            "parked"
        );
        assert_eq!(outcome(answer(404, "", None)), "down");
        assert_eq!(outcome(answer(401, "", None)), "down");
        assert_eq!(outcome(answer(502, "", None)), "retry");
        assert_eq!(outcome(answer(409, "", None)), "next cycle");
    }
}
