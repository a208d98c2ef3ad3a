//! Salesforce REST: the typed client the Salesforce connector is built on.
//!
//! - OAuth 2.0 token flows against `login_url` (or the org's My Domain host):
//!   client credentials, JWT bearer (an RS256 assertion signed with the key
//!   at `private_key_path`), and refresh token with rotation (a refresh that
//!   returns a new refresh token replaces the old one, and the
//!   [`RotationKeeper`] stores it durably the moment it arrives, before the
//!   new access token is used: the old token is dead already, so a crash
//!   after this point must not lose the new one;
//!   [`SalesforceClient::rotated_refresh_token`] hands over one the keeper
//!   could not store). The `instance_url` of the token response is the base
//!   of every later call.
//! - SOQL through `/services/data/{version}/query` (or `queryAll`, which also
//!   returns deleted records), asking for `batchSize=2000` pages and following
//!   `nextRecordsUrl`.
//! - `401 INVALID_SESSION_ID` at any point, in the middle of paging too:
//!   authenticate again and repeat the same request, so no page is lost or
//!   read twice.
//! - Auth errors (`invalid_grant`, `invalid_client`, ...) end the call with a
//!   clear message; `REQUEST_LIMIT_EXCEEDED` stops at once (Salesforce sends no
//!   Retry-After for it); 5xx and transport errors are retried with backoff.
//! - `Sforce-Limit-Info: api-usage=used/max` is recorded on every response,
//!   and no request is sent once `max_daily_share` of the daily allocation
//!   is used ([`SalesforceError::Budget`]).
//!
//! Secrets (client secret, refresh and access tokens) never appear in errors
//! or logs.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::Mutex;

use crate::config::Secret;
use crate::http::{Answer, CallError, Next, Upstream};
use crate::metrics::Metrics;

/// How the client authenticates (`crm.salesforce.auth`).
#[derive(Debug, Clone)]
pub enum AuthFlow {
    ClientCredentials,
    /// JWT bearer: `username` is the assertion's subject; `audience` is
    /// `https://login.salesforce.com`, `https://test.salesforce.com` or the
    /// community URL.
    JwtBearer {
        username: String,
        audience: String,
        key: SigningKey,
    },
    RefreshToken,
}

/// An RS256 private key (from `private_key_path`), never printed.
#[derive(Clone)]
pub struct SigningKey(jsonwebtoken::EncodingKey);

impl SigningKey {
    /// Reads a PEM RSA private key (PKCS#1 or PKCS#8).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, String> {
        jsonwebtoken::EncodingKey::from_rsa_pem(pem)
            .map(SigningKey)
            .map_err(|e| format!("not an RSA private key in PEM form: {e}"))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://login.salesforce.com`, `https://test.salesforce.com`, or the
    /// org's My Domain URL (required for client credentials).
    pub login_url: String,
    /// e.g. `v62.0`.
    pub api_version: String,
    pub flow: AuthFlow,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    /// Requests per second (Salesforce meters per day; this keeps bursts polite).
    pub per_second: u32,
    /// The share of the org's daily API allocation this client may bring
    /// usage up to (`crm.salesforce.max_daily_share`).
    pub max_daily_share: f64,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    #[error("Salesforce authentication failed: {error}: {description}")]
    Auth { error: String, description: String },
    #[error("Salesforce API request limit reached ({0}); waiting for the next cycle")]
    LimitExceeded(String),
    #[error(
        "Salesforce API usage is {used} of {max} calls today, at or above crm.salesforce.max_daily_share ({share}); stopping until it falls"
    )]
    Budget { used: u64, max: u64, share: f64 },
    #[error("Salesforce answered {status}: {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error(transparent)]
    Upstream(#[from] CallError),
    #[error("unexpected response from Salesforce: {0}")]
    Decode(String),
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
    refresh_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "errorCode")]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// One page of a query. Its records stay raw JSON text, borrowed from the
/// body, until the reader takes out the fields it keeps: a page of 2,000
/// records is parsed once, with no map built per record.
#[derive(Debug, Deserialize)]
struct QueryPage<'a> {
    #[serde(default)]
    done: bool,
    #[serde(rename = "nextRecordsUrl")]
    next_records_url: Option<String>,
    #[serde(default, borrow)]
    records: Vec<&'a RawValue>,
}

