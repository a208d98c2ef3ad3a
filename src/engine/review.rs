//! The channel review (SPEC §6): the four metrics, ROI, MDF and dormant
//! partners per partner and quarter, with their trend. Pure: data, the
//! review's optional inputs, settings and a clock go in; the review comes out.
//!
//! Revenue, reps and active sellers per quarter are the scorecard's own
//! computation (`scorecard::compute`) run once per quarter, so the review and
//! the scorecards can never disagree on who is an active seller.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Months, NaiveDate, TimeZone, Utc};
use rayon::prelude::*;
use serde::Serialize;

use super::Policy;
use super::{Context, Finding, Period, findings, scorecard};
use crate::fast::FastMap;
use crate::model::{Dataset, Money, ReviewInputs};

/// The review's per-partner values that `writeback.fields` can map, beside
/// the scorecard's (SPEC §6.2, of the scorecard's quarter).
pub const REVIEW_FIELDS: [&str; 5] = [
    "roi",
    "sourced_pipeline_created",
    "mdf_spend",
    "mdf_effectiveness",
    "dormant",
];

/// A quarter of the review, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarter {
    pub label: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// The quarter to date: T falls inside it.
    pub partial: bool,
}

/// The metrics of SPEC §6.2 for one partner (or the program) and quarter.
/// `None` is `null`: not computable, never 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub sourced_pipeline_created: f64,
    pub sourced_revenue: f64,
    pub reps: u64,
    pub active_sellers: u64,
    pub active_seller_rate: Option<f64>,
    pub cost: Option<f64>,
    pub roi: Option<f64>,
    pub roi_trailing_4q: Option<f64>,
    pub mdf_spend: Option<f64>,
    pub mdf_effectiveness: Option<f64>,
    pub mdf_pipeline: Option<f64>,
    /// Each metric minus its value in the previous quarter; `null` when
    /// either is `null`.
    pub change: BTreeMap<&'static str, Option<f64>>,
}

impl Metrics {
    /// The metrics in a fixed order, by name, for the change and renderers.
    pub fn values(&self) -> [(&'static str, Option<f64>); 11] {
        [
            (
                "sourced_pipeline_created",
                Some(self.sourced_pipeline_created),
            ),
            ("sourced_revenue", Some(self.sourced_revenue)),
            ("reps", Some(self.reps as f64)),
            ("active_sellers", Some(self.active_sellers as f64)),
            ("active_seller_rate", self.active_seller_rate),
            ("cost", self.cost),
            ("roi", self.roi),
            ("roi_trailing_4q", self.roi_trailing_4q),
            ("mdf_spend", self.mdf_spend),
            ("mdf_effectiveness", self.mdf_effectiveness),
            ("mdf_pipeline", self.mdf_pipeline),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartnerReview {
    pub partner_id: String,
    pub partner_name: String,
    pub tier: Option<String>,
    pub dormant: bool,
    pub quarters: BTreeMap<String, Metrics>,
}

/// A dormant partner and what it cost over the dormant quarters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dormant {
    pub partner_id: String,
    pub partner_name: String,
    pub reps: u64,
    /// `null` when there is no cost data.
    pub cost: Option<f64>,
    /// The full quarters it was dormant in, oldest first.
    pub quarters: Vec<String>,
}

/// The conflicts open at T (all the review knows without a state).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenConflicts {
    pub note: String,
    pub open: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Days since the oldest open conflict began (its second claim appeared).
    pub oldest_open_days: Option<i64>,
    pub oldest_open_key: Option<String>,
}

/// Which optional inputs the review had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputsPresent {
    pub program_costs: bool,
    pub mdf: bool,
    /// Some opportunity carries a `campaign_id`.
    pub campaign_ids: bool,
}

/// The review report (SPEC §6.3), plus extra fields.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub as_of: String,
    pub currency: String,
    pub quarters: Vec<Quarter>,
    pub program: BTreeMap<String, Metrics>,
    pub partners: Vec<PartnerReview>,
    pub dormant: Vec<Dormant>,
    /// From the state's history; `{}` without a state.
    pub disputes: BTreeMap<String, DisputeQuarter>,
    pub open_conflicts_now: OpenConflicts,
    pub inputs: InputsPresent,
    pub dormant_quarters: u32,
}

