//! Scorecard write-back onto the partner's HubSpot company, through the
//! [`ScorecardSink`] trait (so diffing and retries are the cycle's).
//!
//! Only the fields mapped in `writeback.fields` are written, as HubSpot
//! takes every property value: a string. The rate is a fraction (0.25);
//! HubSpot has no percent type. Up to 100 companies a `batch/update` call.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::connectors::hubspot::client::HubSpotClient;
use crate::connectors::writeback::{RecordOutcome, RecordUpdate, ScorecardSink, mapped_target};
use crate::engine::{Period, Scorecard};
use crate::model::Partner;

pub struct HubSpotSink {
    pub client: Arc<HubSpotClient>,
    /// Scorecard field -> company property name (`writeback.fields`).
    pub fields: BTreeMap<String, String>,
}

impl ScorecardSink for HubSpotSink {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    fn target(
        &self,
        card: &Scorecard,
        partner: &Partner,
        period: &Period,
        review: &[(&'static str, String)],
    ) -> Option<(String, Vec<(String, String)>)> {
        mapped_target(&self.fields, card, partner, period, review)
    }

    async fn apply(&self, updates: &[RecordUpdate]) -> Vec<RecordOutcome> {
        let records: Vec<(String, Vec<(String, String)>)> = updates
            .iter()
            .map(|u| (u.record_id.clone(), u.fields.clone()))
            .collect();
        self.client.update_companies(&records).await
    }
}

/// Decisions onto a deal property (`writeback.decision_field`), 100 deals a
/// `batch/update` call. An empty value clears the property (a reopened
/// decision).
pub struct HubSpotDecisionSink {
    pub client: Arc<HubSpotClient>,
}

impl HubSpotDecisionSink {
    pub async fn apply(&self, updates: &[RecordUpdate]) -> Vec<RecordOutcome> {
        let records: Vec<(String, Vec<(String, String)>)> = updates
            .iter()
            .map(|u| (u.record_id.clone(), u.fields.clone()))
            .collect();
        self.client.update_objects("deals", &records).await
    }
}
