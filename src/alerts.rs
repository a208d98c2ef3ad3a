//! Deciding what to tell people (pure: findings, memory and a clock in; the
//! state changes and messages out).
//!
//! - A new finding is announced once.
//! - An open conflict is announced again only when it materially changes: its
//!   severity rises, one of its opportunities is won, or a new party (partner,
//!   registration, opportunity) joins; and, if `alerts.slack.repeat_after` is
//!   set, as a reminder when that long has passed since the last alert.
//! - A conflict that disappears gets a resolution message.
//! - Window findings (expiring, expired) are announced at most once per
//!   registration and kind, ever.
//! - More than `alerts.slack.max_per_cycle` messages for one webhook in one
//!   cycle become a single digest.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::SlackSettings;
use crate::engine::{Finding, FindingKind, Severity};
use crate::fast::FastMap;
use crate::sinks::slack::render;
use crate::state::{FindingUpdate, NewMessage, StoredFinding};

/// The facts an alert told, to judge whether a later version of the finding
/// is materially different.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub severity: Option<Severity>,
    pub parties: BTreeSet<String>,
    pub won: BTreeSet<String>,
}

impl Facts {
    pub fn of(f: &Finding) -> Facts {
        let mut parties: BTreeSet<String> = f.partner_ids.iter().cloned().collect();
        parties.extend(f.registration_ids.iter().cloned());
        parties.extend(f.opportunity_ids.iter().cloned());
        let won = f
            .evidence
            .iter()
            .filter(|e| e.record == crate::engine::Record::Opportunity && e.status == "won")
            .map(|e| e.id.clone())
            .collect();
        Facts {
            severity: Some(f.severity),
            parties,
            won,
        }
    }

    /// What about `now` is news compared with what was told; `None` if nothing.
    pub fn news(&self, now: &Facts) -> Option<String> {
        let mut why = Vec::new();
        if now.severity > self.severity {
            if let Some(s) = now.severity {
                why.push(format!("severity rose to {}", s.as_str()));
            }
        }
        let won: Vec<&String> = now.won.difference(&self.won).collect();
        if !won.is_empty() {
            why.push(format!("won: {}", join(won)));
        }
        let joined: Vec<&String> = now.parties.difference(&self.parties).collect();
        if !joined.is_empty() {
            why.push(format!("new: {}", join(joined)));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// What has been told once an alert about `now` goes out: parties that
    /// left are still remembered, so one that comes back is not news.
    pub fn merged(&self, now: &Facts) -> Facts {
        Facts {
            severity: self.severity.max(now.severity),
            parties: self.parties.union(&now.parties).cloned().collect(),
            won: self.won.union(&now.won).cloned().collect(),
        }
    }
}

fn join(items: Vec<&String>) -> String {
    items
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_window(kind: &str) -> bool {
    kind == FindingKind::RegistrationExpiring.as_str()
        || kind == FindingKind::RegistrationExpired.as_str()
}

/// Why a message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    New,
    Changed,
    Reminder,
    Resolved,
    Digest,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::Changed => "changed",
            Reason::Reminder => "reminder",
            Reason::Resolved => "resolved",
            Reason::Digest => "digest",
        }
    }
}

/// What the alert side knows beyond the findings.
pub struct AlertContext<'a> {
    pub slack: &'a SlackSettings,
    /// Route names that have a webhook: `default` and configured routes.
    pub routes_with_webhook: BTreeSet<String>,
    /// Partner id -> tier.
    pub tiers: FastMap<String, String>,
    pub names: &'a render::Names,
}

/// What a cycle stores and sends.
#[derive(Debug, Default)]
pub struct Plan {
    pub seen: Vec<FindingUpdate>,
    pub resolved: Vec<String>,
    pub messages: Vec<NewMessage>,
    /// Findings the state did not know (or had seen resolved).
    pub new: usize,
    pub changed: usize,
    pub reminded: usize,
    pub resolved_alerts: usize,
}

/// The routes a finding goes to.
fn routes_for(f: &Finding, ctx: &AlertContext) -> Vec<String> {
    let tiers: Vec<&str> = f
        .partner_ids
        .iter()
        .filter_map(|p| ctx.tiers.get(p).map(String::as_str))
        .collect();
    let mut routes: Vec<String> = ctx
        .slack
        .routes
        .iter()
        .filter(|(_, r)| {
            (r.kinds.is_empty() || r.kinds.iter().any(|k| k == f.kind.as_str()))
                && (r.tiers.is_empty()
                    || r.tiers
                        .iter()
                        .any(|t| tiers.iter().any(|x| x.eq_ignore_ascii_case(t))))
        })
        .map(|(name, _)| name.clone())
        .collect();
    if routes.is_empty() {
        routes.push("default".into());
    }
    routes.retain(|r| ctx.routes_with_webhook.contains(r));
    routes
}