/// A query page fetched on its own task; dropping it stops the fetch.
struct Prefetch {
    task: tokio::task::JoinHandle<Result<String, SalesforceError>>,
    upstream: &'static str,
}

impl Prefetch {
    fn start(client: &Arc<SalesforceClient>, path: String) -> Prefetch {
        let client = Arc::clone(client);
        Prefetch {
            upstream: client.upstream.name,
            task: tokio::spawn(async move { client.get_text(&path, &[]).await }),
        }
    }

    async fn finish(mut self) -> Result<String, SalesforceError> {
        (&mut self.task).await.map_err(|e| {
            SalesforceError::Upstream(CallError::Transport {
                upstream: self.upstream,
                message: format!("the page's fetch stopped: {e}"),
            })
        })?
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One record's result in an sObject Collections response.
#[derive(Debug, Deserialize)]
struct SaveResult {
    success: bool,
    #[serde(default)]
    errors: Vec<SaveError>,
}

#[derive(Debug, Deserialize)]
struct SaveError {
    #[serde(rename = "statusCode", default)]
    status_code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    fields: Vec<String>,
}

impl SaveResult {
    fn outcome(self) -> Option<String> {
        if self.success {
            return None;
        }
        let why: Vec<String> = self
            .errors
            .iter()
            .map(|e| {
                if e.fields.is_empty() {
                    format!("{}: {}", e.status_code, e.message)
                } else {
                    format!("{}: {} ({})", e.status_code, e.message, e.fields.join(", "))
                }
            })
            .collect();
        Some(if why.is_empty() {
            "not saved".into()
        } else {
            why.join("; ")
        })
    }
}

/// What a paged query cost, and when Salesforce took its snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Queried {
    /// Calls made: the first page and each further one.
    pub pages: u64,
    /// Salesforce's clock (`Date`) when the first page answered: every
    /// change committed later has a later `SystemModstamp`, less the
    /// length of a transaction.
    pub started: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone)]
struct Session {
    access_token: Secret,
    instance_url: String,
}

/// Stores a rotated refresh token durably (its own committed transaction);
/// an error says why it could not.
pub(crate) type RotationKeeper = Box<dyn Fn(&Secret) -> Result<(), String> + Send + Sync>;

pub struct SalesforceClient {
    upstream: Upstream,
    keeper: Option<RotationKeeper>,
    config: ClientConfig,
    session: Mutex<Option<Session>>,
    refresh_token: Mutex<Option<Secret>>,
    rotated: Mutex<Option<Secret>>,
    usage: std::sync::Mutex<Option<(u64, u64)>>,
}

