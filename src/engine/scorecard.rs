//! Partner scorecards for the last full fiscal quarter (SPEC §3.4).

use crate::fast::FastMap;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use rayon::prelude::*;
use serde::Serialize;

use super::Context;
use super::findings::Finding;
use crate::fast::index_by_id;
use crate::model::OpportunityStatus;
use crate::values::date_of;

/// A fiscal quarter, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub label: String,
}

impl Period {
    /// The last full fiscal quarter that ended before `now`. Quarters start in
    /// `fy_start_month` and every third month after it. The label names the
    /// fiscal year by the calendar year in which it ends (`2026-Q3` for
    /// July-September 2026 when the year starts in January; `2027-Q1` for
    /// February-April 2026 when it starts in February).
    pub fn last_full_quarter(now: DateTime<Utc>, fy_start_month: u32) -> Period {
        let m0 = fy_start_month.clamp(1, 12);
        let today = date_of(&now);
        // Months since the current quarter began (quarters are 3 months from
        // m0, so only the distance modulo 3 matters).
        let back = (today.month() + 12 - m0) % 3;
        let first_of_month = today.with_day(1).unwrap_or(today);
        let current = first_of_month
            .checked_sub_months(Months::new(back))
            .unwrap_or(first_of_month);
        let start = current
            .checked_sub_months(Months::new(3))
            .unwrap_or(current);
        let end = current - Duration::days(1);
        let q = ((start.month() + 12 - m0) % 12) / 3 + 1;
        let fy_first_year = if start.month() >= m0 {
            start.year()
        } else {
            start.year() - 1
        };
        let fy = if m0 == 1 {
            fy_first_year
        } else {
            fy_first_year + 1
        };
        Period {
            start,
            end,
            label: format!("{fy}-Q{q}"),
        }
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start <= d && d <= self.end
    }
}

/// One partner's scorecard (SPEC §3.4, §4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scorecard {
    pub partner_id: String,
    pub reps: u64,
    pub active_sellers: u64,
    pub active_seller_rate: Option<f64>,
    pub sourced_pipeline: f64,
    pub sourced_revenue: f64,
    pub open_registrations: u64,
    pub expiring_registrations: u64,
    pub open_conflicts: u64,
    pub partner_name: String,
    pub tier: Option<String>,
}

/// Amounts are summed in whole cents so the totals do not depend on the
/// order of the rows.
fn cents(x: f64) -> i64 {
    (x * 100.0).round() as i64
}

/// Opportunities summed per task: enough that the per-partner totals of a
/// chunk cost little beside it, few enough that both cores get several.
pub(super) const SUM_CHUNK: usize = 16_384;

/// One chunk's opportunity sums, per partner index, in cents; and the reps
/// credited with a win in the period.
struct Sums {
    pipeline: Vec<i64>,
    revenue: Vec<i64>,
    credited: Vec<usize>,
}

impl Sums {
    fn new(partners: usize) -> Self {
        Sums {
            pipeline: vec![0; partners],
            revenue: vec![0; partners],
            credited: Vec::new(),
        }
    }

    fn add(mut self, other: Sums) -> Sums {
        for (a, b) in self.pipeline.iter_mut().zip(&other.pipeline) {
            *a += b;
        }
        for (a, b) in self.revenue.iter_mut().zip(&other.revenue) {
            *a += b;
        }
        self.credited.extend(other.credited);
        self
    }
}

