//! The console (issue 16): server-rendered pages for revops on their own
//! listener (`console.listen`), off unless configured and never open without
//! authentication.
//!
//! - Pages are maud templates (escaping by default), charts inline SVG from
//!   plotters, one stylesheet, no script at all: the Content-Security-Policy
//!   is `default-src 'none'` plus the stylesheet and inline SVG.
//! - Sign-in ([`auth`]): a token form (session cookie HttpOnly,
//!   SameSite=Strict, Secure) or a user header from trusted proxies only.
//!   Every POST carries a CSRF token bound to the session.
//! - Findings and their history come from the state (indexed queries,
//!   `state/console.rs`); partners, reps, registrations and the review from
//!   a [`snapshot::Snapshot`] rebuilt after each cycle and swapped whole.

pub(crate) mod auth;
pub(crate) mod charts;
pub(crate) mod pages;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use crate::config::{ConsoleSettings, Settings};
use crate::notify::slack::render::Links;
use crate::store::State;
use snapshot::Snapshot;

/// The policy every response carries: nothing runs, nothing loads from
/// elsewhere, no framing, forms post only here.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's shared parts.
pub struct Console {
    pub settings: ConsoleSettings,
    pub currency: String,
    state: std::sync::Mutex<Option<Arc<State>>>,
    state_settings: crate::config::StateSettings,
    snapshot: RwLock<Arc<Snapshot>>,
    pub sessions: auth::Sessions,
    /// Where CRM records open: from the settings at first (HubSpot with
    /// `portal_id`), then from each cycle (Salesforce's instance URL).
    links: RwLock<Links>,
    /// The daemon's clock (pinned by `run --now`): decisions and "today".
    pub clock: crate::clock::Clock,
}

impl Console {
    pub fn new(settings: &Settings, clock: crate::clock::Clock) -> anyhow::Result<Console> {
        let sessions = auth::Sessions::new(settings.console.session_hours)
            .map_err(|_| anyhow::anyhow!("no randomness for the console's session key"))?;
        Ok(Console {
            settings: settings.console.clone(),
            currency: settings.scorecard.currency.clone(),
            state: std::sync::Mutex::new(None),
            state_settings: settings.state.clone(),
            snapshot: RwLock::new(Arc::new(Snapshot::empty(
                "No cycle has finished yet: partners, registrations and the review appear after the first one.",
            ))),
            sessions,
            links: RwLock::new(links(settings)),
            clock,
        })
    }

    /// The state, opened (and migrated) on first use and kept; opened
    /// again when its PostgreSQL connection was lost (a failover: the
    /// request that met the lost connection failed, the next one reconnects).
    pub fn state(&self) -> anyhow::Result<Arc<State>> {
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = held.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        let s = Arc::new(State::connect(&self.state_settings).with_context(|| {
            match &self.state_settings.url {
                Some(url) => format!("opening the state {}", crate::store::pg::redact(url)),
                None => format!("opening the state {}", self.state_settings.path.display()),
            }
        })?);
        *held = Some(s.clone());
        Ok(s)
    }

    /// The keys of open findings that are decided or snoozed today, from
    /// the decisions' audit trail (the same fold as the CLI and Slack):
    /// (decided, snoozed).
    pub fn settled(&self, state: &State) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let today = crate::values::date_of(&self.clock.now());
        let mut decided = Vec::new();
        let mut snoozed = Vec::new();
        for (key, standing) in crate::decisions::standings(state)? {
            if standing.verdict.is_some() {
                decided.push(key);
            } else if standing.is_snoozed(today) {
                snoozed.push(key);
            }
        }
        decided.sort();
        snoozed.sort();
        Ok((decided, snoozed))
    }

    /// The snapshot pages read now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where CRM records open now.
    pub fn links(&self) -> Links {
        self.links.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in a new snapshot.
    pub fn publish(&self, snapshot: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }

    /// Rebuilds the snapshot from the sources as of `now` (blocking; run it
    /// off the async threads). A failure keeps the previous one.
    pub fn refresh(&self, settings: &Settings, now: DateTime<Utc>) {
        self.rebuild(|| snapshot::build(settings, now));
    }

    /// Rebuilds the snapshot from the data a cycle just evaluated (the
    /// daemon hands it over after each successful cycle, from any source),
    /// and takes the cycle's record links when it had any.
    pub fn refresh_from(&self, settings: &Settings, now: DateTime<Utc>, h: crate::cycle::Handoff) {
        if h.links != Links::default() {
            *self.links.write().unwrap_or_else(|e| e.into_inner()) = h.links.clone();
        }
        self.rebuild(|| {
            snapshot::from_dataset(&h.dataset, &h.review_inputs, h.rejected, settings, now)
        });
    }

    fn rebuild(&self, build: impl FnOnce() -> anyhow::Result<Snapshot>) {
        let started = std::time::Instant::now();
        match build() {
            Ok(s) => {
                self.publish(s);
                tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    "Console snapshot rebuilt."
                );
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Console snapshot not rebuilt; the previous one stays.");
            }
        }
    }
}

/// Record links, as the alerts make them where the settings alone say
/// where the CRM is (HubSpot with `portal_id`).
fn links(settings: &Settings) -> Links {
    if settings.crm.kind == Some(crate::config::CrmKind::Hubspot) {
        let hs = settings.crm.hubspot();
        if let Some(portal) = hs.portal_id {
            let app = hs.app_url.trim_end_matches('/');
            return Links {
                account: Some(format!("{app}/contacts/{portal}/record/0-2/{{id}}")),
                opportunity: Some(format!("{app}/contacts/{portal}/record/0-3/{{id}}")),
            };
        }
    }
    Links::default()
}

/// Security headers on every response.
async fn harden(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // A page may narrow it further (the printable review allows its style).
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/findings", get(pages::findings))
        .route("/finding", get(pages::finding))
        .route("/finding/decide", post(pages::decide))
        .route("/partners", get(pages::partners))
        .route("/partner", get(pages::partner))
        .route("/registrations", get(pages::registrations))
        .route("/review", get(pages::review))
        .route("/review/print", get(pages::review_print))
        .route("/logout", post(auth::logout))
        .layer(middleware::from_fn_with_state(
            console.clone(),
            auth::require_user,
        ));
    Router::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/console.css", get(pages::stylesheet))
        .merge(pages)
        .layer(middleware::from_fn(harden))
        .with_state(console)
}

/// Serves the console on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(console).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
}

/// Axum's state extractor for the console.
pub type Shared = AxumState<Arc<Console>>;
