//! Slack incoming webhooks: one typed client on the shared upstream
//! machinery (one `reqwest::Client`, the retry loop), with a rate limiter
//! per webhook.
//!
//! Outcomes follow Slack's documented errors (classified on the body string,
//! not the status): `200 ok` is delivered; `429` waits for `Retry-After` (up
//! to `alerts.slack.max_retry_wait_secs` within a cycle, else the message
//! waits for the next cycle). A post is not safe to repeat: only what cannot
//! have been delivered is retried within the cycle (connection refused, 429,
//! a 5xx with `Retry-After`); another 5xx waits for the next cycle; a
//! timeout after sending is [`Delivery::Unconfirmed`] (Slack may have posted
//! it): the outbox sends it once more in a later cycle, and parks it if that
//! times out too, so a slow Slack shows an alert at most twice. A webhook that is disabled or
//! whose channel is archived or gone takes no more messages this cycle, and
//! its messages wait for the next; a message Slack calls malformed
//! (`invalid_payload`, `no_text`, ...) is parked, as sending it again cannot
//! help. Webhook URLs are secrets and never appear in a log or an error.

pub(crate) mod interactions;
pub(crate) mod mentions;
pub(crate) mod preview;
pub(crate) mod render;

use std::collections::BTreeMap;
use std::time::Duration;

use super::webhooks::{Pace, Webhooks};
use crate::config::{Secret, SlackSettings};
use crate::http::{Answer, Next};

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

pub(crate) use super::Delivery;

pub(crate) struct SlackClient {
    /// The webhooks by route, their limiters and the HTTP client.
    webhooks: Webhooks,
    /// A signing secret is configured: conflict alerts carry decision
    /// buttons (issue 15), whose clicks come back signed.
    buttons: bool,
    /// Where the console's finding pages are (`console.public_url`).
    console: crate::config::ConsoleSettings,
}

impl SlackClient {
    /// The client for the configured webhooks (`default` and the routes).
    pub(crate) fn new(settings: &SlackSettings) -> anyhow::Result<SlackClient> {
        let mut urls: BTreeMap<String, Secret> = BTreeMap::new();
        if let Some(url) = &settings.webhook_url {
            urls.insert("default".to_string(), url.clone());
        }
        for (name, route) in &settings.routes {
            if let Some(url) = &route.webhook_url {
                urls.insert(name.clone(), url.clone());
            }
        }
        let pace = Pace {
            per_second: settings.per_second,
            timeout_secs: settings.timeout_secs,
            max_retry_wait_secs: settings.max_retry_wait_secs,
        };
        Ok(SlackClient {
            buttons: settings.signing_secret.is_some(),
            webhooks: Webhooks::new("slack", urls, pace)?,
            console: Default::default(),
        })
    }

    /// Links finding alerts to their console page (`console.public_url`).
    pub(crate) fn with_console(mut self, console: &crate::config::ConsoleSettings) -> Self {
        self.console = console.clone();
        self
    }

    /// Counts requests and rate-limiter waits in `metrics`, if any.
    pub(crate) fn with_metrics_opt(
        mut self,
        metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    ) -> Self {
        self.webhooks = self.webhooks.with_metrics(metrics);
        self
    }

    /// Posts one message body (JSON) to a route's webhook.
    pub(crate) async fn post(&self, route: &str, body: &str) -> Delivery {
        self.webhooks.post("webhook", route, body, judge).await
    }
}