/// Parses `api-usage=18/5000` out of a `Sforce-Limit-Info` header.
fn parse_usage(header: &str) -> Option<(u64, u64)> {
    let usage = header
        .split(',')
        .find_map(|part| part.trim().strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

impl SalesforceClient {
    pub fn new(config: ClientConfig) -> anyhow::Result<SalesforceClient> {
        let upstream = Upstream::new(
            "salesforce",
            Upstream::per_second(config.per_second),
            config.timeout,
        )?;
        Ok(SalesforceClient {
            upstream,
            keeper: None,
            refresh_token: Mutex::new(config.refresh_token.clone()),
            config,
            session: Mutex::new(None),
            rotated: Mutex::new(None),
            usage: std::sync::Mutex::new(None),
        })
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.upstream = self.upstream.with_metrics(Some(metrics));
        self
    }

    /// Stores every rotated refresh token with `keeper` as it arrives.
    pub fn with_rotation_keeper(mut self, keeper: RotationKeeper) -> Self {
        self.keeper = Some(keeper);
        self
    }

    /// The last `api-usage` Salesforce reported: (used, daily allocation).
    pub fn api_usage(&self) -> Option<(u64, u64)> {
        *self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The org's instance URL, once signed in.
    pub async fn instance_url(&self) -> Option<String> {
        self.session
            .lock()
            .await
            .as_ref()
            .map(|s| s.instance_url.clone())
    }

    /// Uses a refresh token kept from an earlier rotation instead of the
    /// configured one.
    pub async fn use_refresh_token(&self, token: Secret) {
        *self.refresh_token.lock().await = Some(token);
    }

    /// A refresh token Salesforce rotated in, once: the caller must keep it
    /// (the old one no longer works).
    pub async fn rotated_refresh_token(&self) -> Option<Secret> {
        self.rotated.lock().await.take()
    }

    fn token_url(&self) -> String {
        format!(
            "{}/services/oauth2/token",
            self.config.login_url.trim_end_matches('/')
        )
    }

    /// Gets a new access token.
    async fn authenticate(&self) -> Result<Session, SalesforceError> {
        let mut form: Vec<(&str, String)> = Vec::new();
        if !matches!(self.config.flow, AuthFlow::JwtBearer { .. }) {
            form.push(("client_id", self.config.client_id.clone()));
            if let Some(secret) = &self.config.client_secret {
                form.push(("client_secret", secret.expose().to_string()));
            }
        }
        match &self.config.flow {
            AuthFlow::ClientCredentials => form.push(("grant_type", "client_credentials".into())),
            AuthFlow::JwtBearer {
                username,
                audience,
                key,
            } => {
                let claims = Claims {
                    iss: &self.config.client_id,
                    sub: username,
                    aud: audience,
                    exp: chrono::Utc::now().timestamp() + 180,
                };
                let assertion = jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                    &claims,
                    &key.0,
                )
                .map_err(|e| SalesforceError::Auth {
                    error: "jwt_signing_failed".into(),
                    description: e.to_string(),
                })?;
                form.push((
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                ));
                form.push(("assertion", assertion));
            }
            AuthFlow::RefreshToken => {
                let token = self.refresh_token.lock().await.clone().ok_or_else(|| {
                    SalesforceError::Auth {
                        error: "missing_refresh_token".into(),
                        description: "crm.salesforce.refresh_token is not set".into(),
                    }
                })?;
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", token.expose().to_string()));
            }
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = self.upstream.post_form(&self.token_url(), &form).await?;
        let (status, body) = (answer.status, answer.body);
        if !(200..300).contains(&status) {
            let e: TokenError = serde_json::from_str(&body).unwrap_or(TokenError {
                error: format!("http_{status}"),
                error_description: body.chars().take(200).collect(),
            });
            return Err(SalesforceError::Auth {
                error: e.error,
                description: e.error_description,
            });
        }
        let token: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| SalesforceError::Decode(format!("token response: {e}")))?;
        if let Some(new) = token.refresh_token {
            let new = Secret::new(new);
            *self.refresh_token.lock().await = Some(new.clone());
            // Kept before the session is used: Salesforce has invalidated
            // the old token, so this one must survive whatever happens next.
            let kept = match &self.keeper {
                Some(keep) => keep(&new),
                None => Err("no keeper".into()),
            };
            match kept {
                Ok(()) => tracing::info!(
                    "Salesforce rotated the refresh token; the new one is stored (encrypted) in the state file."
                ),
                Err(e) => {
                    if self.keeper.is_some() {
                        tracing::error!(error = %e, "Salesforce rotated the refresh token and storing it failed; trying again at the end of the cycle.");
                    }
                    *self.rotated.lock().await = Some(new);
                }
            }
        }
        crate::crash::crash_point("after-token");
        tracing::debug!(instance = %token.instance_url, "Salesforce session opened.");
        Ok(Session {
            access_token: Secret::new(token.access_token),
            instance_url: token.instance_url.trim_end_matches('/').to_string(),
        })
    }

    /// The current session, opening one if needed.
    async fn session(&self) -> Result<Session, SalesforceError> {
        let mut held = self.session.lock().await;
        if let Some(s) = held.as_ref() {
            return Ok(s.clone());
        }
        let s = self.authenticate().await?;
        *held = Some(s.clone());
        Ok(s)
    }

    /// GETs a path of the instance (a `/services/...` path, as
    /// `nextRecordsUrl` gives), with the query pairs.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, SalesforceError> {
        self.send(reqwest::Method::GET, path, query, None).await
    }

    /// As [`Self::get`], the body left as text (a query page, which the
    /// caller parses borrowing from it).
    async fn get_text(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<String, SalesforceError> {
        self.send_as(reqwest::Method::GET, path, query, None, Ok)
            .await
    }

    /// Sends one request to the instance; re-authenticates once on an
    /// expired session and retries server errors with backoff. Only requests
    /// that are safe to repeat come here (reads, and updates that set
    /// absolute values).
    async fn send(
        &self,
        verb: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, SalesforceError> {
        self.send_as(verb, path, query, body, |text| {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        })
        .await
    }

    /// As [`Self::send`], with the body of a successful answer decoded by
    /// `decode` (its error is the answer's decode error).
    async fn send_as<T>(
        &self,
        verb: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        decode: fn(String) -> Result<T, String>,
    ) -> Result<T, SalesforceError> {
        let verb = &verb;
        self.upstream
            .call(
                |fresh| async move {
                    self.check_budget()?;
                    if fresh {
                        *self.session.lock().await = None;
                    }
                    let session = self.session().await?;
                    let mut request = self
                        .upstream
                        .http
                        .request(verb.clone(), format!("{}{path}", session.instance_url))
                        .query(query)
                        .bearer_auth(session.access_token.expose())
                        .header("Sforce-Query-Options", "batchSize=2000");
                    if let Some(body) = body {
                        request = request.json(body);
                    }
                    Ok(request)
                },
                |answer| self.judge(path, answer, decode),
            )
            .await
    }

    /// Reads the limit and clock headers every answer carries, then decides.
    fn judge<T>(
        &self,
        path: &str,
        answer: Answer,
        decode: fn(String) -> Result<T, String>,
    ) -> Next<T, SalesforceError> {
        if let Some(usage) = answer.header("Sforce-Limit-Info").and_then(parse_usage) {
            *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage);
            if let Some(m) = self.upstream.metrics() {
                m.api_remaining
                    .get_or_create(&crate::metrics::UpstreamLabel {
                        upstream: "salesforce".into(),
                    })
                    .set(usage.1.saturating_sub(usage.0) as i64);
            }
        }
        if (200..300).contains(&answer.status) {
            return match decode(answer.body) {
                Ok(v) => Next::Return(v),
                Err(e) => Next::Fail(SalesforceError::Decode(format!("{path}: {e}"))),
            };
        }
        // Errors come back as a JSON array of {message, errorCode}.
        let error = serde_json::from_str::<Vec<ApiError>>(&answer.body)
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or(ApiError {
                error_code: format!("HTTP_{}", answer.status),
                message: answer.body.chars().take(200).collect(),
            });
        match (answer.status, error.error_code.as_str()) {
            (401, _) => Next::Reauthenticate,
            (_, "REQUEST_LIMIT_EXCEEDED") => {
                Next::Fail(SalesforceError::LimitExceeded(error.message))
            }
            (s, code) if s >= 500 => Next::Retry(format!("{s} {code}: {}", error.message)),
            (s, _) => Next::Fail(SalesforceError::Api {
                status: s,
                code: error.error_code,
                message: error.message,
            }),
        }
    }

    /// Refuses to send once the last reported usage reached the share of
    /// the daily allocation this client may use.
    fn check_budget(&self) -> Result<(), SalesforceError> {
        if let Some((used, max)) = self.api_usage() {
            let share = self.config.max_daily_share;
            if max > 0 && used as f64 >= share * max as f64 {
                return Err(SalesforceError::Budget { used, max, share });
            }
        }
        Ok(())
    }

    /// Updates records through sObject Collections (`PATCH
    /// /composite/sobjects`, up to 200 a request, `allOrNone=false`). One
    /// outcome per record, in order: `None` saved, else why not. A request
    /// that fails as a whole fails each of its records.
    pub async fn update_records(
        &self,
        object: &str,
        records: &[(String, Vec<(String, Value)>)],
    ) -> Vec<Option<String>> {
        let path = format!(
            "/services/data/{}/composite/sobjects",
            self.config.api_version
        );
        let mut outcomes = Vec::with_capacity(records.len());
        for chunk in records.chunks(200) {
            let body = serde_json::json!({
                "allOrNone": false,
                "records": chunk.iter().map(|(id, fields)| {
                    let mut record = serde_json::Map::new();
                    record.insert("attributes".into(), serde_json::json!({"type": object}));
                    record.insert("id".into(), Value::String(id.clone()));
                    for (field, value) in fields {
                        record.insert(field.clone(), value.clone());
                    }
                    Value::Object(record)
                }).collect::<Vec<_>>(),
            });
            match self
                .send(reqwest::Method::PATCH, &path, &[], Some(&body))
                .await
                .and_then(|v| {
                    serde_json::from_value::<Vec<SaveResult>>(v)
                        .map_err(|e| SalesforceError::Decode(format!("save results: {e}")))
                }) {
                Ok(results) if results.len() == chunk.len() => {
                    outcomes.extend(results.into_iter().map(SaveResult::outcome));
                }
                Ok(results) => {
                    let why = format!("{} results for {} records", results.len(), chunk.len());
                    outcomes.extend(chunk.iter().map(|_| Some(why.clone())));
                }
                Err(e) => outcomes.extend(chunk.iter().map(|_| Some(e.to_string()))),
            }
        }
        outcomes
    }

    /// Runs a SOQL query and returns every record of every page. With `all`,
    /// through `queryAll`, which includes deleted and archived records.
    pub async fn query(
        self: &Arc<Self>,
        soql: &str,
        all: bool,
    ) -> Result<Vec<Value>, SalesforceError> {
        let mut records = Vec::new();
        self.query_pages(soql, all, |page| {
            for raw in page {
                records.push(
                    serde_json::from_str(raw.get())
                        .map_err(|e| SalesforceError::Decode(format!("query record: {e}")))?,
                );
            }
            Ok(())
        })
        .await?;
        Ok(records)
    }

    /// Runs a SOQL query and hands each page's records, as raw JSON, to
    /// `on_page` as it arrives (so a million records never sit in memory
    /// at once). Each page is one call; a failed page is retried, never
    /// skipped.
    pub async fn query_pages(
        self: &Arc<Self>,
        soql: &str,
        all: bool,
        mut on_page: impl FnMut(Vec<&RawValue>) -> Result<(), SalesforceError>,
    ) -> Result<Queried, SalesforceError> {
        let resource = if all { "queryAll" } else { "query" };
        let first = format!("/services/data/{}/{resource}", self.config.api_version);
        self.upstream.begin_mark();
        let mut body = self.get_text(&first, &[("q", soql)]).await?;
        let started = self.upstream.mark();
        let mut pages = 1;
        loop {
            let page: QueryPage = serde_json::from_str(&body)
                .map_err(|e| SalesforceError::Decode(format!("query page: {e}")))?;
            if page.done {
                on_page(page.records)?;
                return Ok(Queried { pages, started });
            }
            let Some(next) = page.next_records_url else {
                return Err(SalesforceError::Decode(
                    "a page that is not the last has no nextRecordsUrl".into(),
                ));
            };
            // Pipelined: the next page is fetched on a task of its own (the
            // runtime's other worker) while this one is stored here, so its
            // request, its transfer and the upstream's work overlap the
            // store. A store that fails stops the read and drops the fetch;
            // a fetch that fails leaves the stored pages, as before.
            let fetch = Prefetch::start(self, next);
            on_page(page.records)?;
            body = fetch.finish().await?;
            pages += 1;
        }
    }

    /// The fields of an object, by API name, with their types (`describe`).
    pub async fn describe(&self, object: &str) -> Result<Vec<(String, String)>, SalesforceError> {
        #[derive(Deserialize)]
        struct Field {
            name: String,
            #[serde(rename = "type")]
            kind: String,
        }
        #[derive(Deserialize)]
        struct Describe {
            fields: Vec<Field>,
        }
        let path = format!(
            "/services/data/{}/sobjects/{object}/describe",
            self.config.api_version
        );
        let d: Describe = serde_json::from_value(self.get(&path, &[]).await?)
            .map_err(|e| SalesforceError::Decode(format!("describe {object}: {e}")))?;
        Ok(d.fields.into_iter().map(|f| (f.name, f.kind)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_string_contains, header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/salesforce")
            .join(format!("{name}.json"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn config(server: &MockServer, flow: AuthFlow) -> ClientConfig {
        ClientConfig {
            login_url: server.uri(),
            api_version: "v62.0".into(),
            flow,
            client_id: "client-id".into(),
            client_secret: Some(Secret::new("client-secret")),
            refresh_token: Some(Secret::new("refresh-1")),
            per_second: 1000,
            max_daily_share: 0.5,
            timeout: Duration::from_secs(5),
        }
    }

    /// A token response pointing the instance at the fake server itself.
    fn token(server: &MockServer, access: &str, refresh: Option<&str>) -> ResponseTemplate {
        let mut body: Value = serde_json::from_str(&fixture("auth_success_response")).unwrap();
        body["instance_url"] = Value::String(server.uri());
        body["access_token"] = Value::String(access.into());
        if let Some(r) = refresh {
            body["refresh_token"] = Value::String(r.into());
        }
        ResponseTemplate::new(200).set_body_json(body)
    }

    /// Page 1 of the fixture, pointing at page 2, and page 2, the last.
    /// The token endpoint, answering `access-1` to any sign-in.
    async fn mount_token(server: &MockServer) {
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(token(server, "access-1", None))
            .mount(server)
            .await;
    }

    /// A client signing in with client credentials.
    fn client(server: &MockServer) -> Arc<SalesforceClient> {
        Arc::new(SalesforceClient::new(config(server, AuthFlow::ClientCredentials)).unwrap())
    }

    async fn mount_two_pages(server: &MockServer, access: &str) {
        let first = fixture("query_paginated_first_page_response").replace(
            "/services/data/v26.0/query/01gD",
            "/services/data/v62.0/query/01gD-2000",
        );
        Mock::given(method("GET"))
            .and(path("/services/data/v62.0/query"))
            .and(query_param("q", "SELECT Id FROM Account"))
            .and(header("authorization", format!("Bearer {access}").as_str()))
            .and(header("sforce-query-options", "batchSize=2000"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("Sforce-Limit-Info", "api-usage=18/5000")
                    .set_body_string(first),
            )
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path("/services/data/v62.0/query/01gD-2000"))
            .and(header("authorization", format!("Bearer {access}").as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(fixture("query_paginated_last_page_response")),
            )
            .mount(server)
            .await;
    }

    fn labels(records: &[Value]) -> Vec<String> {
        records
            .iter()
            .map(|r| r["Text_Label"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[tokio::test]
    async fn client_credentials_then_every_page() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .and(body_string_contains("grant_type=client_credentials"))
            .and(body_string_contains("client_id=client-id"))
            .and(body_string_contains("client_secret=client-secret"))
            .respond_with(token(&server, "access-1", None))
            .expect(1)
            .mount(&server)
            .await;
        mount_two_pages(&server, "access-1").await;
        let client = client(&server);
        let records = client.query("SELECT Id FROM Account", false).await.unwrap();
        assert_eq!(labels(&records), ["First Page", "Last Page"]);
        assert_eq!(client.api_usage(), Some((18, 5000)));
    }

    /// Counts the requests it answers, then answers like `inner`.
    struct Counted(
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        ResponseTemplate,
    );

    impl wiremock::Respond for Counted {
        fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.1.clone()
        }
    }

    /// A page that cannot be stored stops the read there: no later page is
    /// handed over, and the store's error is the read's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_that_cannot_be_stored_stops_the_read() {
        let server = MockServer::start().await;
        mount_token(&server).await;
        mount_two_pages(&server, "access-1").await;
        let client = client(&server);
        let mut handed = 0;
        let err = client
            .query_pages("SELECT Id FROM Account", false, |records| {
                handed += records.len();
                Err(SalesforceError::Decode("the disk is full".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(handed, 1, "the first page's one record, and no more");
        assert!(
            matches!(&err, SalesforceError::Decode(m) if m == "the disk is full"),
            "{err}"
        );
    }

    /// The next page is asked for while the current one is being stored:
    /// storing page 1 waits (up to 5 s) for the request for page 2 to reach
    /// the server; read one page after another, it never would.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_next_page_is_fetched_while_this_one_is_stored() {
        let server = MockServer::start().await;
        mount_token(&server).await;
        let first = fixture("query_paginated_first_page_response").replace(
            "/services/data/v26.0/query/01gD",
            "/services/data/v62.0/query/01gD-2000",
        );
        Mock::given(method("GET"))
            .and(path("/services/data/v62.0/query"))
            .respond_with(ResponseTemplate::new(200).set_body_string(first))
            .mount(&server)
            .await;
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        Mock::given(method("GET"))
            .and(path("/services/data/v62.0/query/01gD-2000"))
            .respond_with(Counted(
                asked.clone(),
                ResponseTemplate::new(200)
                    .set_body_string(fixture("query_paginated_last_page_response")),
            ))
            .mount(&server)
            .await;
        let client = client(&server);
        let mut seen_while_storing = Vec::new();
        let mut pages = 0;
        let queried = client
            .query_pages("SELECT Id FROM Account", false, |records| {
                pages += 1;
                assert!(!records.is_empty());
                if pages == 1 {
                    // Blocking on purpose, as storing into SQLite does.
                    let until = std::time::Instant::now() + Duration::from_secs(5);
                    while asked.load(std::sync::atomic::Ordering::SeqCst) == 0
                        && std::time::Instant::now() < until
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    seen_while_storing.push(asked.load(std::sync::atomic::Ordering::SeqCst));
                }
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(queried.pages, 2);
        assert_eq!(pages, 2);
        assert_eq!(
            seen_while_storing,
            [1],
            "page 2 was requested while page 1 was being stored"
        );
    }

    #[tokio::test]
    async fn an_expired_session_mid_paging_loses_and_repeats_no_page() {
        let server = MockServer::start().await;
        // First token, then (after the expiry) a second one.
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(token(&server, "access-1", None))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(token(&server, "access-2", None))
            .expect(1)
            .mount(&server)
            .await;
        // Page 1 with the first session; page 2 refuses it, then serves the second.
        mount_two_pages(&server, "access-2").await;
        let first = fixture("query_paginated_first_page_response").replace(
            "/services/data/v26.0/query/01gD",
            "/services/data/v62.0/query/01gD-2000",
        );
        Mock::given(method("GET"))
            .and(path("/services/data/v62.0/query"))
            .and(header("authorization", "Bearer access-1"))
            .respond_with(ResponseTemplate::new(200).set_body_string(first))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/services/data/v62.0/query/01gD-2000"))
            .and(header("authorization", "Bearer access-1"))
            .respond_with(
                ResponseTemplate::new(401).set_body_string(fixture("expired_session_response")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let client = client(&server);
        let records = client.query("SELECT Id FROM Account", false).await.unwrap();
        assert_eq!(
            labels(&records),
            ["First Page", "Last Page"],
            "each page once"
        );
    }

    #[tokio::test]
    async fn a_rotated_refresh_token_is_used_and_handed_over() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains("refresh_token=refresh-1"))
            .respond_with(token(&server, "access-1", Some("refresh-2")))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(body_string_contains("refresh_token=refresh-2"))
            .respond_with(token(&server, "access-2", None))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(header("authorization", "Bearer access-1"))
            .respond_with(
                ResponseTemplate::new(401).set_body_string(fixture("expired_session_response")),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(header("authorization", "Bearer access-2"))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(fixture("query_empty_response")),
            )
            .mount(&server)
            .await;
        let client =
            Arc::new(SalesforceClient::new(config(&server, AuthFlow::RefreshToken)).unwrap());
        let records = client.query("SELECT Id FROM User", false).await.unwrap();
        assert!(records.is_empty());
        let rotated = client.rotated_refresh_token().await.unwrap();
        assert_eq!(rotated.expose(), "refresh-2");
        assert!(
            client.rotated_refresh_token().await.is_none(),
            "handed over once"
        );
    }

    #[tokio::test]
    async fn an_auth_error_is_clear_and_holds_no_secret() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(400).set_body_string(fixture("auth_error_response")),
            )
            .mount(&server)
            .await;
        let client = client(&server);
        let e = client
            .query("SELECT Id FROM Account", false)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert_eq!(
            text,
            "Salesforce authentication failed: invalid_grant: authentication failure - Invalid Password"
        );
        assert!(!text.contains("client-secret"));
    }

    #[tokio::test]
    async fn api_errors_limits_and_server_errors() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(token(&server, "access-1", None))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(query_param("q", "SELECT Nope FROM Account"))
            .respond_with(
                ResponseTemplate::new(400).set_body_string(fixture("query_error_response")),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(query_param("q", "SELECT Id FROM Lead"))
            .respond_with(ResponseTemplate::new(403).set_body_string(
                r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
            ))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(query_param("q", "SELECT Id FROM Contact"))
            .respond_with(
                ResponseTemplate::new(503)
                    .set_body_string(r#"[{"message":"down","errorCode":"SERVER_UNAVAILABLE"}]"#),
            )
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(query_param("q", "SELECT Id FROM Contact"))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(fixture("query_success_response")),
            )
            .mount(&server)
            .await;
        let client = client(&server);
        let e = client
            .query("SELECT Nope FROM Account", false)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SalesforceError::Api { status: 400, code, .. } if code == "INVALID_FIELD"),
            "{e}"
        );
        let e = client
            .query("SELECT Id FROM Lead", false)
            .await
            .unwrap_err();
        assert!(matches!(e, SalesforceError::LimitExceeded(_)), "{e}");
        let records = client.query("SELECT Id FROM Contact", false).await.unwrap();
        assert_eq!(records.len(), 1, "retried past two 503s");
    }

    #[tokio::test]
    async fn jwt_bearer_sends_a_signed_assertion_and_no_secret() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .and(body_string_contains(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
            ))
            .respond_with(token(&server, "access-1", None))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(header("authorization", "Bearer access-1"))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(fixture("query_empty_response")),
            )
            .mount(&server)
            .await;
        let key = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/salesforce/test_jwt_key.pem"),
        )
        .unwrap();
        let mut cfg = config(&server, AuthFlow::ClientCredentials);
        cfg.flow = AuthFlow::JwtBearer {
            username: "ops@example.com".into(),
            audience: "https://login.salesforce.com".into(),
            key: SigningKey::from_pem(&key).unwrap(),
        };
        let client = Arc::new(SalesforceClient::new(cfg).unwrap());
        client.query("SELECT Id FROM User", false).await.unwrap();

        let requests = server.received_requests().await.unwrap();
        let body = String::from_utf8(requests[0].body.clone()).unwrap();
        assert!(!body.contains("client_secret"), "{body}");
        let assertion = body
            .split('&')
            .find_map(|p| p.strip_prefix("assertion="))
            .unwrap();
        let public = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/salesforce/test_jwt_key.pub.pem"),
        )
        .unwrap();
        #[derive(Deserialize)]
        struct Seen {
            iss: String,
            sub: String,
            aud: String,
            exp: i64,
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["https://login.salesforce.com"]);
        let seen = jsonwebtoken::decode::<Seen>(
            assertion,
            &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(seen.iss, "client-id");
        assert_eq!(seen.sub, "ops@example.com");
        assert_eq!(seen.aud, "https://login.salesforce.com");
        let ahead = seen.exp - chrono::Utc::now().timestamp();
        assert!((60..=300).contains(&ahead), "exp {ahead}s ahead");
    }

    #[test]
    fn a_key_that_is_not_rsa_pem_is_refused() {
        assert!(SigningKey::from_pem(b"not a key").is_err());
    }

    #[tokio::test]
    async fn no_request_goes_out_past_the_daily_share() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(token(&server, "access-1", None))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("Sforce-Limit-Info", "api-usage=50/100")
                    .set_body_string(fixture("query_empty_response")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let client = client(&server);
        client.query("SELECT Id FROM User", false).await.unwrap();
        let e = client
            .query("SELECT Id FROM User", false)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                SalesforceError::Budget {
                    used: 50,
                    max: 100,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("max_daily_share"), "{e}");
    }

    #[test]
    fn the_limit_header_is_read() {
        assert_eq!(parse_usage("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(
            parse_usage("per-app-api-usage=1/10, api-usage=7/15000"),
            Some((7, 15000))
        );
        assert_eq!(parse_usage("nonsense"), None);
    }
}
