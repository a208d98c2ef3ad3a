//! The five finding kinds (SPEC §3.3).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rayon::iter::Either;
use rayon::prelude::*;
use serde::{Deserialize, Serialize, Serializer};

use super::Context;
use super::matching::Match;
use super::names::{name_key, normalize_name, registrable_domain};
use crate::model::{OpportunityStatus, RegistrationStatus};
use crate::values::{date_of, format_timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    DirectVsPartner,
    PartnerVsPartner,
    PartnerBypassed,
    RegistrationExpiring,
    RegistrationExpired,
}

impl FindingKind {
    pub const ALL: [FindingKind; 5] = [
        FindingKind::DirectVsPartner,
        FindingKind::PartnerBypassed,
        FindingKind::PartnerVsPartner,
        FindingKind::RegistrationExpired,
        FindingKind::RegistrationExpiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DirectVsPartner => "direct_vs_partner",
            FindingKind::PartnerVsPartner => "partner_vs_partner",
            FindingKind::PartnerBypassed => "partner_bypassed",
            FindingKind::RegistrationExpiring => "registration_expiring",
            FindingKind::RegistrationExpired => "registration_expired",
        }
    }

    /// A conflict names parties in a dispute (counted in `open_conflicts`).
    pub fn is_conflict(self) -> bool {
        matches!(
            self,
            FindingKind::DirectVsPartner
                | FindingKind::PartnerVsPartner
                | FindingKind::PartnerBypassed
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

fn ts<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_timestamp(t)),
        None => s.serialize_none(),
    }
}

fn ts_req<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(t))
}

/// Which kind of record a piece of evidence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Record {
    Registration,
    Opportunity,
}

impl Record {
    pub fn as_str(self) -> &'static str {
        match self {
            Record::Registration => "registration",
            Record::Opportunity => "opportunity",
        }
    }
}

/// A record that a finding rests on, with the dates that decide it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(rename = "type")]
    pub record: Record,
    pub id: String,
    pub name: Option<String>,
    pub partner_id: Option<String>,
    pub partner_name: Option<String>,
    /// `submitted_at` of a registration, `created_at` of an opportunity.
    #[serde(serialize_with = "ts_req")]
    pub at: DateTime<Utc>,
    pub status: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ts"
    )]
    pub approved_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ts"
    )]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rep: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub how: Option<Match>,
    /// The amount in the base currency (`currency`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    /// The base currency (`scorecard.currency`) that `amount` is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// An opportunity's CRM stage (a registration's is its `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The amount as given, when in another currency than the base one
    /// (`amount` is then its conversion, or absent without a rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_amount: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_currency: Option<String>,
}

/// One finding of the report (SPEC §4), plus evidence for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub key: String,
    pub severity: Severity,
    pub account_id: Option<String>,
    pub partner_ids: Vec<String>,
    pub registration_ids: Vec<String>,
    pub opportunity_ids: Vec<String>,
    pub first_in: String,
    #[serde(rename = "match")]
    pub how: Option<Match>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ts"
    )]
    pub expires_at: Option<DateTime<Utc>>,
    pub summary: String,
    /// The account's name, when the finding is about a CRM account.
    pub account_name: Option<String>,
    /// The registrations and opportunities involved, in `first_in` order.
    pub evidence: Vec<Evidence>,
}

impl Finding {
    /// What a finding puts at stake, in the base currency: its open and won
    /// opportunities, else its registrations' amounts. `None` when no amount
    /// is known.
    pub fn value_at_risk(&self) -> Option<(f64, Option<String>)> {
        value_at_risk(self.evidence.iter().map(|e| Stake {
            record: e.record,
            status: &e.status,
            amount: e.amount,
            currency: e.currency.as_deref(),
        }))
    }
}

/// What [`value_at_risk`] reads of one piece of evidence.
#[derive(Clone, Copy)]
pub struct Stake<'e> {
    pub record: Record,
    pub status: &'e str,
    pub amount: Option<f64>,
    pub currency: Option<&'e str>,
}