pub(super) fn compute(ctx: &Context, period: &Period, findings: &[Finding]) -> Vec<Scorecard> {
    let data = ctx.data;
    let np = data.partners.len();

    // The registrations and conflicts are counted on one core while the
    // rep maps are built on the other, and then the opportunities summed on
    // both.
    let ((pipeline, revenue, sold), (open, expiring, conflicts)) =
        rayon::join(|| sums_and_credited(ctx, period), || counts(ctx, findings));

    let mut reps = vec![0u64; np];
    let mut sellers = vec![0u64; np];
    for (i, rep) in data.reps.iter().enumerate() {
        let Some(&p) = ctx.partner_by_id.get(rep.partner_id.as_str()) else {
            continue;
        };
        let with_partner = rep.joined_on.is_none_or(|d| d <= period.end)
            && rep.left_on.is_none_or(|d| d >= period.start)
            && (rep.active || rep.left_on.is_some());
        if with_partner {
            reps[p] += 1;
            sellers[p] += u64::from(sold[i]);
        }
    }

    let mut cards: Vec<Scorecard> = data
        .partners
        .iter()
        .enumerate()
        .map(|(i, p)| Scorecard {
            partner_id: p.id.clone(),
            reps: reps[i],
            active_sellers: sellers[i],
            active_seller_rate: (reps[i] > 0).then(|| sellers[i] as f64 / reps[i] as f64),
            sourced_pipeline: pipeline[i] as f64 / 100.0,
            sourced_revenue: revenue[i] as f64 / 100.0,
            open_registrations: open[i],
            expiring_registrations: expiring[i],
            open_conflicts: conflicts[i],
            partner_name: p.name.clone(),
            tier: p.tier.clone(),
        })
        .collect();
    cards.sort_by(|a, b| a.partner_id.cmp(&b.partner_id));
    cards
}

/// Each partner's sourced pipeline and revenue in cents, and per rep
/// whether it is credited with a win in the period.
fn sums_and_credited(ctx: &Context, period: &Period) -> (Vec<i64>, Vec<i64>, Vec<bool>) {
    let data = ctx.data;
    let np = data.partners.len();

    // Reps by id and by e-mail (case-insensitive; the smaller id on a tie).
    let rep_by_id: FastMap<&str, usize> = index_by_id(&data.reps, |x| &x.id);
    let mut rep_by_email: FastMap<String, usize> = FastMap::default();
    for (i, r) in data.reps.iter().enumerate() {
        if let Some(e) = &r.email {
            rep_by_email
                .entry(e.to_lowercase())
                .and_modify(|held| {
                    if r.id < data.reps[*held].id {
                        *held = i;
                    }
                })
                .or_insert(i);
        }
    }
    let resolve = |reference: &str| {
        rep_by_id.get(reference).copied().or_else(|| {
            reference
                .contains('@')
                .then(|| rep_by_email.get(&reference.to_lowercase()).copied())
                .flatten()
        })
    };
    // Registrations that name an opportunity, earliest submission first.
    let mut reg_naming: FastMap<&str, usize> = FastMap::default();
    for (i, r) in data.registrations.iter().enumerate() {
        if let Some(o) = r.opportunity_id.as_deref() {
            reg_naming
                .entry(o)
                .and_modify(|held| {
                    let h = &data.registrations[*held];
                    if (r.submitted_at, &r.id) < (h.submitted_at, &h.id) {
                        *held = i;
                    }
                })
                .or_insert(i);
        }
    }

    // The lookups and sums for a chunk of opportunities at a time on every
    // core, each chunk into its own totals, then the totals added up. Sums
    // are whole cents, so the order they are added in does not matter.
    let sums = data
        .opportunities
        .par_chunks(SUM_CHUNK)
        .map(|chunk| {
            let mut sums = Sums::new(np);
            for opp in chunk {
                let partner = opp
                    .partner_id
                    .as_deref()
                    .and_then(|p| ctx.partner_by_id.get(p).copied());
                let amount = || opp.amount.as_ref().and_then(|m| m.base).map_or(0, cents);
                match opp.status {
                    OpportunityStatus::Open => {
                        if let Some(p) = partner {
                            sums.pipeline[p] += amount();
                        }
                    }
                    OpportunityStatus::Won => {
                        if !opp.close_date.is_some_and(|d| period.contains(d)) {
                            continue;
                        }
                        if let Some(p) = partner {
                            sums.revenue[p] += amount();
                        }
                        // The credited rep: the opportunity's own, else a
                        // linked registration's.
                        let credited = opp.partner_rep.as_deref().and_then(resolve).or_else(|| {
                            let via_link = opp
                                .registration_id
                                .as_deref()
                                .and_then(|id| ctx.registration_by_id.get(id))
                                .or_else(|| reg_naming.get(opp.id.as_str()))?;
                            data.registrations[*via_link]
                                .rep
                                .as_deref()
                                .and_then(resolve)
                        });
                        sums.credited.extend(credited);
                    }
                    OpportunityStatus::Lost => {}
                }
            }
            sums
        })
        .reduce(|| Sums::new(np), Sums::add);
    let Sums {
        pipeline,
        revenue,
        credited,
    } = sums;
    let mut sold = vec![false; data.reps.len()];
    for rep in credited {
        sold[rep] = true;
    }
    (pipeline, revenue, sold)
}

