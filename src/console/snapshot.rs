//! What the console shows of the program beside the findings: partners,
//! reps, registrations, scorecards and the review, as of the last cycle.
//!
//! Built once after each cycle (off the request path) and swapped in whole
//! (`Arc`), so a page reads a consistent picture and never waits for the
//! data to load. It keeps only the rows the pages show, not the dataset.

use std::collections::BTreeMap;

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};

use crate::config::{CrmKind, Settings};
use crate::connectors::files;
use crate::engine::review::Review;
use crate::model::{Dataset, RegistrationStatus};

/// Days ahead that count as "expiring" on the overview and registrations.
pub(crate) const EXPIRING_DAYS: i64 = 14;

/// One partner's row: its scorecard for the period, plus its reps.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerRow {
    pub id: String,
    pub name: String,
    pub tier: Option<String>,
    pub reps: u64,
    pub active_sellers: u64,
    pub rate: Option<f64>,
    pub pipeline: f64,
    pub revenue: f64,
    pub open_registrations: u64,
    pub conflicts: u64,
    pub dormant: bool,
    /// Its reps, those who sold in the period first.
    pub rep_list: Vec<RepRow>,
}

/// A partner rep and what they brought in the scorecard's period.
#[derive(Debug, Clone, PartialEq)]
pub struct RepRow {
    pub name: String,
    pub email: Option<String>,
    pub active: bool,
    /// Registrations submitted and opportunities created in the period.
    pub deals: u64,
}

/// Where a registration stands on the snapshot's date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegState {
    Expiring,
    Active,
    Expired,
}

impl RegState {
    pub fn as_str(self) -> &'static str {
        match self {
            RegState::Active => "active",
            RegState::Expiring => "expiring",
            RegState::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegRow {
    pub id: String,
    pub partner_id: String,
    pub partner_name: String,
    pub customer: String,
    pub status: String,
    pub state: RegState,
    pub submitted_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub amount: Option<f64>,
}

/// The last cycle's picture of the program.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub as_of: Option<DateTime<Utc>>,
    pub currency: String,
    /// The scorecard's period label (e.g. `2026-10-01..2026-12-31`).
    pub period: String,
    pub partners: Vec<PartnerRow>,
    /// Active, expiring and expired registrations (closed ones left out),
    /// expiring first, then by expiry.
    pub registrations: Vec<RegRow>,
    pub review: Option<Review>,
    /// The printable review (`review --format html`).
    pub review_html: Option<String>,
    /// Why some of it is missing, for the pages to say.
    pub note: Option<String>,
}

impl Snapshot {
    /// Before the first cycle: nothing but a note.
    pub fn empty(note: &str) -> Snapshot {
        Snapshot {
            note: Some(note.into()),
            ..Snapshot::default()
        }
    }

    pub fn partner(&self, id: &str) -> Option<&PartnerRow> {
        self.partners.iter().find(|p| p.id == id)
    }

