//! Decisions on findings (issue 15): what a channel manager decided about a
//! conflict, recorded with who, when and why in an append-only audit trail
//! (the state's `decisions` table).
//!
//! - A verdict (`partner_keeps`, `direct_keeps`, `split`, `not_a_conflict`)
//!   settles a finding: it leaves `open_conflicts` and gets no reminders,
//!   until the finding changes materially (a new opportunity or partner in
//!   its evidence): then channel-sync appends a `reopened` row and the
//!   finding is open again, and its alert says why.
//! - `snooze` holds reminders until a date (inclusive); it is still open.
//! - `assign` names who looks after it (a Slack user id or an email).
//!
//! This is the API the CLI (`channel-sync decide`), the Slack buttons and
//! the web console call: [`record`], [`standings`], [`status`].

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::state::decisions::{DecisionRow, NewDecisionRow};
use crate::state::{State, StateError, StoredFinding};
use crate::values::{date_of, parse_date};

/// What someone decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The partner keeps the deal (the registration stands).
    PartnerKeeps,
    /// The direct team keeps the deal.
    DirectKeeps,
    /// Both share it.
    Split,
    /// Not a real conflict (e.g. different buying units).
    NotAConflict,
    /// Hold reminders until this day (inclusive).
    Snooze { until: NaiveDate },
    /// Hand it to someone (a Slack user id or an email).
    Assign { to: String },
}

impl Outcome {
    /// The outcome's name in the state, the CLI and Slack button values.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::PartnerKeeps => "partner_keeps",
            Outcome::DirectKeeps => "direct_keeps",
            Outcome::Split => "split",
            Outcome::NotAConflict => "not_a_conflict",
            Outcome::Snooze { .. } => "snooze",
            Outcome::Assign { .. } => "assign",
        }
    }

    /// A verdict settles the finding (the four decided outcomes).
    pub fn is_verdict(&self) -> bool {
        is_verdict(self.as_str())
    }

    /// Builds an outcome from its name and the optional date / person.
    pub fn parse(
        name: &str,
        until: Option<NaiveDate>,
        to: Option<&str>,
    ) -> Result<Outcome, DecisionError> {
        Ok(match name {
            "partner_keeps" => Outcome::PartnerKeeps,
            "direct_keeps" => Outcome::DirectKeeps,
            "split" => Outcome::Split,
            "not_a_conflict" => Outcome::NotAConflict,
            "snooze" => Outcome::Snooze {
                until: until.ok_or(DecisionError::SnoozeWithoutDate)?,
            },
            "assign" => Outcome::Assign {
                to: to
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or(DecisionError::AssignWithoutPerson)?
                    .to_string(),
            },
            other => return Err(DecisionError::UnknownOutcome(other.to_string())),
        })
    }

    /// How people read it ("partner keeps", "snoozed until 2026-12-03").
    pub fn label(&self) -> String {
        match self {
            Outcome::PartnerKeeps => "partner keeps".into(),
            Outcome::DirectKeeps => "direct keeps".into(),
            Outcome::Split => "split".into(),
            Outcome::NotAConflict => "not a conflict".into(),
            Outcome::Snooze { until } => format!("snoozed until {until}"),
            Outcome::Assign { to } => format!("assigned to {to}"),
        }
    }
}

/// The outcome names accepted by `--outcome` and the Slack buttons.
pub const OUTCOMES: [&str; 6] = [
    "partner_keeps",
    "direct_keeps",
    "split",
    "not_a_conflict",
    "snooze",
    "assign",
];

/// The row channel-sync appends when a decided finding changed materially.
pub const REOPENED: &str = "reopened";

/// Who appends `reopened` rows.
pub const SYSTEM: &str = "channel-sync";

fn is_verdict(outcome: &str) -> bool {
    matches!(
        outcome,
        "partner_keeps" | "direct_keeps" | "split" | "not_a_conflict"
    )
}

/// A decision to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub key: String,
    pub outcome: Outcome,
    /// Who decided: an email, a Slack user, a name.
    pub by: String,
    pub note: Option<String>,
}

