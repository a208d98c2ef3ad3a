//! `crm.salesforce.*` and `prm.salesforce.*`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};
use crate::model::RegistrationStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SalesforceAuth {
    ClientCredentials,
    JwtBearer,
    RefreshToken,
}

/// Where an opportunity's partner comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    /// The lookup named by `fields.partner_account` (`PartnerAccountId`).
    PartnerAccount,
    /// The primary `OpportunityPartner` row's `AccountToId`.
    OpportunityPartner,
}

/// `crm.salesforce.*`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceSettings {
    /// `https://login.salesforce.com`, `https://test.salesforce.com`, or the
    /// org's My Domain URL (required for client credentials).
    pub login_url: String,
    pub api_version: String,
    pub auth: SalesforceAuth,
    /// The connected app's consumer key.
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// JWT bearer: the user the daemon acts as.
    pub username: Option<String>,
    /// JWT bearer: the RSA private key (PEM) whose certificate is on the app.
    pub private_key_path: Option<PathBuf>,
    /// JWT bearer: the assertion's audience; by default derived from
    /// `login_url` (test.salesforce.com for sandboxes, else login).
    pub jwt_audience: Option<String>,
    pub refresh_token: Option<Secret>,
    pub max_requests_per_second: u32,
    /// Stop a cycle before the org's API usage reaches this share of its
    /// daily allocation.
    pub max_daily_share: f64,
    pub timeout_secs: u64,
    pub partner_attribution: Attribution,
    pub fields: SalesforceFields,
}

impl Default for SalesforceSettings {
    fn default() -> Self {
        SalesforceSettings {
            login_url: "https://login.salesforce.com".into(),
            api_version: "v62.0".into(),
            auth: SalesforceAuth::ClientCredentials,
            client_id: None,
            client_secret: None,
            username: None,
            private_key_path: None,
            jwt_audience: None,
            refresh_token: None,
            max_requests_per_second: 5,
            max_daily_share: 0.5,
            timeout_secs: 60,
            partner_attribution: Attribution::PartnerAccount,
            fields: SalesforceFields::default(),
        }
    }
}

/// `crm.salesforce.fields.*`: the Opportunity fields channel-sync reads
/// beyond the standard ones. An empty name turns one off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceFields {
    pub partner_account: String,
    pub partner_rep: String,
    pub registration: String,
}

impl Default for SalesforceFields {
    fn default() -> Self {
        SalesforceFields {
            partner_account: "PartnerAccountId".into(),
            partner_rep: "Partner_Rep__c".into(),
            registration: "Deal_Registration__c".into(),
        }
    }
}

