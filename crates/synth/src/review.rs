//! The channel review's inputs (SPEC §6.1), written only on request
//! (`generate --review-inputs`), so the default program keeps its bytes.
//!
//! - `opportunities.campaign_id`: a quarter of the partner-sourced opportunities of the partners
//!   that run campaigns (one partner in [`CAMPAIGN_ONE_IN`]), created in the covered quarters,
//!   carry that partner's campaign of the quarter (`CMP-P-0007-2026Q3`).
//! - `mdf.csv`: those partners get a request for most covered quarters on that campaign (MDF
//!   that produced pipeline); some other partners get requests on campaigns no opportunity
//!   names, or on none (MDF that produced nothing). Statuses follow the quarter's age: old
//!   requests are mostly paid (claimed a little under the approved amount), the quarter to date
//!   mostly requested or approved.
//! - `program_costs.csv`: platform and people each quarter (program-wide), an incentive per
//!   campaign-running partner and an enablement cost for a tenth of the others, each quarter.
//!
//! - **Most partners dormant, a few producing** (the guide's 40 signed, 4 producing): the
//!   partners that do not run campaigns stop registering and selling at the start of the
//!   [`DORMANT_QUARTERS`] full quarters before the quarter to date: their registrations
//!   submitted from 60 days before that, and the opportunities created or closed from then, go to a
//!   producing partner (one of its reps). Older history is untouched, so their trend shows them
//!   going quiet. The default `review.dormant_quarters` (2) then finds about nine in ten dormant.
//!
//! Everything draws from its own streams ([`REVIEW_SALT`]), never from the main program's, so
//! the other files are byte-identical with and without the flag (apart from the added column).
//! The covered quarters are the calendar quarter of `now` and the [`FULL_QUARTERS`] before it,
//! labelled as the review labels them with the default fiscal year (`2026-Q3`).

use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Datelike, NaiveDate};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{
    DAY, Ids, Model, Rec, SynthParams, between, chance, finish, fnv, push_id, stream, writer,
};

/// One partner in this many runs campaigns (and produces pipeline from them).
pub(crate) const CAMPAIGN_ONE_IN: u64 = 10;
/// Full quarters covered before the quarter to date (the review's default `--quarters`).
const FULL_QUARTERS: i64 = 4;
/// Full quarters (before the quarter to date) in which the non-producing partners are quiet.
const DORMANT_QUARTERS: i64 = 2;
/// Seeds the review streams apart from the program's.
const REVIEW_SALT: u64 = 0x5245_5649_4557;

/// `year * 4 + quarter (0..4)` of a Unix time in seconds.
pub(crate) fn quarter_of(t: i64) -> i64 {
    let d = DateTime::from_timestamp(t.div_euclid(DAY) * DAY, 0)
        .map(|d| d.date_naive())
        .unwrap_or_default();
    i64::from(d.year()) * 4 + i64::from(d.month0() / 3)
}

fn label(q: i64) -> String {
    format!("{}-Q{}", q.div_euclid(4), q.rem_euclid(4) + 1)
}

fn quarter_start(q: i64) -> i64 {
    let year = i32::try_from(q.div_euclid(4)).unwrap_or(1970);
    let month = u32::try_from(q.rem_euclid(4) * 3 + 1).unwrap_or(1);
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |d| d.and_utc().timestamp())
}

/// Which partners run campaigns, and the quarters covered.
pub(crate) struct Campaigns {
    seed: u64,
    /// The producing partners, ascending; the others hand their recent business to them.
    producing: Vec<u32>,
    /// From this time (Unix seconds) the non-producing partners are quiet.
    quiet_from: i64,
    /// The first and last (the quarter to date) covered quarter.
    first: i64,
    last: i64,
}

impl Campaigns {
    pub(crate) fn new(p: &SynthParams, m: &Model) -> Self {
        let last = quarter_of(m.now);
        let mut camp = Campaigns {
            seed: p.seed,
            producing: Vec::new(),
            quiet_from: quarter_start(last - DORMANT_QUARTERS),
            first: last - FULL_QUARTERS,
            last,
        };
        camp.producing = (0..m.partners.len() as u32)
            .filter(|&i| camp.runs_campaigns(i))
            .collect();
        camp
    }