/// A decision as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    pub id: i64,
    pub key: String,
    pub outcome: String,
    pub by: String,
    pub at: DateTime<Utc>,
    /// The finding's status after it.
    pub status: Status,
}

#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no finding with key '{0}' in the state (see `channel-sync findings`)")]
    UnknownFinding(String),
    #[error("finding '{0}' is already closed ({1}); there is nothing to decide")]
    Closed(String, String),
    #[error(
        "unknown outcome '{0}' (one of partner_keeps, direct_keeps, split, not_a_conflict, snooze, assign)"
    )]
    UnknownOutcome(String),
    #[error("a snooze needs the day it ends (--until YYYY-MM-DD)")]
    SnoozeWithoutDate,
    #[error("a snooze must end after today ({today}); {until} is not")]
    SnoozeInPast { until: NaiveDate, today: NaiveDate },
    #[error("an assignment needs a person (--to EMAIL or Slack user id)")]
    AssignWithoutPerson,
    #[error("a decision needs who took it (--by)")]
    NoDecider,
    #[error("{0} is too long (at most {1} characters)")]
    TooLong(&'static str, usize),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Longest note kept (Slack and CRM fields stay readable).
pub const MAX_NOTE: usize = 2000;
const MAX_NAME: usize = 200;

/// The ids a decision was taken on: a new one later is a material change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    #[serde(default)]
    pub opportunities: BTreeSet<String>,
    #[serde(default)]
    pub partners: BTreeSet<String>,
}

impl Basis {
    /// The opportunity and partner ids of a finding's stored payload (JSON).
    pub fn of_payload(payload: &str) -> Basis {
        #[derive(Deserialize)]
        struct Ids {
            #[serde(default)]
            partner_ids: Vec<String>,
            #[serde(default)]
            opportunity_ids: Vec<String>,
        }
        match serde_json::from_str::<Ids>(payload) {
            Ok(ids) => Basis {
                opportunities: ids.opportunity_ids.into_iter().collect(),
                partners: ids.partner_ids.into_iter().collect(),
            },
            Err(_) => Basis::default(),
        }
    }

    fn of_row(basis: &str) -> Basis {
        serde_json::from_str(basis).unwrap_or_default()
    }

    /// What `now` has that this basis had not: "new opportunity 006X, new
    /// partner P-9"; `None` when nothing material changed.
    pub fn material_change(&self, now: &Basis) -> Option<String> {
        let opps: Vec<&str> = now
            .opportunities
            .difference(&self.opportunities)
            .map(String::as_str)
            .collect();
        let partners: Vec<&str> = now
            .partners
            .difference(&self.partners)
            .map(String::as_str)
            .collect();
        let mut parts = Vec::new();
        if !opps.is_empty() {
            let noun = if opps.len() == 1 {
                "opportunity"
            } else {
                "opportunities"
            };
            parts.push(format!("new {noun} {}", opps.join(", ")));
        }
        if !partners.is_empty() {
            let s = if partners.len() == 1 { "" } else { "s" };
            parts.push(format!("new partner{s} {}", partners.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The current verdict on a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub by: String,
    pub at: String,
    pub note: Option<String>,
    #[serde(skip)]
    pub basis: Basis,
}

/// Where a finding stands after its audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// The last verdict, unless a `reopened` row came after it.
    pub verdict: Option<Verdict>,
    /// The last snooze's day (cleared by a reopening).
    pub snoozed_until: Option<NaiveDate>,
    pub assignee: Option<String>,
    /// Why it was last reopened, when it was.
    pub reopened: Option<String>,
}

impl Standing {
    /// Folds a finding's rows, oldest first.
    pub fn fold<'r>(rows: impl IntoIterator<Item = &'r DecisionRow>) -> Standing {
        let mut s = Standing::default();
        for r in rows {
            s.apply(r);
        }
        s
    }

    fn apply(&mut self, r: &DecisionRow) {
        let until = r.until.as_deref().and_then(parse_date);
        match r.outcome.as_str() {
            REOPENED => {
                self.verdict = None;
                self.snoozed_until = None;
                self.reopened = r.note.clone();
            }
            "snooze" => self.snoozed_until = until,
            "assign" => self.assignee = r.assignee.clone(),
            name if is_verdict(name) => {
                if let Ok(outcome) = Outcome::parse(name, until, r.assignee.as_deref()) {
                    self.verdict = Some(Verdict {
                        outcome,
                        by: r.by.clone(),
                        at: r.at.clone(),
                        note: r.note.clone(),
                        basis: Basis::of_row(&r.basis),
                    });
                }
            }
            // A row from a newer version: ignored.
            _ => {}
        }
    }

    /// Snoozed on `today` (the snooze's last day included).
    pub fn is_snoozed(&self, today: NaiveDate) -> bool {
        self.snoozed_until.is_some_and(|u| today <= u)
    }
}

/// A finding's status, for filters and pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Decided,
    Snoozed,
    Resolved,
    AgedOut,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Decided => "decided",
            Status::Snoozed => "snoozed",
            Status::Resolved => "resolved",
            Status::AgedOut => "aged_out",
        }
    }
}