pub fn plan(
    findings: &[Finding],
    stored: &[StoredFinding],
    ctx: &AlertContext,
    now: DateTime<Utc>,
) -> Plan {
    let remembered: FastMap<&str, &StoredFinding> =
        stored.iter().map(|s| (s.key.as_str(), s)).collect();
    let alerting = !ctx.routes_with_webhook.is_empty();
    let repeat_after = ctx
        .slack
        .repeat_after()
        .and_then(|d| chrono::Duration::from_std(d).ok());
    let mut plan = Plan::default();
    // (route, finding, reason, what changed): rendered at the end, and only
    // for webhooks that stay under the digest threshold.
    let mut announcements: Vec<(String, &Finding, Reason, Option<String>)> = Vec::new();

    for f in findings {
        let facts = Facts::of(f);
        let previous = remembered.get(f.key.as_str());
        if previous.is_none_or(|s| s.resolved_at.is_some()) {
            plan.new += 1;
        }
        let told: Option<Facts> = previous
            .filter(|s| s.notified_at.is_some())
            .and_then(|s| serde_json::from_str(&s.notified).ok());
        let reason = match (previous, &told) {
            // Never announced (new, or no webhook at the time).
            (None, _) | (Some(_), None) => Some((Reason::New, None)),
            (Some(s), Some(_)) if is_window(&s.kind) => None,
            (Some(s), Some(_)) if s.resolved_at.is_some() => Some((Reason::New, None)),
            (Some(s), Some(t)) => match t.news(&facts) {
                Some(why) => Some((Reason::Changed, Some(why))),
                None => {
                    let due = repeat_after.is_some_and(|every| {
                        s.notified_at
                            .as_deref()
                            .and_then(crate::values::parse_timestamp)
                            .is_some_and(|at| now - at >= every)
                    });
                    due.then_some((Reason::Reminder, None))
                }
            },
        };
        let payload = serde_json::to_string(f).unwrap_or_default();
        let routes = if alerting {
            routes_for(f, ctx)
        } else {
            Vec::new()
        };
        let announce = reason.filter(|_| !routes.is_empty());
        let notified = announce.as_ref().map(|_| {
            let told = told.clone().unwrap_or_default();
            serde_json::to_string(&told.merged(&facts)).unwrap_or_default()
        });
        plan.seen.push(FindingUpdate {
            key: f.key.clone(),
            kind: f.kind.as_str().into(),
            severity: f.severity.as_str().into(),
            payload,
            notified,
        });
        let Some((reason, why)) = announce else {
            continue;
        };
        match reason {
            Reason::Changed => plan.changed += 1,
            Reason::Reminder => plan.reminded += 1,
            _ => {}
        }
        for route in routes {
            announcements.push((route, f, reason, why.clone()));
        }
    }

    // Conflicts that are gone.
    let current: BTreeSet<&str> = findings.iter().map(|f| f.key.as_str()).collect();
    let mut gone: Vec<&StoredFinding> = stored
        .iter()
        .filter(|s| s.resolved_at.is_none() && !current.contains(s.key.as_str()))
        .collect();
    gone.sort_by(|a, b| a.key.cmp(&b.key));
    let mut resolutions = Vec::new();
    for s in gone {
        plan.resolved.push(s.key.clone());
        if is_window(&s.kind) || s.notified_at.is_none() || !alerting {
            continue;
        }
        let Ok(old) = serde_json::from_str::<Finding>(&s.payload) else {
            continue;
        };
        let routes = routes_for(&old, ctx);
        if routes.is_empty() {
            continue;
        }
        plan.resolved_alerts += 1;
        for route in routes {
            resolutions.push((route, old.clone()));
        }
    }

    // Per webhook: the messages, or one digest when there are too many.
    type Announcement<'f> = (&'f Finding, Reason, Option<String>);
    let mut by_route: BTreeMap<String, (Vec<Announcement>, Vec<Finding>)> = BTreeMap::new();
    for (route, f, reason, why) in announcements {
        by_route.entry(route).or_default().0.push((f, reason, why));
    }
    for (route, old) in resolutions {
        by_route.entry(route).or_default().1.push(old);
    }
    for (route, (announced, resolved)) in by_route {
        let total = announced.len() + resolved.len();
        if total > ctx.slack.max_per_cycle {
            let findings: Vec<&Finding> = announced.iter().map(|(f, _, _)| *f).collect();
            let body = render::digest(&findings, resolved.len(), total, ctx.names);
            plan.messages.push(NewMessage {
                route,
                finding_key: None,
                reason: Reason::Digest.as_str().into(),
                body: body.to_string(),
            });
            continue;
        }
        for (f, reason, why) in announced {
            plan.messages.push(NewMessage {
                route: route.clone(),
                finding_key: Some(f.key.clone()),
                reason: reason.as_str().into(),
                body: render::finding(f, reason, why.as_deref(), ctx.names).to_string(),
            });
        }
        for old in resolved {
            plan.messages.push(NewMessage {
                route: route.clone(),
                finding_key: Some(old.key.clone()),
                reason: Reason::Resolved.as_str().into(),
                body: render::resolved(&old, ctx.names).to_string(),
            });
        }
    }
    plan
}
