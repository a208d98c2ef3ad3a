//! `channel-sync run`: cycles on `schedule.cron` plus the ops HTTP server.
//!
//! The scheduler's known weak spots are guarded here rather than trusted:
//! - overlap: a tick that finds the previous cycle still running is skipped,
//!   logged and counted (`channel_sync_cycles_skipped_total`);
//! - shutdown: `JobScheduler::shutdown` does not wait for a running job, so
//!   on SIGTERM/SIGINT the daemon stops scheduling, asks the running cycle to
//!   stop at its next safe point, and waits for it up to
//!   `server.shutdown_grace`; a second signal or the deadline ends the
//!   process at once, which the state's transactions make safe.
//! - a failing cycle is logged and counted; the schedule goes on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, RwLock, watch};
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::Instrument;

use crate::config::Settings;
use crate::cycle::{Options, Runner};
use crate::metrics::Metrics;

pub use crate::clock::Clock;

/// What the ops endpoints report.
#[derive(Debug, Default, Clone)]
struct Health {
    /// When the last cycle finished, and whether it completed.
    last_finished: Option<(DateTime<Utc>, bool)>,
    last_success: Option<DateTime<Utc>>,
    /// With a PostgreSQL state: whether this replica led at the last tick.
    leader: Option<bool>,
}

struct Shared {
    metrics: Arc<Metrics>,
    clock: Clock,
    schedule: crate::config::ScheduleSettings,
    health: RwLock<Health>,
    /// Readiness tolerates twice the schedule's interval without a success.
    interval: chrono::Duration,
    /// Where the state is (leader election when it is PostgreSQL).
    state: crate::config::StateSettings,
    /// What the review digest is made from and posted with.
    settings: Settings,
    /// The channels the last review digest could not be posted to: the
    /// next tick retries them.
    digest_pending: std::sync::Mutex<Vec<&'static str>>,
    /// With an API source and `review.cron`: the review of the last
    /// successful cycle's data, which the digest posts (the review command
    /// reads files; an API program exists only in the cycle's pull).
    last_review: std::sync::Mutex<Option<crate::engine::review::Review>>,
    /// The console, when `console.listen` is set: its snapshot is rebuilt
    /// after each successful cycle.
    console: Option<(Arc<crate::console::Console>, Arc<Settings>)>,
}

/// Posts the review digest (SPEC §6) as of the daemon's clock: to every
/// channel that reaches it, or with `retry` only to those a failed post
/// left. A failure is logged and leaves those channels pending: the next
/// cycle's tick posts there again (not where it was already posted), until
/// it succeeds. Returns whether it was posted everywhere it was due.
async fn post_digest(shared: &Shared, retry: bool) -> bool {
    let settings = &shared.settings;
    let channels = if retry {
        shared
            .digest_pending
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    } else {
        crate::review::digest_channels(settings)
    };
    let ready = match digest_from_cycles(settings) {
        false => None,
        true => match shared.last_review.lock().ok().and_then(|r| r.clone()) {
            Some(review) => Some(review),
            None => {
                tracing::warn!(
                    "Review digest waits for the first successful cycle (an API program's review is made from a cycle's data); the next tick retries it."
                );
                remember_pending(shared, &channels).await;
                if let Ok(mut pending) = shared.digest_pending.lock() {
                    *pending = channels;
                }
                return false;
            }
        },
    };
    let unposted = match crate::review::post_digest(settings, shared.clock.now(), &channels, ready)
        .await
    {
        Ok(()) => {
            tracing::info!(route = %settings.review.route, channels = ?channels, "Review digest posted.");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(
                error = %format!("{:#}", e.error),
                unposted = ?e.unposted,
                "Review digest not posted; the next tick retries it."
            );
            e.unposted
        }
    };
    let posted = unposted.is_empty();
    remember_pending(shared, &unposted).await;
    if let Ok(mut pending) = shared.digest_pending.lock() {
        *pending = unposted;
    }
    posted
}

/// Where the state keeps the channels a review digest is still owed to, so
/// a restart does not forget a failed monthly digest until the next month.
const DIGEST_PENDING: &str = "review:digest_pending";

