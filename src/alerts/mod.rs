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
//! - More than `alerts.slack.max_per_cycle` messages for one route in one
//!   cycle become a single digest.
//!
//! The plan is channel-neutral: each [`Notice`] says where (route), why
//! (reason) and what (content). `notify` renders it for each channel the
//! route reaches (Slack Block Kit, a Teams Adaptive Card).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::SlackSettings;
use crate::engine::{Finding, FindingKind, Severity};
use crate::fast::FastMap;
use crate::store::{FindingUpdate, StoredFinding};

/// The facts an alert told, to judge whether a later version of the finding
/// is materially different.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Facts {
    pub severity: Option<Severity>,
    pub parties: BTreeSet<String>,
    pub won: BTreeSet<String>,
}

impl Facts {
    pub(crate) fn of(f: &Finding) -> Facts {
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
    pub(crate) fn news(&self, now: &Facts) -> Option<String> {
        let mut why = Vec::new();
        if now.severity > self.severity
            && let Some(s) = now.severity
        {
            why.push(format!("severity rose to {}", s.as_str()));
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
    pub(crate) fn merged(&self, now: &Facts) -> Facts {
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
pub(crate) enum Reason {
    New,
    Changed,
    Reminder,
    Resolved,
    Digest,
    /// An undecided conflict past `alerts.escalate_after` (issue 15).
    Escalation,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::Changed => "changed",
            Reason::Reminder => "reminder",
            Reason::Resolved => "resolved",
            Reason::Digest => "digest",
            Reason::Escalation => "escalation",
        }
    }
}

/// One message to send, before any channel renders it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Notice {
    /// The route (`default` or a configured one); a route may reach Slack,
    /// Teams or both.
    pub route: String,
    /// The finding it is about (none for a digest).
    pub finding_key: Option<String>,
    pub reason: Reason,
    pub content: Content,
}

/// What a notice tells.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Content {
    /// A new, changed or reminded finding; `why` says what changed.
    Finding {
        finding: Finding,
        why: Option<String>,
    },
    /// A conflict that is gone.
    Resolved(Finding),
    /// Too many for one route this cycle: the announced findings, how many
    /// resolutions, and the total that would have gone out.
    Digest {
        findings: Vec<Finding>,
        resolved: usize,
        total: usize,
    },
}

/// What the alert side knows beyond the findings.
pub(crate) struct AlertContext<'a> {
    /// The route table, digest threshold and reminder interval. They sit
    /// under `alerts.slack` in the configuration for compatibility; a route
    /// there may name a Teams webhook too.
    pub routing: &'a SlackSettings,
    /// Route names that reach at least one channel: `default` and
    /// configured routes.
    pub routes_with_webhook: BTreeSet<String>,
    /// Partner id -> tier.
    pub tiers: FastMap<String, String>,
    /// `rules.expired_lookback_days`: how long an expired registration is
    /// reported before it ages out.
    pub expired_lookback: chrono::Duration,
}

/// What a cycle stores and sends.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub seen: Vec<FindingUpdate>,
    /// Gone because the data changed: announced where it had been.
    pub resolved: Vec<String>,
    /// Gone only because time moved it out of its window: closed quietly.
    pub aged_out: Vec<String>,
    pub messages: Vec<Notice>,
    /// Findings the state did not know (or had seen resolved).
    pub new: usize,
    /// Findings with news that no webhook takes (none configured, or no
    /// route matches and there is no default): announced once one does.
    pub unannounced: usize,
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
        .routing
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

/// Whether a finding that left the report did so only because time moved it
/// out of its window (SPEC §3.3): an expired registration past the look-back,
/// an expiring one whose expiry came, a conflict whose protection ended.
fn aged_out(f: &Finding, now: DateTime<Utc>, lookback: chrono::Duration) -> bool {
    let Some(expiry) = f.expires_at else {
        return false;
    };
    match f.kind {
        FindingKind::RegistrationExpired => expiry < now - lookback,
        FindingKind::RegistrationExpiring
        | FindingKind::DirectVsPartner
        | FindingKind::PartnerBypassed => expiry <= now,
        FindingKind::PartnerVsPartner => false,
    }
}

