//! HubSpot CRM v3: the typed client the HubSpot connector is built on, on the
//! shared [`Upstream`] machinery (one HTTP client, the rate limiter, retries).
//!
//! - Auth: a private-app token as `Bearer`, or OAuth refresh
//!   (`POST /oauth/v1/token`), refreshed ahead of `expires_in` (HubSpot says
//!   a 401 is no signal to refresh). A 401 (`INVALID_AUTHENTICATION`) ends
//!   the call with a clear message.
//! - Limits: the limiter holds `max_requests_per_10s` per rolling 10 s
//!   window (evenly spaced); search has its own, stricter limiter on top. A
//!   429 with `policyName` `TEN_SECONDLY_ROLLING` waits (`Retry-After`, else
//!   the interval header, else 10 s) and retries; `DAILY` ends the call:
//!   the daily allowance is spent until HubSpot's midnight. 5xx and timeouts
//!   back off with jitter.
//! - Lists follow `paging.next.after` (absent on the last page); search
//!   pages by numeric offset up to HubSpot's cap of 10,000 results a query.

use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::Secret;
use crate::http::{Answer, CallError, Next, Upstream};
use crate::metrics::Metrics;

/// Search pages past this offset fail: a query must be narrowed first.
pub(crate) const SEARCH_CAP: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum HubSpotError {
    #[error("HubSpot refused the credentials ({category}): {message}")]
    Auth { category: String, message: String },
    #[error("HubSpot's daily API limit is reached ({0}); waiting for the next cycle")]
    DailyLimit(String),
    #[error("HubSpot answered {status}: {category}: {message}")]
    Api {
        status: u16,
        category: String,
        message: String,
    },
    #[error("unexpected response from HubSpot: {0}")]
    Decode(String),
    #[error(transparent)]
    Upstream(#[from] CallError),
}

/// How the client signs its requests.
pub enum Credentials {
    Token(Secret),
    OAuth {
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
    },
}

pub struct ClientConfig {
    pub base_url: String,
    pub credentials: Credentials,
    pub per_10s: u32,
    pub search_per_second: u32,
    pub timeout: Duration,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    category: Option<String>,
    #[serde(default, rename = "policyName")]
    policy_name: Option<String>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Access {
    token: Secret,
    refresh_after: Instant,
}

/// The type of a property the write-back creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyKind {
    Number,
    Text,
    Bool,
}

pub struct HubSpotClient {
    upstream: Upstream,
    search_limiter: DefaultDirectRateLimiter,
    base: String,
    credentials: Credentials,
    access: Mutex<Option<Access>>,
    refresh_token: Mutex<Option<Secret>>,
    /// Set when HubSpot said the burst window is spent.
    pause_until: std::sync::Mutex<Option<Instant>>,
}

/// A paged read's cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paged {
    pub calls: u64,
}

impl HubSpotClient {
    pub fn new(config: ClientConfig) -> anyhow::Result<HubSpotClient> {
        let per_10s = config.per_10s.max(1);
        // Evenly spaced: never more than per_10s in any 10-second window.
        let quota = Quota::with_period(Duration::from_nanos(10_000_000_000 / u64::from(per_10s)))
            .ok_or_else(|| anyhow::anyhow!("max_requests_per_10s is too high"))?;
        let upstream = Upstream::new("hubspot", quota, config.timeout)?;
        let refresh_token = match &config.credentials {
            Credentials::OAuth { refresh_token, .. } => Some(refresh_token.clone()),
            Credentials::Token(_) => None,
        };
        Ok(HubSpotClient {
            upstream,
            search_limiter: RateLimiter::direct(Upstream::per_second(config.search_per_second)),
            base: config.base_url.trim_end_matches('/').to_string(),
            credentials: config.credentials,
            access: Mutex::new(None),
            refresh_token: Mutex::new(refresh_token),
            pause_until: std::sync::Mutex::new(None),
        })
    }

    pub fn with_metrics(mut self, metrics: Option<std::sync::Arc<Metrics>>) -> Self {
        self.upstream = self.upstream.with_metrics(metrics);
        self
    }

