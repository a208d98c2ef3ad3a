//! Rendering notices into outbox rows, and delivering the outbox.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{CycleError, Summary};
use crate::alerts;
use crate::crash::crash_point;
use crate::notify::{Delivery, Names, Notifiers};
use crate::store::State;

/// Each notice rendered for every channel its route reaches: the outbox
/// rows (a retry posts exactly the stored body).
pub(super) fn render_notices(
    notifiers: &Notifiers,
    reach: &BTreeMap<String, Vec<&'static str>>,
    notices: &[alerts::Notice],
    names: &Names,
) -> Vec<crate::store::NewMessage> {
    let mut out = Vec::new();
    for n in notices {
        for channel in reach.get(&n.route).into_iter().flatten() {
            let Some(notifier) = notifiers.get(channel) else {
                continue;
            };
            out.push(crate::store::NewMessage {
                route: n.route.clone(),
                channel: (*channel).to_string(),
                finding_key: n.finding_key.clone(),
                reason: n.reason.as_str().into(),
                body: notifier.render(n, names),
            });
        }
    }
    out
}

/// Sends every pending message, oldest first, marking each as it goes.
pub(super) async fn deliver(
    state: &State,
    notifiers: &Notifiers,
    stopping: &std::sync::atomic::AtomicBool,
    now: DateTime<Utc>,
    summary: &mut Summary,
    progress: Option<Progress>,
) -> Result<(), CycleError> {
    // (channel, route): webhooks that take no more this cycle.
    let mut down: BTreeSet<(String, String)> = BTreeSet::new();
    let pending = state.pending()?;
    let bar = progress.map(|p| p.start(&pending));
    for row in pending {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        let webhook = (row.channel.clone(), row.route.clone());
        // A replica that no longer leads stops here too, like a shutdown.
        if down.contains(&webhook)
            || stopping.load(std::sync::atomic::Ordering::SeqCst)
            || !state.still_leading()
        {
            summary.alerts_pending += 1;
            continue;
        }
        let Some(notifier) = notifiers.get(&row.channel) else {
            tracing::error!(channel = %row.channel, outbox_id = row.id, "An alert for an unknown channel; parked.");
            state.mark_failed(row.id, &format!("unknown channel '{}'", row.channel), true)?;
            summary.alerts_parked += 1;
            continue;
        };
        match notifier.post(&row.route, &row.body).await {
            Delivery::Sent => {
                crash_point("mid-send");
                state.mark_sent(row.id, now)?;
                summary.alerts_sent += 1;
            }
            Delivery::Retry(e) => {
                // The channel is failing or asked us to wait: keep this webhook's
                // remaining messages for the next cycle instead of hammering.
                tracing::warn!(channel = %row.channel, route = %row.route, error = %e, "Alert not delivered; retrying next cycle.");
                state.mark_failed(row.id, &e, false)?;
                summary.alerts_failed += 1;
                summary.alerts_pending += 1;
                down.insert(webhook.clone());
            }
            Delivery::WebhookDown(e) => {
                tracing::error!(channel = %row.channel, route = %row.route, error = %e, "Webhook cannot post; alerts wait for the next cycle.");
                state.mark_failed(row.id, &e, false)?;
                summary
                    .errors
                    .push(format!("{} route '{}': {e}", row.channel, row.route));
                summary.alerts_failed += 1;
                summary.alerts_pending += 1;
                down.insert(webhook.clone());
            }
            Delivery::Parked(e) => {
                tracing::error!(channel = %row.channel, route = %row.route, outbox_id = row.id, error = %e, "The channel refused an alert as malformed; parked.");
                state.mark_failed(row.id, &e, true)?;
                summary.alerts_parked += 1;
            }
            Delivery::Unconfirmed(e) if row.unconfirmed == 0 => {
                // It may be in the channel already: not again this cycle;
                // once more in a later one (at most one duplicate).
                tracing::warn!(channel = %row.channel, route = %row.route, outbox_id = row.id, error = %e, "The channel did not confirm an alert; sending it once more next cycle.");
                state.mark_unconfirmed(row.id, &e, false)?;
                summary.alerts_failed += 1;
                summary.alerts_pending += 1;
                down.insert(webhook.clone());
            }
            Delivery::Unconfirmed(e) => {
                // Twice unconfirmed: it may be in the channel twice already.
                tracing::error!(channel = %row.channel, route = %row.route, outbox_id = row.id, error = %e, "The channel did not confirm an alert a second time; parked (it may have been posted), not sent again.");
                state.mark_unconfirmed(row.id, &e, true)?;
                summary.alerts_parked += 1;
                down.insert(webhook.clone());
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
pub(super) struct Progress {
    per_second: u32,
}

impl Progress {
    pub(super) fn new(per_second: u32) -> Progress {
        Progress {
            per_second: per_second.max(1),
        }
    }

    fn start(&self, pending: &[crate::store::OutboxRow]) -> indicatif::ProgressBar {
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