/// What evidence puts at stake: the amounts of its opportunities that are
/// not lost, else, when it holds registrations only, theirs; with the first
/// currency named among the amounts summed. `None` when no amount is known.
/// The one rule for [`Finding::value_at_risk`] and for findings read back
/// from the state.
pub fn value_at_risk<'e>(
    evidence: impl Iterator<Item = Stake<'e>> + Clone,
) -> Option<(f64, Option<String>)> {
    let sum = |record: Record| {
        let mut known = evidence
            .clone()
            .filter(|e| e.record == record && e.status != "lost")
            .filter_map(|e| Some((e.amount?, e.currency)))
            .peekable();
        known.peek()?;
        let (mut total, mut currency) = (0.0, None);
        for (amount, named) in known {
            total += amount;
            currency = currency.or(named);
        }
        Some((total, currency.map(str::to_string)))
    };
    sum(Record::Opportunity).or_else(|| {
        evidence
            .clone()
            .all(|e| e.record == Record::Registration)
            .then(|| sum(Record::Registration))
            .flatten()
    })
}

/// A finding before its ids, parties and evidence are filled in.
struct Draft {
    kind: FindingKind,
    key: String,
    severity: Severity,
    account: Option<usize>,
    claims: Vec<Claim>,
    how: Option<Match>,
    expires_at: Option<DateTime<Utc>>,
    summary: String,
}

/// A registration or an opportunity taking part in a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Claim {
    Registration(usize),
    Opportunity(usize),
}

