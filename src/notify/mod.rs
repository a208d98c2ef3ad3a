//! Notifications: the channels that carry the alert planner's notices.
//!
//! Each channel lives in its own folder (`slack/`, `teams/`) and implements
//! [`Notifier`]: it says which routes it reaches, renders a channel-neutral
//! [`Notice`] into the body it posts (stored in the outbox, so a retry sends
//! exactly the same bytes), previews a body for dry runs, and posts it.
//! Adding a channel is one folder plus one line in [`Notifiers::new`].

pub(crate) mod names;
pub(crate) mod slack;
pub(crate) mod teams;
pub(crate) mod webhooks;
pub(crate) mod wording;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub(crate) use names::{Links, Names, Role};

use crate::alerts::Notice;
use crate::config::{AlertSettings, ConsoleSettings};
use crate::http::CallError;

/// What became of one message (the same outcomes for every channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    Sent,
    /// Not delivered; try again next cycle.
    Retry(String),
    /// This webhook cannot take messages now; stop using it this cycle.
    WebhookDown(String),
    /// The channel refuses this message as malformed; do not send it again.
    Parked(String),
    /// Sent, but not confirmed in time: it may have been posted.
    Unconfirmed(String),
}

impl From<CallError> for Delivery {
    /// Transport errors, exhausted retries, a wait longer than allowed:
    /// the message waits for the next cycle.
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unconfirmed { .. } => Delivery::Unconfirmed(e.to_string()),
            e => Delivery::Retry(e.to_string()),
        }
    }
}

/// A boxed future (keeps [`Notifier`] usable as a trait object).
pub(crate) type Posting<'a> = Pin<Box<dyn Future<Output = Delivery> + Send + 'a>>;

/// One notification channel.
pub(crate) trait Notifier: Send + Sync {
    /// The channel's name, stored with each outbox row (`slack`, `teams`).
    fn channel(&self) -> &'static str;
    /// The routes this channel has a webhook for.
    fn routes(&self) -> BTreeSet<String>;
    /// The body to post for a notice.
    fn render(&self, notice: &Notice, names: &Names) -> String;
    /// What a person would read, for a dry run.
    fn preview(&self, body: &str) -> String;
    /// Posts one body to a route's webhook.
    fn post<'a>(&'a self, route: &'a str, body: &'a str) -> Posting<'a>;
    /// Messages per second per webhook (for the progress estimate).
    fn per_second(&self) -> u32;
}

/// The configured channels.
pub(crate) struct Notifiers {
    channels: Vec<Box<dyn Notifier>>,
}

impl Notifiers {
    /// Every channel, configured or not (a channel without webhooks reaches
    /// no route).
    /// `console` gives alerts a link to the finding's console page when
    /// `console.public_url` is set.
    pub(crate) fn new(
        settings: &AlertSettings,
        console: &ConsoleSettings,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> anyhow::Result<Notifiers> {
        let channels: Vec<Box<dyn Notifier>> = vec![
            Box::new(
                slack::SlackClient::new(&settings.slack)?
                    .with_console(console)
                    .with_metrics_opt(metrics.clone()),
            ),
            Box::new(
                teams::TeamsClient::new(settings)?
                    .with_console(console)
                    .with_metrics_opt(metrics),
            ),
        ];
        Ok(Notifiers { channels })
    }

    /// Route -> the channels that reach it.
    pub(crate) fn reach(&self) -> BTreeMap<String, Vec<&'static str>> {
        let mut reach: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for c in &self.channels {
            for r in c.routes() {
                reach.entry(r).or_default().push(c.channel());
            }
        }
        reach
    }

    /// The channel by name.
    pub(crate) fn get(&self, channel: &str) -> Option<&dyn Notifier> {
        self.channels
            .iter()
            .find(|c| c.channel() == channel)
            .map(|c| c.as_ref())
    }

    /// The slowest configured channel's pace (for the progress estimate).
    pub(crate) fn per_second(&self) -> u32 {
        self.channels
            .iter()
            .filter(|c| !c.routes().is_empty())
            .map(|c| c.per_second())
            .min()
            .unwrap_or(1)
    }
}
