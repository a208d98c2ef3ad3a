//! One cycle (`channel-sync once`): pull -> detect -> decide alerts -> record
//! (one transaction) -> send the outbox -> write back scorecards -> record
//! the run.
//!
//! The decision to alert and its outbox row commit together, before anything
//! is sent; a message is marked sent only after Slack accepted it. A crash at
//! any point therefore loses no alert and repeats at most the one in flight;
//! the next cycle sends whatever is still pending. Write-back works the same
//! way: values are remembered only once the sink confirmed them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alerts::{self, AlertContext};
use crate::config::{ConfigError, Settings};
use crate::connectors::hubspot::write::HubSpotSink;
use crate::connectors::hubspot::{self, HubSpotSource};
use crate::connectors::partnerstack::{self, PartnerStackClient};
use crate::connectors::salesforce::write::SalesforceSink;
use crate::connectors::salesforce::{PullError, SalesforceSource};
use crate::connectors::writeback::{FilesSink, ScorecardSink, Target, diff};
use crate::connectors::{Origin, PrmOrigin, files, origin};
use crate::engine;
use crate::notify::slack::{
    Delivery, SlackClient,
    render::{Links, Names},
};
use crate::state::State;
use crate::sync::ObjectReport;
use crate::values::format_timestamp;

#[derive(Debug, Clone)]
pub struct Options {
    pub now: DateTime<Utc>,
    pub dry_run: bool,
    /// Read every record again instead of only what changed (`once --full`).
    pub full: bool,
    /// How a dry run shows the alerts it would send.
    pub preview: Preview,
    /// Show progress on stderr while sending (`once`; the daemon logs instead).
    pub progress: bool,
}

/// How a dry run prints the alerts it would send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Preview {
    /// What a person would read in Slack.
    #[default]
    Text,
    /// The raw Block Kit JSON that would be posted.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Input(#[from] files::InputError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Another cycle holds the state: nothing was done.
    #[error(transparent)]
    Locked(#[from] crate::state::lock::LockError),
    /// The CRM or PRM could not be read: nothing was decided this cycle; the
    /// next one tries again.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<hubspot::PullError> for CycleError {
    fn from(e: hubspot::PullError) -> Self {
        match e {
            hubspot::PullError::Config(e) => CycleError::Config(e),
            hubspot::PullError::Input(e) => CycleError::Input(e),
            hubspot::PullError::State(e) => CycleError::State(e),
            hubspot::PullError::HubSpot(e) => CycleError::Upstream(e.to_string()),
        }
    }
}

impl From<partnerstack::PullError> for CycleError {
    fn from(e: partnerstack::PullError) -> Self {
        match e {
            partnerstack::PullError::State(e) => CycleError::State(e),
            partnerstack::PullError::PartnerStack(e) => CycleError::Upstream(e.to_string()),
        }
    }
}

impl From<PullError> for CycleError {
    fn from(e: PullError) -> Self {
        match e {
            PullError::Config(e) => CycleError::Config(e),
            PullError::Input(e) => CycleError::Input(e),
            PullError::State(e) => CycleError::State(e),
            PullError::Salesforce(e) => CycleError::Upstream(e.to_string()),
        }
    }
}

/// What one cycle did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub as_of: String,
    pub dry_run: bool,
    pub pulled: BTreeMap<&'static str, usize>,
    /// The source each pulled table came from (the metrics' label).
    #[serde(skip)]
    pub pulled_from: BTreeMap<&'static str, &'static str>,
    /// What each API object's sync read (empty for files).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub synced: Vec<ObjectReport>,
    pub rejected: usize,
    pub findings_open: usize,
    pub open_by_kind: BTreeMap<String, usize>,
    pub findings_new: usize,
    pub findings_changed: usize,
    pub reminders: usize,
    pub findings_resolved: usize,
    /// Closed quietly: only time moved them out of their window.
    pub findings_aged_out: usize,
    pub alerts_sent: usize,
    pub alerts_failed: usize,
    pub alerts_parked: usize,
    pub alerts_pending: usize,
    /// Dry run: the messages a real run would send now.
    pub alerts_would_send: usize,
    /// No webhook is configured: findings stored but not yet announced (they
    /// will be once a webhook is set).
    pub alerts_off: bool,
    pub unannounced: usize,
    pub writes_done: usize,
    pub writes_failed: usize,
    /// Dry run: the records a real run would write.
    pub writes_would: usize,
    /// Currencies without an exchange rate (SPEC §2.1), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_rates: Vec<String>,
    pub errors: Vec<String>,
}

