//! One cycle (`channel-sync once`): pull -> detect -> decide alerts -> record
//! (one transaction) -> send the outbox -> write back scorecards -> record
//! the run.
//!
//! The decision to alert and its outbox row commit together, before anything
//! is sent; a message is marked sent only after Slack accepted it. A crash at
//! any point therefore loses no alert and repeats at most the one in flight;
//! the next cycle sends whatever is still pending. Write-back works the same
//! way: values are remembered only once the sink confirmed them.

mod deliver;
mod dry_run;
mod summary;
mod writeback;

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};

use crate::alerts::{self, AlertContext};
use crate::config::{ConfigError, Settings};
use crate::connectors::{Connectors, DecisionSink, Sink, files, origin};
use crate::crash::crash_point;
use crate::engine;
use crate::notify::slack::mentions::Mentions;
use crate::notify::{Links, Names, Notifiers};
use crate::store::State;
use crate::values::format_timestamp;
use deliver::{Progress, deliver, render_notices};
pub use summary::Summary;
use writeback::{write_back, write_decisions};

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
    State(#[from] crate::store::StateError),
    /// Another cycle holds the state: nothing was done.
    #[error(transparent)]
    Locked(#[from] crate::store::lock::LockError),
    /// A connector failed (the CRM or PRM could not be read, or its
    /// configuration does not fit the account): nothing was decided this
    /// cycle; the next one tries again.
    #[error(transparent)]
    Connector(#[from] crate::connectors::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CycleError {
    /// The process exit code for `once` (SPEC §1): 78 for configuration, 65
    /// for unusable input, 0 when a stop signal ended the wait for the lock,
    /// else 1.
    pub fn exit_code(&self) -> u8 {
        use crate::connectors::Failure;
        match self {
            CycleError::Locked(crate::store::lock::LockError::Stopped { .. }) => 0,
            CycleError::Config(_)
            | CycleError::Connector(crate::connectors::Error {
                source: Failure::Config(_),
                ..
            }) => 78,
            CycleError::Input(_)
            | CycleError::Connector(crate::connectors::Error {
                source: Failure::Input(_),
                ..
            }) => 65,
            _ => 1,
        }
    }
}

/// Checks what a cycle needs from the configuration: sources, and a webhook
/// for every configured route.
pub fn check(settings: &Settings) -> Result<(), ConfigError> {
    origin(settings)?;
    for (name, route) in &settings.alerts.slack.routes {
        if route.webhook_url.is_none() && route.teams_webhook_url.is_none() {
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
    notifiers: Notifiers,
    connectors: Connectors,
    /// Slack users to mention on conflicts (the map, or lookups by e-mail).
    mentions: Mentions,
    /// Set on shutdown: a cycle stops sending at the next message (what is
    /// not sent stays in the outbox for the next start).
    pub stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// With the console on: the last cycle's data, until the console takes
    /// it for its snapshot (so it shows what the cycle saw, from any source).
    handoff: Option<std::sync::Mutex<Option<Handoff>>>,
    /// The process exits after one cycle (`once`): the cycle's records are
    /// not freed one by one (0.2 s for a million opportunities), the OS
    /// takes the memory back.
    exits_after: bool,
}

/// What a cycle leaves for the console: the data it evaluated, the
/// review's optional tables, and where the CRM's records open (Salesforce's
/// instance URL is known only once signed in).
pub struct Handoff {
    pub dataset: crate::model::Dataset,
    pub review_inputs: crate::model::ReviewInputs,
    pub rejected: Vec<crate::model::Rejected>,
    pub links: Links,
}

impl Runner {
    pub fn new(
        settings: Settings,
        metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    ) -> Result<Runner, CycleError> {
        check(&settings)?;
        let notifiers = Notifiers::new(&settings.alerts, &settings.console, metrics.clone())?;
        let mentions = Mentions::new(&settings.alerts.slack)?.with_metrics_opt(metrics.clone());
        let connectors = Connectors::new(&settings, metrics)?;
        Ok(Runner {
            settings,
            notifiers,
            connectors,
            mentions,
            stopping: Default::default(),
            handoff: None,
            exits_after: false,
        })
    }

    /// For a process that exits after one cycle: its data is left to the OS
    /// rather than freed (see `exits_after`).
    pub fn exiting_after_one_cycle(mut self) -> Runner {
        self.exits_after = true;
        self
    }

    /// Keeps each successful cycle's data for the console (the daemon with
    /// `console.listen` set), until [`Runner::take_handoff`].
    pub fn with_console_handoff(mut self) -> Runner {
        self.handoff = Some(std::sync::Mutex::new(None));
        self
    }

    /// The last successful cycle's data, once (`None` without the console,
    /// or when the console already took it).
    pub fn take_handoff(&self) -> Option<Handoff> {
        self.handoff
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
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
        self.connectors.after_cycle(&self.settings.state).await;
        if let Err(e) = &result
            && !opts.dry_run
            && let Ok(state) = State::connect(&self.settings.state)
        {
            let summary = serde_json::json!({ "error": e.to_string() }).to_string();
            let _ = state.record_run(opts.now, Utc::now().max(opts.now), "failed", &summary);
        }
        result
    }

    /// Takes the state's writer lock, waiting up to `state.lock_wait`.
    async fn lock_state(&self) -> Result<crate::store::lock::LockGuard, CycleError> {
        let lock = crate::store::writer_lock(&self.settings.state)?;
        let wait = self.settings.state.lock_wait();
        let stop = self.stopping.clone();
        let guard = tokio::task::spawn_blocking(move || lock.acquire(wait, &stop))
            .await
            .map_err(anyhow::Error::from)??;
        crash_point("after-lock");
        Ok(guard)
    }

    /// The state a cycle works on: the file, or for a dry run a read-only
    /// view (files) or a throwaway in-memory copy (an API source's mirror
    /// must be updated to be read).
    fn open_state(&self, dry_run: bool) -> Result<Option<State>, CycleError> {
        let st = &self.settings.state;
        let api = self.connectors.uses_mirror();
        Ok(match (dry_run, api) {
            (false, _) => Some(State::connect(st)?),
            (true, false) => State::connect_read_only(st)?,
            (true, true) => Some(State::connect_scratch(st)?),
        })
    }

    async fn run_cycle(
        &self,
        opts: &Options,
        out: &mut (dyn Write + Send),
    ) -> Result<Summary, CycleError> {
        let settings = &self.settings;
        let now = opts.now;
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
        .map(|t| (t, self.connectors.source_of(t)))
        .collect();
        let state = self.open_state(opts.dry_run)?;

        // Pull, then where scorecards go and where records open.
        let pulled = self
            .connectors
            .pull(settings, state.as_ref(), opts.full, opts.dry_run)
            .await?;
        summary.synced = pulled.synced;
        let mut loaded = pulled.loaded;
        // The review's inputs, only when one of its values is written back
        // (the review costs time on a large program).
        let review_inputs = if settings.writeback.review_fields().is_empty() {
            None
        } else {
            let (inputs, rejected) = self
                .connectors
                .review_inputs(&loaded.dataset.partners, settings, state.as_ref())
                .await?;
            loaded.rejected.extend(rejected);
            Some(inputs)
        };
        let sink = self.connectors.sink(settings).await?;
        let decisions = self.connectors.decision_sink(settings);
        let links = self.connectors.links(settings).await;
        let links = Links {
            account: links.account,
            opportunity: links.opportunity,
        };
        // The console shows the review too: its tables, read once more only
        // when the write-back did not need them.
        let console_inputs = match (&self.handoff, &review_inputs, opts.dry_run) {
            (Some(_), Some(inputs), false) => Some((inputs.clone(), Vec::new())),
            (Some(_), None, false) => Some(
                self.connectors
                    .review_inputs(&loaded.dataset.partners, settings, state.as_ref())
                    .await?,
            ),
            _ => None,
        };
        let console_links = links.clone();
        let pulled = Pulled {
            loaded,
            review_inputs,
            keep_data: console_inputs.is_some() || self.exits_after,
            links,
            state,
            sink,
            decisions,
        };
        let (summary, data) = self.decide_and_deliver(opts, out, pulled, summary).await?;
        match (&self.handoff, data, console_inputs) {
            (Some(slot), Some(dataset), Some((review_inputs, rejected))) => {
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Handoff {
                    dataset,
                    review_inputs,
                    rejected,
                    links: console_links,
                });
            }
            (_, Some(dataset), _) if self.exits_after => std::mem::forget(dataset),
            _ => {}
        }
        Ok(summary)
    }
}

/// What the pull left for the rest of the cycle.
struct Pulled {
    loaded: files::Loaded,
    /// The review's inputs, when a review field is written back.
    review_inputs: Option<crate::model::ReviewInputs>,
    /// Give the data back at the end (for the console).
    keep_data: bool,
    links: Links,
    state: Option<State>,
    sink: Sink,
    /// Where decisions are written (`writeback.decision_field`), if anywhere.
    decisions: Option<DecisionSink>,
}

impl Runner {
    /// Detect, decide, record, deliver, write back, record the run.
    async fn decide_and_deliver(
        &self,
        opts: &Options,
        out: &mut (dyn Write + Send),
        pulled: Pulled,
        mut summary: Summary,
    ) -> Result<(Summary, Option<crate::model::Dataset>), CycleError> {
        let Runner {
            settings,
            notifiers,
            mentions,
            stopping,
            ..
        } = self;
        let stopping: &std::sync::atomic::AtomicBool = stopping;
        let Pulled {
            loaded,
            review_inputs,
            keep_data,
            links,
            state,
            sink,
            decisions,
        } = pulled;
        let started = opts.now;
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
        let mut evaluation =
            engine::evaluate_with_review(&data, settings, now, review_inputs.as_ref());
        // Decisions (issue 15): decided findings are reopened on a material
        // change, and otherwise stay quiet and out of `open_conflicts`.
        let holds = match &state {
            Some(s) => {
                crate::decisions::holds_for_cycle(s, &evaluation.findings, now, opts.dry_run)?
                    .with_escalation(s, &settings.alerts)?
            }
            None => crate::decisions::Holds::default(),
        };
        crate::decisions::settle_scorecards(
            &mut evaluation.scorecards,
            &evaluation.findings,
            &holds,
        );
        // A decided finding is not open: it leaves the count and the metric.
        summary.findings_decided = evaluation
            .findings
            .iter()
            .filter(|f| holds.is_decided(&f.key))
            .count();
        summary.findings_open = evaluation.findings.len() - summary.findings_decided;
        summary.missing_rates = evaluation
            .missing_rates
            .iter()
            .map(|m| m.message())
            .collect();
        for m in &summary.missing_rates {
            tracing::warn!("{m}");
        }
        for f in evaluation
            .findings
            .iter()
            .filter(|f| !holds.is_decided(&f.key))
        {
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
        let mut names = Names::from_dataset(&data).with_links(links);
        // Route -> the channels (Slack, Teams) that reach it.
        let mut reach = notifiers.reach();
        summary.alerts_off = reach.is_empty();
        if summary.alerts_off && opts.dry_run {
            // A dry run shows what the default webhook would get, set or not.
            reach.insert("default".into(), vec!["slack"]);
        }
        let ctx = AlertContext {
            routing: &settings.alerts.slack,
            routes_with_webhook: reach.keys().cloned().collect(),
            tiers: data
                .partners
                .iter()
                .filter_map(|p| p.tier.clone().map(|t| (p.id.clone(), t)))
                .collect(),
            expired_lookback: chrono::Duration::days(i64::from(
                settings.rules.expired_lookback_days,
            )),
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
        // Mentions: the people each conflict alert concerns, found in Slack
        // (only for alerts that reach Slack).
        if mentions.is_on() && reach.values().flatten().any(|c| *c == "slack") {
            let emails: Vec<String> = plan
                .messages
                .iter()
                .filter_map(|n| match &n.content {
                    alerts::Content::Finding { finding, .. } => Some(finding),
                    _ => None,
                })
                .flat_map(|f| names.people(f).into_iter().map(|(_, email)| email))
                .collect();
            if !emails.is_empty() {
                names.mentions = mentions.resolve(emails).await;
                lap("Mentions found.");
            }
        }
        let messages = render_notices(notifiers, &reach, &plan.messages, &names);

        // Record the decision, then deliver.
        crash_point("before-commit");
        if let (Some(state), false) = (&state, opts.dry_run) {
            state.commit_cycle(now, &plan.seen, &plan.resolved, &plan.aged_out, &messages)?;
        }
        crash_point("after-commit");
        lap("Cycle committed.");
        if opts.dry_run {
            let pending = match &state {
                Some(s) => s.pending()?,
                None => Vec::new(),
            };
            summary.alerts_would_send =
                dry_run::print_alerts(out, notifiers, opts.preview, pending, messages)?;
        } else if let Some(state) = &state {
            let progress = opts.progress.then(|| Progress::new(notifiers.per_second()));
            deliver(state, notifiers, stopping, now, &mut summary, progress).await?;
        }

        // Write back.
        lap("Alerts delivered.");
        write_back(
            &sink,
            writeback::Written {
                data: &data,
                evaluation: &evaluation,
                review_fields: &settings.writeback.review_fields(),
            },
            state.as_ref(),
            opts,
            out,
            &mut summary,
        )
        .await?;
        lap("Scorecards written back.");
        if let Some(decisions) = &decisions {
            write_decisions(
                decisions,
                writeback::Verdicts {
                    data: &data,
                    holds: &holds,
                    findings: &evaluation.findings,
                },
                state.as_ref(),
                opts,
                out,
                &mut summary,
            )
            .await?;
            lap("Decisions written back.");
        }

        if let (Some(state), false) = (&state, opts.dry_run) {
            let outcome = if summary.exit_code() == 0 {
                "ok"
            } else {
                "partial"
            };
            let json = serde_json::to_string(&summary)
                .expect("a summary (counts and strings) serialises to JSON");
            state.record_run(started, Utc::now().max(started), outcome, &json)?;
        }
        lap("Run recorded.");
        Ok((summary, keep_data.then_some(data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_onto_the_documented_exit_codes() {
        let config = CycleError::Config(ConfigError::new("crm.kind", "missing"));
        assert_eq!(config.exit_code(), 78);
        let connector_config = CycleError::Connector(crate::connectors::Error {
            vendor: "a-crm",
            source: crate::connectors::Failure::Config(ConfigError::new("x", "y")),
        });
        assert_eq!(connector_config.exit_code(), 78);
        let upstream = CycleError::Connector(crate::connectors::Error {
            vendor: "a-crm",
            source: crate::connectors::Failure::Other(anyhow::anyhow!("503")),
        });
        assert_eq!(upstream.exit_code(), 1);
        assert_eq!(CycleError::Other(anyhow::anyhow!("x")).exit_code(), 1);
    }

    #[test]
    fn a_route_without_any_webhook_is_a_configuration_error() {
        let mut settings = Settings::default();
        settings.crm.kind = Some(crate::config::CrmKind::Files);
        settings.crm.files.dir = Some("sample".into());
        settings
            .alerts
            .slack
            .routes
            .insert("gold".into(), Default::default());
        let e = check(&settings).unwrap_err();
        assert!(e.to_string().contains("alerts.slack.routes.gold"), "{e}");
    }
}
