//! The rules engine (SPEC §3): pure and deterministic. Data, settings and a
//! clock go in; findings and scorecards come out. No I/O, no clock reads.

mod findings;
mod jaro;
pub(crate) mod matching;
pub mod names;
pub mod review;
mod rules;
mod scorecard;

use crate::fast::{FastMap, FastSet, index_by_id};

use chrono::{DateTime, Duration, Utc};
use rayon::prelude::*;
use serde::Serialize;

pub use findings::{Evidence, Finding, FindingKind, Record, Severity, Stake, value_at_risk};
pub use matching::{Match, Method};
pub use rules::{Policy, ReviewRules, Rules, TierRules};
pub use scorecard::{Period, SCORECARD_FIELDS, Scorecard};

use crate::model::{Dataset, OpportunityStatus, Registration, RegistrationStatus};
use matching::{AccountIndex, AccountMatch};

/// What one evaluation yields.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub period: Period,
    pub findings: Vec<Finding>,
    pub scorecards: Vec<Scorecard>,
    /// Currencies with no `scorecard.fx` rate, once each, with how many
    /// opportunity amounts were left out of sums because of it (SPEC §2.1).
    pub missing_rates: Vec<MissingRate>,
    /// The channel review over the same context, when asked for
    /// ([`evaluate_with_review`]): its per-partner values are written back.
    #[serde(skip)]
    pub review: Option<review::Review>,
}

/// A currency that has amounts but no exchange rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingRate {
    pub currency: String,
    pub opportunities: usize,
}

impl MissingRate {
    /// The one line that reports it, naming the key that fixes it.
    pub fn message(&self) -> String {
        format!(
            "no exchange rate for {c} (set scorecard.fx.{c}): {n} opportunity amount(s) left out of sums; the opportunities still count in findings",
            c = self.currency,
            n = self.opportunities
        )
    }
}

/// Counts the opportunities whose amount could not be converted, per currency.
fn missing_rates(data: &Dataset) -> Vec<MissingRate> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for o in &data.opportunities {
        if let Some(crate::model::Money {
            currency: Some(code),
            base: None,
            ..
        }) = &o.amount
        {
            *counts.entry(code.to_ascii_uppercase()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(currency, opportunities)| MissingRate {
            currency,
            opportunities,
        })
        .collect()
}

/// Runs every rule over `data` as of `now`.
pub fn evaluate<'a>(
    data: &Dataset,
    policy: impl Into<Policy<'a>>,
    now: DateTime<Utc>,
) -> Evaluation {
    evaluate_with_review(data, policy, now, None)
}

/// As [`evaluate`], and with `review_inputs` also the channel review (one
/// full quarter, the scorecard's, plus what its dormancy and trend need),
/// sharing the context and findings rather than building them twice.
pub fn evaluate_with_review<'a>(
    data: &Dataset,
    policy: impl Into<Policy<'a>>,
    now: DateTime<Utc>,
    review_inputs: Option<&crate::model::ReviewInputs>,
) -> Evaluation {
    let policy = policy.into();
    let started = std::time::Instant::now();
    let ctx = Context::build(data, policy, now);
    let built = started.elapsed();
    let findings = findings::detect(&ctx);
    let detected = started.elapsed();
    let period = Period::last_full_quarter(now, policy.fiscal_year_start_month);
    let scorecards = scorecard::compute(&ctx, &period, &findings);
    let scored = started.elapsed();
    let review = review_inputs.map(|inputs| review::review_with(&ctx, &findings, inputs, 1));
    tracing::debug!(
        context_us = built.as_micros() as u64,
        findings_us = (detected - built).as_micros() as u64,
        scorecards_us = (scored - detected).as_micros() as u64,
        review_us = (started.elapsed() - scored).as_micros() as u64,
        "Rules evaluated."
    );
    Evaluation {
        period,
        findings,
        scorecards,
        missing_rates: missing_rates(data),
        review,
    }
}

/// Everything derived from the data that more than one rule needs.
pub(crate) struct Context<'a> {
    pub data: &'a Dataset,
    pub policy: Policy<'a>,
    pub now: DateTime<Utc>,
    pub partner_by_id: FastMap<&'a str, usize>,
    pub registration_by_id: FastMap<&'a str, usize>,
    /// Per registration: the matched account, if any.
    pub matches: Vec<Option<AccountMatch>>,
    /// Per registration: when its protection ends.
    pub expiry: Vec<DateTime<Utc>>,
    /// Per registration: the linked opportunities, sorted.
    pub linked: Vec<Vec<usize>>,
    /// Per registration: won itself or through a linked opportunity.
    pub won: Vec<bool>,
    /// Per account: its opportunities (a compressed adjacency list).
    opp_offsets: Vec<usize>,
    opp_list: Vec<usize>,
    /// Per opportunity: its account's index.
    pub opp_account: Vec<usize>,
}