impl Review {
    /// The last full quarter's label: the quarter the headline numbers are from.
    pub fn headline_quarter(&self) -> Option<&Quarter> {
        self.quarters.iter().rev().find(|q| !q.partial)
    }
}

/// The review's full quarters (oldest first) and the quarter to date. `full`
/// is at least 1.
pub fn quarters(now: DateTime<Utc>, fy_start_month: u32, full: usize) -> Vec<Quarter> {
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
    let mut periods = vec![Period::last_full_quarter(now, fy_start_month)];
    while periods.len() < full.max(1) {
        let start = periods[periods.len() - 1].start;
        periods.push(Period::last_full_quarter(midnight(start), fy_start_month));
    }
    periods.reverse();
    let after_last = periods[periods.len() - 1].end + Duration::days(1);
    let next_start = after_last
        .checked_add_months(Months::new(3))
        .unwrap_or(after_last);
    let current = Period::last_full_quarter(midnight(next_start), fy_start_month);
    let mut out: Vec<Quarter> = periods
        .into_iter()
        .map(|p| Quarter {
            label: p.label,
            start: p.start,
            end: p.end,
            partial: false,
        })
        .collect();
    out.push(Quarter {
        label: current.label,
        start: current.start,
        end: current.end,
        partial: true,
    });
    out
}

/// Sums of one partner (or the program) in one quarter, in whole cents so no
/// total depends on row order.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    pipeline: i64,
    revenue: i64,
    reps: u64,
    sellers: u64,
    costs: i64,
    mdf_spend: i64,
    mdf_effective: i64,
    mdf_pipeline: i64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.pipeline += o.pipeline;
        self.revenue += o.revenue;
        self.reps += o.reps;
        self.sellers += o.sellers;
        self.costs += o.costs;
        self.mdf_spend += o.mdf_spend;
        self.mdf_effective += o.mdf_effective;
        self.mdf_pipeline += o.mdf_pipeline;
    }
}

fn cents(x: f64) -> i64 {
    (x * 100.0).round() as i64
}

fn base_cents(m: &Money) -> Option<i64> {
    m.base.map(cents)
}

fn amount(c: i64) -> f64 {
    c as f64 / 100.0
}

/// Which quarter (index into `qs`) a date falls in.
fn quarter_of(qs: &[Quarter], d: NaiveDate) -> Option<usize> {
    let i = qs.partition_point(|q| q.start <= d);
    (i > 0 && d <= qs[i - 1].end).then(|| i - 1)
}

/// `(revenue * margin - cost) / cost`; `None` when cost is 0 or unknown.
fn roi(revenue: i64, cost: Option<i64>, margin: f64) -> Option<f64> {
    let cost = cost.filter(|&c| c != 0)?;
    Some((amount(revenue) * margin - amount(cost)) / amount(cost))
}

/// Runs the review as of `now` over `full` full quarters plus the quarter to
/// date.
pub fn review<'a>(
    data: &Dataset,
    inputs: &ReviewInputs,
    policy: impl Into<Policy<'a>>,
    now: DateTime<Utc>,
    full: usize,
) -> Review {
    let ctx = Context::build(data, policy.into(), now);
    let open_findings = findings::detect(&ctx);
    review_with(&ctx, &open_findings, inputs, full)
}