impl Summary {
    /// SPEC §1: 1 when the cycle finished but some calls or records failed.
    pub fn exit_code(&self) -> u8 {
        let failed = self.rejected > 0
            || self.alerts_failed > 0
            || self.alerts_parked > 0
            || self.writes_failed > 0
            || !self.errors.is_empty();
        u8::from(failed)
    }

    /// The one-screen summary printed at the end of `once`.
    pub fn to_text(&self) -> String {
        let pulled = self
            .pulled
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = format!(
            "channel-sync once{} as of {}\n\
             pulled      {pulled} ({} rejected)\n\
             findings    {} open: {} new, {} changed, {} resolved, {} aged out, {} reminders\n",
            if self.dry_run {
                " (dry run: nothing was posted, written or stored)"
            } else {
                ""
            },
            self.as_of,
            self.rejected,
            self.findings_open,
            self.findings_new,
            self.findings_changed,
            self.findings_resolved,
            self.findings_aged_out,
            self.reminders,
        );
        let alerts = match (self.dry_run, self.alerts_off) {
            (true, false) => format!("{} would be sent", self.alerts_would_send),
            (true, true) => format!(
                "{} would be sent once a Slack webhook is set (none is: {WEBHOOK_ENV})",
                self.alerts_would_send
            ),
            (false, true) => format!(
                "off: no Slack webhook ({WEBHOOK_ENV}); {} finding(s) will be announced once one is set",
                self.unannounced
            ),
            (false, false) => format!(
                "{} sent, {} failed, {} parked, {} waiting for the next cycle",
                self.alerts_sent, self.alerts_failed, self.alerts_parked, self.alerts_pending
            ),
        };
        s.push_str(&format!("alerts      {alerts}\n"));
        if self.dry_run {
            s.push_str(&format!(
                "write-back  {} records would be written\n",
                self.writes_would
            ));
        } else {
            s.push_str(&format!(
                "write-back  {} records written, {} failed\n",
                self.writes_done, self.writes_failed
            ));
        }
        for m in &self.missing_rates {
            s.push_str(&format!("amounts     {m}\n"));
        }
        for r in &self.synced {
            s.push_str(&format!(
                "synced      {} {:?}{}: {} read, {} removed, {} calls\n",
                r.object,
                r.mode,
                r.reason.map(|w| format!(" ({w})")).unwrap_or_default(),
                r.fetched,
                r.removed,
                r.calls
            ));
        }
        for e in &self.errors {
            s.push_str(&format!("error       {e}\n"));
        }
        s
    }
}

/// The variable that sets the default webhook (secrets come from the
/// environment only).
const WEBHOOK_ENV: &str = "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL";

/// Aborts the process at a named point when `CHANNEL_SYNC_CRASH_AT` names it:
/// the crash tests' way to kill a cycle at an exact place. Never set it in
/// production.
pub(crate) fn crash_point(name: &str) {
    if std::env::var("CHANNEL_SYNC_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("channel-sync: crashing at {name} (CHANNEL_SYNC_CRASH_AT)");
        std::process::abort();
    }
}