    /// Reads `X-HubSpot-RateLimit-*`: the daily remainder (private-app
    /// tokens) or else the burst remainder feeds
    /// `channel_sync_api_remaining{upstream="hubspot"}`, and a burst window
    /// that is spent makes the next call wait for it instead of drawing a 429.
    fn note_limits(&self, answer: &Answer) {
        let number = |name: &str| {
            answer
                .header(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let remaining = number("x-hubspot-ratelimit-daily-remaining")
            .or_else(|| number("x-hubspot-ratelimit-remaining"));
        if let (Some(remaining), Some(m)) = (remaining, self.upstream.metrics()) {
            m.api_remaining
                .get_or_create(&crate::metrics::UpstreamLabel {
                    upstream: "hubspot".into(),
                })
                .set(remaining);
        }
        if number("x-hubspot-ratelimit-remaining") == Some(0) {
            let window = number("x-hubspot-ratelimit-interval-milliseconds").unwrap_or(10_000);
            *self.pause_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + Duration::from_millis(window.max(0) as u64));
        }
    }

    /// See [`Upstream::begin_mark`].
    pub fn begin_mark(&self) {
        self.upstream.begin_mark();
    }

    /// See [`Upstream::mark`].
    pub fn mark(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.upstream.mark()
    }

    /// The bearer token: the private-app token, or an OAuth access token
    /// refreshed a minute before it expires.
    async fn bearer(&self) -> Result<String, HubSpotError> {
        let (client_id, client_secret) = match &self.credentials {
            Credentials::Token(t) => return Ok(t.expose().to_string()),
            Credentials::OAuth {
                client_id,
                client_secret,
                ..
            } => (client_id, client_secret),
        };
        let mut access = self.access.lock().await;
        if let Some(a) = access.as_ref()
            && Instant::now() < a.refresh_after
        {
            return Ok(a.token.expose().to_string());
        }
        let refresh =
            self.refresh_token
                .lock()
                .await
                .clone()
                .ok_or_else(|| HubSpotError::Auth {
                    category: "MISSING_REFRESH_TOKEN".into(),
                    message: "crm.hubspot.refresh_token is not set".into(),
                })?;
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose()),
            ("refresh_token", refresh.expose()),
        ];
        let answer = self
            .upstream
            .post_form(&format!("{}/oauth/v1/token", self.base), &form)
            .await?;
        let (status, body) = (answer.status, answer.body);
        if !(200..300).contains(&status) {
            let e: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            return Err(HubSpotError::Auth {
                category: text("status")
                    .or_else(|| text("error"))
                    .unwrap_or_else(|| format!("HTTP_{status}")),
                message: text("message")
                    .or_else(|| text("error_description"))
                    .unwrap_or_else(|| body.chars().take(200).collect()),
            });
        }
        let token: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| HubSpotError::Decode(format!("token response: {e}")))?;
        if let Some(new) = token.refresh_token {
            *self.refresh_token.lock().await = Some(Secret::new(new));
        }
        let value = token.access_token.clone();
        *access = Some(Access {
            token: Secret::new(token.access_token),
            refresh_after: refresh_after(Instant::now(), token.expires_in),
        });
        tracing::debug!("HubSpot access token refreshed.");
        Ok(value)
    }

    /// Sends one request; returns the status (200 or 207 ...) and the body.
    pub async fn request(
        &self,
        verb: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        search: bool,
    ) -> Result<(u16, Value), HubSpotError> {
        let verb = &verb;
        self.upstream
            .call(
                |_| async move {
                    let pause = self
                        .pause_until
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                    if let Some(until) = pause {
                        tokio::time::sleep_until(until.into()).await;
                    }
                    if search {
                        self.search_limiter.until_ready().await;
                    }
                    let bearer = self.bearer().await?;
                    let mut request = self
                        .upstream
                        .http
                        .request(verb.clone(), format!("{}{path}", self.base))
                        .query(query)
                        .bearer_auth(bearer);
                    if let Some(body) = body {
                        request = request.json(body);
                    }
                    Ok(request)
                },
                |answer| {
                    self.note_limits(&answer);
                    judge(path, answer)
                },
            )
            .await
    }

    /// Pages a list endpoint (`limit=100`, `after`), handing each page's
    /// `results` to `on_page`.
    pub async fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
        mut on_page: impl FnMut(Vec<Value>) -> bool,
    ) -> Result<Paged, HubSpotError> {
        let fetch = |after: Option<String>| {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("limit", "100".into()));
            if let Some(a) = after {
                q.push(("after", a));
            }
            async move {
                let (_, body) = self
                    .request(reqwest::Method::GET, path, &q, None, false)
                    .await?;
                page_of(body)
            }
        };
        let stopped = || HubSpotError::Decode("stopped: the state could not store a page".into());
        let mut paged = Paged { calls: 1 };
        let (mut results, mut next) = fetch(None).await?;
        // Pipelined: the next page is asked for before this one is stored.
        while let Some(after) = next {
            let store = &mut on_page;
            let (fetched, stored) = tokio::join!(fetch(Some(after)), async move { store(results) });
            if !stored {
                return Err(stopped());
            }
            (results, next) = fetched?;
            paged.calls += 1;
        }
        if !on_page(results) {
            return Err(stopped());
        }
        Ok(paged)
    }

    /// One search page: `(results, next offset)`.
    pub async fn search_page(
        &self,
        object: &str,
        body: &Value,
    ) -> Result<(Vec<Value>, Option<u64>), HubSpotError> {
        let path = format!("/crm/v3/objects/{object}/search");
        let (_, body) = self
            .request(reqwest::Method::POST, &path, &[], Some(body), true)
            .await?;
        let (results, next) = page_of(body)?;
        let next = match next {
            None => None,
            Some(n) => Some(n.parse::<u64>().map_err(|_| {
                HubSpotError::Decode(format!("search paging.next.after is not an offset: {n}"))
            })?),
        };
        Ok((results, next))
    }

    /// The deal -> company associations of up to 100 deals (v4 batch read).
    pub async fn deal_companies(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Vec<String>)>, HubSpotError> {
        let body = json!({"inputs": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()});
        let (_, body) = self
            .request(
                reqwest::Method::POST,
                "/crm/v4/associations/deals/companies/batch/read",
                &[],
                Some(&body),
                false,
            )
            .await?;
        let results = body
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(results
            .into_iter()
            .filter_map(|r| {
                let from = id_text(r.get("from")?.get("id")?)?;
                let to = r
                    .get("to")
                    .and_then(Value::as_array)
                    .map(|to| {
                        let mut ids: Vec<(bool, String)> = to
                            .iter()
                            .filter_map(|t| {
                                let id = id_text(t.get("toObjectId")?)?;
                                let primary = t
                                    .get("associationTypes")
                                    .and_then(Value::as_array)
                                    .is_some_and(|types| {
                                        types.iter().any(|ty| {
                                            ty.get("typeId").and_then(Value::as_u64) == Some(5)
                                        })
                                    });
                                Some((!primary, id))
                            })
                            .collect();
                        ids.sort();
                        ids.into_iter().map(|(_, id)| id).collect()
                    })
                    .unwrap_or_default();
                Some((from, to))
            })
            .collect())
    }

    /// Updates companies (`batch/update`, up to 100 a call). One outcome per
    /// record, in order: `None` saved, else why not. A record neither in
    /// `results` nor in `errors` (a 207 may omit `results`) counts as not
    /// confirmed and is retried next cycle.
    pub async fn update_companies(
        &self,
        records: &[(String, Vec<(String, String)>)],
    ) -> Vec<Option<String>> {
        self.update_objects("companies", records).await
    }

    /// Updates records of an object type (`companies`, `deals`), 100 a
    /// `batch/update` call (HubSpot's maximum); one outcome per record.
    pub async fn update_objects(
        &self,
        object: &str,
        records: &[(String, Vec<(String, String)>)],
    ) -> Vec<Option<String>> {
        let path = format!("/crm/v3/objects/{object}/batch/update");
        let mut outcomes = Vec::with_capacity(records.len());
        for chunk in records.chunks(100) {
            let body = json!({"inputs": chunk.iter().map(|(id, props)| json!({
                "id": id,
                "properties": props.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>()});
            match self
                .request(reqwest::Method::POST, &path, &[], Some(&body), false)
                .await
            {
                Ok((_, body)) => outcomes.extend(batch_outcomes(chunk, &body)),
                Err(e) => outcomes.extend(chunk.iter().map(|_| Some(e.to_string()))),
            }
        }
        outcomes
    }

    /// Property names of an object type, with their types.
    pub async fn properties(&self, object: &str) -> Result<Vec<(String, String)>, HubSpotError> {
        let (_, body) = self
            .request(
                reqwest::Method::GET,
                &format!("/crm/v3/properties/{object}"),
                &[],
                None,
                false,
            )
            .await?;
        Ok(body
            .get("results")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|p| {
                        Some((
                            p.get("name")?.as_str()?.to_string(),
                            p.get("type")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Creates a company property (409: it exists already, fine).
    pub async fn create_property(
        &self,
        object: &str,
        name: &str,
        kind: PropertyKind,
    ) -> Result<(), HubSpotError> {
        let (type_, field_type) = match kind {
            PropertyKind::Number => ("number", "number"),
            PropertyKind::Text => ("string", "text"),
            PropertyKind::Bool => ("bool", "booleancheckbox"),
        };
        let mut body = json!({
            "name": name,
            "label": name.replace('_', " "),
            "type": type_,
            "fieldType": field_type,
            "groupName": if object == "deals" { "dealinformation" } else { "companyinformation" },
            "description": if object == "deals" {
                "Written by channel-sync (the channel decision on this deal)"
            } else {
                "Written by channel-sync (partner scorecard)"
            },
        });
        if kind == PropertyKind::Bool {
            body["options"] = json!([
                {"label": "Yes", "value": "true", "displayOrder": 0},
                {"label": "No", "value": "false", "displayOrder": 1},
            ]);
        }
        match self
            .request(
                reqwest::Method::POST,
                &format!("/crm/v3/properties/{object}"),
                &[],
                Some(&body),
                false,
            )
            .await
        {
            Ok(_) | Err(HubSpotError::Api { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Each pipeline's stages: (pipeline id, stage id, label, closed, won).
    pub async fn deal_stages(&self) -> Result<Vec<Stage>, HubSpotError> {
        let (_, body) = self
            .request(
                reqwest::Method::GET,
                "/crm/v3/pipelines/deals",
                &[],
                None,
                false,
            )
            .await?;
        let mut stages = Vec::new();
        for p in body
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(pipeline) = p.get("id").and_then(id_text) else {
                continue;
            };
            for s in p
                .get("stages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(id) = s.get("id").and_then(id_text) else {
                    continue;
                };
                let meta = s.get("metadata");
                let text = |k: &str| {
                    meta.and_then(|m| m.get(k)).map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                };
                let closed = text("isClosed").as_deref() == Some("true");
                let probability = text("probability").and_then(|p| p.parse::<f64>().ok());
                stages.push(Stage {
                    pipeline: pipeline.clone(),
                    id,
                    label: s.get("label").and_then(Value::as_str).map(str::to_string),
                    closed,
                    won: closed && probability.is_some_and(|p| p >= 1.0),
                });
            }
        }
        Ok(stages)
    }
}

/// A deal stage and what it means (from the pipelines API, never from names).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub pipeline: String,
    pub id: String,
    pub label: Option<String>,
    pub closed: bool,
    pub won: bool,
}

/// An id HubSpot may send as a string or a number.
pub(crate) fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `results` and `paging.next.after` of a page.
fn page_of(mut body: Value) -> Result<(Vec<Value>, Option<String>), HubSpotError> {
    let results = match body.get_mut("results").map(Value::take) {
        Some(Value::Array(r)) => r,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(HubSpotError::Decode("results is not a list".into())),
    };
    let next = body
        .get("paging")
        .and_then(|p| p.get("next"))
        .and_then(|n| n.get("after"))
        .and_then(id_text);
    Ok((results, next))
}

/// Per-record outcomes of a batch update (200 or 207).
fn batch_outcomes(chunk: &[(String, Vec<(String, String)>)], body: &Value) -> Vec<Option<String>> {
    let ok: std::collections::HashSet<String> = body
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("id").and_then(id_text))
        .collect();
    let mut failed: std::collections::HashMap<String, String> = Default::default();
    for e in body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let why = format!(
            "{}: {}",
            e.get("category").and_then(Value::as_str).unwrap_or("error"),
            e.get("message").and_then(Value::as_str).unwrap_or("")
        );
        let ids = e
            .get("context")
            .and_then(|c| c.get("ids"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for id in ids.iter().filter_map(id_text) {
            failed.insert(id, why.clone());
        }
    }
    chunk
        .iter()
        .map(|(id, _)| {
            if let Some(why) = failed.get(id) {
                Some(why.clone())
            } else if ok.contains(id) {
                None
            } else {
                Some("not confirmed by HubSpot (neither in results nor in errors)".into())
            }
        })
        .collect()
}

/// Decides what an answer means.
fn judge(path: &str, answer: Answer) -> Next<(u16, Value), HubSpotError> {
    if (200..300).contains(&answer.status) {
        if answer.body.trim().is_empty() {
            return Next::Return((answer.status, Value::Null));
        }
        return match serde_json::from_str(&answer.body) {
            Ok(v) => Next::Return((answer.status, v)),
            Err(e) => Next::Fail(HubSpotError::Decode(format!("{path}: {e}"))),
        };
    }
    let error: ErrorBody = serde_json::from_str(&answer.body).unwrap_or(ErrorBody {
        category: None,
        policy_name: None,
        message: answer.body.chars().take(200).collect(),
    });
    match answer.status {
        401 => Next::Fail(HubSpotError::Auth {
            category: error
                .category
                .unwrap_or_else(|| "INVALID_AUTHENTICATION".into()),
            message: error.message,
        }),
        429 => match error.policy_name.as_deref() {
            Some("DAILY") => Next::Fail(HubSpotError::DailyLimit(error.message)),
            policy => {
                let wait = answer
                    .retry_after()
                    .or_else(|| {
                        answer
                            .header("x-hubspot-ratelimit-interval-milliseconds")
                            .and_then(|v| v.parse::<u64>().ok())
                            .map(Duration::from_millis)
                    })
                    .unwrap_or(Duration::from_secs(10));
                Next::Wait(wait, format!("429 {}", policy.unwrap_or("rate limit")))
            }
        },
        s if s >= 500 => Next::Retry(format!("{s}: {}", error.message)),
        s => Next::Fail(HubSpotError::Api {
            status: s,
            category: error.category.unwrap_or_else(|| format!("HTTP_{s}")),
            message: error.message,
        }),
    }
}

/// When an access token issued at `issued` for `expires_in` seconds (30
/// minutes when unsaid) is refreshed: a minute before it expires, or half
/// way through a lifetime shorter than two minutes.
fn refresh_after(issued: Instant, expires_in: Option<u64>) -> Instant {
    let lifetime = Duration::from_secs(expires_in.unwrap_or(1800));
    let margin = Duration::from_secs(60).min(lifetime / 2);
    issued + lifetime - margin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_outcomes_read_results_errors_and_silence() {
        let chunk: Vec<(String, Vec<(String, String)>)> = ["1", "2", "3"]
            .iter()
            .map(|id| (id.to_string(), vec![]))
            .collect();
        let body = json!({
            "status": "COMPLETE",
            "results": [{"id": "1"}],
            "numErrors": 1,
            "errors": [{"status": "error", "category": "VALIDATION_ERROR", "message": "bad", "context": {"ids": ["2"]}}]
        });
        let out = batch_outcomes(&chunk, &body);
        assert_eq!(out[0], None);
        assert_eq!(out[1].as_deref(), Some("VALIDATION_ERROR: bad"));
        assert!(out[2].as_deref().unwrap().contains("not confirmed"));
        // A 207 without results: only the named ones failed, the rest are
        // unconfirmed, never assumed written.
        let body = json!({"status": "COMPLETE", "numErrors": 1, "errors": [{"category": "X", "message": "m", "context": {"ids": ["1"]}}]});
        let out = batch_outcomes(&chunk, &body);
        assert!(out.iter().all(Option::is_some));
    }

    #[test]
    fn a_429_waits_or_ends_by_policy() {
        let answer = |body: &str, headers: &[(&str, &str)]| {
            let mut h = reqwest::header::HeaderMap::new();
            for (k, v) in headers {
                h.insert(
                    reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            Answer {
                status: 429,
                headers: h,
                body: body.into(),
            }
        };
        let rolling = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#;
        match judge(
            "/x",
            answer(
                rolling,
                &[("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")],
            ),
        ) {
            Next::Wait(w, _) => assert_eq!(w, Duration::from_secs(10)),
            _ => panic!("should wait"),
        }
        match judge("/x", answer(rolling, &[("Retry-After", "2")])) {
            Next::Wait(w, _) => assert_eq!(w, Duration::from_secs(2)),
            _ => panic!("should wait"),
        }
        let daily = r#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}"#;
        assert!(matches!(
            judge("/x", answer(daily, &[])),
            Next::Fail(HubSpotError::DailyLimit(_))
        ));
    }

    #[test]
    fn an_access_token_is_refreshed_a_minute_before_it_expires() {
        let t = Instant::now();
        // HubSpot's real lifetime: 30 minutes.
        assert_eq!(refresh_after(t, Some(1800)), t + Duration::from_secs(1740));
        assert_eq!(refresh_after(t, None), t + Duration::from_secs(1740));
        assert_eq!(refresh_after(t, Some(121)), t + Duration::from_secs(61));
        // A lifetime under two minutes is refreshed half way.
        assert_eq!(refresh_after(t, Some(100)), t + Duration::from_secs(50));
        assert_eq!(refresh_after(t, Some(0)), t);
    }

    #[tokio::test]
    async fn an_oauth_token_is_refreshed_ahead_of_its_expiry_and_the_new_one_used() {
        use wiremock::matchers::{body_string_contains, header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let token = |access: &str, refresh: &str| {
            ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "bearer", "refresh_token": refresh, "access_token": access, "expires_in": 1800
            }))
        };
        Mock::given(method("POST"))
            .and(path("/oauth/v1/token"))
            .and(body_string_contains("refresh_token=r-1"))
            .respond_with(token("a-1", "r-2"))
            .expect(1)
            .mount(&server)
            .await;
        // The rotated refresh token is the one sent next.
        Mock::given(method("POST"))
            .and(path("/oauth/v1/token"))
            .and(body_string_contains("refresh_token=r-2"))
            .respond_with(token("a-2", "r-2"))
            .expect(1)
            .mount(&server)
            .await;
        for (access, calls) in [("a-1", 2), ("a-2", 1)] {
            Mock::given(method("GET"))
                .and(header("authorization", format!("Bearer {access}").as_str()))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
                .expect(calls)
                .mount(&server)
                .await;
        }
        let client = HubSpotClient::new(ClientConfig {
            base_url: server.uri(),
            credentials: Credentials::OAuth {
                client_id: "id".into(),
                client_secret: Secret::new("secret"),
                refresh_token: Secret::new("r-1"),
            },
            per_10s: 10_000,
            search_per_second: 100,
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        let get = || client.request(reqwest::Method::GET, "/crm/v3/owners", &[], None, false);
        get().await.unwrap();
        get().await.unwrap(); // within the token's life: no refresh
        // The token's refresh time comes (29 minutes later, without waiting
        // for them).
        let due = client.access.lock().await.as_ref().unwrap().refresh_after;
        assert!(due > Instant::now() + Duration::from_secs(1700));
        client.access.lock().await.as_mut().unwrap().refresh_after = Instant::now();
        get().await.unwrap(); // refreshed first, then sent with the new token
    }

    #[test]
    fn pages_end_where_paging_is_absent() {
        let (r, next) = page_of(json!({"results": [{"id": "1"}], "paging": {"next": {"after": "NTI1", "link": "?after=NTI1"}}})).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(next.as_deref(), Some("NTI1"));
        let (_, next) = page_of(json!({"results": []})).unwrap();
        assert_eq!(next, None);
    }
}
