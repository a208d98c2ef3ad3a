//! The machinery every upstream API client shares: one `reqwest::Client`,
//! one `governor` rate limiter, and one retry loop.
//!
//! A client (Salesforce, HubSpot, PartnerStack) says how to build a request
//! and how to judge an answer; this module sends it, waits on the limiter,
//! retries transport errors and what the client calls transient with
//! exponential backoff and jitter, waits out a rate limit for as long as the
//! upstream asks (up to a ceiling), and re-authenticates once when the
//! client asks for it. Every request is counted in the metrics under the
//! upstream's name.
//!
//! A request that is not safe to repeat (a chat message: Slack, and Teams
//! later; [`RetryPolicy::idempotent`] off) is sent again within the call
//! only when nothing can have been delivered: the connection was never
//! made, a 429, or a 5xx that says when to come back (`Retry-After`). After
//! a timeout or a lost answer it may have been delivered: the call ends
//! with [`CallError::Unconfirmed`] and the caller decides (the outbox sends
//! it once more, in a later cycle).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;

use crate::metrics::Metrics;

/// One answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Retry-After` in seconds, if given.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    }
}

/// What the client makes of an answer.
pub(crate) enum Next<T, E> {
    /// Done.
    Return(T),
    /// Failed for good (for this cycle).
    Fail(E),
    /// A transient failure: back off and try again (while attempts last).
    Retry(String),
    /// Rate limited: try again after this long (within the wait ceiling).
    Wait(Duration, String),
    /// The session is no longer valid: build the request again with a new
    /// one (once per call).
    Reauthenticate,
}

/// Why a call failed on the way, before any answer could be judged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("{upstream} could not be reached: {message}")]
    Transport {
        upstream: &'static str,
        message: String,
    },
    #[error("{upstream} kept failing ({message}); giving up for this cycle")]
    Exhausted {
        upstream: &'static str,
        message: String,
    },
    #[error("{upstream} asked to wait {wait_secs}s ({message}); waiting for the next cycle")]
    WaitTooLong {
        upstream: &'static str,
        wait_secs: u64,
        message: String,
    },
    #[error("{upstream} refused the session again right after signing in")]
    SessionRefused { upstream: &'static str },
    /// Not safe to repeat, and it may have been delivered (a timeout or a
    /// lost answer after sending).
    #[error(
        "{upstream} did not confirm ({message}); it may have been delivered, so it is not sent again in this cycle"
    )]
    Unconfirmed {
        upstream: &'static str,
        message: String,
    },
    /// Not safe to repeat, and the upstream failed without saying when to
    /// come back.
    #[error("{upstream} failed ({message}); not repeated in this cycle")]
    NotRepeated {
        upstream: &'static str,
        message: String,
    },
}

/// Retries: attempts in all, the first backoff (doubling, with up to 50%
/// jitter), the longest rate-limit wait taken within a call, and whether
/// a request may be repeated when it may have been delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_wait: Duration,
    /// Repeating the request is harmless (reads, updates to absolute
    /// values). Off for messages: then a request is repeated only when
    /// nothing can have been delivered (see the module docs).
    pub idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(250),
            max_wait: Duration::from_secs(30),
            idempotent: true,
        }
    }
}

/// An upstream API: its HTTP client, rate limiter and retry policy.
pub(crate) struct Upstream {
    pub name: &'static str,
    pub http: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    pub policy: RetryPolicy,
    metrics: Option<Arc<Metrics>>,
    /// The upstream's clock (`Date`) at the first answer since `begin_mark`.
    mark: std::sync::Mutex<Option<Option<chrono::DateTime<chrono::Utc>>>>,
}