impl Context<'_> {
    fn claim_at(&self, c: Claim) -> DateTime<Utc> {
        match c {
            Claim::Registration(r) => self.data.registrations[r].submitted_at,
            Claim::Opportunity(o) => self.data.opportunities[o].created_at,
        }
    }

    fn claim_id(&self, c: Claim) -> &str {
        match c {
            Claim::Registration(r) => &self.data.registrations[r].id,
            Claim::Opportunity(o) => &self.data.opportunities[o].id,
        }
    }

    fn claim_partner(&self, c: Claim) -> Option<&str> {
        match c {
            Claim::Registration(r) => Some(&self.data.registrations[r].partner_id),
            Claim::Opportunity(o) => self.data.opportunities[o].partner_id.as_deref(),
        }
    }

    /// Orders claims by who came first: time, then registrations before
    /// opportunities, then id.
    fn first_order(&self, a: Claim, b: Claim) -> std::cmp::Ordering {
        let rank = |c| matches!(c, Claim::Opportunity(_)) as u8;
        (self.claim_at(a), rank(a), self.claim_id(a)).cmp(&(
            self.claim_at(b),
            rank(b),
            self.claim_id(b),
        ))
    }

    fn evidence(&self, c: Claim) -> Evidence {
        match c {
            Claim::Registration(r) => {
                let reg = &self.data.registrations[r];
                Evidence {
                    record: Record::Registration,
                    id: reg.id.clone(),
                    name: Some(reg.customer_name.clone()),
                    partner_id: Some(reg.partner_id.clone()),
                    partner_name: Some(self.partner_name(&reg.partner_id).to_string()),
                    at: reg.submitted_at,
                    status: status_name(reg.status).into(),
                    approved_at: reg.approved_at,
                    expires_at: Some(self.expiry[r]),
                    close_date: None,
                    rep: reg.rep.clone(),
                    owner_id: None,
                    how: self.matches[r].map(|m| m.how),
                    amount: reg.amount,
                    currency: Some(self.policy.currency.to_string()),
                    stage: None,
                    original_amount: None,
                    original_currency: None,
                }
            }
            Claim::Opportunity(o) => {
                let opp = &self.data.opportunities[o];
                let base = self.policy.currency;
                let foreign = opp.amount.as_ref().filter(|m| {
                    m.currency
                        .as_deref()
                        .is_some_and(|c| !c.eq_ignore_ascii_case(base))
                });
                Evidence {
                    record: Record::Opportunity,
                    id: opp.id.to_string(),
                    name: opp.name.as_deref().map(str::to_string),
                    partner_id: opp.partner_id.as_deref().map(str::to_string),
                    partner_name: opp
                        .partner_id
                        .as_deref()
                        .map(|p| self.partner_name(p).to_string()),
                    at: opp.created_at,
                    status: match opp.status {
                        OpportunityStatus::Open => "open",
                        OpportunityStatus::Won => "won",
                        OpportunityStatus::Lost => "lost",
                    }
                    .into(),
                    approved_at: None,
                    expires_at: None,
                    close_date: opp.close_date,
                    rep: opp.partner_rep.as_deref().map(str::to_string),
                    owner_id: opp.owner_id.as_deref().map(str::to_string),
                    how: None,
                    amount: opp.amount.as_ref().and_then(|m| m.base),
                    currency: Some(self.policy.currency.to_string()),
                    stage: opp.stage.as_deref().map(str::to_string),
                    original_amount: foreign.map(|m| m.value),
                    original_currency: foreign.and_then(|m| m.currency.clone()),
                }
            }
        }
    }

    /// The date a registration's protection counts from.
    fn protected_since(&self, r: usize) -> NaiveDate {
        let reg = &self.data.registrations[r];
        date_of(&reg.approved_at.unwrap_or(reg.submitted_at))
    }

    /// Whether an opportunity is open, or was won on or after `since`. A won
    /// opportunity without a close date is dated by its creation, a lower bound
    /// of its close date.
    fn open_or_won_since(&self, o: usize, since: NaiveDate) -> bool {
        let opp = &self.data.opportunities[o];
        match opp.status {
            OpportunityStatus::Open => true,
            OpportunityStatus::Won => opp.close_date.unwrap_or(date_of(&opp.created_at)) >= since,
            OpportunityStatus::Lost => false,
        }
    }

    fn account_label(&self, a: usize) -> &str {
        &self.data.accounts[a].name
    }

    fn opp_label(&self, o: usize) -> String {
        let opp = &self.data.opportunities[o];
        match &opp.name {
            Some(n) => format!("{} ({n})", opp.id),
            None => opp.id.to_string(),
        }
    }

    /// Assembles a finding from its claims.
    fn finding(&self, draft: Draft) -> Finding {
        let Draft {
            kind,
            key,
            severity,
            account,
            mut claims,
            how,
            expires_at,
            summary,
        } = draft;
        claims.sort_by(|&a, &b| self.first_order(a, b));
        let window = matches!(
            kind,
            FindingKind::RegistrationExpiring | FindingKind::RegistrationExpired
        );
        let mut partner_ids = BTreeSet::new();
        let mut registration_ids = Vec::new();
        let mut opportunity_ids = Vec::new();
        for &c in &claims {
            // A window finding is the registering partner's alone; its linked
            // opportunities are the deal at stake, not claims of their own.
            let claims_partner = !window || matches!(c, Claim::Registration(_));
            if let Some(p) = self.claim_partner(c).filter(|_| claims_partner) {
                partner_ids.insert(p.to_string());
            }
            match c {
                Claim::Registration(_) => registration_ids.push(self.claim_id(c).to_string()),
                Claim::Opportunity(_) => opportunity_ids.push(self.claim_id(c).to_string()),
            }
        }
        registration_ids.sort();
        registration_ids.dedup();
        opportunity_ids.sort();
        opportunity_ids.dedup();
        let first_in = if window {
            claims
                .iter()
                .find(|c| matches!(c, Claim::Registration(_)))
                .map(|&c| self.claim_id(c).to_string())
        } else {
            claims.first().map(|&c| self.claim_id(c).to_string())
        }
        .unwrap_or_default();
        Finding {
            kind,
            key,
            severity,
            account_id: account.map(|a| self.data.accounts[a].id.clone()),
            account_name: account.map(|a| self.data.accounts[a].name.clone()),
            partner_ids: partner_ids.into_iter().collect(),
            registration_ids,
            opportunity_ids,
            first_in,
            how,
            expires_at,
            summary,
            evidence: claims.iter().map(|&c| self.evidence(c)).collect(),
        }
    }
}