impl super::Notifier for SlackClient {
    fn channel(&self) -> &'static str {
        "slack"
    }

    fn routes(&self) -> std::collections::BTreeSet<String> {
        self.webhooks.routes()
    }

    fn render(&self, notice: &crate::alerts::Notice, names: &render::Names) -> String {
        let mut body = render::notice(notice, names);
        if let crate::alerts::Content::Finding { finding, .. } = &notice.content {
            if let Some(url) = self.console.finding_url(&finding.key) {
                render::add_console_link(&mut body, &url);
            }
            if self.buttons && finding.kind.is_conflict() {
                interactions::add_buttons(&mut body, &finding.key);
            }
        }
        body.to_string()
    }

    fn preview(&self, body: &str) -> String {
        preview::preview(body)
    }

    fn post<'a>(&'a self, route: &'a str, body: &'a str) -> super::Posting<'a> {
        Box::pin(SlackClient::post(self, route, body))
    }

    fn per_second(&self) -> u32 {
        self.webhooks.per_second()
    }
}

/// Classifies Slack's answer on its body string, not the status.
fn judge(answer: Answer) -> Next<(), Delivery> {
    let status = answer.status;
    if (200..300).contains(&status) {
        return Next::Return(());
    }
    if status == 429 {
        let wait = answer.retry_after().unwrap_or(Duration::from_secs(1));
        return Next::Wait(
            wait,
            format!("rate limited (Retry-After {}s)", wait.as_secs()),
        );
    }
    let error = answer.body.trim();
    if MALFORMED.contains(&error) {
        return Next::Fail(Delivery::Parked(format!("{status}: {error}")));
    }
    if WEBHOOK_DOWN.contains(&error) {
        return Next::Fail(Delivery::WebhookDown(format!("{status}: {error}")));
    }
    let why = format!("{status}: {}", error.chars().take(200).collect::<String>());
    if status >= 500 {
        Next::Retry(why)
    } else {
        // Another client error: not understood, so not retried now.
        Next::Fail(Delivery::Retry(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn the_notifier_names_slack_paces_as_configured_and_previews_as_text() {
        use super::super::Notifier;
        let settings = SlackSettings {
            per_second: 3,
            ..SlackSettings::default()
        };
        let client = SlackClient::new(&settings).unwrap();
        // Outbox rows written before the channel column existed say "slack"
        // (schema step 5's default): the name is stored, not just a label.
        assert_eq!(client.channel(), "slack");
        // The progress bar's estimate reads the configured pace.
        assert_eq!(client.per_second(), 3);
        let body = r#"{"text":"x","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"*Conflict* on Acme"}}]}"#;
        let preview = client.preview(body);
        assert_eq!(preview, preview::preview(body));
        assert!(
            preview.contains("Conflict") && preview.contains("Acme"),
            "{preview}"
        );
        assert!(!preview.contains('{'), "{preview}");
    }

    #[test]
    fn a_finding_links_to_its_console_page_when_the_console_has_an_address() {
        use super::super::Notifier;
        use crate::alerts::{Content, Notice, Reason};
        let notice = Notice {
            route: "default".into(),
            finding_key: Some("k".into()),
            reason: Reason::New,
            content: Content::Finding {
                finding: crate::engine::Finding {
                    key: "direct_vs_partner:R-1|x>".into(),
                    ..crate::notify::teams::render::tests::big(1, 10)
                },
                why: None,
            },
        };
        let names = render::Names::default();
        let mut settings = SlackSettings::default();
        let plain = SlackClient::new(&settings).unwrap();
        assert!(!plain.render(&notice, &names).contains("Open in console"));
        let mut console = crate::config::ConsoleSettings {
            public_url: Some("https://cs.example.com".into()),
            ..Default::default()
        };
        let linked = SlackClient::new(&settings).unwrap().with_console(&console);
        let body: serde_json::Value =
            serde_json::from_str(&linked.render(&notice, &names)).unwrap();
        let blocks = body["blocks"].as_array().unwrap();
        let last = blocks.last().unwrap();
        assert_eq!(last["type"], "context");
        assert_eq!(
            last["elements"][0]["text"],
            "<https://cs.example.com/finding?key=direct_vs_partner%3AR-1%7Cx%3E|Open in console>"
        );
        // With a signing secret the decision buttons come too, after the link.
        settings.signing_secret = Some(Secret::new("s".repeat(32)));
        let both = SlackClient::new(&settings).unwrap().with_console(&console);
        let body: serde_json::Value = serde_json::from_str(&both.render(&notice, &names)).unwrap();
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks[blocks.len() - 1]["type"], "actions");
        assert_eq!(blocks[blocks.len() - 2]["type"], "context");
        // No public_url: no link.
        console.public_url = None;
        let off = SlackClient::new(&settings).unwrap().with_console(&console);
        assert!(!off.render(&notice, &names).contains("Open in console"));
    }

    fn answer(status: u16, body: &str, retry_after: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert("retry-after", HeaderValue::from_str(v).unwrap());
        }
        Answer {
            status,
            headers,
            body: body.to_string(),
        }
    }

    /// What `judge` decided, as text.
    fn verdict(status: u16, body: &str, retry_after: Option<&str>) -> String {
        match judge(answer(status, body, retry_after)) {
            Next::Return(()) => "sent".into(),
            Next::Fail(Delivery::Parked(why)) => format!("parked {why}"),
            Next::Fail(Delivery::WebhookDown(why)) => format!("down {why}"),
            Next::Fail(Delivery::Retry(why)) => format!("next cycle {why}"),
            Next::Fail(Delivery::Sent) => "sent?".into(),
            Next::Fail(Delivery::Unconfirmed(why)) => format!("unconfirmed {why}"),
            Next::Retry(why) => format!("backoff {why}"),
            Next::Wait(wait, _) => format!("wait {}s", wait.as_secs()),
            Next::Reauthenticate => "reauthenticate".into(),
        }
    }

    /// Every documented answer, written out (not read from the lists the
    /// classifier uses, so dropping a string from them fails here).
    #[test]
    fn slack_answers_are_classified_by_their_error_string() {
        let table: &[(u16, &str, Option<&str>, &str)] = &[
            (200, "ok", None, "sent"),
            (400, "invalid_payload", None, "parked 400: invalid_payload"),
            (400, "no_text", None, "parked 400: no_text"),
            (
                400,
                "too_many_attachments",
                None,
                "parked 400: too_many_attachments",
            ),
            (400, "user_not_found", None, "parked 400: user_not_found"),
            (
                410,
                "channel_is_archived",
                None,
                "down 410: channel_is_archived",
            ),
            (
                404,
                "channel_not_found",
                None,
                "down 404: channel_not_found",
            ),
            (
                403,
                "action_prohibited",
                None,
                "down 403: action_prohibited",
            ),
            (
                403,
                "posting_to_general_channel_denied",
                None,
                "down 403: posting_to_general_channel_denied",
            ),
            (404, "no_service", None, "down 404: no_service"),
            (400, "no_service_id", None, "down 400: no_service_id"),
            (410, "no_active_hooks", None, "down 410: no_active_hooks"),
            (403, "invalid_token", None, "down 403: invalid_token"),
            (404, "no_team", None, "down 404: no_team"),
            (403, "team_disabled", None, "down 403: team_disabled"),
            // The string decides, not the status, and white space around it
            // does not matter.
            (
                500,
                "channel_is_archived\n",
                None,
                "down 500: channel_is_archived",
            ),
            (429, "rate_limited", Some("7"), "wait 7s"),
            (429, "", None, "wait 1s"),
            (500, "rollup_error", None, "backoff 500: rollup_error"),
            (503, "", None, "backoff 503: "),
            (400, "something_new", None, "next cycle 400: something_new"),
            (404, "Not Found", None, "next cycle 404: Not Found"),
        ];
        for (status, body, retry_after, expected) in table {
            assert_eq!(
                verdict(*status, body, *retry_after),
                *expected,
                "{status} {body:?}"
            );
        }
        // A long unknown answer is cut to 200 characters in the reason.
        let long = "x".repeat(500);
        assert_eq!(
            verdict(502, &long, None),
            format!("backoff 502: {}", "x".repeat(200))
        );
    }
}