impl Upstream {
    /// `quota` is the limiter's (e.g. `Quota::per_second(5)`); `timeout` the
    /// per-request timeout.
    pub(crate) fn new(
        name: &'static str,
        quota: Quota,
        timeout: Duration,
    ) -> anyhow::Result<Upstream> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("channel-sync/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Upstream {
            name,
            http,
            limiter: RateLimiter::direct(quota),
            policy: RetryPolicy::default(),
            metrics: None,
            mark: std::sync::Mutex::new(None),
        })
    }

    /// A quota of `n` per second (at least 1).
    pub(crate) fn per_second(n: u32) -> Quota {
        Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
    }

    pub(crate) fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    pub(crate) fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub(crate) fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// Starts watching the upstream's clock: the next answer's `Date` is
    /// kept (the moment a read began, by the upstream's own clock, so that
    /// our clock's skew never matters).
    pub(crate) fn begin_mark(&self) {
        *self.mark.lock().unwrap_or_else(|e| e.into_inner()) = Some(None);
    }

    /// The `Date` of the first answer since [`Upstream::begin_mark`].
    pub(crate) fn mark(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.mark
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .flatten()
    }

    fn note_date(&self, answer: &Answer) {
        let mut mark = self.mark.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot @ None) = mark.as_mut() {
            *slot = answer
                .header("date")
                .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
                .map(|d| d.with_timezone(&chrono::Utc));
        }
    }

    /// POSTs a form once (token endpoints: a failed sign-in is not retried,
    /// the caller reads the error body), counted in the metrics.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Answer, CallError> {
        let response = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        self.count(Some(response.status().as_u16()));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = text_of(response).await.map_err(|e| self.transport(e))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Counts a request made outside [`Upstream::call`] (token endpoints).
    pub(crate) fn count(&self, status: Option<u16>) {
        if let Some(m) = &self.metrics {
            m.request(self.name, status);
        }
    }

    /// Waits for a limiter, counting a wait in the metrics.
    async fn ready(&self, limiter: &DefaultDirectRateLimiter) {
        if limiter.check().is_err() {
            if let Some(m) = &self.metrics {
                m.rate_limited(self.name);
            }
            limiter.until_ready().await;
        }
    }

    /// Sends a request until `judge` returns or fails. `build(fresh)` makes
    /// the request (with `fresh` set after `Next::Reauthenticate`: it must
    /// get a new session first); it may fail with the client's error.
    /// Transport errors and `Next::Retry` back off and try again while
    /// attempts last.
    pub(crate) async fn call<T, E: From<CallError>, F>(
        &self,
        build: impl FnMut(bool) -> F,
        judge: impl FnMut(Answer) -> Next<T, E>,
    ) -> Result<T, E>
    where
        F: std::future::Future<Output = Result<reqwest::RequestBuilder, E>>,
    {
        self.call_via(&self.limiter, build, judge).await
    }

    /// As [`Upstream::call`], waiting on `limiter` instead of the
    /// upstream's own (Slack keeps one per webhook).
    pub(crate) async fn call_via<T, E: From<CallError>, F>(
        &self,
        limiter: &DefaultDirectRateLimiter,
        mut build: impl FnMut(bool) -> F,
        mut judge: impl FnMut(Answer) -> Next<T, E>,
    ) -> Result<T, E>
    where
        F: std::future::Future<Output = Result<reqwest::RequestBuilder, E>>,
    {
        let mut attempt = 0;
        let mut fresh = false;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let request = build(fresh).await?;
            fresh = false;
            self.ready(limiter).await;
            let sent = request.send().await;
            self.count(sent.as_ref().ok().map(|r| r.status().as_u16()));
            // Nothing reached the upstream only when no connection was made.
            let undelivered = sent.as_ref().err().is_some_and(reqwest::Error::is_connect);
            let answer = match sent {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let headers = r.headers().clone();
                    text_of(r).await.map(|body| Answer {
                        status,
                        headers,
                        body,
                    })
                }
                Err(e) => Err(e),
            };
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    let e = self.transport(e);
                    if !self.policy.idempotent && !undelivered {
                        return Err(E::from(CallError::Unconfirmed {
                            upstream: self.name,
                            message: e.to_string(),
                        }));
                    }
                    if attempt < self.policy.attempts {
                        tracing::warn!(upstream = self.name, error = %e, "Request failed; retrying.");
                        self.pause(attempt).await;
                        continue;
                    }
                    return Err(E::from(e));
                }
            };
            self.note_date(&answer);
            let retry_after = answer.retry_after();
            match judge(answer) {
                Next::Return(value) => return Ok(value),
                Next::Fail(e) => return Err(e),
                Next::Reauthenticate if !reauthenticated => {
                    tracing::info!(upstream = self.name, "Session expired; signing in again.");
                    reauthenticated = true;
                    fresh = true;
                    attempt -= 1;
                }
                Next::Reauthenticate => {
                    return Err(E::from(CallError::SessionRefused {
                        upstream: self.name,
                    }));
                }
                Next::Retry(why) if !self.policy.idempotent => match retry_after {
                    // The upstream said when to come back: it did not act.
                    Some(wait)
                        if wait <= self.policy.max_wait && attempt < self.policy.attempts =>
                    {
                        tracing::warn!(upstream = self.name, reason = %why, wait_ms = wait.as_millis() as u64, "Server error with Retry-After; retrying.");
                        tokio::time::sleep(wait).await;
                    }
                    _ => {
                        return Err(E::from(CallError::NotRepeated {
                            upstream: self.name,
                            message: why,
                        }));
                    }
                },
                Next::Retry(why) if attempt < self.policy.attempts => {
                    tracing::warn!(upstream = self.name, reason = %why, "Transient failure; retrying.");
                    self.pause(attempt).await;
                }
                Next::Retry(why) => {
                    return Err(E::from(CallError::Exhausted {
                        upstream: self.name,
                        message: why,
                    }));
                }
                Next::Wait(wait, why) if wait > self.policy.max_wait => {
                    return Err(E::from(CallError::WaitTooLong {
                        upstream: self.name,
                        wait_secs: wait.as_secs(),
                        message: why,
                    }));
                }
                Next::Wait(wait, why) if attempt < self.policy.attempts => {
                    tracing::info!(upstream = self.name, wait_ms = wait.as_millis() as u64, reason = %why, "Rate limited; waiting.");
                    if let Some(m) = &self.metrics {
                        m.rate_limited(self.name);
                    }
                    tokio::time::sleep(wait).await;
                }
                Next::Wait(_, why) => {
                    return Err(E::from(CallError::Exhausted {
                        upstream: self.name,
                        message: why,
                    }));
                }
            }
        }
    }

    fn transport(&self, e: reqwest::Error) -> CallError {
        CallError::Transport {
            upstream: self.name,
            message: e.without_url().to_string(),
        }
    }

    async fn pause(&self, attempt: u32) {
        let jitter = crate::fast::random_unit() * 0.5;
        let exp = f64::from(2u32.saturating_pow(attempt.saturating_sub(1)));
        tokio::time::sleep(self.policy.backoff.mul_f64(exp * (1.0 + jitter))).await;
    }
}