/// Checks what a cycle needs from the configuration: sources, and a webhook
/// for every configured route.
pub fn check(settings: &Settings) -> Result<(), ConfigError> {
    origin(settings)?;
    for (name, route) in &settings.alerts.slack.routes {
        if route.webhook_url.is_none() {
            return Err(ConfigError::new(
                format!("alerts.slack.routes.{name}.webhook_url"),
                format!(
                    "missing: set CHANNEL_SYNC__ALERTS__SLACK__ROUTES__{}__WEBHOOK_URL",
                    name.to_uppercase()
                ),
            ));
        }
    }
    Ok(())
}

/// Runs one cycle. With `dry_run`, prints the alerts and writes it would make
/// to `out` and changes nothing anywhere.
pub async fn once(
    settings: &Settings,
    opts: &Options,
    out: &mut (dyn Write + Send),
) -> Result<Summary, CycleError> {
    Runner::new(settings.clone(), None)?.cycle(opts, out).await
}

/// What lives across cycles: the settings, the upstream clients (with their
/// rate limiters), metrics, and the flag that asks a cycle to stop early.
pub struct Runner {
    settings: Settings,
    slack: SlackClient,
    salesforce: Option<SalesforceSource>,
    hubspot: Option<HubSpotSource>,
    partnerstack: Option<PartnerStackClient>,
    /// Set on shutdown: a cycle stops sending at the next message (what is
    /// not sent stays in the outbox for the next start).
    pub stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Runner {
    pub fn new(
        settings: Settings,
        metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    ) -> Result<Runner, CycleError> {
        check(&settings)?;
        let mut slack = SlackClient::new(&settings.alerts.slack)?;
        if let Some(m) = &metrics {
            slack = slack.with_metrics(m.clone());
        }
        let origin = origin(&settings)?;
        let partnerstack = match &origin {
            Origin::Salesforce {
                prm: PrmOrigin::PartnerStack,
            }
            | Origin::Hubspot {
                prm: PrmOrigin::PartnerStack,
            } => Some(
                PartnerStackClient::new(&settings.prm.partnerstack(), metrics.clone()).map_err(
                    |e| {
                        ConfigError::new(
                            "prm.partnerstack",
                            format!("cannot build the client: {e}"),
                        )
                    },
                )?,
            ),
            _ => None,
        };
        let (salesforce, hubspot) = match origin {
            Origin::Salesforce { .. } => (Some(SalesforceSource::new(&settings, metrics)?), None),
            Origin::Hubspot { .. } => (None, Some(HubSpotSource::new(&settings, metrics)?)),
            Origin::Files { .. } => (None, None),
        };
        Ok(Runner {
            settings,
            slack,
            salesforce,
            hubspot,
            partnerstack,
            stopping: Default::default(),
        })
    }

    pub async fn cycle(
        &self,
        opts: &Options,
        out: &mut (dyn Write + Send),
    ) -> Result<Summary, CycleError> {
        // One writer at a time, for the whole cycle (a dry run writes
        // nothing and takes no lock). A run that gives up records nothing.
        let _lock = match opts.dry_run {
            true => None,
            false => Some(self.lock_state().await?),
        };
        let result = self.run_cycle(opts, out).await;
        if let Some(sf) = &self.salesforce {
            sf.keep_rotated_credentials(&self.settings.state.path).await;
        }
        if let Err(e) = &result
            && !opts.dry_run
            && let Ok(state) = State::open(&self.settings.state.path)
        {
            let summary = serde_json::json!({ "error": e.to_string() }).to_string();
            let _ = state.record_run(opts.now, Utc::now().max(opts.now), "failed", &summary);
        }
        result
    }

    /// Takes the state's writer lock, waiting up to `state.lock_wait`.
    async fn lock_state(&self) -> Result<crate::state::lock::LockGuard, CycleError> {
        use crate::state::lock::{FileLock, WriterLock};
        let lock = FileLock::for_state(&self.settings.state.path);
        let wait = self.settings.state.lock_wait();
        let stop = self.stopping.clone();
        let guard = tokio::task::spawn_blocking(move || lock.acquire(wait, &stop))
            .await
            .map_err(anyhow::Error::from)??;
        crash_point("after-lock");
        Ok(guard)
    }

    /// The PRM tables beside a CRM connector: from files or PartnerStack.
    async fn prm_tables(
        &self,
        prm: &PrmOrigin,
        state: &State,
        opts: &Options,
        summary: &mut Summary,
    ) -> Result<files::PrmTables, CycleError> {
        match (prm, &self.partnerstack) {
            (PrmOrigin::Files(dir), _) => Ok(files::load_prm(dir)?),
            (PrmOrigin::PartnerStack, Some(client)) => {
                let (tables, synced) =
                    partnerstack::pull(client, state, &self.settings, opts.full).await?;
                summary.synced.extend(synced);
                Ok(tables)
            }
            _ => Err(anyhow::anyhow!("no PRM source for this configuration").into()),
        }
    }

    /// The state a cycle works on: the file, or for a dry run a read-only
    /// view (files) or a throwaway in-memory copy (an API source's mirror
    /// must be updated to be read).
    fn open_state(&self, dry_run: bool) -> Result<Option<State>, CycleError> {
        let path = &self.settings.state.path;
        let api = self.salesforce.is_some() || self.hubspot.is_some();
        Ok(match (dry_run, api) {
            (false, _) => Some(State::open(path)?),
            (true, false) => State::open_read_only(path)?,
            (true, true) => Some(State::scratch_copy(path)?),
        })
    }

    async fn run_cycle(
        &self,
        opts: &Options,
        out: &mut (dyn Write + Send),
    ) -> Result<Summary, CycleError> {
        let settings = &self.settings;
        let started = opts.now;
        let now = opts.now;
        let origin = origin(settings)?;
        let mut summary = Summary {
            as_of: format_timestamp(&now),
            dry_run: opts.dry_run,
            ..Summary::default()
        };
        summary.pulled_from = [
            "accounts",
            "opportunities",
            "partners",
            "partner_reps",
            "registrations",
            "users",
        ]
        .into_iter()
        .map(|t| (t, origin.source_of(t)))
        .collect();
        let state = self.open_state(opts.dry_run)?;

        // Pull (files are read off the async workers: CPU-bound).
        let loaded = match (&origin, &self.salesforce, &state) {
            (Origin::Files { crm_dir, prm_dir }, _, _) => {
                let money = settings.scorecard.clone();
                let (crm, prm) = (crm_dir.clone(), prm_dir.clone());
                tokio::task::spawn_blocking(move || files::load_split(&crm, &prm, &money))
                    .await
                    .map_err(anyhow::Error::from)??
            }
            (Origin::Salesforce { prm }, Some(sf), Some(state)) => {
                let prm = match prm {
                    PrmOrigin::SameOrg => None,
                    other => Some(self.prm_tables(other, state, opts, &mut summary).await?),
                };
                let (loaded, synced) = sf.pull(state, settings, opts.full, prm).await?;
                summary.synced.splice(0..0, synced);
                loaded
            }
            (Origin::Hubspot { prm }, _, Some(state)) if self.hubspot.is_some() => {
                let prm = self.prm_tables(prm, state, opts, &mut summary).await?;
                let hs = self
                    .hubspot
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("no HubSpot client"))?;
                hs.dry_run
                    .store(opts.dry_run, std::sync::atomic::Ordering::SeqCst);
                let (loaded, synced) = hs.pull(state, settings, opts.full, prm).await?;
                summary.synced.splice(0..0, synced);
                loaded
            }
            _ => return Err(anyhow::anyhow!("no source client for this configuration").into()),
        };
        let sink = match (&self.salesforce, &self.hubspot, &origin) {
            (Some(sf), _, _) => Sink::Salesforce(SalesforceSink {
                client: sf.client.clone(),
                fields: settings.writeback.fields.clone(),
                percent_fields: sf.plan(settings).await?.percent_fields,
            }),
            (_, Some(hs), _) => Sink::Hubspot(HubSpotSink {
                client: hs.client.clone(),
                fields: settings.writeback.fields.clone(),
            }),
            (_, _, Origin::Files { crm_dir, .. }) => Sink::Files(FilesSink::new(
                settings
                    .crm
                    .files
                    .out_dir
                    .clone()
                    .unwrap_or_else(|| crm_dir.clone()),
            )),
            _ => return Err(anyhow::anyhow!("no sink for this configuration").into()),
        };
        let links = match (&self.salesforce, &self.hubspot) {
            (Some(sf), _) => match sf.client.instance_url().await {
                Some(base) => Links {
                    account: Some(format!("{base}/lightning/r/Account/{{id}}/view")),
                    opportunity: Some(format!("{base}/lightning/r/Opportunity/{{id}}/view")),
                },
                None => Links::default(),
            },
            (_, Some(_)) => {
                let hs = settings.crm.hubspot();
                match hs.portal_id {
                    Some(portal) => {
                        let app = hs.app_url.trim_end_matches('/');
                        Links {
                            account: Some(format!("{app}/contacts/{portal}/record/0-2/{{id}}")),
                            opportunity: Some(format!("{app}/contacts/{portal}/record/0-3/{{id}}")),
                        }
                    }
                    None => Links::default(),
                }
            }
            _ => Links::default(),
        };
        decide_and_deliver(
            settings,
            &self.slack,
            &self.stopping,
            opts,
            out,
            loaded,
            links,
            state,
            sink,
            summary,
            started,
        )
        .await
    }
}