pub(super) fn review_with(
    ctx: &Context,
    open_findings: &[Finding],
    inputs: &ReviewInputs,
    full: usize,
) -> Review {
    let data = ctx.data;
    let policy = ctx.policy;
    let rs = &policy.review;
    let dormant_n = rs.dormant_quarters.max(1) as usize;
    // Earlier quarters are computed too but not shown: the trailing four
    // quarters of ROI, the change against the previous quarter, and the
    // dormant quarters may reach further back than the quarters shown.
    let full = full.max(1);
    let extra = 4usize.max(dormant_n.saturating_sub(full));
    let qs = quarters(ctx.now, policy.fiscal_year_start_month, full + extra);
    let nq = qs.len();
    let np = data.partners.len();
    let at = |p: usize, q: usize| p * nq + q;
    let mut sums = vec![Sums::default(); np * nq];
    let mut program_wide = vec![0i64; nq];

    // Revenue, reps and active sellers: the scorecard of each quarter.
    let cards: Vec<Vec<scorecard::Scorecard>> = qs
        .par_iter()
        .map(|q| {
            let period = Period {
                start: q.start,
                end: q.end,
                label: q.label.clone(),
            };
            scorecard::compute(ctx, &period, &[])
        })
        .collect();
    for (q, cards) in cards.iter().enumerate() {
        for c in cards {
            if let Some(&p) = ctx.partner_by_id.get(c.partner_id.as_str()) {
                let s = &mut sums[at(p, q)];
                s.revenue = cents(c.sourced_revenue);
                s.reps = c.reps;
                s.sellers = c.active_sellers;
            }
        }
    }

    // Pipeline created, and the opportunities of each campaign.
    let mut campaigns: FastMap<&str, Vec<(NaiveDate, usize)>> = FastMap::default();
    for (i, o) in data.opportunities.iter().enumerate() {
        let created = o.created_at.date_naive();
        if let Some(c) = o.campaign_id.as_deref() {
            campaigns.entry(c).or_default().push((created, i));
        }
        let Some(&p) = o
            .partner_id
            .as_deref()
            .and_then(|id| ctx.partner_by_id.get(id))
        else {
            continue;
        };
        if let Some(q) = quarter_of(&qs, created) {
            sums[at(p, q)].pipeline += o.amount.as_ref().and_then(base_cents).unwrap_or(0);
        }
    }
    for list in campaigns.values_mut() {
        list.sort_unstable();
    }

    // Program costs by the review's own quarter labels.
    let label_index: FastMap<&str, usize> = qs
        .iter()
        .enumerate()
        .map(|(i, q)| (q.label.as_str(), i))
        .collect();
    for c in inputs.program_costs.iter().flatten() {
        let (Some(&q), Some(v)) = (label_index.get(c.quarter.as_str()), base_cents(&c.amount))
        else {
            continue;
        };
        match c
            .partner_id
            .as_deref()
            .and_then(|id| ctx.partner_by_id.get(id))
        {
            Some(&p) => sums[at(p, q)].costs += v,
            None => program_wide[q] += v,
        }
    }

    // MDF: spend by start date; effective when its campaign produced an
    // opportunity between the campaign's start and the attribution horizon.
    let mut attributed: Vec<Vec<usize>> = vec![Vec::new(); np * nq];
    let horizon = Duration::days(i64::from(rs.mdf_attribution_days));
    for m in inputs.mdf.iter().flatten() {
        if !m.status.is_spent() {
            continue;
        }
        let (Some(&p), Some(q)) = (
            ctx.partner_by_id.get(m.partner_id.as_str()),
            quarter_of(&qs, m.start_date),
        ) else {
            continue;
        };
        let spent = match &m.claimed_amount {
            Some(c) => base_cents(c),
            None => base_cents(&m.amount),
        };
        let Some(spent) = spent else { continue };
        let s = &mut sums[at(p, q)];
        s.mdf_spend += spent;
        let from = m.start_date;
        let until = m.end_date.unwrap_or(m.start_date) + horizon;
        let produced: &[(NaiveDate, usize)] = m
            .campaign_id
            .as_deref()
            .and_then(|c| campaigns.get(c))
            .map_or(&[], |list| {
                let lo = list.partition_point(|(d, _)| *d < from);
                let hi = list.partition_point(|(d, _)| *d <= until);
                &list[lo..hi]
            });
        if !produced.is_empty() {
            s.mdf_effective += spent;
            attributed[at(p, q)].extend(produced.iter().map(|(_, o)| *o));
        }
    }
    for (k, opps) in attributed.iter_mut().enumerate() {
        opps.sort_unstable();
        opps.dedup();
        sums[k].mdf_pipeline = opps
            .iter()
            .filter_map(|&o| data.opportunities[o].amount.as_ref().and_then(base_cents))
            .sum();
    }

    let has_costs = inputs.program_costs.is_some();
    let has_mdf = inputs.mdf.is_some();
    let margin = rs.gross_margin;
    let cost_of = |s: &Sums| (has_costs || has_mdf).then_some(s.costs + s.mdf_spend);
    // The metrics of a series of quarterly sums.
    let series = |row: &[Sums]| -> Vec<Metrics> {
        let mut out: Vec<Metrics> = Vec::with_capacity(row.len());
        for (q, s) in row.iter().enumerate() {
            let trailing =
                row[q.saturating_sub(3)..=q]
                    .iter()
                    .fold(Sums::default(), |mut acc, s| {
                        acc.add(s);
                        acc
                    });
            let mut m = Metrics {
                sourced_pipeline_created: amount(s.pipeline),
                sourced_revenue: amount(s.revenue),
                reps: s.reps,
                active_sellers: s.sellers,
                active_seller_rate: (s.reps > 0).then(|| s.sellers as f64 / s.reps as f64),
                cost: cost_of(s).map(amount),
                roi: roi(s.revenue, cost_of(s), margin),
                roi_trailing_4q: (q >= 3)
                    .then(|| roi(trailing.revenue, cost_of(&trailing), margin))
                    .flatten(),
                mdf_spend: has_mdf.then(|| amount(s.mdf_spend)),
                mdf_effectiveness: (has_mdf && s.mdf_spend != 0)
                    .then(|| s.mdf_effective as f64 / s.mdf_spend as f64),
                mdf_pipeline: has_mdf.then(|| amount(s.mdf_pipeline)),
                change: BTreeMap::new(),
            };
            if let Some(prev) = q.checked_sub(1).map(|p| &out[p]) {
                let before = prev.values();
                m.change = m
                    .values()
                    .iter()
                    .zip(before)
                    .map(|((name, now), (_, then))| (*name, now.zip(then).map(|(a, b)| a - b)))
                    .collect();
            }
            out.push(m);
        }
        out
    };
    let shown = nq - (full + 1);
    let keep = |metrics: Vec<Metrics>| -> BTreeMap<String, Metrics> {
        qs[shown..]
            .iter()
            .zip(metrics.into_iter().skip(shown))
            .map(|(q, m)| (q.label.clone(), m))
            .collect()
    };

    let mut program_sums: Vec<Sums> = (0..nq)
        .map(|q| Sums {
            costs: program_wide[q],
            ..Sums::default()
        })
        .collect();
    // The dormant quarters: the last `dormant_quarters` full ones.
    let dormant_qs = (nq - 1 - dormant_n)..(nq - 1);
    let mut partners = Vec::with_capacity(np);
    let mut dormant = Vec::new();
    for (p, partner) in data.partners.iter().enumerate() {
        let row = &sums[at(p, 0)..at(p, nq)];
        for (q, s) in row.iter().enumerate() {
            program_sums[q].add(s);
        }
        let is_dormant = dormant_qs
            .clone()
            .all(|q| row[q].reps > 0 && row[q].sellers == 0 && row[q].pipeline == 0);
        if is_dormant {
            let cost = dormant_qs
                .clone()
                .map(|q| cost_of(&row[q]))
                .sum::<Option<i64>>();
            dormant.push(Dormant {
                partner_id: partner.id.clone(),
                partner_name: partner.name.clone(),
                reps: row[nq - 2].reps,
                cost: cost.map(amount),
                quarters: dormant_qs.clone().map(|q| qs[q].label.clone()).collect(),
            });
        }
        partners.push(PartnerReview {
            partner_id: partner.id.clone(),
            partner_name: partner.name.clone(),
            tier: partner.tier.clone(),
            dormant: is_dormant,
            quarters: keep(series(row)),
        });
    }
    partners.sort_by(|a, b| a.partner_id.cmp(&b.partner_id));
    dormant.sort_by(|a, b| a.partner_id.cmp(&b.partner_id));

    Review {
        as_of: crate::values::format_timestamp(&ctx.now),
        currency: policy.currency.to_string(),
        program: keep(series(&program_sums)),
        quarters: qs[shown..].to_vec(),
        partners,
        dormant,
        disputes: BTreeMap::new(),
        open_conflicts_now: open_conflicts(ctx.now, open_findings),
        inputs: InputsPresent {
            program_costs: has_costs,
            mdf: has_mdf,
            campaign_ids: !campaigns.is_empty(),
        },
        dormant_quarters: dormant_n as u32,
    }
}

