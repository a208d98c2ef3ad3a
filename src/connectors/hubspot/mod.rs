//! HubSpot as the CRM: companies, deals (with their company associations),
//! owners and deal pipelines, mirrored in the state and mapped onto the
//! model. The PRM side comes from files.
//!
//! Reading:
//! - **Full** (first cycle, `once --full`, a change of the properties read,
//!   and every 7 days to reconcile what searches cannot see, such as a
//!   deleted company or a changed association): the list endpoints,
//!   `limit=100`, deals with `associations=companies`. Cost: ceil(N/100)
//!   calls per object.
//! - **Incremental**: the search endpoint on `hs_lastmodifieddate >= mark -
//!   5 min`, sorted ascending, 200 a page, through the search limiter. A
//!   query stops short of HubSpot's 10,000-result cap and a new window starts
//!   at the last modification time read (records read twice are stored
//!   again). Search returns no associations: each page's deals get theirs
//!   from one v4 batch read per 100 deals. Archived deals are listed
//!   (`archived=true`; HubSpot keeps them 90 days) and leave the mirror, so
//!   they stop driving findings. Cost: ceil(C/200) searches + ceil(C/100)
//!   association reads for C changed deals, ceil(A/100) for A archived
//!   deals, and the same searches for companies.
//! - Owners (active and archived) and pipelines are read whole every cycle:
//!   2 + 1 calls for up to 100 owners.

pub(crate) mod client;
mod map;
mod read;
pub(crate) mod write;

pub(crate) use map::build;
use read::{ObjectReader, OwnerReader};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::config::{ConfigError, Settings};
use crate::connectors::files::{Loaded, PrmTables, link};
use crate::fast::FastMap;
use crate::metrics::Metrics;
use crate::model::{Account, Opportunity, OpportunityStatus, User};
use crate::store::{MirrorRow, State, StateError};
use crate::sync::{
    self as mirror, Batch, Horizon, Mapped, MirrorError, ObjectReport, Read, Reader, Store, number,
    text, timestamp,
};
use crate::values::{date_of, parse_timestamp};
use client::{ClientConfig, Credentials, HubSpotClient, HubSpotError, SEARCH_CAP, Stage, id_text};

pub(crate) const SOURCE: &str = "hubspot";

/// A full read every 7 days reconciles what searches cannot see.
pub(crate) const HORIZON: Horizon = Horizon {
    max_age: Duration::from_secs(7 * 86_400),
    reason: "the weekly full read",
};