    /// The partner that takes over `partner`'s recent business, when it is a quiet one.
    fn heir(&self, partner: u32) -> Option<u32> {
        if self.producing.is_empty() || self.runs_campaigns(partner) {
            return None;
        }
        Some(self.producing[partner as usize % self.producing.len()])
    }

    /// Hands the recent registrations of the non-producing partners to producing ones.
    pub(crate) fn quieten(&self, m: &mut Model) {
        let mut rng = stream(self.seed ^ REVIEW_SALT, (1 << 40) + 2);
        let from = self.quiet_from - 60 * DAY;
        for r in 0..m.regs.len() {
            let reg = &m.regs[r];
            if reg.submitted < from {
                continue;
            }
            if let Some(heir) = self.heir(reg.partner) {
                let rep = reg.rep.and_then(|_| m.rep_of(&mut rng, heir));
                let reg = &mut m.regs[r];
                reg.partner = heir;
                reg.rep = rep;
            }
        }
    }

    /// An opportunity of a quiet partner created or closed from `quiet_from` (`at`: the later
    /// of the two) goes to its heir.
    pub(crate) fn reassign(
        &self,
        rng: &mut ChaCha8Rng,
        m: &Model,
        partner: &mut Option<u32>,
        rep: &mut Option<u32>,
        at: i64,
    ) {
        if at < self.quiet_from {
            return;
        }
        if let Some(heir) = partner.and_then(|q| self.heir(q)) {
            *partner = Some(heir);
            *rep = rep.and_then(|_| m.rep_of(rng, heir));
        }
    }

    /// Whether partner `i` runs campaigns: a seeded hash, so about one in [`CAMPAIGN_ONE_IN`].
    pub(crate) fn runs_campaigns(&self, i: u32) -> bool {
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&(self.seed ^ REVIEW_SALT).to_le_bytes());
        key[8..].copy_from_slice(&i.to_le_bytes());
        fnv(&key).is_multiple_of(CAMPAIGN_ONE_IN)
    }

    /// The random stream of opportunity chunk `c`'s campaign draws.
    pub(crate) fn chunk_stream(&self, c: u64) -> ChaCha8Rng {
        stream(self.seed ^ REVIEW_SALT, c)
    }

    /// The campaign field of an opportunity of `partner` created at `created`.
    pub(crate) fn push_campaign(
        &self,
        rng: &mut ChaCha8Rng,
        rec: &mut Rec,
        partner: Option<u32>,
        created: i64,
        ids: &Ids,
    ) {
        if let Some(i) = partner {
            let q = quarter_of(created);
            if (self.first..=self.last).contains(&q) && self.runs_campaigns(i) && chance(rng, 0.25)
            {
                push_campaign_id(&mut rec.buf, i, q, ids);
            }
        }
        rec.end();
    }
}

fn push_campaign_id(buf: &mut Vec<u8>, partner: u32, q: i64, ids: &Ids) {
    push_id(buf, "CMP-P-", partner, ids.partner);
    buf.extend_from_slice(format!("-{}Q{}", q.div_euclid(4), q.rem_euclid(4) + 1).as_bytes());
}

/// Rows written to program_costs.csv and mdf.csv.
pub(crate) struct Written {
    pub(crate) program_costs: usize,
    pub(crate) mdf: usize,
}

const COSTS_HEADER: [&str; 6] = [
    "id",
    "quarter",
    "amount",
    "currency",
    "partner_id",
    "category",
];
const MDF_HEADER: [&str; 9] = [
    "id",
    "partner_id",
    "status",
    "amount",
    "claimed_amount",
    "currency",
    "campaign_id",
    "start_date",
    "end_date",
];

