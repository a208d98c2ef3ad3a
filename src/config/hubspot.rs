//! `crm.hubspot.*`.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// `crm.hubspot.*`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubspotSettings {
    pub base_url: String,
    /// A private-app access token (Bearer); else OAuth refresh.
    pub token: Option<Secret>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    /// The app's burst limit per rolling 10 seconds (100 on the lowest tier).
    pub max_requests_per_10s: u32,
    /// Search's own, stricter limit.
    pub search_requests_per_second: u32,
    pub timeout_secs: u64,
    /// Create missing write-back properties on companies (else check-config
    /// reports them).
    pub create_properties: bool,
    pub properties: HubspotProperties,
    /// The account ("hub") id: with it, alerts link to the records.
    pub portal_id: Option<u64>,
    /// HubSpot's web app (`https://app-eu1.hubspot.com` for EU accounts).
    pub app_url: String,
}

impl Default for HubspotSettings {
    fn default() -> Self {
        HubspotSettings {
            base_url: "https://api.hubapi.com".into(),
            token: None,
            client_id: None,
            client_secret: None,
            refresh_token: None,
            max_requests_per_10s: 100,
            search_requests_per_second: 4,
            timeout_secs: 30,
            create_properties: false,
            properties: HubspotProperties::default(),
            portal_id: None,
            app_url: "https://app.hubspot.com".into(),
        }
    }
}

/// `crm.hubspot.properties.*`: the deal properties channel-sync reads beyond
/// the standard ones. An empty name turns one off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubspotProperties {
    /// The partner's id, or the partner company's id.
    pub partner: String,
    /// The credited rep's id or email.
    pub partner_rep: String,
    pub registration: String,
    /// The deal's campaign (the review's MDF attribution, SPEC §6.1).
    /// HubSpot has no standard deal -> campaign property: off unless set.
    pub campaign: String,
}

impl Default for HubspotProperties {
    fn default() -> Self {
        HubspotProperties {
            partner: "channel_partner".into(),
            partner_rep: "channel_partner_rep".into(),
            registration: "channel_registration_id".into(),
            campaign: String::new(),
        }
    }
}

impl HubspotSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("crm.hubspot.{k}");
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(ConfigError::new(
                key("base_url"),
                format!("not a URL: '{}'", self.base_url),
            ));
        }
        if self.max_requests_per_10s == 0 {
            return Err(ConfigError::new(
                key("max_requests_per_10s"),
                "must be at least 1",
            ));
        }
        if self.search_requests_per_second == 0 {
            return Err(ConfigError::new(
                key("search_requests_per_second"),
                "must be at least 1",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(ConfigError::new(key("timeout_secs"), "must be at least 1"));
        }
        Ok(())
    }

    /// A private-app token, or the three OAuth values.
    pub fn check_credentials(&self) -> Result<(), ConfigError> {
        if self.token.is_some() {
            return Ok(());
        }
        let missing = |k: &str| {
            ConfigError::new(
                format!("crm.hubspot.{k}"),
                format!(
                    "missing: set CHANNEL_SYNC__CRM__HUBSPOT__TOKEN (a private-app token), or the OAuth client_id, client_secret and refresh_token (CHANNEL_SYNC__CRM__HUBSPOT__{})",
                    k.to_uppercase()
                ),
            )
        };
        if self.client_id.as_deref().is_none_or(str::is_empty) {
            return Err(missing("client_id"));
        }
        if self.client_secret.is_none() {
            return Err(missing("client_secret"));
        }
        if self.refresh_token.is_none() {
            return Err(missing("refresh_token"));
        }
        Ok(())
    }
}