/// The conflicts open at T. A conflict began when its second claim appeared.
fn open_conflicts(now: DateTime<Utc>, found: &[Finding]) -> OpenConflicts {
    let mut by_kind = BTreeMap::new();
    let mut oldest: Option<(DateTime<Utc>, &str)> = None;
    let mut open = 0;
    for f in found.iter().filter(|f| f.kind.is_conflict()) {
        open += 1;
        *by_kind.entry(f.kind.as_str()).or_insert(0) += 1;
        let mut times: Vec<DateTime<Utc>> = f.evidence.iter().map(|e| e.at).collect();
        times.sort_unstable();
        if let Some(&began) = times.get(1).or(times.first())
            && oldest.is_none_or(|(t, k)| (began, f.key.as_str()) < (t, k))
        {
            oldest = Some((began, f.key.as_str()));
        }
    }
    OpenConflicts {
        note: "only the conflicts open now: no state history was read, so disputes per quarter, resolutions and decisions are not shown".into(),
        open,
        by_kind,
        oldest_open_days: oldest.map(|(t, _)| (now - t).num_days()),
        oldest_open_key: oldest.map(|(_, k)| k.to_string()),
    }
}

/// A conflict finding as the state remembers it.
#[derive(Debug, Clone, PartialEq)]
pub struct DisputeRecord {
    pub kind: String,
    pub first_seen: DateTime<Utc>,
    /// When it closed, if it did.
    pub closed_at: Option<DateTime<Utc>>,
    /// Closed because the conflict went away (not aged out).
    pub resolved: bool,
    /// Verdicts taken on it (`partner_keeps`, `direct_keeps`, `split`,
    /// `not_a_conflict`), with when.
    pub decisions: Vec<(DateTime<Utc>, String)>,
}