/// Where scorecards go: one of the sinks, dispatched by hand (the trait's
/// async method keeps it from being a trait object).
enum Sink {
    Files(FilesSink),
    Salesforce(SalesforceSink),
    Hubspot(HubSpotSink),
}

impl ScorecardSink for Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::Files(s) => s.name(),
            Sink::Salesforce(s) => s.name(),
            Sink::Hubspot(s) => s.name(),
        }
    }

    fn target(
        &self,
        card: &crate::engine::Scorecard,
        partner: &crate::model::Partner,
        period: &crate::engine::Period,
    ) -> Option<(String, Vec<(String, String)>)> {
        match self {
            Sink::Files(s) => s.target(card, partner, period),
            Sink::Salesforce(s) => s.target(card, partner, period),
            Sink::Hubspot(s) => s.target(card, partner, period),
        }
    }

    fn lost_earlier_writes(&self) -> bool {
        match self {
            Sink::Files(s) => s.lost_earlier_writes(),
            Sink::Salesforce(s) => s.lost_earlier_writes(),
            Sink::Hubspot(s) => s.lost_earlier_writes(),
        }
    }

    async fn apply(
        &self,
        updates: &[crate::connectors::writeback::RecordUpdate],
    ) -> Vec<crate::connectors::writeback::RecordOutcome> {
        match self {
            Sink::Files(s) => s.apply(updates).await,
            Sink::Salesforce(s) => s.apply(updates).await,
            Sink::Hubspot(s) => s.apply(updates).await,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn decide_and_deliver(
    settings: &Settings,
    slack: &SlackClient,
    stopping: &std::sync::atomic::AtomicBool,
    opts: &Options,
    out: &mut (dyn Write + Send),
    loaded: files::Loaded,
    links: Links,
    state: Option<State>,
    sink: Sink,
    mut summary: Summary,
    started: DateTime<Utc>,
) -> Result<Summary, CycleError> {
    let now = opts.now;
    let data = loaded.dataset;
    summary.rejected = loaded.rejected.len();
    for r in &loaded.rejected {
        tracing::warn!(file = %r.file, line = r.line, reason = %r.reason, "Row rejected.");
    }
    summary.pulled = BTreeMap::from([
        ("accounts", data.accounts.len()),
        ("opportunities", data.opportunities.len()),
        ("partners", data.partners.len()),
        ("partner_reps", data.reps.len()),
        ("registrations", data.registrations.len()),
        ("users", data.users.len()),
    ]);
    let mut evaluation = engine::evaluate(&data, settings, now);
    // Decisions (issue 15): decided findings are reopened on a material
    // change, and otherwise stay quiet and out of `open_conflicts`.
    let holds = match &state {
        Some(s) => crate::decisions::holds_for_cycle(s, &evaluation.findings, now, opts.dry_run)?
            .with_escalation(s, &settings.alerts)?,
        None => crate::decisions::Holds::default(),
    };
    crate::decisions::settle_scorecards(&mut evaluation.scorecards, &evaluation.findings, &holds);
    summary.findings_open = evaluation.findings.len();
    summary.missing_rates = evaluation
        .missing_rates
        .iter()
        .map(|m| m.message())
        .collect();
    for m in &summary.missing_rates {
        tracing::warn!("{m}");
    }
    for f in &evaluation.findings {
        *summary
            .open_by_kind
            .entry(f.kind.as_str().into())
            .or_default() += 1;
    }
    let clock = std::time::Instant::now();
    let lap = |what: &str| tracing::debug!(ms = clock.elapsed().as_millis() as u64, "{what}");

    // Decide.
    let stored = match &state {
        Some(s) => s.findings()?,
        None => Vec::new(),
    };
    let names = Names::from_dataset(&data).with_links(links);
    let mut routes_with_webhook: BTreeSet<String> = slack.routes().cloned().collect();
    summary.alerts_off = routes_with_webhook.is_empty();
    if summary.alerts_off && opts.dry_run {
        // A dry run shows what the default webhook would get, set or not.
        routes_with_webhook.insert("default".into());
    }
    let ctx = AlertContext {
        slack: &settings.alerts.slack,
        routes_with_webhook,
        tiers: data
            .partners
            .iter()
            .filter_map(|p| p.tier.clone().map(|t| (p.id.clone(), t)))
            .collect(),
        names: &names,
        expired_lookback: chrono::Duration::days(i64::from(settings.rules.expired_lookback_days)),
    };
    lap("State read.");
    let plan = alerts::plan_with(&evaluation.findings, &stored, &ctx, &holds, now);
    lap("Alerts planned.");
    summary.findings_new = plan.new;
    summary.unannounced = plan.unannounced;
    summary.findings_changed = plan.changed;
    summary.reminders = plan.reminded;
    summary.findings_resolved = plan.resolved.len();
    summary.findings_aged_out = plan.aged_out.len();

    // Record the decision, then deliver.
    crash_point("before-commit");
    if let (Some(state), false) = (&state, opts.dry_run) {
        state.commit_cycle(
            now,
            &plan.seen,
            &plan.resolved,
            &plan.aged_out,
            &plan.messages,
        )?;
    }
    crash_point("after-commit");
    lap("Cycle committed.");
    if opts.dry_run {
        let mut waiting = match &state {
            Some(s) => s
                .pending()?
                .into_iter()
                .map(|r| (r.route, r.reason, r.finding_key, r.body))
                .collect(),
            None => Vec::new(),
        };
        waiting.extend(plan.messages.iter().map(|m| {
            (
                m.route.clone(),
                m.reason.clone(),
                m.finding_key.clone(),
                m.body.clone(),
            )
        }));
        writeln!(out, "Would send {} alert(s):", waiting.len()).map_err(anyhow::Error::from)?;
        for (i, (route, reason, key, body)) in waiting.iter().enumerate() {
            let shown = match opts.preview {
                Preview::Text => crate::notify::slack::preview::preview(body),
                Preview::Json => serde_json::from_str::<serde_json::Value>(body)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| body.clone()),
            };
            writeln!(
                out,
                "--- alert {}/{} to '{route}' ({reason}{})\n{}",
                i + 1,
                waiting.len(),
                key.as_deref().map(|k| format!(": {k}")).unwrap_or_default(),
                shown.trim_end()
            )
            .map_err(anyhow::Error::from)?;
        }
        summary.alerts_would_send = waiting.len();
    } else if let Some(state) = &state {
        let progress = opts
            .progress
            .then(|| Progress::new(settings.alerts.slack.per_second));
        deliver(state, slack, stopping, now, &mut summary, progress).await?;
    }

    // Write back.
    lap("Alerts delivered.");
    write_back(
        &sink,
        &data,
        &evaluation,
        state.as_ref(),
        opts,
        out,
        &mut summary,
    )
    .await?;
    lap("Scorecards written back.");

    if let (Some(state), false) = (&state, opts.dry_run) {
        let outcome = if summary.exit_code() == 0 {
            "ok"
        } else {
            "partial"
        };
        let json = serde_json::to_string(&summary).unwrap_or_default();
        state.record_run(started, Utc::now().max(started), outcome, &json)?;
    }
    lap("Run recorded.");
    Ok(summary)
}

/// Sends every pending message, oldest first, marking each as it goes.
async fn deliver(
    state: &State,
    slack: &SlackClient,
    stopping: &std::sync::atomic::AtomicBool,
    now: DateTime<Utc>,
    summary: &mut Summary,
    progress: Option<Progress>,
) -> Result<(), CycleError> {
    let mut down: BTreeSet<String> = BTreeSet::new();
    let pending = state.pending()?;
    let bar = progress.map(|p| p.start(&pending));
    for row in pending {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        if down.contains(&row.route) || stopping.load(std::sync::atomic::Ordering::SeqCst) {
            summary.alerts_pending += 1;
            continue;
        }
        match slack.post(&row.route, &row.body).await {
            Delivery::Sent => {
                crash_point("mid-send");
                state.mark_sent(row.id, now)?;
                summary.alerts_sent += 1;
            }
            Delivery::Retry(e) => {
                // Slack is failing or asked us to wait: keep this webhook's
                // remaining messages for the next cycle instead of hammering.
                tracing::warn!(route = %row.route, error = %e, "Alert not delivered; retrying next cycle.");
                state.mark_failed(row.id, &e, false)?;
                summary.alerts_failed += 1;
                summary.alerts_pending += 1;
                down.insert(row.route.clone());
            }
            Delivery::WebhookDown(e) => {
                tracing::error!(route = %row.route, error = %e, "Slack webhook cannot post; alerts wait for the next cycle.");
                state.mark_failed(row.id, &e, false)?;
                summary
                    .errors
                    .push(format!("slack route '{}': {e}", row.route));
                summary.alerts_failed += 1;
                summary.alerts_pending += 1;
                down.insert(row.route.clone());
            }
            Delivery::Parked(e) => {
                tracing::error!(route = %row.route, outbox_id = row.id, error = %e, "Slack refused an alert as malformed; parked.");
                state.mark_failed(row.id, &e, true)?;
                summary.alerts_parked += 1;
            }
            Delivery::Unconfirmed(e) if row.unconfirmed == 0 => {
                // It may be in the channel already: not again this cycle;
                // once more in a later one (at most one duplicate).
                tracing::warn!(route = %row.route, outbox_id = row.id, error = %e, "Slack did not confirm an alert; sending it once more next cycle.");
                state.mark_unconfirmed(row.id, &e, false)?;
                summary.alerts_failed += 1;
                summary.alerts_pending += 1;
                down.insert(row.route.clone());
            }
            Delivery::Unconfirmed(e) => {
                // Twice unconfirmed: it may be in the channel twice already.
                tracing::error!(route = %row.route, outbox_id = row.id, error = %e, "Slack did not confirm an alert a second time; parked (it may have been posted), not sent again.");
                state.mark_unconfirmed(row.id, &e, true)?;
                summary.alerts_parked += 1;
                down.insert(row.route.clone());
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(())
}

/// Progress while `once` sends: a line up front saying how many messages and
/// about how long (webhooks take about one a second), then a bar on a
/// terminal (hidden when stderr is not one).
struct Progress {
    per_second: u32,
}

impl Progress {
    fn new(per_second: u32) -> Progress {
        Progress {
            per_second: per_second.max(1),
        }
    }

    fn start(&self, pending: &[crate::state::OutboxRow]) -> indicatif::ProgressBar {
        let total = pending.len() as u64;
        if total > 0 {
            // Webhooks are limited each on its own: the busiest one sets the pace.
            let mut per_route: BTreeMap<&str, u64> = BTreeMap::new();
            for r in pending {
                *per_route.entry(r.route.as_str()).or_default() += 1;
            }
            let busiest = per_route.values().copied().max().unwrap_or(0);
            let secs = busiest.saturating_sub(1) / u64::from(self.per_second);
            eprintln!(
                "channel-sync: sending {total} alert(s) to {} webhook(s): about {} at {} a second per webhook",
                per_route.len(),
                if secs < 1 {
                    "a second".to_string()
                } else {
                    format!("{secs} s")
                },
                self.per_second
            );
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} alerts, {eta} left",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("sending");
        bar
    }
}

async fn write_back(
    sink: &impl ScorecardSink,
    data: &crate::model::Dataset,
    evaluation: &engine::Evaluation,
    state: Option<&State>,
    opts: &Options,
    out: &mut (dyn Write + Send),
    summary: &mut Summary,
) -> Result<(), CycleError> {
    let partners: BTreeMap<&str, &crate::model::Partner> =
        data.partners.iter().map(|p| (p.id.as_str(), p)).collect();
    let targets: Vec<Target> = evaluation
        .scorecards
        .iter()
        .filter_map(|card| {
            let partner = partners.get(card.partner_id.as_str())?;
            let (record_id, fields) = sink.target(card, partner, &evaluation.period)?;
            Some(Target {
                partner_id: card.partner_id.clone(),
                record_id,
                fields,
            })
        })
        .collect();
    let lost = sink.lost_earlier_writes();
    let written = match state {
        Some(s) if !lost => s.written(sink.name())?,
        _ => Default::default(),
    };
    let updates = diff(&targets, &written);
    if opts.dry_run {
        summary.writes_would = updates.len();
        writeln!(
            out,
            "Would write {} record(s) to {}:",
            updates.len(),
            sink.name()
        )
        .map_err(anyhow::Error::from)?;
        for u in &updates {
            let fields = u
                .fields
                .iter()
                .map(|(f, v)| format!("{f}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                out,
                "--- write {} (partner {}): {fields}",
                u.record_id, u.partner_id
            )
            .map_err(anyhow::Error::from)?;
        }
        return Ok(());
    }
    if updates.is_empty() {
        return Ok(());
    }
    let Some(state) = state else {
        return Ok(());
    };
    if lost {
        state.forget_written(sink.name())?;
    }
    let outcomes = sink.apply(&updates).await;
    crash_point("mid-writeback");
    let mut confirmed = Vec::new();
    for (u, outcome) in updates.iter().zip(outcomes) {
        match outcome {
            None => {
                summary.writes_done += 1;
                confirmed.extend(
                    u.fields
                        .iter()
                        .map(|(f, v)| (u.record_id.clone(), f.clone(), v.clone())),
                );
            }
            Some(e) => {
                tracing::warn!(sink = sink.name(), record = %u.record_id, error = %e, "Write-back failed; retrying next cycle.");
                summary.writes_failed += 1;
                summary
                    .errors
                    .push(format!("write-back {}: {e}", u.record_id));
            }
        }
    }
    state.record_written(sink.name(), &confirmed, opts.now)?;
    Ok(())
}