/// Stores the channels still owed a digest (none: cleared) when that
/// changes. A state that cannot be written is logged: the digest is then
/// retried from memory, as long as the daemon runs.
async fn remember_pending(shared: &Shared, channels: &[&'static str]) {
    let before = shared
        .digest_pending
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    if before == channels {
        return;
    }
    let (state, value, now) = (
        shared.settings.state.clone(),
        channels.join(","),
        shared.clock.now(),
    );
    let stored = tokio::task::spawn_blocking(move || {
        crate::store::State::connect(&state)?.set_cursor(DIGEST_PENDING, &value, now)
    })
    .await;
    let error = match stored {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(
        error = %error,
        "Could not store the pending review digest; it is retried while the daemon runs."
    );
}

/// The channels a digest was still owed to when the daemon last stopped.
fn pending_from_state(settings: &Settings) -> Vec<&'static str> {
    let stored = crate::store::State::connect_read_only(&settings.state)
        .ok()
        .flatten()
        .and_then(|s| s.cursor(DIGEST_PENDING).ok().flatten())
        .unwrap_or_default();
    stored
        .split(',')
        .filter_map(|c| match c {
            "slack" => Some("slack"),
            "teams" => Some("teams"),
            _ => None,
        })
        .collect()
}

/// Whether the review digest is made from the cycles' data: an API source
/// with `review.cron` (a files program is read by the review itself).
fn digest_from_cycles(settings: &Settings) -> bool {
    settings.review.cron.is_some() && settings.crm.kind != Some(crate::config::CrmKind::Files)
}

/// `/readyz`: the last cycle succeeded within twice the schedule interval.
/// Before the first cycle has finished the daemon is not ready: it has not
/// yet shown that it can pull, decide and deliver.
fn readiness(
    health: &Health,
    interval: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<(), String> {
    match (health.last_finished, health.last_success) {
        (None, _) => Err("not ready: no cycle yet".into()),
        (Some((_, false)), Some(at)) => Err(format!(
            "not ready: the last cycle failed (last success at {})",
            at.to_rfc3339()
        )),
        (Some((_, false)), None) => Err("not ready: no cycle has succeeded yet".into()),
        (Some((_, true)), Some(at)) if now - at > interval * 2 => Err(format!(
            "not ready: last successful cycle at {}",
            at.to_rfc3339()
        )),
        _ => Ok(()),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(AxumState(shared): AxumState<Arc<Shared>>) -> impl IntoResponse {
    let health = shared.health.read().await.clone();
    if health.leader == Some(false) {
        // A healthy standby serves the console and waits to take over.
        return (
            StatusCode::OK,
            "ready: standby (another replica leads)".to_string(),
        );
    }
    match readiness(&health, shared.interval, Utc::now()) {
        Ok(()) if health.leader == Some(true) => (StatusCode::OK, "ready: leader".to_string()),
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn metrics(AxumState(shared): AxumState<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

/// Everything the daemon serves: the ops endpoints, plus the Slack button
/// clicks (issue 15) when `alerts.slack.signing_secret` is set.
fn app(shared: &Arc<Shared>) -> Router {
    let mut app = router(shared.clone());
    let slack = &shared.settings.alerts.slack;
    if let Some(secret) = &slack.signing_secret {
        let it = crate::notify::slack::interactions::Interactions::new(
            secret,
            shared.settings.state.clone(),
            shared.clock,
            slack.response_url_prefix.clone(),
        );
        app = app.merge(crate::notify::slack::interactions::router(Arc::new(it)));
        tracing::info!("Slack interactions taken on POST /slack/interactions.");
    }
    app
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// Waits for SIGTERM or SIGINT (`once` uses it too).
pub(crate) async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// One scheduled cycle, unless the previous one is still running.
async fn tick(runner: Arc<Runner>, busy: Arc<Mutex<()>>, shared: Arc<Shared>) {
    let Ok(_guard) = busy.try_lock() else {
        shared.metrics.cycles_skipped.inc();
        tracing::warn!("Cycle skipped: the previous one is still running.");
        return;
    };
    if runner.stopping.load(Ordering::SeqCst) {
        return;
    }
    // Replicas sharing a PostgreSQL state: only the leader runs cycles.
    let state = shared.state.clone();
    let leads = tokio::task::spawn_blocking(move || crate::store::may_lead(&state))
        .await
        .unwrap_or(Some(false));
    shared.health.write().await.leader = leads;
    shared.metrics.leader.set(i64::from(leads != Some(false)));
    if leads == Some(false) {
        tracing::debug!("Standby: another replica leads; no cycle here.");
        return;
    }
    let run_id = format!("{:016x}", crate::fast::random_u64());
    let span = tracing::info_span!("cycle", run_id = %run_id);
    async {
        let started = Instant::now();
        let now = shared.clock.now();
        tracing::info!(as_of = %now.to_rfc3339(), "Cycle started.");
        let options = Options {
            now,
            dry_run: false,
            full: false,
            preview: Default::default(),
            progress: false,
        };
        let mut sink = std::io::sink();
        let result = runner.cycle(&options, &mut sink).await;
        let seconds = started.elapsed().as_secs_f64();
        let finished = Utc::now();
        let mut health = shared.health.write().await;
        match result {
            Ok(summary) => {
                shared.metrics.cycle_done(
                    &summary,
                    seconds,
                    finished.timestamp_millis() as f64 / 1000.0,
                );
                health.last_finished = Some((finished, true));
                health.last_success = Some(finished);
                let mut handoff = runner.take_handoff();
                if digest_from_cycles(&shared.settings)
                    && let Some(h) = handoff.take()
                {
                    // The digest's review, from this cycle's data, before a
                    // pending digest is retried below.
                    let settings = shared.settings.clone();
                    let made = tokio::task::spawn_blocking(move || {
                        let review = cycle_review(&settings, &h, now);
                        (review, h)
                    })
                    .await;
                    if let Ok((review, h)) = made {
                        if let Ok(mut last) = shared.last_review.lock() {
                            *last = Some(review);
                        }
                        handoff = Some(h);
                    }
                }
                if let Some((console, settings)) = &shared.console {
                    // The snapshot from the data this cycle evaluated (any
                    // source), off the async workers.
                    let (console, settings) = (console.clone(), settings.clone());
                    tokio::task::spawn_blocking(move || match handoff {
                        Some(h) => console.refresh_from(&settings, now, h),
                        None => console.refresh(&settings, now),
                    });
                }
                tracing::info!(
                    seconds,
                    findings = summary.findings_open,
                    new = summary.findings_new,
                    changed = summary.findings_changed,
                    resolved = summary.findings_resolved,
                    alerts_sent = summary.alerts_sent,
                    alerts_failed = summary.alerts_failed,
                    writes_done = summary.writes_done,
                    writes_failed = summary.writes_failed,
                    rejected = summary.rejected,
                    "Cycle finished."
                );
            }
            Err(e) => {
                shared.metrics.cycle_failed(seconds);
                health.last_finished = Some((finished, false));
                tracing::error!(error = %e, seconds, "Cycle failed; the schedule goes on.");
            }
        }
        drop(health);
        log_next_due(&shared);
    }
    .instrument(span)
    .await;
    let pending = shared
        .digest_pending
        .lock()
        .map(|p| !p.is_empty())
        .unwrap_or(false);
    if pending {
        post_digest(&shared, true).await;
    }
}

/// The review (4 quarters and the one to date) of a cycle's data, with the
/// disputes the state remembers.
fn cycle_review(
    settings: &Settings,
    h: &crate::cycle::Handoff,
    now: DateTime<Utc>,
) -> crate::engine::review::Review {
    let review = crate::engine::review::review(&h.dataset, &h.review_inputs, settings, now, 4);
    // Without a readable history the digest still goes out, without disputes.
    crate::review::with_stored_history(review.clone(), settings, now).unwrap_or(review)
}

/// Logs when the schedule next fires (on the daemon's clock).
fn log_next_due(shared: &Shared) {
    let now = shared.clock.now();
    match shared.schedule.next_after(now) {
        Some(at) => tracing::info!(
            next = %at.to_rfc3339(),
            in_secs = (at - now).num_seconds(),
            "Next cycle due."
        ),
        None => tracing::warn!(cron = %shared.schedule.cron, "The schedule never fires again."),
    }
}

/// The daemon, in process: its runner, health and metrics. [`Daemon::router`]
/// serves the ops endpoints over them (tests call it with `oneshot`, no
/// socket), [`Daemon::tick`] runs one scheduled cycle now, and
/// [`Daemon::serve`] runs the schedule and the server until shutdown.
pub struct Daemon {
    settings: Settings,
    shared: Arc<Shared>,
    runner: Arc<Runner>,
    busy: Arc<Mutex<()>>,
}

impl Daemon {
    /// Opens what a cycle needs (the state, the connectors); no cycle runs
    /// and nothing listens yet.
    pub fn new(settings: Settings, clock: Clock) -> anyhow::Result<Daemon> {
        let metrics = Arc::new(Metrics::new());
        let interval = settings
            .schedule
            .interval(clock.now())
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .unwrap_or(chrono::Duration::minutes(15));
        let shared = Arc::new(Shared {
            metrics: metrics.clone(),
            clock,
            schedule: settings.schedule.clone(),
            health: RwLock::new(Health::default()),
            interval,
            state: settings.state.clone(),
            settings: settings.clone(),
            // A digest still owed when the daemon last stopped.
            digest_pending: std::sync::Mutex::new(if settings.review.cron.is_some() {
                pending_from_state(&settings)
            } else {
                Vec::new()
            }),
            last_review: Default::default(),
            console: match settings.console.listen {
                Some(_) => Some((
                    Arc::new(crate::console::Console::new(&settings, clock)?),
                    Arc::new(settings.clone()),
                )),
                None => None,
            },
        });
        let mut runner = Runner::new(settings.clone(), Some(metrics))?;
        if settings.console.listen.is_some() || digest_from_cycles(&settings) {
            runner = runner.with_console_handoff();
        }
        let runner = Arc::new(runner);
        Ok(Daemon {
            settings,
            shared,
            runner,
            busy: Arc::new(Mutex::new(())),
        })
    }

    /// `/healthz`, `/readyz` and `/metrics` over this daemon's state, and
    /// `POST /slack/interactions` when a Slack signing secret is configured.
    pub fn router(&self) -> Router {
        app(&self.shared)
    }

    /// One cycle, as the schedule runs it: skipped (and counted) when the
    /// previous one is still running; the outcome goes to the health and
    /// the metrics, never to the caller.
    pub async fn tick(&self) {
        tick(self.runner.clone(), self.busy.clone(), self.shared.clone()).await;
    }

    /// The console, when `console.listen` is set (its snapshot, for tests).
    pub fn console(&self) -> Option<Arc<crate::console::Console>> {
        self.shared.console.as_ref().map(|(c, _)| c.clone())
    }

    /// Posts the review digest now, as `review.cron` does; when it fails,
    /// the next [`Daemon::tick`] retries it. Returns whether it was posted.
    pub async fn post_digest(&self) -> bool {
        post_digest(&self.shared, false).await
    }

    /// Serves the ops endpoints on `listener` and runs cycles on
    /// `schedule.cron` until `shutdown` completes; then stops scheduling,
    /// asks a running cycle to stop at its next safe point and waits for it
    /// up to `server.shutdown_grace` (a process signal during that wait ends
    /// it at once). Returns the exit code: 0 after a clean stop, 1 when a
    /// running cycle had to be cut short.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<u8> {
        let Daemon {
            settings,
            shared,
            runner,
            busy,
        } = self;
        tracing::info!(addr = %listener.local_addr()?, "Ops server listening.");
        let (stop_server, server_stop) = watch::channel(false);
        let server = {
            let shared = shared.clone();
            let mut stop = server_stop.clone();
            tokio::spawn(async move {
                axum::serve(listener, app(&shared))
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            })
        };
        let console_server = match (&shared.console, &settings.console.listen) {
            (Some((console, settings)), Some(listen)) => {
                let addr: SocketAddr = listen.parse()?;
                let listener = tokio::net::TcpListener::bind(addr).await?;
                tracing::info!(addr = %listener.local_addr()?, auth = ?settings.console.auth, "Console listening.");
                let (console, settings) = (console.clone(), settings.clone());
                let now = shared.clock.now();
                {
                    let console = console.clone();
                    tokio::task::spawn_blocking(move || console.refresh(&settings, now));
                }
                let mut stop = server_stop.clone();
                Some(tokio::spawn(crate::console::serve(
                    listener,
                    console,
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                )))
            }
            _ => None,
        };

        let mut scheduler = JobScheduler::new().await?;
        let job = {
            let (runner, busy, shared) = (runner.clone(), busy.clone(), shared.clone());
            Job::new_async(settings.schedule.cron.as_str(), move |_, _| {
                let (runner, busy, shared) = (runner.clone(), busy.clone(), shared.clone());
                Box::pin(tick(runner, busy, shared))
            })?
        };
        scheduler.add(job).await?;
        if let Some(cron) = settings.review.cron.clone() {
            // The review digest (SPEC §6): on its own schedule, beside the cycles.
            let shared = shared.clone();
            let digest = Job::new_async(cron.as_str(), move |_, _| {
                let shared = shared.clone();
                Box::pin(async move {
                    // Replicas on one PostgreSQL state: the leader posts it, once.
                    let state = shared.settings.state.clone();
                    let leads = tokio::task::spawn_blocking(move || crate::store::may_lead(&state))
                        .await
                        .unwrap_or(Some(false));
                    if leads == Some(false) {
                        return;
                    }
                    post_digest(&shared, false).await;
                })
            })?;
            scheduler.add(digest).await?;
            tracing::info!(cron = %cron, "Review digest scheduled.");
        }
        scheduler.start().await?;
        tracing::info!(
            cron = %settings.schedule.cron,
            run_at_start = settings.schedule.run_at_start,
            "Scheduler started."
        );
        if settings.schedule.run_at_start {
            // The first cycle starts at once rather than at the first cron time,
            // which with the default schedule can be 15 minutes away.
            tokio::spawn(tick(runner.clone(), busy.clone(), shared.clone()));
        } else {
            log_next_due(&shared);
        }

        shutdown.await;
        tracing::info!("Shutting down: no new cycles; a running one may finish.");
        runner.stopping.store(true, Ordering::SeqCst);
        if let Err(e) = scheduler.shutdown().await {
            tracing::warn!(error = %e, "Scheduler did not stop cleanly.");
        }
        let grace = settings.server.shutdown_grace();
        let code = tokio::select! {
            _ = busy.lock() => {
                tracing::info!("Stopped cleanly.");
                0
            }
            () = tokio::time::sleep(grace) => {
                tracing::error!(grace_secs = grace.as_secs(), "A cycle was still running at the grace deadline; stopping anyway (the state stays consistent).");
                1
            }
            () = signal() => {
                tracing::warn!("Second signal: stopping at once (the state stays consistent).");
                1
            }
        };
        let _ = stop_server.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        if let Some(console) = console_server {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), console).await;
        }
        Ok(code)
    }
}

/// [`Daemon::serve`] for `settings`: the daemon in process, on a listener
/// the caller bound (port 0 in tests), until `shutdown`.
pub async fn serve(
    settings: Settings,
    clock: Clock,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<u8> {
    Daemon::new(settings, clock)?
        .serve(listener, shutdown)
        .await
}

/// `channel-sync run`: binds `server.listen` and serves until SIGTERM/SIGINT.
pub async fn run(settings: Settings, clock: Clock) -> anyhow::Result<u8> {
    // The state and connectors first, as before: their errors come before
    // a bind error.
    let addr: SocketAddr = settings.server.listen.parse()?;
    let daemon = Daemon::new(settings, clock)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    daemon.serve(listener, signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn readiness_follows_the_last_cycle() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let every = chrono::Duration::minutes(15);
        let mut h = Health::default();
        assert_eq!(
            readiness(&h, every, now),
            Err("not ready: no cycle yet".into()),
            "before the first cycle finishes"
        );
        h.last_finished = Some((now, true));
        h.last_success = Some(now - chrono::Duration::minutes(30));
        assert_eq!(
            readiness(&h, every, now),
            Ok(()),
            "within twice the interval"
        );
        h.last_success = Some(now - chrono::Duration::minutes(31));
        assert!(
            readiness(&h, every, now).is_err_and(|e| e.contains("last successful cycle")),
            "too long ago"
        );
        h.last_success = Some(now);
        h.last_finished = Some((now, false));
        assert!(
            readiness(&h, every, now).is_err_and(|e| e.contains("failed")),
            "the last cycle failed"
        );
        h.last_success = None;
        assert!(
            readiness(&h, every, now).is_err_and(|e| e.contains("no cycle has succeeded")),
            "only failures so far"
        );
    }

    #[test]
    fn a_pinned_clock_starts_where_it_is_told_and_advances() {
        let start = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let clock = Clock::starting_at(start);
        let read = clock.now();
        assert!(read >= start && read - start < chrono::Duration::seconds(5));
        assert!(Clock::default().now() - Utc::now() < chrono::Duration::seconds(5));
    }
}