/// The status of a stored finding given its standing, on `today`.
pub fn status(finding: &StoredFinding, standing: Option<&Standing>, today: NaiveDate) -> Status {
    if finding.resolved_at.is_some() {
        return match finding.closed_as.as_deref() {
            Some("aged_out") => Status::AgedOut,
            _ => Status::Resolved,
        };
    }
    match standing {
        Some(s) if s.verdict.is_some() => Status::Decided,
        Some(s) if s.is_snoozed(today) => Status::Snoozed,
        _ => Status::Open,
    }
}

/// Every finding's standing, by key (findings without decisions absent).
pub fn standings(state: &State) -> Result<HashMap<String, Standing>, StateError> {
    let mut map: HashMap<String, Standing> = HashMap::new();
    for r in state.all_decisions()? {
        map.entry(r.finding_key.clone()).or_default().apply(&r);
    }
    Ok(map)
}

/// Records a decision. The finding must be known and still open; a verdict
/// remembers the opportunities and partners it was taken on.
pub fn record(
    state: &State,
    decision: &Decision,
    now: DateTime<Utc>,
) -> Result<Recorded, DecisionError> {
    let by = decision.by.trim();
    if by.is_empty() {
        return Err(DecisionError::NoDecider);
    }
    if by.chars().count() > MAX_NAME {
        return Err(DecisionError::TooLong("--by", MAX_NAME));
    }
    let note = decision
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE) {
        return Err(DecisionError::TooLong("the note", MAX_NOTE));
    }
    let today = date_of(&now);
    let (until, assignee) = match &decision.outcome {
        Outcome::Snooze { until } if *until <= today => {
            return Err(DecisionError::SnoozeInPast {
                until: *until,
                today,
            });
        }
        Outcome::Snooze { until } => (Some(until.to_string()), None),
        Outcome::Assign { to } if to.chars().count() > MAX_NAME => {
            return Err(DecisionError::TooLong("--to", MAX_NAME));
        }
        Outcome::Assign { to } => (None, Some(to.trim().to_string())),
        _ => (None, None),
    };
    let brief = state
        .finding_brief(&decision.key)?
        .ok_or_else(|| DecisionError::UnknownFinding(decision.key.clone()))?;
    if brief.resolved_at.is_some() {
        return Err(DecisionError::Closed(
            decision.key.clone(),
            brief.resolved_at.unwrap_or_default(),
        ));
    }
    let basis =
        serde_json::to_string(&Basis::of_payload(&brief.payload)).unwrap_or_else(|_| "{}".into());
    let row = NewDecisionRow {
        finding_key: decision.key.clone(),
        outcome: decision.outcome.as_str().to_string(),
        by: by.to_string(),
        note: note.map(str::to_string),
        until,
        assignee,
        basis,
    };
    let id = state
        .append_decisions(std::slice::from_ref(&row), now)?
        .first()
        .copied()
        .unwrap_or_default();
    let trail = state.decisions_of(&decision.key)?;
    let standing = Standing::fold(&trail);
    let status = if standing.verdict.is_some() {
        Status::Decided
    } else if standing.is_snoozed(today) {
        Status::Snoozed
    } else {
        Status::Open
    };
    tracing::info!(key = %decision.key, outcome = row.outcome, "Decision recorded.");
    Ok(Recorded {
        id,
        key: decision.key.clone(),
        outcome: row.outcome,
        by: row.by,
        at: now,
        status,
    })
}

