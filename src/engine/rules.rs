//! What the engine is told: the `[rules]` section (owned here, read by
//! config) and the few scorecard and review parameters the rules need. No
//! webhooks, secrets or connector settings reach the engine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `rules.*` (SPEC §3).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Protection window when the partner's tier sets none.
    pub protection_days: u32,
    pub expiring_within_days: u32,
    pub expired_lookback_days: u32,
    pub fuzzy_threshold: f64,
    /// Per-tier windows; tier names compare case-insensitively.
    pub tiers: BTreeMap<String, TierRules>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            protection_days: 90,
            expiring_within_days: 14,
            expired_lookback_days: 30,
            fuzzy_threshold: 0.92,
            tiers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierRules {
    pub protection_days: u32,
}

impl Rules {
    /// The protection days for a partner tier (case-insensitive), else the default.
    pub fn protection_days_for(&self, tier: Option<&str>) -> u32 {
        tier.and_then(|t| {
            self.tiers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(t.trim()))
                .map(|(_, r)| r.protection_days)
        })
        .unwrap_or(self.protection_days)
    }
}

/// The review's parameters (`review.*` minus its schedule and webhook).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReviewRules {
    /// The share of revenue that is margin, for ROI (0 < x <= 1).
    pub gross_margin: f64,
    /// How long after an MDF campaign ends its opportunities still count.
    pub mdf_attribution_days: u32,
    /// Full quarters without an active seller or new pipeline that make a
    /// partner with reps dormant.
    pub dormant_quarters: u32,
}

/// Everything a rule may read besides the data and the clock. Built from
/// the settings by config (`From<&Settings>`), so callers pass `&settings`.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub rules: &'a Rules,
    /// The base currency (`scorecard.currency`).
    pub currency: &'a str,
    /// `scorecard.fiscal_year_start_month`: 1 = quarters start in January.
    pub fiscal_year_start_month: u32,
    pub review: ReviewRules,
}