impl<'a> Context<'a> {
    fn build(data: &'a Dataset, policy: Policy<'a>, now: DateTime<Utc>) -> Self {
        let rules = policy.rules;
        let partner_by_id: FastMap<&str, usize> = index_by_id(&data.partners, |x| &x.id);
        let partner_accounts: FastSet<&str> = data
            .partners
            .iter()
            .filter_map(|p| p.crm_account_id.as_deref())
            .collect();
        // Matching the registrations and laying out the opportunities by
        // account and by registration do not depend on each other: each runs
        // on its own core where one is free.
        let (matches, (opp_account, opp_offsets, opp_list, registration_by_id, linked)) =
            rayon::join(
                || {
                    let started = std::time::Instant::now();
                    let index = AccountIndex::build(
                        &data.accounts,
                        &partner_accounts,
                        rules.fuzzy_threshold,
                    );
                    let indexed = started.elapsed();
                    let matches = index.match_all(&data.registrations);
                    tracing::debug!(
                        index_us = indexed.as_micros() as u64,
                        match_us = (started.elapsed() - indexed).as_micros() as u64,
                        "Registrations matched."
                    );
                    matches
                },
                || {
                    let (opp_account, opp_offsets, opp_list) = by_account(data);
                    let registration_by_id: FastMap<&str, usize> =
                        index_by_id(&data.registrations, |x| &x.id);
                    let linked = link_registrations(data, &registration_by_id);
                    (
                        opp_account,
                        opp_offsets,
                        opp_list,
                        registration_by_id,
                        linked,
                    )
                },
            );

        let expiry = data
            .registrations
            .iter()
            .map(|r| {
                let tier = partner_by_id
                    .get(r.partner_id.as_str())
                    .and_then(|&p| data.partners[p].tier.as_deref());
                expiry_of(r, rules.protection_days_for(tier))
            })
            .collect();

        let won = data
            .registrations
            .iter()
            .zip(&linked)
            .map(|(r, opps)| {
                r.status == RegistrationStatus::Won
                    || opps
                        .iter()
                        .any(|&o| data.opportunities[o].status == OpportunityStatus::Won)
            })
            .collect();

        Context {
            data,
            policy,
            now,
            partner_by_id,
            registration_by_id,
            matches,
            expiry,
            linked,
            won,
            opp_offsets,
            opp_list,
            opp_account,
        }
    }

    /// The opportunities on an account.
    pub(crate) fn opportunities_of(&self, account: usize) -> &[usize] {
        &self.opp_list[self.opp_offsets[account]..self.opp_offsets[account + 1]]
    }

    /// Approved and not yet expired at the evaluation time.
    pub(crate) fn is_active(&self, r: usize) -> bool {
        self.data.registrations[r].status == RegistrationStatus::Approved
            && self.now < self.expiry[r]
    }

    pub(crate) fn is_pending(&self, r: usize) -> bool {
        self.data.registrations[r].status == RegistrationStatus::Submitted
    }

    pub(crate) fn partner_name<'s>(&'s self, id: &'s str) -> &'s str {
        self.partner_by_id
            .get(id)
            .map(|&p| self.data.partners[p].name.as_str())
            .unwrap_or(id)
    }
}

/// When a registration's protection ends (SPEC §3.2).
pub fn expiry_of(r: &Registration, protection_days: u32) -> DateTime<Utc> {
    r.expires_at.unwrap_or_else(|| {
        r.approved_at.unwrap_or(r.submitted_at) + Duration::days(i64::from(protection_days))
    })
}

/// Each opportunity's account (`usize::MAX` for one whose account is not in
/// the dataset: sources guarantee every account_id resolves, and one that
/// does not, a bug upstream, is simply left out), and the opportunities of
/// each account: `list[offsets[a]..offsets[a + 1]]`.
fn by_account(data: &Dataset) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    // A million lookups in a table larger than the cache: a few ahead at a
    // time (see `crate::id_index::IdIndex`).
    let account_by_id =
        crate::id_index::IdIndex::build(data.accounts.iter().map(|a| a.id.as_str()));
    let opp_account: Vec<usize> = account_by_id
        .par_rows_of(&data.opportunities, |o| &o.account_id)
        .into_iter()
        .map(|row| match row {
            crate::id_index::NO_ROW => usize::MAX,
            row => row as usize,
        })
        .collect();
    let mut opp_offsets = vec![0usize; data.accounts.len() + 1];
    for &a in &opp_account {
        if a != usize::MAX {
            opp_offsets[a + 1] += 1;
        }
    }
    for i in 0..data.accounts.len() {
        opp_offsets[i + 1] += opp_offsets[i];
    }
    let mut fill = opp_offsets.clone();
    let mut opp_list = vec![0usize; opp_offsets[data.accounts.len()]];
    for (o, &a) in opp_account.iter().enumerate() {
        if a != usize::MAX {
            opp_list[fill[a]] = o;
            fill[a] += 1;
        }
    }
    (opp_account, opp_offsets, opp_list)
}

/// For every registration, the opportunities linked to it either way:
/// `opportunities.registration_id` or `registrations.opportunity_id`.
fn link_registrations(data: &Dataset, reg_by_id: &FastMap<&str, usize>) -> Vec<Vec<usize>> {
    // Only the few opportunity ids that registrations name are looked up.
    let mut wanted: FastMap<&str, Vec<usize>> = FastMap::default();
    for (i, r) in data.registrations.iter().enumerate() {
        if let Some(o) = r.opportunity_id.as_deref() {
            wanted.entry(o).or_default().push(i);
        }
    }
    // The lookups on every core; then each link is pushed in opportunity order.
    // (opportunity, the registration it names, the registrations naming it)
    type Links<'d> = Vec<(usize, Option<usize>, Option<&'d Vec<usize>>)>;
    let links: Links = data
        .opportunities
        .par_iter()
        .enumerate()
        .filter_map(|(o, opp)| {
            let by_opp = opp
                .registration_id
                .as_deref()
                .and_then(|id| reg_by_id.get(id))
                .copied();
            let by_reg = wanted.get(opp.id.as_str());
            (by_opp.is_some() || by_reg.is_some()).then_some((o, by_opp, by_reg))
        })
        .collect();
    let mut linked = vec![Vec::new(); data.registrations.len()];
    for (o, by_opp, by_reg) in links {
        if let Some(r) = by_opp {
            linked[r].push(o);
        }
        for &r in by_reg.into_iter().flatten() {
            linked[r].push(o);
        }
    }
    for l in &mut linked {
        l.sort_unstable();
        l.dedup();
    }
    linked
}

#[cfg(test)]
mod tests;