const COMPANY_PROPERTIES: &[&str] = &["name", "domain", "website", "hubspot_owner_id"];
const DEAL_PROPERTIES: &[&str] = &[
    "dealname",
    "amount",
    "closedate",
    "createdate",
    "dealstage",
    "pipeline",
    "hubspot_owner_id",
    "hs_lastmodifieddate",
    "deal_currency_code",
];

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Input(#[from] crate::connectors::files::InputError),
    #[error(transparent)]
    HubSpot(#[from] HubSpotError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<MirrorError<HubSpotError>> for PullError {
    fn from(e: MirrorError<HubSpotError>) -> Self {
        match e {
            MirrorError::Upstream(e) => PullError::HubSpot(e),
            MirrorError::State(e) => PullError::State(e),
        }
    }
}

/// What to read, checked against the account's properties.
#[derive(Debug, Clone)]
pub struct Plan {
    deal_properties: Vec<String>,
    partner: Option<String>,
    partner_rep: Option<String>,
    registration: Option<String>,
    /// The deal property holding its campaign (`crm.hubspot.properties.campaign`).
    campaign: Option<String>,
}

/// The deal properties read: the standard ones and the configured ones.
fn plan_deal_properties(configured: &[&Option<String>]) -> Vec<String> {
    let mut properties: Vec<String> = DEAL_PROPERTIES.iter().map(|s| s.to_string()).collect();
    for p in configured.iter().copied().flatten() {
        if !properties.contains(p) {
            properties.push(p.clone());
        }
    }
    properties
}

/// HubSpot as a source: the client and the plan (made once per process).
pub struct HubSpotSource {
    pub client: Arc<HubSpotClient>,
    plan: tokio::sync::Mutex<Option<Plan>>,
}

impl HubSpotSource {
    pub fn new(
        settings: &Settings,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<HubSpotSource, ConfigError> {
        let hs = settings.crm.hubspot();
        hs.check_credentials()?;
        let credentials = match (&hs.token, &hs.client_secret, &hs.refresh_token) {
            (Some(t), _, _) => Credentials::Token(t.clone()),
            (None, Some(secret), Some(refresh)) => Credentials::OAuth {
                client_id: hs.client_id.clone().unwrap_or_default(),
                client_secret: secret.clone(),
                refresh_token: refresh.clone(),
            },
            _ => return Err(ConfigError::new("crm.hubspot.token", "missing")),
        };
        let client = HubSpotClient::new(ClientConfig {
            base_url: hs.base_url.clone(),
            credentials,
            per_10s: hs.max_requests_per_10s,
            search_per_second: hs.search_requests_per_second,
            timeout: Duration::from_secs(hs.timeout_secs),
        })
        .map_err(|e| ConfigError::new("crm.hubspot", format!("cannot build the client: {e}")))?
        .with_metrics(metrics);
        Ok(HubSpotSource {
            client: Arc::new(client),
            plan: tokio::sync::Mutex::new(None),
        })
    }

    /// Checks the configured deal properties exist and that the write-back
    /// properties exist on companies (creating them when
    /// `crm.hubspot.create_properties` says so; a `dry_run` only reports
    /// what it would create).
    pub async fn plan(&self, settings: &Settings, dry_run: bool) -> Result<Plan, PullError> {
        let mut held = self.plan.lock().await;
        if let Some(p) = held.as_ref() {
            return Ok(p.clone());
        }
        let hs = settings.crm.hubspot();
        let deal: BTreeSet<String> = self
            .client
            .properties("deals")
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let optional = |key: &str, name: &str| -> Result<Option<String>, ConfigError> {
            let name = name.trim();
            if name.is_empty() {
                return Ok(None);
            }
            if deal.contains(name) {
                Ok(Some(name.to_string()))
            } else {
                Err(ConfigError::new(
                    key,
                    format!("no deal property '{name}' in this HubSpot account"),
                ))
            }
        };
        if let Some(name) = settings.writeback.decision_field.as_deref().map(str::trim)
            && !deal.contains(name)
        {
            if hs.create_properties && !dry_run {
                self.client
                    .create_property("deals", name, client::PropertyKind::Text)
                    .await?;
                tracing::info!(property = %name, "Created the deal property decisions are written to.");
            } else if hs.create_properties {
                tracing::warn!(property = %name, "Dry run: the deal property for decisions would be created.");
            } else {
                return Err(ConfigError::new(
                    "writeback.decision_field",
                    format!(
                        "no deal property '{name}' in this HubSpot account (create it, or set crm.hubspot.create_properties = true)"
                    ),
                )
                .into());
            }
        }
        let partner = optional("crm.hubspot.properties.partner", &hs.properties.partner)?;
        let partner_rep = optional(
            "crm.hubspot.properties.partner_rep",
            &hs.properties.partner_rep,
        )?;
        let registration = optional(
            "crm.hubspot.properties.registration",
            &hs.properties.registration,
        )?;
        let campaign = optional("crm.hubspot.properties.campaign", &hs.properties.campaign)?;
        if !settings.writeback.fields.is_empty() {
            let company: BTreeSet<String> = self
                .client
                .properties("companies")
                .await?
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            for (field, name) in &settings.writeback.fields {
                if company.contains(name) {
                    continue;
                }
                if hs.create_properties && dry_run {
                    tracing::warn!(property = %name, "Dry run: the company property for write-back would be created.");
                    // Not remembered: the real run creates it.
                    return Ok(Plan {
                        deal_properties: plan_deal_properties(&[
                            &partner,
                            &partner_rep,
                            &registration,
                            &campaign,
                        ]),
                        partner,
                        partner_rep,
                        registration,
                        campaign,
                    });
                } else if hs.create_properties {
                    self.client
                        .create_property(
                            "companies",
                            name,
                            match field.as_str() {
                                "period" => client::PropertyKind::Text,
                                "dormant" => client::PropertyKind::Bool,
                                _ => client::PropertyKind::Number,
                            },
                        )
                        .await?;
                    tracing::info!(property = %name, "Created the company property for write-back.");
                } else {
                    return Err(ConfigError::new(
                        format!("writeback.fields.{field}"),
                        format!(
                            "no company property '{name}' in this HubSpot account (create it, or set crm.hubspot.create_properties = true)"
                        ),
                    )
                    .into());
                }
            }
        }
        let plan = Plan {
            deal_properties: plan_deal_properties(&[
                &partner,
                &partner_rep,
                &registration,
                &campaign,
            ]),
            partner,
            partner_rep,
            registration,
            campaign,
        };
        *held = Some(plan.clone());
        Ok(plan)
    }

    /// Syncs companies, owners and deals into the mirror, reads the
    /// pipelines, and builds the dataset with the PRM tables from files.
    pub async fn pull(
        &self,
        state: &State,
        settings: &Settings,
        full: bool,
        dry_run: bool,
        prm: PrmTables,
    ) -> Result<(Loaded, Vec<ObjectReport>), PullError> {
        let plan = self.plan(settings, dry_run).await?;
        let client = &*self.client;
        let now = Utc::now();
        let companies = ObjectReader {
            client,
            object: "companies",
            properties: COMPANY_PROPERTIES.iter().map(|s| s.to_string()).collect(),
        };
        let deals = ObjectReader {
            client,
            object: "deals",
            properties: plan.deal_properties.clone(),
        };
        let reports = vec![
            mirror::sync(state, SOURCE, &companies, full, HORIZON, now).await?,
            mirror::sync(state, SOURCE, &OwnerReader { client }, full, HORIZON, now).await?,
            mirror::sync(state, SOURCE, &deals, full, HORIZON, now).await?,
        ];
        let stages = client.deal_stages().await?;
        let loaded = build(state, settings, &plan, &stages, prm)?;
        Ok((loaded, reports))
    }
}

/// Where records open in HubSpot (needs `crm.hubspot.portal_id`).
pub(crate) fn record_links(hs: &crate::config::HubspotSettings) -> super::RecordLinks {
    match hs.portal_id {
        Some(portal) => {
            let app = hs.app_url.trim_end_matches('/');
            super::RecordLinks {
                account: Some(format!("{app}/contacts/{portal}/record/0-2/{{id}}")),
                opportunity: Some(format!("{app}/contacts/{portal}/record/0-3/{{id}}")),
            }
        }
        None => super::RecordLinks::default(),
    }
}

/// `check-config`: calls HubSpot and checks the configured properties exist
/// (the write-back ones may be missing when `crm.hubspot.create_properties`
/// will create them; checking creates nothing).
pub(crate) async fn check(settings: &Settings) -> Result<String, super::Error> {
    let source = HubSpotSource::new(settings, None).map_err(PullError::Config)?;
    source.plan(settings, true).await?;
    Ok("HubSpot answered; every configured property exists.".into())
}
