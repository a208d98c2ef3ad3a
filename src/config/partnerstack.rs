//! `prm.partnerstack.*`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// What a deal's `external_key` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExternalKey {
    /// The CRM opportunity (deal) id: the registration is linked to it.
    Opportunity,
    /// The CRM account (company) id: the registration is matched to it.
    Account,
}

/// `prm.partnerstack.*`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerstackSettings {
    pub base_url: String,
    pub public_key: Option<Secret>,
    pub secret_key: Option<Secret>,
    /// PartnerStack publishes no limits: stay polite.
    pub max_requests_per_second: u32,
    pub timeout_secs: u64,
    /// The partnership field (in `m_data`) holding the partner company's CRM
    /// id; empty: none.
    pub crm_account_field: String,
    /// Deal custom fields (in `fields`) with the approval and expiry times.
    pub approved_at_field: String,
    pub expires_at_field: String,
    pub external_key: ExternalKey,
    /// Also read leads as registrations (submitted until approved).
    pub leads_as_registrations: bool,
    /// PartnerStack deal stages -> SPEC §2 statuses (compared
    /// case-insensitively). A stage not here is rejected, never guessed.
    pub stage_map: BTreeMap<String, String>,
}

impl Default for PartnerstackSettings {
    fn default() -> Self {
        PartnerstackSettings {
            base_url: "https://api.partnerstack.com/api/v2".into(),
            public_key: None,
            secret_key: None,
            max_requests_per_second: 2,
            timeout_secs: 30,
            crm_account_field: "crm_account_id".into(),
            approved_at_field: "approved_at".into(),
            expires_at_field: "expires_at".into(),
            external_key: ExternalKey::Opportunity,
            leads_as_registrations: false,
            // Stage names are each program's own (set in its group
            // settings): these cover the common ones; check yours.
            stage_map: [
                ("new", "submitted"),
                ("open", "submitted"),
                ("pending", "submitted"),
                ("submitted", "submitted"),
                ("qualified", "approved"),
                ("approved", "approved"),
                ("accepted", "approved"),
                ("proposal", "approved"),
                ("in progress", "approved"),
                ("rejected", "rejected"),
                ("declined", "rejected"),
                ("expired", "expired"),
                ("won", "won"),
                ("closed-won", "won"),
                ("closed won", "won"),
                ("closed_won", "won"),
                ("lost", "lost"),
                ("closed-lost", "lost"),
                ("closed lost", "lost"),
                ("closed_lost", "lost"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }
}

impl PartnerstackSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("prm.partnerstack.{k}");
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(ConfigError::new(
                key("base_url"),
                format!("not a URL: '{}'", self.base_url),
            ));
        }
        if self.max_requests_per_second == 0 {
            return Err(ConfigError::new(
                key("max_requests_per_second"),
                "must be at least 1",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(ConfigError::new(key("timeout_secs"), "must be at least 1"));
        }
        for (stage, status) in &self.stage_map {
            if status.parse::<crate::model::RegistrationStatus>().is_err() {
                return Err(ConfigError::new(
                    format!("prm.partnerstack.stage_map.{stage}"),
                    format!(
                        "'{status}' is not one of submitted, approved, rejected, expired, cancelled, won, lost"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn check_credentials(&self) -> Result<(), ConfigError> {
        if self.public_key.is_none() {
            return Err(ConfigError::new(
                "prm.partnerstack.public_key",
                "missing: set CHANNEL_SYNC__PRM__PARTNERSTACK__PUBLIC_KEY",
            ));
        }
        if self.secret_key.is_none() {
            return Err(ConfigError::new(
                "prm.partnerstack.secret_key",
                "missing: set CHANNEL_SYNC__PRM__PARTNERSTACK__SECRET_KEY",
            ));
        }
        Ok(())
    }

    /// The status a deal stage maps to.
    pub fn status_of(&self, stage: &str) -> Option<crate::model::RegistrationStatus> {
        let stage = stage.trim();
        self.stage_map
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(stage))
            .and_then(|(_, s)| s.parse().ok())
    }
}