fn status_name(s: RegistrationStatus) -> &'static str {
    use RegistrationStatus::*;
    match s {
        Submitted => "submitted",
        Approved => "approved",
        Rejected => "rejected",
        Expired => "expired",
        Cancelled => "cancelled",
        Won => "won",
        Lost => "lost",
    }
}

/// `Northwind's`, `Fabrikam Partners'`.
fn possessive(name: &str) -> String {
    if name.ends_with('s') {
        format!("{name}'")
    } else {
        format!("{name}'s")
    }
}

fn day(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Runs every rule; the result is sorted by kind, then key.
pub(super) fn detect(ctx: &Context) -> Vec<Finding> {
    let n = ctx.data.registrations.len();
    // A registration's matched account's opportunities lie anywhere in a
    // table larger than the cache: each batch of registrations first asks
    // for all their lines, then reads them (see `crate::fast::prefetch`).
    const BATCH: usize = 32;
    let mut findings: Vec<Finding> = (0..n.div_ceil(BATCH))
        .into_par_iter()
        .flat_map_iter(|b| {
            let batch = b * BATCH..n.min((b + 1) * BATCH);
            for r in batch.clone() {
                prefetch_opportunities(ctx, r);
            }
            batch.flat_map(|r| {
                let mut out = direct_vs_partner(ctx, r);
                out.extend(partner_bypassed(ctx, r));
                out.extend(window(ctx, r));
                out
            })
        })
        .collect();
    findings.extend(partner_vs_partner(ctx));
    // Keys are unique, so an unstable sort gives the one order there is.
    findings.par_sort_unstable_by(|a, b| (a.kind.as_str(), &a.key).cmp(&(b.kind.as_str(), &b.key)));
    findings
}

/// Asks for the first three cache lines of a row: for an opportunity its
/// ids, partner, status and dates (laid out first, see
/// `model::Opportunity`), for a registration most of it.
fn prefetch_row<T>(row: &T) {
    let row = (row as *const T).cast::<u8>();
    for line in [0, 64, 128] {
        crate::fast::prefetch(row.wrapping_add(line));
    }
}

/// Asks for the rows [`direct_vs_partner`] and [`partner_bypassed`] read of
/// the opportunities they look at for registration `r`.
fn prefetch_opportunities(ctx: &Context, r: usize) {
    let on_account = ctx.matches[r].map_or(&[][..], |m| ctx.opportunities_of(m.account));
    for &o in on_account.iter().chain(&ctx.linked[r]) {
        prefetch_row(&ctx.data.opportunities[o]);
    }
}

/// Asks for the row of a claim (its partner, id and date are read).
fn prefetch_claim(ctx: &Context, c: Claim) {
    match c {
        Claim::Registration(r) => prefetch_row(&ctx.data.registrations[r]),
        Claim::Opportunity(o) => prefetch_row(&ctx.data.opportunities[o]),
    }
}

fn direct_vs_partner(ctx: &Context, r: usize) -> Vec<Finding> {
    let Some(m) = ctx.matches[r] else {
        return Vec::new();
    };
    if !ctx.is_active(r) {
        return Vec::new();
    }
    let reg = &ctx.data.registrations[r];
    let since = ctx.protected_since(r);
    let mut out = Vec::new();
    for &o in ctx.opportunities_of(m.account) {
        let opp = &ctx.data.opportunities[o];
        if opp.partner_id.is_some()
            || ctx.linked[r].binary_search(&o).is_ok()
            || !ctx.open_or_won_since(o, since)
        {
            continue;
        }
        let won = opp.status == OpportunityStatus::Won;
        let partner = ctx.partner_name(&reg.partner_id);
        let partners = possessive(partner);
        let account = ctx.account_label(m.account);
        let until = day(&ctx.expiry[r]);
        let registered_first = ctx
            .first_order(Claim::Registration(r), Claim::Opportunity(o))
            .is_lt();
        let summary = match (won, registered_first) {
            (true, _) => format!(
                "Direct opportunity {} was won on {account} while {partners} registration {} protects it until {until}.",
                ctx.opp_label(o),
                reg.id
            ),
            (false, true) => format!(
                "Direct opportunity {} is on {account}, which {partner} registered first ({}, protected until {until}).",
                ctx.opp_label(o),
                reg.id
            ),
            (false, false) => format!(
                "Direct opportunity {} on {account} predates {partners} registration {}, which protects the account until {until}.",
                ctx.opp_label(o),
                reg.id
            ),
        };
        out.push(ctx.finding(Draft {
            kind: FindingKind::DirectVsPartner,
            key: format!("direct_vs_partner:{}:{}", reg.id, opp.id),
            severity: if won {
                Severity::Critical
            } else {
                Severity::Warning
            },
            account: Some(m.account),
            claims: vec![Claim::Registration(r), Claim::Opportunity(o)],
            how: Some(m.how),
            expires_at: Some(ctx.expiry[r]),
            summary,
        }));
    }
    out
}

fn partner_bypassed(ctx: &Context, r: usize) -> Vec<Finding> {
    if !ctx.is_active(r) {
        return Vec::new();
    }
    let reg = &ctx.data.registrations[r];
    let since = ctx.protected_since(r);
    let mut out = Vec::new();
    for &o in &ctx.linked[r] {
        let opp = &ctx.data.opportunities[o];
        if opp.partner_id.as_deref() == Some(reg.partner_id.as_str())
            || !ctx.open_or_won_since(o, since)
        {
            continue;
        }
        let partner = possessive(ctx.partner_name(&reg.partner_id));
        let now_with = match &opp.partner_id {
            None => "has no partner on it any more".to_string(),
            Some(p) => format!("is now attributed to {}", ctx.partner_name(p)),
        };
        let account = ctx.opp_account[o];
        let account = (account != usize::MAX).then_some(account);
        out.push(ctx.finding(Draft {
kind: FindingKind::PartnerBypassed,
key: format!("partner_bypassed:{}:{}", reg.id, opp.id),
severity: Severity::Critical,
account,
claims: vec![Claim::Registration(r), Claim::Opportunity(o)],
how: ctx.matches[r].map(|m| m.how),
expires_at: Some(ctx.expiry[r]),
summary: format!(
                "Opportunity {} from {partner} registration {} {now_with}; the registration protects it until {}.",
                ctx.opp_label(o),
                reg.id,
                day(&ctx.expiry[r])
            ),
}));
    }
    out
}

fn window(ctx: &Context, r: usize) -> Option<Finding> {
    if ctx.won[r] {
        return None;
    }
    let reg = &ctx.data.registrations[r];
    let rules = ctx.policy.rules;
    let expiry = ctx.expiry[r];
    let partner = possessive(ctx.partner_name(&reg.partner_id));
    let ahead = ctx.now + Duration::days(i64::from(rules.expiring_within_days));
    let behind = ctx.now - Duration::days(i64::from(rules.expired_lookback_days));
    let (kind, severity, summary) = if ctx.is_active(r) && expiry <= ahead {
        let days = (expiry - ctx.now).num_days();
        (
            FindingKind::RegistrationExpiring,
            Severity::Info,
            format!(
                "{partner} registration {} for {} expires on {} (in {days} day{}).",
                reg.id,
                reg.customer_name,
                day(&expiry),
                if days == 1 { "" } else { "s" }
            ),
        )
    } else if matches!(
        reg.status,
        RegistrationStatus::Expired | RegistrationStatus::Approved
    ) && behind <= expiry
        && expiry <= ctx.now
    {
        // Marked expired, or approved with its window run out: either way the
        // expiry itself must fall in the look-back window.
        (
            FindingKind::RegistrationExpired,
            Severity::Warning,
            format!(
                "{partner} registration {} for {} expired on {} without a win.",
                reg.id,
                reg.customer_name,
                day(&expiry)
            ),
        )
    } else {
        return None;
    };
    let m = ctx.matches[r];
    Some(
        ctx.finding(Draft {
            kind,
            key: format!("{}:{}", kind.as_str(), reg.id),
            severity,
            account: m.map(|m| m.account),
            // The registration, then the deal whose protection is running out
            // (SPEC §3.3: its linked opportunities).
            claims: std::iter::once(Claim::Registration(r))
                .chain(ctx.linked[r].iter().map(|&o| Claim::Opportunity(o)))
                .collect(),
            how: m.map(|m| m.how),
            expires_at: Some(expiry),
            summary,
        }),
    )
}

/// Where unmatched registrations meet: their registrable domain, else their
/// name (SPEC §3.1 step 5).
fn unmatched_group(reg: &crate::model::Registration) -> Option<String> {
    if let Some(d) = reg.customer_domain.as_deref().and_then(registrable_domain) {
        return Some(format!("domain:{d}"));
    }
    let key = name_key(&normalize_name(&reg.customer_name));
    (!key.is_empty()).then(|| format!("name:{key}"))
}

fn partner_vs_partner(ctx: &Context) -> Vec<Finding> {
    // Every claim on a matched account as (account, claim), grouped below by
    // sorting; unmatched registrations by where they meet. Both collected on
    // every core: a million opportunities are scanned.
    type Split = (Vec<(usize, Claim)>, Vec<(String, Claim)>);
    let (mut on_accounts, unmatched_claims): Split = (0..ctx.data.registrations.len())
        .into_par_iter()
        .filter(|&r| ctx.is_active(r) || ctx.is_pending(r))
        .filter_map(|r| match ctx.matches[r] {
            Some(m) => Some(Either::Left((m.account, Claim::Registration(r)))),
            None => unmatched_group(&ctx.data.registrations[r])
                .map(|g| Either::Right((g, Claim::Registration(r)))),
        })
        .partition_map(|x| x);
    let mut unmatched: BTreeMap<String, Vec<Claim>> = BTreeMap::new();
    for (group, claim) in unmatched_claims {
        unmatched.entry(group).or_default().push(claim);
    }
    on_accounts.par_extend(
        ctx.data
            .opportunities
            .par_iter()
            .enumerate()
            .filter_map(|(o, opp)| {
                let a = ctx.opp_account[o];
                (opp.status == OpportunityStatus::Open
                    && opp.partner_id.is_some()
                    && a != usize::MAX)
                    .then_some((a, Claim::Opportunity(o)))
            }),
    );
    on_accounts.par_sort_unstable_by_key(|&(a, c)| (a, c));
    let partners = |claims: &[Claim]| {
        claims
            .iter()
            .filter_map(|&c| ctx.claim_partner(c))
            .collect::<BTreeSet<_>>()
    };
    // Claims grouped by partner, partners in the order of their first claim:
    // `Fabrikam Partners (R-07, 2026-10-01; O-013, 2026-10-04) and Litware
    // Advisors (R-08, 2026-10-22)`.
    let describe = |claims: &mut Vec<Claim>| {
        claims.sort_by(|&a, &b| ctx.first_order(a, b));
        let mut parties: Vec<(&str, Vec<String>)> = Vec::new();
        for &c in claims.iter() {
            let partner = ctx.claim_partner(c).unwrap_or_default();
            let claim = format!("{}, {}", ctx.claim_id(c), day(&ctx.claim_at(c)));
            match parties.iter_mut().find(|(p, _)| *p == partner) {
                Some((_, list)) => list.push(claim),
                None => parties.push((partner, vec![claim])),
            }
        }
        let parties: Vec<String> = parties
            .into_iter()
            .map(|(p, list)| format!("{} ({})", ctx.partner_name(p), list.join("; ")))
            .collect();
        match parties.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => parties.join(""),
        }
    };
    // More than one partner among the claims: most accounts have one, so
    // the first partner is compared before any set is built.
    let contested = |run: &[(usize, Claim)]| {
        let mut partners = run.iter().filter_map(|&(_, c)| ctx.claim_partner(c));
        partners
            .next()
            .is_some_and(|first| partners.any(|p| p != first))
    };
    // An account with one claim has one partner: only longer runs are read,
    // a batch at a time, each first asking for its claims' lines (see
    // `crate::fast::prefetch`).
    let runs: Vec<&[(usize, Claim)]> = on_accounts
        .chunk_by(|x, y| x.0 == y.0)
        .filter(|run| run.len() > 1)
        .collect();
    const BATCH: usize = 16;
    let mut out: Vec<Finding> = runs
        .par_chunks(BATCH)
        .flat_map_iter(|batch| {
            for &(_, c) in batch.iter().flat_map(|run| run.iter()) {
                prefetch_claim(ctx, c);
            }
            batch.iter().filter(|run| contested(run))
        })
        .map(|run| {
            let a = run[0].0;
            let mut claims: Vec<Claim> = run.iter().map(|&(_, c)| c).collect();
            let count = partners(&claims).len();
            // The weakest registration match (lowest score, then the later
            // matching step) bounds how sure the finding is.
            let how = claims
                .iter()
                .filter_map(|&c| match c {
                    Claim::Registration(r) => ctx.matches[r].map(|m| m.how),
                    Claim::Opportunity(_) => None,
                })
                .min_by(|x, y| x.score.total_cmp(&y.score).then(y.method.cmp(&x.method)));
            let summary = format!(
                "{} is claimed by {count} partners: {}; the first claim was {}.",
                ctx.account_label(a),
                describe(&mut claims),
                ctx.claim_id(claims[0])
            );
            ctx.finding(Draft {
                kind: FindingKind::PartnerVsPartner,
                key: format!("partner_vs_partner:{}", ctx.data.accounts[a].id),
                severity: Severity::Warning,
                account: Some(a),
                claims,
                how,
                expires_at: None,
                summary,
            })
        })
        .collect();
    for (group, mut claims) in unmatched {
        let count = partners(&claims).len();
        if count < 2 {
            continue;
        }
        claims.sort_by(|&a, &b| ctx.first_order(a, b));
        let customer = match &claims[0] {
            Claim::Registration(r) => ctx.data.registrations[*r].customer_name.clone(),
            Claim::Opportunity(_) => group.clone(),
        };
        let summary = format!(
            "{customer} (not in the CRM) is registered by {count} partners: {}.",
            describe(&mut claims)
        );
        out.push(ctx.finding(Draft {
            kind: FindingKind::PartnerVsPartner,
            key: format!("partner_vs_partner:{group}"),
            severity: Severity::Warning,
            account: None,
            claims,
            how: None,
            expires_at: None,
            summary,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::model::*;
    use chrono::TimeZone;

    #[test]
    fn statuses_are_named_as_the_spec_and_the_json_name_them() {
        use RegistrationStatus::*;
        for s in [Submitted, Approved, Rejected, Expired, Cancelled, Won, Lost] {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(status_name(s))
            );
        }
        assert_eq!(status_name(Cancelled), "cancelled");
    }

    #[test]
    fn value_at_risk_sums_deals_not_lost_else_registrations_only() {
        let stake = |record, status, amount, currency| Stake {
            record,
            status,
            amount,
            currency,
        };
        use Record::{Opportunity as O, Registration as R};
        let risk = |e: &[Stake]| value_at_risk(e.iter().copied());
        // Lost deals and unknown amounts are left out; the first currency
        // named among those summed is the one given.
        assert_eq!(
            risk(&[
                stake(R, "approved", Some(5.0), Some("EUR")),
                stake(O, "lost", Some(1000.0), Some("GBP")),
                stake(O, "open", None, Some("JPY")),
                stake(O, "open", Some(100.0), None),
                stake(O, "won", Some(20.0), Some("USD")),
            ]),
            Some((120.0, Some("USD".into())))
        );
        // Only registrations: theirs.
        assert_eq!(
            risk(&[
                stake(R, "approved", Some(5.0), None),
                stake(R, "submitted", Some(7.0), None),
            ]),
            Some((12.0, None))
        );
        // A deal without a known amount does not fall back to the
        // registrations beside it.
        assert_eq!(
            risk(&[
                stake(R, "approved", Some(5.0), None),
                stake(O, "open", None, None),
            ]),
            None
        );
        assert_eq!(risk(&[stake(O, "lost", Some(9.0), None)]), None);
        assert_eq!(risk(&[]), None);
    }

    #[test]
    fn a_partners_name_takes_the_possessive_its_ending_calls_for() {
        assert_eq!(possessive("Northwind"), "Northwind's");
        assert_eq!(possessive("Fabrikam Partners"), "Fabrikam Partners'");
    }

    /// A window finding's `first_in` is its registration even when an
    /// earlier opportunity is among its claims (today the window kinds carry
    /// only the registration; this keeps that rule when they carry their
    /// linked opportunities too).
    #[test]
    fn a_window_finding_is_first_in_by_its_registration() {
        let at = |d: u32| Utc.with_ymd_and_hms(2026, 10, d, 0, 0, 0).unwrap();
        let data = Dataset {
            accounts: vec![Account {
                id: "A-1".into(),
                name: "Acme".into(),
                domain: None,
                website: None,
                owner_id: None,
            }],
            partners: vec![Partner {
                id: "P-1".into(),
                name: "Northwind".into(),
                tier: None,
                crm_account_id: None,
                domain: None,
            }],
            opportunities: vec![Opportunity {
                id: "O-1".into(),
                account_id: "A-1".into(),
                status: OpportunityStatus::Open,
                created_at: at(1),
                name: None,
                owner_id: None,
                stage: None,
                amount: None,
                close_date: None,
                partner_id: Some("P-1".into()),
                partner_rep: None,
                registration_id: None,
                campaign_id: None,
            }],
            registrations: vec![Registration {
                id: "R-1".into(),
                partner_id: "P-1".into(),
                customer_name: "Acme".into(),
                status: RegistrationStatus::Approved,
                submitted_at: at(5),
                rep: None,
                customer_domain: None,
                account_id: Some("A-1".into()),
                opportunity_id: Some("O-1".into()),
                approved_at: Some(at(5)),
                expires_at: None,
                amount: None,
            }],
            ..Dataset::default()
        };
        let settings = Settings::default();
        let ctx = Context::build(&data, (&settings).into(), at(20));
        for kind in [
            FindingKind::RegistrationExpiring,
            FindingKind::RegistrationExpired,
        ] {
            let f = ctx.finding(Draft {
                kind,
                key: "k".into(),
                severity: Severity::Info,
                account: Some(0),
                claims: vec![Claim::Opportunity(0), Claim::Registration(0)],
                how: None,
                expires_at: None,
                summary: String::new(),
            });
            assert_eq!(f.first_in, "R-1", "{kind:?}");
        }
        // Any other kind: the earliest claim.
        let f = ctx.finding(Draft {
            kind: FindingKind::PartnerBypassed,
            key: "k".into(),
            severity: Severity::Critical,
            account: Some(0),
            claims: vec![Claim::Registration(0), Claim::Opportunity(0)],
            how: None,
            expires_at: None,
            summary: String::new(),
        });
        assert_eq!(f.first_in, "O-1");
    }
}