impl SalesforceSettings {
    /// The JWT audience: the configured one, else from the login URL.
    pub fn audience(&self) -> String {
        if let Some(a) = &self.jwt_audience {
            return a.clone();
        }
        let url = self.login_url.to_ascii_lowercase();
        if url.contains("test.salesforce.com") || url.contains(".sandbox.my.salesforce.com") {
            "https://test.salesforce.com".into()
        } else {
            "https://login.salesforce.com".into()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("crm.salesforce.{k}");
        if !(self.login_url.starts_with("https://") || self.login_url.starts_with("http://")) {
            return Err(ConfigError::new(
                key("login_url"),
                format!("not a URL: '{}'", self.login_url),
            ));
        }
        let v = self.api_version.strip_prefix('v').unwrap_or("");
        if v.parse::<f32>().map_or(true, |n| n < 29.0) {
            return Err(ConfigError::new(
                key("api_version"),
                format!(
                    "'{}' is not a REST version such as v62.0 (v29.0 or later)",
                    self.api_version
                ),
            ));
        }
        if self.max_requests_per_second == 0 {
            return Err(ConfigError::new(
                key("max_requests_per_second"),
                "must be at least 1",
            ));
        }
        if !(self.max_daily_share > 0.0 && self.max_daily_share <= 1.0) {
            return Err(ConfigError::new(
                key("max_daily_share"),
                format!(
                    "must be above 0 and at most 1, got {}",
                    self.max_daily_share
                ),
            ));
        }
        if self.timeout_secs == 0 {
            return Err(ConfigError::new(key("timeout_secs"), "must be at least 1"));
        }
        if self.partner_attribution == Attribution::PartnerAccount
            && self.fields.partner_account.trim().is_empty()
        {
            return Err(ConfigError::new(
                key("fields.partner_account"),
                "required when partner_attribution = \"partner_account\"",
            ));
        }
        Ok(())
    }

    /// Checks the credentials the chosen flow needs are set (secrets from the
    /// environment), naming the key of the first that is missing.
    pub fn check_credentials(&self) -> Result<(), ConfigError> {
        let missing = |k: &str, how: &str| {
            ConfigError::new(format!("crm.salesforce.{k}"), format!("missing: {how}"))
        };
        if self.client_id.as_deref().is_none_or(str::is_empty) {
            return Err(missing("client_id", "the connected app's consumer key"));
        }
        match self.auth {
            SalesforceAuth::ClientCredentials => {
                if self.client_secret.is_none() {
                    return Err(missing(
                        "client_secret",
                        "set CHANNEL_SYNC__CRM__SALESFORCE__CLIENT_SECRET",
                    ));
                }
            }
            SalesforceAuth::JwtBearer => {
                if self.username.as_deref().is_none_or(str::is_empty) {
                    return Err(missing("username", "the Salesforce user to act as"));
                }
                if self.private_key_path.is_none() {
                    return Err(missing(
                        "private_key_path",
                        "the PEM file of the RSA key whose certificate is on the connected app",
                    ));
                }
            }
            SalesforceAuth::RefreshToken => {
                if self.refresh_token.is_none() {
                    return Err(missing(
                        "refresh_token",
                        "set CHANNEL_SYNC__CRM__SALESFORCE__REFRESH_TOKEN",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `prm.salesforce.*`: partners, partner users and registrations from the
/// same org as the CRM.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforcePrmSettings {
    /// The partner Account field holding the tier (e.g. `Partner_Tier__c`);
    /// empty: no tiers.
    pub tier_field: String,
    pub registrations: RegistrationSource,
}

/// `prm.salesforce.registrations.*`: which object holds deal registrations
/// and how its fields and statuses map onto SPEC §2.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationSource {
    pub object: String,
    pub fields: RegistrationFields,
    /// The object's status values -> `submitted`, `approved`, `rejected`,
    /// `expired`, `cancelled`, `won`, `lost` (compared case-insensitively).
    /// A record whose status is not here is rejected with that reason.
    pub status_map: BTreeMap<String, String>,
}

impl Default for RegistrationSource {
    fn default() -> Self {
        // Lead-based registration: a partner submits a Lead; approval
        // converts it to an opportunity.
        RegistrationSource {
            object: "Lead".into(),
            fields: RegistrationFields::default(),
            status_map: [
                ("Open - Not Contacted", "submitted"),
                ("Working - Contacted", "submitted"),
                ("Closed - Converted", "approved"),
                ("Closed - Not Converted", "rejected"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }
}

/// Field names on the registration object, one per SPEC §2 registration
/// column; an empty name leaves that column empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationFields {
    /// A lookup to the partner Account (required).
    pub partner: String,
    pub customer_name: String,
    pub status: String,
    pub submitted_at: String,
    pub rep: String,
    pub customer_domain: String,
    pub account_id: String,
    pub opportunity_id: String,
    pub approved_at: String,
    pub expires_at: String,
    pub amount: String,
}

impl Default for RegistrationFields {
    fn default() -> Self {
        RegistrationFields {
            partner: "PartnerAccountId".into(),
            customer_name: "Company".into(),
            status: "Status".into(),
            submitted_at: "CreatedDate".into(),
            rep: "CreatedById".into(),
            customer_domain: "Website".into(),
            account_id: "ConvertedAccountId".into(),
            opportunity_id: "ConvertedOpportunityId".into(),
            approved_at: "ConvertedDate".into(),
            expires_at: String::new(),
            amount: String::new(),
        }
    }
}

impl RegistrationFields {
    /// (column, field) for every mapped column, in a fixed order.
    pub fn mapped(&self) -> Vec<(&'static str, &str)> {
        [
            ("partner", &self.partner),
            ("customer_name", &self.customer_name),
            ("status", &self.status),
            ("submitted_at", &self.submitted_at),
            ("rep", &self.rep),
            ("customer_domain", &self.customer_domain),
            ("account_id", &self.account_id),
            ("opportunity_id", &self.opportunity_id),
            ("approved_at", &self.approved_at),
            ("expires_at", &self.expires_at),
            ("amount", &self.amount),
        ]
        .into_iter()
        .filter(|(_, f)| !f.trim().is_empty())
        .map(|(c, f)| (c, f.trim()))
        .collect()
    }
}

impl SalesforcePrmSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.registrations;
        if r.object.trim().is_empty() {
            return Err(ConfigError::new(
                "prm.salesforce.registrations.object",
                "required (e.g. Lead or Deal_Registration__c)",
            ));
        }
        for (column, field) in [
            ("partner", &r.fields.partner),
            ("customer_name", &r.fields.customer_name),
            ("status", &r.fields.status),
            ("submitted_at", &r.fields.submitted_at),
        ] {
            if field.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("prm.salesforce.registrations.fields.{column}"),
                    "required: the field holding this registration column",
                ));
            }
        }
        if r.status_map.is_empty() {
            return Err(ConfigError::new(
                "prm.salesforce.registrations.status_map",
                "must map at least one status",
            ));
        }
        for (value, status) in &r.status_map {
            if status.parse::<RegistrationStatus>().is_err() {
                return Err(ConfigError::new(
                    format!("prm.salesforce.registrations.status_map.{value}"),
                    format!(
                        "'{status}' is not one of submitted, approved, rejected, expired, cancelled, won, lost"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The status a registration record's value maps to.
    pub fn status_of(&self, value: &str) -> Option<RegistrationStatus> {
        let value = value.trim();
        self.registrations
            .status_map
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(value))
            .and_then(|(_, s)| s.parse().ok())
    }
}