/// Each partner's open and expiring registrations, and the conflicts that
/// name it.
fn counts(ctx: &Context, findings: &[Finding]) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let data = ctx.data;
    let np = data.partners.len();
    let ahead = ctx.now + Duration::days(i64::from(ctx.policy.rules.expiring_within_days));
    let mut open = vec![0u64; np];
    let mut expiring = vec![0u64; np];
    for (r, reg) in data.registrations.iter().enumerate() {
        if !ctx.is_active(r) {
            continue;
        }
        if let Some(&p) = ctx.partner_by_id.get(reg.partner_id.as_str()) {
            open[p] += 1;
            expiring[p] += u64::from(ctx.expiry[r] <= ahead);
        }
    }

    let mut conflicts = vec![0u64; np];
    for f in findings.iter().filter(|f| f.kind.is_conflict()) {
        for p in &f.partner_ids {
            if let Some(&i) = ctx.partner_by_id.get(p.as_str()) {
                conflicts[i] += 1;
            }
        }
    }
    (open, expiring, conflicts)
}

/// The scorecard values of SPEC §3.4 that can be written back, in the
/// order of `connectors::writeback::field_values` and of `scorecards.csv` (after `partner_id`).
pub const SCORECARD_FIELDS: [&str; 9] = [
    "period",
    "reps",
    "active_sellers",
    "active_seller_rate",
    "sourced_pipeline",
    "sourced_revenue",
    "open_registrations",
    "expiring_registrations",
    "open_conflicts",
];

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn calendar_quarters() {
        let p = Period::last_full_quarter(at(2026, 11, 26), 1);
        assert_eq!((p.start, p.end), (date(2026, 7, 1), date(2026, 9, 30)));
        assert_eq!(p.label, "2026-Q3");
        let p = Period::last_full_quarter(at(2026, 1, 15), 1);
        assert_eq!((p.start, p.end), (date(2025, 10, 1), date(2025, 12, 31)));
        assert_eq!(p.label, "2025-Q4");
    }

    #[test]
    fn the_first_moment_of_a_quarter_closes_the_previous_one() {
        let t = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
        let p = Period::last_full_quarter(t, 1);
        assert_eq!((p.start, p.end), (date(2026, 7, 1), date(2026, 9, 30)));
        let t = Utc.with_ymd_and_hms(2026, 9, 30, 23, 59, 59).unwrap();
        assert_eq!(Period::last_full_quarter(t, 1).label, "2026-Q2");
    }

    #[test]
    fn fiscal_years_starting_in_february_are_named_by_their_end() {
        // FY2027 runs 2026-02-01 .. 2027-01-31.
        let p = Period::last_full_quarter(at(2026, 6, 10), 2);
        assert_eq!((p.start, p.end), (date(2026, 2, 1), date(2026, 4, 30)));
        assert_eq!(p.label, "2027-Q1");
        let p = Period::last_full_quarter(at(2026, 2, 10), 2);
        assert_eq!((p.start, p.end), (date(2025, 11, 1), date(2026, 1, 31)));
        assert_eq!(p.label, "2026-Q4");
    }

    #[test]
    fn fiscal_years_starting_in_october() {
        let p = Period::last_full_quarter(at(2026, 11, 26), 10);
        assert_eq!((p.start, p.end), (date(2026, 7, 1), date(2026, 9, 30)));
        assert_eq!(p.label, "2026-Q4");
    }
}
