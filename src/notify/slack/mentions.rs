//! Mentions on conflict alerts (issue 15): the direct opportunity's owner
//! and each partner's manager are mentioned (`<@U012ABC>`) when their Slack
//! user is known.
//!
//! A person is known by e-mail, from one of two places only:
//! - `alerts.slack.mentions` (e-mail -> Slack user id), checked first;
//! - with a bot token (`alerts.slack.bot_token`, from the environment only),
//!   Slack's `users.lookupByEmail` (scope `users:read.email`).
//!
//! Nothing in the data becomes a mention: names and ids from the CRM are
//! escaped as always; only ids from the map or from Slack's own answer are
//! written as `<@…>`, and an answer's id must look like a Slack user id.
//!
//! Each e-mail is looked up at most once a cycle (a user Slack does not know
//! is remembered as unknown for the cycle too). `users.lookupByEmail` is a
//! Tier 3 method (50+ a minute): the client paces itself to 50 a minute and
//! waits out a 429's `Retry-After` through the shared retry loop, up to
//! `alerts.slack.max_retry_wait_secs`; past that, or on an error that
//! concerns the token (`invalid_auth`, `missing_scope`...), the cycle's
//! remaining lookups are skipped and those alerts go out without mentions.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;
use serde_json::Value;

use crate::config::{Secret, SlackSettings};
use crate::fast::FastMap;
use crate::http::{Answer, CallError, Next, RetryPolicy, Upstream};

/// `users.lookupByEmail` calls a minute (Slack's Tier 3 floor).
const LOOKUPS_PER_MINUTE: u32 = 50;