/// Writes program_costs.csv and mdf.csv into `dir`.
pub(crate) fn write_files(
    dir: &Path,
    m: &Model,
    ids: &Ids,
    camp: &Campaigns,
) -> Result<(Written, [&'static str; 2])> {
    let files = ["program_costs.csv", "mdf.csv"];
    let program_costs = write_costs(&dir.join(files[0]), m, camp)?;
    let mdf = write_mdf(&dir.join(files[1]), m, ids, camp)?;
    Ok((Written { program_costs, mdf }, files))
}

/// Whole dollars between `lo` and `hi`, in cents.
fn dollars(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> u64 {
    u64::try_from(between(rng, lo, hi)).unwrap_or(0) * 100
}

fn write_costs(path: &Path, m: &Model, camp: &Campaigns) -> Result<usize> {
    let mut rng = stream(camp.seed ^ REVIEW_SALT, 1 << 40);
    let mut w = writer(path)?;
    w.write_record(COSTS_HEADER)?;
    let mut rec = Rec::new();
    let mut n = 0u32;
    let width = 6;
    // Program-wide costs scale with the program (a platform and a team per 500 partners).
    let teams = i64::try_from(m.partners.len().div_ceil(500)).unwrap_or(1);
    let partner_width = super::digits(m.partners.len());
    for q in camp.first..=camp.last {
        let quarter = label(q);
        for (category, lo, hi) in [("platform", 20_000, 40_000), ("people", 90_000, 150_000)] {
            rec.id("PC-", n, width);
            n += 1;
            rec.str(&quarter);
            rec.amount(Some(dollars(&mut rng, lo * teams, hi * teams)));
            rec.str("");
            rec.str("");
            rec.str(category);
            rec.write(&mut w)?;
        }
        for i in 0..m.partners.len() as u32 {
            let cost = if camp.runs_campaigns(i) {
                Some(("incentive", 2_000, 15_000))
            } else if chance(&mut rng, 0.1) {
                Some(("enablement", 300, 3_000))
            } else {
                None
            };
            if let Some((category, lo, hi)) = cost {
                rec.id("PC-", n, width);
                n += 1;
                rec.str(&quarter);
                rec.amount(Some(dollars(&mut rng, lo, hi)));
                rec.str("");
                rec.id("P-", i, partner_width);
                rec.str(category);
                rec.write(&mut w)?;
            }
        }
    }
    finish(w, path)?;
    Ok(n as usize)
}

fn write_mdf(path: &Path, m: &Model, ids: &Ids, camp: &Campaigns) -> Result<usize> {
    let mut rng = stream(camp.seed ^ REVIEW_SALT, (1 << 40) + 1);
    let mut w = writer(path)?;
    w.write_record(MDF_HEADER)?;
    let mut rec = Rec::new();
    let mut n = 0u32;
    for q in camp.first..=camp.last {
        let start_q = quarter_start(q);
        let to_date = q == camp.last;
        for i in 0..m.partners.len() as u32 {
            let producing = camp.runs_campaigns(i);
            let asks = if producing {
                chance(&mut rng, 0.8)
            } else {
                chance(&mut rng, 0.08)
            };
            if !asks {
                continue;
            }
            let status = if to_date {
                pick_status(
                    &mut rng,
                    &[("requested", 40), ("approved", 45), ("claimed", 15)],
                )
            } else {
                pick_status(
                    &mut rng,
                    &[
                        ("paid", 55),
                        ("claimed", 15),
                        ("approved", 12),
                        ("rejected", 12),
                        ("requested", 6),
                    ],
                )
            };
            let amount = dollars(&mut rng, 2_000, 25_000);
            let claimed = matches!(status, "claimed" | "paid")
                .then(|| amount / 100 * rng.random_range(60..=100u64));
            let start = start_q + between(&mut rng, 0, 10) * DAY;
            let end = start + between(&mut rng, 14, 60) * DAY;
            rec.id("MDF-", n, 6);
            n += 1;
            rec.id("P-", i, ids.partner);
            rec.str(status);
            rec.amount(Some(amount));
            rec.amount(claimed);
            rec.str("");
            if producing {
                push_campaign_id(&mut rec.buf, i, q, ids);
            } else if chance(&mut rng, 0.7) {
                // A campaign (an event, a webinar) that no opportunity names.
                push_campaign_id(&mut rec.buf, i, q, ids);
                rec.buf.extend_from_slice(b"-EVT");
            }
            rec.end();
            rec.date(Some(start));
            rec.date(Some(end));
            rec.write(&mut w)?;
        }
    }
    finish(w, path)?;
    Ok(n as usize)
}

fn pick_status(rng: &mut ChaCha8Rng, items: &[(&'static str, u32)]) -> &'static str {
    super::pick_weighted(rng, items)
}