/// A response's body as text: UTF-8, with any invalid bytes replaced (as
/// `reqwest::Response::text` does without a charset). Valid UTF-8, which is
/// what every upstream sends, is checked by `String::from_utf8` with its
/// ASCII fast path: `text()` walked a million-record first sync's 500 query
/// pages byte by byte (`from_utf8_lossy`): 3% of a profile's samples, and
/// 276 ms against 18 ms for 500 pages of 2 MB (BENCHMARKS.md).
async fn text_of(response: reqwest::Response) -> reqwest::Result<String> {
    let bytes = response.bytes().await?;
    Ok(utf8_or_lossy(Vec::from(bytes)))
}

/// The bytes as a string, invalid sequences replaced by U+FFFD.
fn utf8_or_lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// Valid UTF-8 is kept as it is; invalid bytes become U+FFFD, as
    /// `reqwest`'s `text()` makes them.
    #[test]
    fn a_body_is_utf8_with_invalid_bytes_replaced() {
        assert_eq!(utf8_or_lossy("Zürich €".as_bytes().to_vec()), "Zürich €");
        let bad = b"Z\xfcrich \xe2\x82".to_vec();
        assert_eq!(utf8_or_lossy(bad.clone()), String::from_utf8_lossy(&bad));
        assert_eq!(utf8_or_lossy(bad), "Z\u{FFFD}rich \u{FFFD}");
    }

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Call(#[from] CallError),
        #[error("refused: {0}")]
        Refused(u16),
    }

    fn upstream() -> Upstream {
        Upstream::new("test", Upstream::per_second(1000), Duration::from_secs(5))
            .unwrap()
            .with_policy(RetryPolicy {
                attempts: 3,
                backoff: Duration::from_millis(10),
                max_wait: Duration::from_secs(2),
                idempotent: true,
            })
    }

    fn judge(a: Answer) -> Next<String, TestError> {
        match a.status {
            200 => Next::Return(a.body),
            401 => Next::Reauthenticate,
            429 => Next::Wait(a.retry_after().unwrap_or(Duration::ZERO), "429".into()),
            s if s >= 500 => Next::Retry(format!("{s}")),
            s => Next::Fail(TestError::Refused(s)),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_given_up() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(&server)
            .await;
        let up = upstream();
        let url = server.uri();
        let got = up
            .call(|_| async { Ok::<_, TestError>(up.http.get(&url)) }, judge)
            .await
            .unwrap();
        assert_eq!(got, "ok");

        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(500))
            .expect(3)
            .mount(&server)
            .await;
        let url = server.uri();
        let e = up
            .call(|_| async { Ok::<_, TestError>(up.http.get(&url)) }, judge)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("kept failing"), "{e}");
    }

    #[tokio::test]
    async fn retry_after_is_waited_out_unless_too_long() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(&server)
            .await;
        let metrics = Arc::new(Metrics::new());
        let up = upstream().with_metrics(Some(metrics.clone()));
        let url = server.uri();
        let started = std::time::Instant::now();
        up.call(|_| async { Ok::<_, TestError>(up.http.get(&url)) }, judge)
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        // The 429 waited out is counted as a rate-limiter wait, once (the
        // limiter itself, at 1000 a second, never makes these two calls wait).
        let text = metrics.render();
        assert!(
            text.contains("channel_sync_rate_limiter_waits_total{upstream=\"test\"} 1\n"),
            "{text}"
        );

        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "60"))
            .expect(1)
            .mount(&server)
            .await;
        let url = server.uri();
        let e = up
            .call(|_| async { Ok::<_, TestError>(up.http.get(&url)) }, judge)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("waiting for the next cycle"), "{e}");
    }

    /// A message is repeated within the call only when nothing can have
    /// been delivered.
    #[tokio::test]
    async fn a_request_not_safe_to_repeat_is_repeated_only_when_undelivered() {
        let up = Upstream::new(
            "test",
            Upstream::per_second(1000),
            Duration::from_millis(300),
        )
        .unwrap()
        .with_policy(RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(2),
            idempotent: false,
        });
        let call = |url: String| {
            let up = &up;
            async move {
                up.call(
                    |_| {
                        let r = up.http.post(&url);
                        async { Ok::<_, TestError>(r) }
                    },
                    judge,
                )
                .await
            }
        };
        // A timeout after sending: one request, unconfirmed.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(600)))
            .mount(&server)
            .await;
        let e = call(server.uri()).await.unwrap_err();
        assert!(e.to_string().contains("may have been delivered"), "{e}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        // A 5xx without Retry-After: one request.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        let e = call(server.uri()).await.unwrap_err();
        assert!(e.to_string().contains("not repeated"), "{e}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        // A 503 with Retry-After, then ok: repeated.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "0"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(&server)
            .await;
        assert_eq!(call(server.uri()).await.unwrap(), "ok");
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
        // Connection refused: nothing delivered, repeated until attempts end.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let e = call(url).await.unwrap_err();
        assert!(e.to_string().contains("could not be reached"), "{e}");
    }

    #[tokio::test]
    async fn reauthentication_happens_once_with_a_fresh_request() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let up = upstream();
        let url = server.uri();
        let mut fresh_builds = 0;
        let e = up
            .call(
                |fresh| {
                    fresh_builds += usize::from(fresh);
                    let request = up.http.get(&url);
                    async { Ok::<_, TestError>(request) }
                },
                judge,
            )
            .await
            .unwrap_err();
        assert_eq!(fresh_builds, 1);
        assert!(e.to_string().contains("refused the session again"), "{e}");
    }
}