/// The disputes of one quarter (SPEC §6.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisputeQuarter {
    pub opened: u64,
    pub resolved: u64,
    /// Closed because the records aged out, not resolved (counted apart).
    pub aged_out: u64,
    pub median_days_to_resolve: Option<f64>,
    pub open_at_end: u64,
    pub oldest_open_days: Option<i64>,
    /// Verdicts taken in the quarter on conflicts, by outcome.
    pub decisions: BTreeMap<String, u64>,
}

/// The disputes per quarter from the state's history. A quarter ends at
/// its last day's end, or at `now` for the quarter to date.
pub fn disputes(
    records: &[DisputeRecord],
    quarters: &[Quarter],
    now: DateTime<Utc>,
) -> BTreeMap<String, DisputeQuarter> {
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
    quarters
        .iter()
        .map(|q| {
            let from = midnight(q.start);
            // The quarter to date includes T itself (a finding first seen
            // by a cycle at T); its ages are measured at T.
            let end = midnight(q.end + Duration::days(1));
            let (until, asof) = if q.partial {
                (end.min(now + Duration::nanoseconds(1)), now)
            } else {
                (end, end)
            };
            let within = |t: DateTime<Utc>| from <= t && t < until;
            let mut out = DisputeQuarter {
                opened: 0,
                resolved: 0,
                aged_out: 0,
                median_days_to_resolve: None,
                open_at_end: 0,
                oldest_open_days: None,
                decisions: BTreeMap::new(),
            };
            let mut days: Vec<f64> = Vec::new();
            for r in records {
                for (at, outcome) in &r.decisions {
                    if within(*at) {
                        *out.decisions.entry(outcome.clone()).or_default() += 1;
                    }
                }
                out.opened += u64::from(within(r.first_seen));
                if let Some(c) = r.closed_at.filter(|&c| within(c)) {
                    if r.resolved {
                        out.resolved += 1;
                        days.push((c - r.first_seen).num_seconds() as f64 / 86_400.0);
                    } else {
                        out.aged_out += 1;
                    }
                }
                if r.first_seen < until && r.closed_at.is_none_or(|c| c >= until) {
                    out.open_at_end += 1;
                    let age = (asof - r.first_seen).num_days();
                    out.oldest_open_days = Some(out.oldest_open_days.map_or(age, |o| o.max(age)));
                }
            }
            days.sort_by(f64::total_cmp);
            out.median_days_to_resolve = match days.len() {
                0 => None,
                n if n % 2 == 1 => Some(days[n / 2]),
                n => Some((days[n / 2 - 1] + days[n / 2]) / 2.0),
            };
            (q.label.clone(), out)
        })
        .collect()
}

impl Review {
    /// Fills `disputes` from the state's history of conflict findings.
    pub fn with_history(mut self, records: &[DisputeRecord], now: DateTime<Utc>) -> Review {
        self.disputes = disputes(records, &self.quarters, now);
        self.open_conflicts_now.note = "the conflicts open now; disputes per quarter, with the verdicts taken on them, come from the state's history".into();
        self
    }
}

#[cfg(test)]
mod tests;