/// The `reopened` rows for decided findings whose evidence gained an
/// opportunity or a partner since the verdict: (key, why) for each.
pub fn reopenings<'f>(
    findings: impl IntoIterator<Item = (&'f str, Basis)>,
    standings: &HashMap<String, Standing>,
) -> Vec<(String, String)> {
    findings
        .into_iter()
        .filter_map(|(key, now)| {
            let verdict = standings.get(key)?.verdict.as_ref()?;
            let why = verdict.basis.material_change(&now)?;
            Some((key.to_string(), why))
        })
        .collect()
}

/// Appends the `reopened` rows (by channel-sync), with their new basis.
pub fn reopen(
    state: &State,
    reopened: &[(String, String, Basis)],
    now: DateTime<Utc>,
) -> Result<(), StateError> {
    if reopened.is_empty() {
        return Ok(());
    }
    let rows: Vec<NewDecisionRow> = reopened
        .iter()
        .map(|(key, why, basis)| NewDecisionRow {
            finding_key: key.clone(),
            outcome: REOPENED.into(),
            by: SYSTEM.into(),
            note: Some(why.clone()),
            until: None,
            assignee: None,
            basis: serde_json::to_string(basis).unwrap_or_else(|_| "{}".into()),
        })
        .collect();
    state.append_decisions(&rows, now).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FindingUpdate;

    fn at(s: &str) -> DateTime<Utc> {
        crate::values::parse_timestamp(s).unwrap()
    }

    fn state_with(key: &str, opps: &[&str], partners: &[&str]) -> State {
        let s = State::open(std::path::Path::new(":memory:")).unwrap();
        let payload = serde_json::json!({"opportunity_ids": opps, "partner_ids": partners});
        s.commit_cycle(
            at("2026-11-20T00:00:00Z"),
            &[FindingUpdate {
                key: key.into(),
                kind: "direct_vs_partner".into(),
                severity: "warning".into(),
                payload: payload.to_string(),
                notified: Some("{}".into()),
            }],
            &[],
            &[],
            &[],
        )
        .unwrap();
        s
    }

    fn decide(outcome: Outcome) -> Decision {
        Decision {
            key: "k".into(),
            outcome,
            by: "ana@example.com".into(),
            note: Some("agreed with the VP".into()),
        }
    }

    #[test]
    fn a_verdict_decides_and_a_later_snooze_or_assignment_keeps_it_decided() {
        let s = state_with("k", &["O1"], &["P1"]);
        let now = at("2026-11-26T10:00:00Z");
        let r = record(&s, &decide(Outcome::PartnerKeeps), now).unwrap();
        assert_eq!(r.status, Status::Decided);
        assert_eq!(r.outcome, "partner_keeps");
        let r = record(&s, &decide(Outcome::Assign { to: "U1".into() }), now).unwrap();
        assert_eq!(r.status, Status::Decided);
        let map = standings(&s).unwrap();
        let st = &map["k"];
        assert_eq!(st.assignee.as_deref(), Some("U1"));
        let v = st.verdict.as_ref().unwrap();
        assert_eq!(v.outcome, Outcome::PartnerKeeps);
        assert_eq!(v.by, "ana@example.com");
        assert_eq!(v.note.as_deref(), Some("agreed with the VP"));
        assert_eq!(v.basis.opportunities, BTreeSet::from(["O1".to_string()]));
    }

    #[test]
    fn a_snooze_holds_until_its_last_day_inclusive() {
        let s = state_with("k", &["O1"], &["P1"]);
        let until = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let r = record(
            &s,
            &decide(Outcome::Snooze { until }),
            at("2026-11-26T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(r.status, Status::Snoozed);
        let st = standings(&s).unwrap().remove("k").unwrap();
        assert!(st.is_snoozed(until));
        assert!(!st.is_snoozed(until.succ_opt().unwrap()));
        let f = &s.findings().unwrap()[0];
        assert_eq!(status(f, Some(&st), until), Status::Snoozed);
        assert_eq!(
            status(f, Some(&st), until.succ_opt().unwrap()),
            Status::Open
        );
    }

    #[test]
    fn bad_decisions_are_refused_and_nothing_is_stored() {
        let s = state_with("k", &["O1"], &["P1"]);
        let now = at("2026-11-26T10:00:00Z");
        let mut d = decide(Outcome::Split);
        d.key = "nope".into();
        assert!(matches!(
            record(&s, &d, now),
            Err(DecisionError::UnknownFinding(_))
        ));
        let past = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        assert!(matches!(
            record(&s, &decide(Outcome::Snooze { until: past }), now),
            Err(DecisionError::SnoozeInPast { .. })
        ));
        let mut d = decide(Outcome::Split);
        d.by = "  ".into();
        assert!(matches!(record(&s, &d, now), Err(DecisionError::NoDecider)));
        let mut d = decide(Outcome::Split);
        d.note = Some("x".repeat(MAX_NOTE + 1));
        assert!(matches!(
            record(&s, &d, now),
            Err(DecisionError::TooLong(..))
        ));
        assert!(s.all_decisions().unwrap().is_empty());
        // A resolved finding is closed.
        s.commit_cycle(now, &[], &["k".into()], &[], &[]).unwrap();
        assert!(matches!(
            record(&s, &decide(Outcome::Split), now),
            Err(DecisionError::Closed(..))
        ));
    }

    #[test]
    fn a_new_opportunity_or_partner_reopens_a_decided_finding_and_nothing_else_does() {
        let s = state_with("k", &["O1", "O2"], &["P1"]);
        record(
            &s,
            &decide(Outcome::DirectKeeps),
            at("2026-11-26T10:00:00Z"),
        )
        .unwrap();
        let map = standings(&s).unwrap();
        let same = Basis {
            opportunities: ["O1".to_string()].into(),
            partners: ["P1".to_string()].into(),
        };
        assert!(
            reopenings([("k", same)], &map).is_empty(),
            "a shrinking finding stays decided"
        );
        let more = Basis {
            opportunities: ["O1", "O2", "O3"].map(String::from).into(),
            partners: ["P1", "P2"].map(String::from).into(),
        };
        let r = reopenings([("k", more.clone())], &map);
        assert_eq!(
            r,
            vec![(
                "k".to_string(),
                "new opportunity O3; new partner P2".to_string()
            )]
        );
        reopen(
            &s,
            &[(r[0].0.clone(), r[0].1.clone(), more)],
            at("2026-11-27T00:00:00Z"),
        )
        .unwrap();
        let st = standings(&s).unwrap().remove("k").unwrap();
        assert!(st.verdict.is_none());
        assert_eq!(
            st.reopened.as_deref(),
            Some("new opportunity O3; new partner P2")
        );
        let f = &s.findings().unwrap()[0];
        assert_eq!(
            status(f, Some(&st), NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()),
            Status::Open
        );
    }

    #[test]
    fn outcomes_parse_from_their_names() {
        for name in OUTCOMES {
            let d = NaiveDate::from_ymd_opt(2026, 1, 1);
            assert_eq!(Outcome::parse(name, d, Some("U1")).unwrap().as_str(), name);
        }
        assert!(Outcome::parse("snooze", None, None).is_err());
        assert!(Outcome::parse("assign", None, Some(" ")).is_err());
        assert!(Outcome::parse("win", None, None).is_err());
    }
}