/// Whether `s` looks like a Slack user id (`U012ABC`, `W012ABC`).
pub(crate) fn is_user_id(s: &str) -> bool {
    s.len() >= 3
        && s.len() <= 32
        && s.starts_with(['U', 'W'])
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Where Slack users are found.
pub(crate) struct Mentions {
    /// Lower-cased e-mail -> user id (`alerts.slack.mentions`).
    map: BTreeMap<String, String>,
    lookup: Option<Lookup>,
}

struct Lookup {
    upstream: Upstream,
    token: Secret,
    /// `{alerts.slack.api_url}users.lookupByEmail`.
    url: String,
}

/// Why a lookup did not answer.
#[derive(Debug)]
enum Failed {
    /// Slack refused the token or the scope: no more lookups this cycle.
    Refused(String),
    Call(CallError),
}

impl From<CallError> for Failed {
    fn from(e: CallError) -> Self {
        Failed::Call(e)
    }
}

impl Mentions {
    pub(crate) fn new(settings: &SlackSettings) -> anyhow::Result<Mentions> {
        let map = settings
            .mentions
            .iter()
            .map(|(email, id)| (email.trim().to_lowercase(), id.trim().to_string()))
            .collect();
        let lookup = match &settings.bot_token {
            Some(token) => {
                let quota = Quota::per_minute(
                    NonZeroU32::new(LOOKUPS_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
                );
                let upstream = Upstream::new(
                    "slack-users",
                    quota,
                    Duration::from_secs(settings.timeout_secs.max(1)),
                )?
                .with_policy(RetryPolicy {
                    attempts: 4,
                    backoff: Duration::from_millis(200),
                    max_wait: Duration::from_secs(settings.max_retry_wait_secs),
                    // A read: safe to repeat.
                    idempotent: true,
                });
                let base = settings.api_url.trim_end_matches('/');
                Some(Lookup {
                    upstream,
                    token: token.clone(),
                    url: format!("{base}/users.lookupByEmail"),
                })
            }
            None => None,
        };
        Ok(Mentions { map, lookup })
    }

    /// Counts lookups and rate-limiter waits in `metrics`, if any.
    pub(crate) fn with_metrics_opt(
        mut self,
        metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    ) -> Self {
        if let Some(l) = self.lookup.take() {
            self.lookup = Some(Lookup {
                upstream: l.upstream.with_metrics(metrics),
                ..l
            });
        }
        self
    }

    /// Whether any mention can be made (a map or a bot token).
    pub(crate) fn is_on(&self) -> bool {
        !self.map.is_empty() || self.lookup.is_some()
    }

    /// The Slack user ids of these e-mails (lower-cased): the map's, then
    /// Slack's answer for the rest (each asked once); an unknown e-mail is
    /// left out.
    pub(crate) async fn resolve(
        &self,
        emails: impl IntoIterator<Item = String>,
    ) -> FastMap<String, String> {
        let mut asked: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut found = FastMap::default();
        let mut stopped = false;
        for email in emails {
            let email = email.trim().to_lowercase();
            if email.is_empty() || !asked.insert(email.clone()) {
                continue;
            }
            if let Some(id) = self.map.get(&email) {
                found.insert(email, id.clone());
                continue;
            }
            let Some(lookup) = &self.lookup else {
                continue;
            };
            if stopped {
                continue;
            }
            match lookup.find(&email).await {
                Ok(Some(id)) => {
                    found.insert(email, id);
                }
                Ok(None) => {}
                Err(e) => {
                    let why = match e {
                        Failed::Refused(why) => why,
                        Failed::Call(e) => e.to_string(),
                    };
                    tracing::warn!(error = %why, "Slack user lookup failed; this cycle's alerts go without the remaining mentions.");
                    stopped = true;
                }
            }
        }
        found
    }
}

impl Lookup {
    async fn find(&self, email: &str) -> Result<Option<String>, Failed> {
        self.upstream
            .call(
                |_| {
                    let request = self
                        .upstream
                        .http
                        .get(&self.url)
                        .query(&[("email", email)])
                        .bearer_auth(self.token.expose());
                    async { Ok::<_, Failed>(request) }
                },
                judge,
            )
            .await
    }
}

/// Classifies `users.lookupByEmail`'s answer.
fn judge(answer: Answer) -> Next<Option<String>, Failed> {
    if answer.status == 429 {
        let wait = answer.retry_after().unwrap_or(Duration::from_secs(1));
        return Next::Wait(
            wait,
            format!("rate limited (Retry-After {}s)", wait.as_secs()),
        );
    }
    if answer.status >= 500 {
        return Next::Retry(format!("{}", answer.status));
    }
    let Ok(v) = serde_json::from_str::<Value>(&answer.body) else {
        return Next::Fail(Failed::Refused(format!(
            "users.lookupByEmail answered {} without JSON",
            answer.status
        )));
    };
    if v["ok"] == Value::Bool(true) {
        // Only an id that looks like one becomes a mention.
        let id = v["user"]["id"].as_str().filter(|id| is_user_id(id));
        return Next::Return(id.map(str::to_string));
    }
    match v["error"].as_str().unwrap_or("unknown error") {
        "users_not_found" | "user_not_found" => Next::Return(None),
        "ratelimited" => Next::Wait(
            answer.retry_after().unwrap_or(Duration::from_secs(1)),
            "ratelimited".into(),
        ),
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            Next::Retry(v["error"].as_str().unwrap_or_default().to_string())
        }
        other => Next::Fail(Failed::Refused(format!(
            "users.lookupByEmail: {}",
            other.chars().take(80).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lookups_are_counted_in_the_metrics() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let api = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/users.lookupByEmail"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"ok": true, "user": {"id": "U0DANA"}})),
            )
            .mount(&api)
            .await;
        let settings = SlackSettings {
            bot_token: Some(crate::config::Secret::new("xoxb-test")),
            api_url: api.uri(),
            ..SlackSettings::default()
        };
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let mentions = Mentions::new(&settings)
            .unwrap()
            .with_metrics_opt(Some(metrics.clone()));
        let found = mentions.resolve(["dana@example.com".to_string()]).await;
        assert_eq!(
            found.get("dana@example.com").map(String::as_str),
            Some("U0DANA")
        );
        let text = metrics.render();
        assert!(
            text.contains("channel_sync_upstream_requests_total{upstream=\"slack-users\",status_class=\"2xx\"} 1"),
            "{text}"
        );
    }

    fn answer(status: u16, body: &str, retry_after: Option<&str>) -> Answer {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(r) = retry_after {
            headers.insert("retry-after", r.parse().unwrap());
        }
        Answer {
            status,
            headers,
            body: body.into(),
        }
    }

    fn outcome(a: Answer) -> String {
        match judge(a) {
            Next::Return(Some(id)) => format!("found {id}"),
            Next::Return(None) => "unknown".into(),
            Next::Wait(d, _) => format!("wait {}", d.as_secs()),
            Next::Retry(_) => "retry".into(),
            Next::Fail(Failed::Refused(why)) => format!("stop {why}"),
            Next::Fail(Failed::Call(e)) => format!("call {e}"),
            Next::Reauthenticate => "reauthenticate".into(),
        }
    }

    #[test]
    fn lookup_answers_are_classified() {
        let ok = r#"{"ok":true,"user":{"id":"U012ABC","name":"dana"}}"#;
        assert_eq!(outcome(answer(200, ok, None)), "found U012ABC");
        // An id that is not one is never used.
        let odd = r#"{"ok":true,"user":{"id":"<!channel>"}}"#;
        assert_eq!(outcome(answer(200, odd, None)), "unknown");
        let nf = r#"{"ok":false,"error":"users_not_found"}"#;
        assert_eq!(outcome(answer(200, nf, None)), "unknown");
        assert_eq!(outcome(answer(429, "", Some("20"))), "wait 20");
        assert_eq!(outcome(answer(503, "", None)), "retry");
        let auth = r#"{"ok":false,"error":"invalid_auth"}"#;
        assert_eq!(
            outcome(answer(200, auth, None)),
            "stop users.lookupByEmail: invalid_auth"
        );
        let scope = r#"{"ok":false,"error":"missing_scope","needed":"users:read.email"}"#;
        assert!(outcome(answer(200, scope, None)).starts_with("stop "));
    }

    #[tokio::test]
    async fn without_a_token_only_the_map_answers() {
        let settings = SlackSettings {
            mentions: [("Dana@Example.com".to_string(), "U012ABC".to_string())].into(),
            ..SlackSettings::default()
        };
        let m = Mentions::new(&settings).unwrap();
        assert!(m.is_on());
        let found = m
            .resolve([
                "dana@example.COM".to_string(),
                "eve@example.com".to_string(),
            ])
            .await;
        assert_eq!(found.len(), 1);
        assert_eq!(found["dana@example.com"], "U012ABC");
        assert!(!Mentions::new(&SlackSettings::default()).unwrap().is_on());
    }

    #[test]
    fn only_what_looks_like_a_user_id_is_one() {
        assert!(is_user_id("U012ABC"));
        assert!(is_user_id("W0123"));
        for bad in [
            "",
            "U1",
            "u012abc",
            "C012ABC",
            "U012>|<!here",
            "U01 2",
            "<@U012>",
        ] {
            assert!(!is_user_id(bad), "{bad}");
        }
    }
}