/// [`plan_with`] without decisions (the unit tests' shorthand).
#[cfg(test)]
pub(crate) fn plan(
    findings: &[Finding],
    stored: &[StoredFinding],
    ctx: &AlertContext,
    now: DateTime<Utc>,
) -> Plan {
    plan_with(
        findings,
        stored,
        ctx,
        &crate::decisions::Holds::default(),
        now,
    )
}

/// The alerts to send, respecting decisions (issue 15): a decided finding gets no
/// alert or reminder, a snoozed one no reminder, and one reopened this cycle
/// is announced again saying why.
pub(crate) fn plan_with(
    findings: &[Finding],
    stored: &[StoredFinding],
    ctx: &AlertContext,
    holds: &crate::decisions::Holds,
    now: DateTime<Utc>,
) -> Plan {
    use crate::decisions::Gate;
    let remembered: FastMap<&str, &StoredFinding> =
        stored.iter().map(|s| (s.key.as_str(), s)).collect();
    let alerting = !ctx.routes_with_webhook.is_empty();
    let repeat_after = ctx
        .routing
        .repeat_after()
        .and_then(|d| chrono::Duration::from_std(d).ok());
    let mut plan = Plan::default();
    // (route, finding, reason, what changed): rendered at the end, and only
    // for webhooks that stay under the digest threshold.
    let mut announcements: Vec<(String, &Finding, Reason, Option<String>)> = Vec::new();
    // Each finding as stored, serialised on every core: at 1M opportunities
    // a cycle has about 58,000 findings of a kilobyte or more, and this was
    // half the plan's time on one core.
    //
    // A finding is plain data (strings, numbers, timestamps): it always
    // serialises; storing "" instead would lose it silently.
    let payloads: Vec<String> = {
        use rayon::prelude::*;
        findings
            .par_iter()
            .map(|f| serde_json::to_string(f).expect("a finding serialises to JSON"))
            .collect()
    };

    for (f, payload) in findings.iter().zip(payloads) {
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
        let reason = match holds.gate(&f.key) {
            Gate::Pass => reason,
            Gate::Decided => None,
            Gate::Snoozed => reason.filter(|(r, _)| *r != Reason::Reminder),
            Gate::Reopened(why) => Some((Reason::Changed, Some(why))),
        };
        let routes = if alerting {
            routes_for(f, ctx)
        } else {
            Vec::new()
        };
        if reason.is_some() && routes.is_empty() {
            plan.unannounced += 1;
        }
        let announce = reason.filter(|_| !routes.is_empty());
        let notified = announce.as_ref().map(|_| {
            let told = told.clone().unwrap_or_default();
            serde_json::to_string(&told.merged(&facts)).expect("facts serialise to JSON")
        });
        plan.seen.push(FindingUpdate {
            key: f.key.clone(),
            kind: f.kind.as_str().into(),
            severity: f.severity.as_str().into(),
            payload,
            notified,
        });
        // Escalation (issue 15): an undecided, unsnoozed conflict older than
        // `alerts.escalate_after` goes once more to the escalation route.
        if let Some(after) = holds.escalate_after
            && f.kind.is_conflict()
            && holds.gate(&f.key) == Gate::Pass
            && !holds.escalated.contains(&f.key)
            && ctx.routes_with_webhook.contains(&holds.escalate_route)
            && let Some(first) = previous
                .filter(|s| s.resolved_at.is_none())
                .and_then(|s| crate::values::parse_timestamp(&s.first_seen))
            && now - first >= after
        {
            let risk = f.value_at_risk().map_or_else(
                || "value at risk unknown".to_string(),
                |(v, c)| {
                    format!(
                        "{}{} at risk",
                        c.map(|c| format!("{c} ")).unwrap_or_default(),
                        crate::values::format_amount(v, crate::values::Cents::WhenAny)
                    )
                },
            );
            let why = format!(
                "escalated: undecided for {} days; {risk}",
                (now - first).num_days()
            );
            plan.messages.push(Notice {
                route: holds.escalate_route.clone(),
                finding_key: Some(f.key.clone()),
                reason: Reason::Escalation,
                content: Content::Finding {
                    finding: f.clone(),
                    why: Some(why),
                },
            });
        }
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
        let old = serde_json::from_str::<Finding>(&s.payload).ok();
        if old
            .as_ref()
            .is_some_and(|f| aged_out(f, now, ctx.expired_lookback))
        {
            plan.aged_out.push(s.key.clone());
            continue;
        }
        plan.resolved.push(s.key.clone());
        if is_window(&s.kind) || s.notified_at.is_none() || !alerting {
            continue;
        }
        let Some(old) = old else {
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
        if total > ctx.routing.max_per_cycle {
            let findings: Vec<Finding> = announced.iter().map(|(f, _, _)| (*f).clone()).collect();
            plan.messages.push(Notice {
                route,
                finding_key: None,
                reason: Reason::Digest,
                content: Content::Digest {
                    findings,
                    resolved: resolved.len(),
                    total,
                },
            });
            continue;
        }
        for (f, reason, why) in announced {
            plan.messages.push(Notice {
                route: route.clone(),
                finding_key: Some(f.key.clone()),
                reason,
                content: Content::Finding {
                    finding: f.clone(),
                    why,
                },
            });
        }
        for old in resolved {
            plan.messages.push(Notice {
                route: route.clone(),
                finding_key: Some(old.key.clone()),
                reason: Reason::Resolved,
                content: Content::Resolved(old),
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SlackRoute;
    use crate::engine::{Evidence, Record};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
    }

    fn finding(kind: FindingKind, key: &str, severity: Severity, partners: &[&str]) -> Finding {
        Finding {
            kind,
            key: key.into(),
            severity,
            account_id: Some("A-1".into()),
            partner_ids: partners.iter().map(|p| p.to_string()).collect(),
            registration_ids: vec!["R-1".into()],
            opportunity_ids: vec!["O-1".into()],
            first_in: "R-1".into(),
            how: None,
            expires_at: None,
            summary: format!("summary of {key}"),
            account_name: Some("Acme".into()),
            evidence: vec![Evidence {
                record: Record::Opportunity,
                id: "O-1".into(),
                name: None,
                partner_id: None,
                partner_name: None,
                at: now(),
                status: "open".into(),
                approved_at: None,
                expires_at: None,
                close_date: None,
                rep: None,
                owner_id: None,
                how: None,
                amount: None,
                currency: None,
                stage: None,
                original_amount: None,
                original_currency: None,
            }],
        }
    }

    /// The state after a cycle that planned `plan` (what commit_cycle stores).
    fn remember(plan: &Plan, at: DateTime<Utc>, before: &[StoredFinding]) -> Vec<StoredFinding> {
        let mut out: Vec<StoredFinding> = before.to_vec();
        for u in &plan.seen {
            let at = crate::values::format_timestamp(&at);
            match out.iter_mut().find(|s| s.key == u.key) {
                Some(s) => {
                    s.severity = u.severity.clone();
                    s.payload = u.payload.clone();
                    s.resolved_at = None;
                    if let Some(n) = &u.notified {
                        s.notified = n.clone();
                        s.notified_at = Some(at);
                    }
                }
                None => out.push(StoredFinding {
                    key: u.key.clone(),
                    kind: u.kind.clone(),
                    severity: u.severity.clone(),
                    notified: u.notified.clone().unwrap_or_else(|| "{}".into()),
                    payload: u.payload.clone(),
                    first_seen: at.clone(),
                    resolved_at: None,
                    notified_at: u.notified.as_ref().map(|_| at),
                    closed_as: None,
                }),
            }
        }
        for (keys, how) in [(&plan.resolved, "resolved"), (&plan.aged_out, "aged_out")] {
            for key in keys {
                if let Some(s) = out.iter_mut().find(|s| &s.key == key) {
                    s.resolved_at = Some(how.into());
                    s.closed_as = Some(how.into());
                }
            }
        }
        out
    }

    struct Setup {
        slack: SlackSettings,
    }

    impl Setup {
        fn new() -> Setup {
            Setup {
                slack: SlackSettings::default(),
            }
        }

        fn ctx(&self, routes: &[&str]) -> AlertContext<'_> {
            AlertContext {
                routing: &self.slack,
                routes_with_webhook: routes.iter().map(|r| r.to_string()).collect(),
                tiers: [("P-1".to_string(), "gold".to_string())]
                    .into_iter()
                    .collect(),
                expired_lookback: chrono::Duration::days(30),
            }
        }
    }

    fn reasons(plan: &Plan) -> Vec<(String, String)> {
        plan.messages
            .iter()
            .map(|m| {
                (
                    m.reason.as_str().to_string(),
                    m.finding_key.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn a_finding_is_announced_once_until_it_materially_changes() {
        let s = Setup::new();
        let ctx = s.ctx(&["default"]);
        let f = finding(
            FindingKind::DirectVsPartner,
            "k",
            Severity::Warning,
            &["P-1"],
        );
        let p1 = plan(std::slice::from_ref(&f), &[], &ctx, now());
        assert_eq!(reasons(&p1), [("new".to_string(), "k".to_string())]);
        let st = remember(&p1, now(), &[]);
        assert!(
            plan(std::slice::from_ref(&f), &st, &ctx, now())
                .messages
                .is_empty()
        );

        // A party leaving is not news, and coming back is not either.
        let mut fewer = f.clone();
        fewer.opportunity_ids.clear();
        let p = plan(std::slice::from_ref(&fewer), &st, &ctx, now());
        assert!(p.messages.is_empty());
        let st = remember(&p, now(), &st);
        assert!(
            plan(std::slice::from_ref(&f), &st, &ctx, now())
                .messages
                .is_empty()
        );

        // A severity drop is not news; a rise is.
        let mut worse = f.clone();
        worse.severity = Severity::Critical;
        let p = plan(std::slice::from_ref(&worse), &st, &ctx, now());
        assert_eq!(reasons(&p), [("changed".to_string(), "k".to_string())]);
        assert_eq!(p.changed, 1);
        let st = remember(&p, now(), &st);
        // Back down from critical: nothing is sent, and nothing counts as
        // changed.
        let p = plan(std::slice::from_ref(&f), &st, &ctx, now());
        assert!(p.messages.is_empty(), "{:?}", reasons(&p));
        assert_eq!(p.changed, 0);
        // Up again to what was last announced: not news either.
        let st = remember(&p, now(), &st);
        assert!(
            plan(std::slice::from_ref(&worse), &st, &ctx, now())
                .messages
                .is_empty()
        );
    }

    #[test]
    fn window_findings_are_announced_once_ever() {
        let s = Setup::new();
        let ctx = s.ctx(&["default"]);
        let f = finding(
            FindingKind::RegistrationExpiring,
            "e",
            Severity::Info,
            &["P-1"],
        );
        let p = plan(std::slice::from_ref(&f), &[], &ctx, now());
        assert_eq!(p.messages.len(), 1);
        let st = remember(&p, now(), &[]);
        // Gone: no resolution message for a window finding.
        let p = plan(&[], &st, &ctx, now());
        assert_eq!(p.resolved, ["e"]);
        assert!(p.messages.is_empty());
        let st = remember(&p, now(), &st);
        // Back again: still not announced a second time.
        let p = plan(std::slice::from_ref(&f), &st, &ctx, now());
        assert!(p.messages.is_empty(), "{:?}", reasons(&p));
    }

    #[test]
    fn what_time_moves_out_of_its_window_ages_out_quietly_and_what_the_data_changes_resolves() {
        let s = Setup::new();
        let ctx = s.ctx(&["default"]);
        let day = chrono::Duration::days(1);
        let mut expired = finding(
            FindingKind::RegistrationExpired,
            "x",
            Severity::Warning,
            &["P-1"],
        );
        expired.expires_at = Some(now() - day * 10);
        let mut conflict = finding(
            FindingKind::DirectVsPartner,
            "d",
            Severity::Warning,
            &["P-1"],
        );
        conflict.expires_at = Some(now() + day * 5);
        let both = [expired.clone(), conflict.clone()];
        let st = remember(&plan(&both, &[], &ctx, now()), now(), &[]);

        // 21 days on, the expired registration is past the 30-day look-back
        // and the conflict's protection has ended: both age out, unannounced.
        let later = now() + day * 21;
        let p = plan(&[], &st, &ctx, later);
        assert_eq!(p.aged_out, ["d", "x"]);
        assert!(p.resolved.is_empty());
        assert!(p.messages.is_empty(), "{:?}", reasons(&p));

        // Gone the next day instead: the data changed, so both are resolved,
        // and the announced conflict gets its resolution message.
        let p = plan(&[], &st, &ctx, now() + day);
        assert_eq!(p.resolved, ["d", "x"]);
        assert!(p.aged_out.is_empty());
        assert_eq!(reasons(&p), [("resolved".to_string(), "d".to_string())]);

        // The look-back's edge: exactly 30 days after expiry it still counts.
        let st_x = remember(&plan(&[expired.clone()], &[], &ctx, now()), now(), &[]);
        let edge = now() + day * 20;
        assert_eq!(plan(&[], &st_x, &ctx, edge).resolved, ["x"]);
        assert_eq!(
            plan(&[], &st_x, &ctx, edge + chrono::Duration::seconds(1)).aged_out,
            ["x"]
        );
    }

    #[test]
    fn a_conflict_that_disappears_is_resolved_once() {
        let s = Setup::new();
        let ctx = s.ctx(&["default"]);
        let f = finding(
            FindingKind::PartnerBypassed,
            "b",
            Severity::Critical,
            &["P-1"],
        );
        let st = remember(
            &plan(std::slice::from_ref(&f), &[], &ctx, now()),
            now(),
            &[],
        );
        let p = plan(&[], &st, &ctx, now());
        assert_eq!(reasons(&p), [("resolved".to_string(), "b".to_string())]);
        let st = remember(&p, now(), &st);
        assert!(plan(&[], &st, &ctx, now()).messages.is_empty());
    }

    #[test]
    fn reminders_come_after_repeat_after_and_not_before() {
        let mut s = Setup::new();
        s.slack.repeat_after = Some("7d".into());
        let ctx = s.ctx(&["default"]);
        let f = finding(
            FindingKind::PartnerVsPartner,
            "p",
            Severity::Warning,
            &["P-1", "P-2"],
        );
        let st = remember(
            &plan(std::slice::from_ref(&f), &[], &ctx, now()),
            now(),
            &[],
        );
        let later = now() + chrono::Duration::days(6);
        assert!(
            plan(std::slice::from_ref(&f), &st, &ctx, later)
                .messages
                .is_empty()
        );
        let later = now() + chrono::Duration::days(7);
        let p = plan(std::slice::from_ref(&f), &st, &ctx, later);
        assert_eq!(reasons(&p), [("reminder".to_string(), "p".to_string())]);
    }

    #[test]
    fn routes_take_findings_by_kind_and_tier_else_the_default() {
        let mut s = Setup::new();
        s.slack.routes.insert(
            "critical".into(),
            SlackRoute {
                webhook_url: None,
                teams_webhook_url: None,
                kinds: vec!["direct_vs_partner".into()],
                tiers: vec![],
            },
        );
        s.slack.routes.insert(
            "gold".into(),
            SlackRoute {
                webhook_url: None,
                teams_webhook_url: None,
                kinds: vec![],
                tiers: vec!["GOLD".into()],
            },
        );
        let ctx = s.ctx(&["default", "critical", "gold"]);
        let dvp_gold = finding(
            FindingKind::DirectVsPartner,
            "d",
            Severity::Warning,
            &["P-1"],
        );
        let pvp_other = finding(
            FindingKind::PartnerVsPartner,
            "p",
            Severity::Warning,
            &["P-2", "P-3"],
        );
        let p = plan(&[dvp_gold, pvp_other], &[], &ctx, now());
        let routed: Vec<(String, String)> = p
            .messages
            .iter()
            .map(|m| (m.route.clone(), m.finding_key.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            routed,
            [
                ("critical".to_string(), "d".to_string()),
                ("default".to_string(), "p".to_string()),
                ("gold".to_string(), "d".to_string()),
            ]
        );
    }

    #[test]
    fn without_a_webhook_findings_are_tracked_but_not_marked_announced() {
        let s = Setup::new();
        let f = finding(
            FindingKind::DirectVsPartner,
            "k",
            Severity::Warning,
            &["P-1"],
        );
        let p = plan(std::slice::from_ref(&f), &[], &s.ctx(&[]), now());
        assert!(p.messages.is_empty());
        assert_eq!(p.new, 1);
        assert_eq!(p.seen[0].notified, None);
        // Once a webhook is configured, it is announced.
        let st = remember(&p, now(), &[]);
        let p = plan(std::slice::from_ref(&f), &st, &s.ctx(&["default"]), now());
        assert_eq!(reasons(&p), [("new".to_string(), "k".to_string())]);
        assert_eq!(p.new, 0, "not new to the state");
    }
}