    /// Registrations expiring within [`EXPIRING_DAYS`].
    pub fn expiring(&self) -> impl Iterator<Item = &RegRow> {
        self.registrations
            .iter()
            .filter(|r| r.state == RegState::Expiring)
    }
}

/// Reads the configured files source and builds the snapshot as of `now`
/// (at start, before any cycle). With an API source the snapshot comes from
/// each cycle's data ([`from_dataset`]) instead.
pub(crate) fn build(settings: &Settings, now: DateTime<Utc>) -> anyhow::Result<Snapshot> {
    if settings.crm.kind != Some(CrmKind::Files) {
        return Ok(Snapshot::empty(
            "Partners, registrations and the review appear after the first cycle; findings are shown already.",
        ));
    }
    let crm = settings
        .crm
        .files
        .dir
        .clone()
        .context("crm.files.dir is not set")?;
    let prm = settings
        .prm
        .files
        .dir
        .clone()
        .unwrap_or_else(|| crm.clone());
    let loaded = files::load_split(&crm, &prm, &settings.scorecard)?;
    let (inputs, rejected) =
        files::load_review_inputs(&crm, &prm, &loaded.dataset.partners, &settings.scorecard)?;
    from_dataset(&loaded.dataset, &inputs, rejected, settings, now)
}

/// The snapshot of `data` as of `now`: what a cycle evaluated, from any
/// source, with the review's optional tables.
pub(crate) fn from_dataset(
    data: &Dataset,
    inputs: &crate::model::ReviewInputs,
    rejected: Vec<crate::model::Rejected>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<Snapshot> {
    let review = crate::review::with_stored_history(
        crate::engine::review::review(data, inputs, settings, now, 4),
        settings,
        now,
    )?;
    let evaluation = crate::engine::evaluate(data, settings, now);
    let review_html = crate::review::render(
        &crate::review::Outcome {
            review: review.clone(),
            rejected,
        },
        crate::review::Format::Html,
    );
    let dormant: std::collections::HashSet<&str> = review
        .dormant
        .iter()
        .map(|d| d.partner_id.as_str())
        .collect();
    let mut reps = reps_by_partner(data, &evaluation.period);
    let partners = evaluation
        .scorecards
        .iter()
        .map(|s| PartnerRow {
            id: s.partner_id.clone(),
            name: s.partner_name.clone(),
            tier: s.tier.clone(),
            reps: s.reps,
            active_sellers: s.active_sellers,
            rate: s.active_seller_rate,
            pipeline: s.sourced_pipeline,
            revenue: s.sourced_revenue,
            open_registrations: s.open_registrations,
            conflicts: s.open_conflicts,
            dormant: dormant.contains(s.partner_id.as_str()),
            rep_list: reps.remove(&s.partner_id).unwrap_or_default(),
        })
        .collect();
    Ok(Snapshot {
        as_of: Some(now),
        currency: settings.scorecard.currency.clone(),
        period: evaluation.period.label.clone(),
        partners,
        registrations: registrations(data, now),
        review: Some(review),
        review_html: Some(review_html),
        note: None,
    })
}

/// Each partner's reps with their deals in `period`, sellers first.
fn reps_by_partner(
    data: &Dataset,
    period: &crate::engine::Period,
) -> BTreeMap<String, Vec<RepRow>> {
    // A deal names its rep by id or by e-mail (any case).
    let mut deals: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut count = |partner: &str, rep: &str| {
        *deals
            .entry((partner.to_string(), rep.to_lowercase()))
            .or_default() += 1;
    };
    for o in &data.opportunities {
        if let (Some(p), Some(r)) = (&o.partner_id, &o.partner_rep)
            && period.contains(o.created_at.date_naive())
        {
            count(p, r);
        }
    }
    for r in &data.registrations {
        if let Some(rep) = &r.rep
            && period.contains(r.submitted_at.date_naive())
        {
            count(&r.partner_id, rep);
        }
    }
    let mut out: BTreeMap<String, Vec<RepRow>> = BTreeMap::new();
    for rep in &data.reps {
        let by_id = deals
            .get(&(rep.partner_id.clone(), rep.id.to_lowercase()))
            .copied()
            .unwrap_or(0);
        let by_email = rep
            .email
            .as_ref()
            .and_then(|e| deals.get(&(rep.partner_id.clone(), e.to_lowercase())))
            .copied()
            .unwrap_or(0);
        out.entry(rep.partner_id.clone()).or_default().push(RepRow {
            name: rep.name.clone().unwrap_or_else(|| rep.id.clone()),
            email: rep.email.clone(),
            active: rep.active,
            deals: by_id + by_email,
        });
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| b.deals.cmp(&a.deals).then_with(|| a.name.cmp(&b.name)));
    }
    out
}

/// The registrations still standing or recently expired, with their state.
fn registrations(data: &Dataset, now: DateTime<Utc>) -> Vec<RegRow> {
    let names: BTreeMap<&str, &str> = data
        .partners
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    let soon = now + Duration::days(EXPIRING_DAYS);
    let mut rows: Vec<RegRow> = data
        .registrations
        .iter()
        .filter_map(|r| {
            let state = match (r.status, r.expires_at) {
                (RegistrationStatus::Expired, _) => RegState::Expired,
                (RegistrationStatus::Submitted | RegistrationStatus::Approved, Some(e))
                    if e < now =>
                {
                    RegState::Expired
                }
                (RegistrationStatus::Approved, Some(e)) if e <= soon => RegState::Expiring,
                (RegistrationStatus::Submitted | RegistrationStatus::Approved, _) => {
                    RegState::Active
                }
                _ => return None,
            };
            Some(RegRow {
                id: r.id.clone(),
                partner_id: r.partner_id.clone(),
                partner_name: names
                    .get(r.partner_id.as_str())
                    .map_or_else(|| r.partner_id.clone(), |n| (*n).to_string()),
                customer: r.customer_name.clone(),
                status: format!("{:?}", r.status).to_lowercase(),
                state,
                submitted_at: r.submitted_at,
                expires_at: r.expires_at,
                amount: r.amount,
            })
        })
        .collect();
    rows.sort_by(|a, b| (a.state, a.expires_at, &a.id).cmp(&(b.state, b.expires_at, &b.id)));
    rows
}
