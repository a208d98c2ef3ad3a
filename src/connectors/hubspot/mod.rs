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
pub(crate) mod write;

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

/// One object type read through the list and search endpoints.
struct ObjectReader<'a> {
    client: &'a HubSpotClient,
    object: &'static str,
    properties: Vec<String>,
}

/// The field of a stored deal that holds its companies' ids, the primary
/// one first (not a property name: those are lowercase words).
const COMPANIES: &str = "@companies";

/// The owner fields kept.
const OWNER_FIELDS: &[&str] = &["firstName", "lastName", "email"];

impl ObjectReader<'_> {
    fn is_deals(&self) -> bool {
        self.object == "deals"
    }

    /// What a stored row holds: the properties read, and a deal's companies.
    fn stored(&self) -> Vec<String> {
        let mut fields = self.properties.clone();
        if self.is_deals() {
            fields.push(COMPANIES.to_string());
        }
        fields
    }

    /// Turns records (with associations inline or given) into a batch.
    fn batch(
        &self,
        records: Vec<Value>,
        companies: Option<&FastMap<String, Vec<String>>>,
    ) -> Batch {
        let mut batch = Batch {
            read: records.len() as u64,
            ..Batch::default()
        };
        let fields = self.stored();
        for r in records {
            let Some(id) = r.get("id").and_then(id_text) else {
                continue;
            };
            let mut properties = match r.get("properties") {
                Some(Value::Object(p)) => p.clone(),
                _ => Map::new(),
            };
            let modstamp = properties
                .get("hs_lastmodifieddate")
                .and_then(Value::as_str)
                .or_else(|| r.get("updatedAt").and_then(Value::as_str))
                .map(str::to_string);
            if let Some(t) = modstamp.as_deref().and_then(parse_timestamp)
                && batch.newest.is_none_or(|n| t > n)
            {
                batch.newest = Some(t);
            }
            if r.get("archived").and_then(Value::as_bool) == Some(true) {
                batch.gone.push(id);
                continue;
            }
            if self.is_deals() {
                let linked: Vec<String> = match companies {
                    Some(map) => map.get(&id).cloned().unwrap_or_default(),
                    None => r
                        .get("associations")
                        .and_then(|a| a.get("companies"))
                        .and_then(|c| c.get("results"))
                        .and_then(Value::as_array)
                        .map(|list| {
                            // The primary association first.
                            let mut ids: Vec<(bool, String)> = list
                                .iter()
                                .filter_map(|a| {
                                    let id = a.get("id").and_then(id_text)?;
                                    let kind = a.get("type").and_then(Value::as_str).unwrap_or("");
                                    Some((kind != "deal_to_company", id))
                                })
                                .collect();
                            ids.sort();
                            ids.into_iter().map(|(_, id)| id).collect()
                        })
                        .unwrap_or_default(),
                };
                properties.insert(COMPANIES.to_string(), json!(linked));
            }
            batch.rows.push(MirrorRow {
                id,
                modstamp,
                data: mirror::row(&fields, properties),
            });
        }
        batch
    }
}

fn stopped() -> HubSpotError {
    HubSpotError::Decode("stopped: the state could not store a page".into())
}

impl Reader for ObjectReader<'_> {
    type Error = HubSpotError;

    fn object(&self) -> &str {
        self.object
    }

    fn signature(&self) -> String {
        format!("{}|{}", self.object, self.properties.join(","))
    }

    fn fields(&self) -> Vec<String> {
        self.stored()
    }

    async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, HubSpotError> {
        let mut query = vec![
            ("properties", self.properties.join(",")),
            ("archived", "false".to_string()),
        ];
        if self.is_deals() {
            query.push(("associations", "companies".into()));
        }
        self.client.begin_mark();
        let paged = self
            .client
            .list(
                &format!("/crm/v3/objects/{}", self.object),
                &query,
                |page| store.put(self.batch(page, None)),
            )
            .await?;
        Ok(Read {
            calls: paged.calls,
            started: self.client.mark(),
        })
    }

    async fn read_since(
        &self,
        since: DateTime<Utc>,
        store: &mut Store<'_>,
    ) -> Result<Read, HubSpotError> {
        let mut calls = 0u64;
        self.client.begin_mark();
        let mut from = since;
        let mut after = 0u64;
        loop {
            let body = json!({
                "filterGroups": [{"filters": [{
                    "propertyName": "hs_lastmodifieddate",
                    "operator": "GTE",
                    "value": from.timestamp_millis().to_string(),
                }]}],
                "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                "properties": self.properties,
                "limit": 200,
                "after": after.to_string(),
            });
            let (results, next) = self.client.search_page(self.object, &body).await?;
            calls += 1;
            let companies = if self.is_deals() && !results.is_empty() {
                let ids: Vec<String> = results
                    .iter()
                    .filter_map(|r| r.get("id").and_then(id_text))
                    .collect();
                let mut map: FastMap<String, Vec<String>> = FastMap::default();
                for chunk in ids.chunks(100) {
                    map.extend(self.client.deal_companies(chunk).await?);
                    calls += 1;
                }
                Some(map)
            } else {
                None
            };
            let batch = self.batch(results, companies.as_ref());
            let last = batch.newest;
            if !store.put(batch) {
                return Err(stopped());
            }
            match next {
                None => break,
                Some(n) if n >= SEARCH_CAP => {
                    // The next page would pass the cap: a new window from
                    // the last modification time read.
                    match last {
                        Some(t) if t > from => {
                            from = t;
                            after = 0;
                        }
                        _ => {
                            return Err(HubSpotError::Decode(format!(
                                "more than {SEARCH_CAP} {} share one modification time; run once --full",
                                self.object
                            )));
                        }
                    }
                }
                Some(n) => after = n,
            }
        }
        if self.is_deals() {
            // Archived deals leave the mirror.
            let query = vec![
                ("properties", "hs_lastmodifieddate".to_string()),
                ("archived", "true".to_string()),
            ];
            let paged = self
                .client
                .list("/crm/v3/objects/deals", &query, |page| {
                    let gone: Vec<String> = page
                        .iter()
                        .filter_map(|r| r.get("id").and_then(id_text))
                        .collect();
                    store.put(Batch {
                        gone,
                        ..Batch::default()
                    })
                })
                .await?;
            calls += paged.calls;
        }
        Ok(Read {
            calls,
            started: self.client.mark(),
        })
    }
}

/// Owners, active and archived, read whole every cycle.
struct OwnerReader<'a> {
    client: &'a HubSpotClient,
}

impl OwnerReader<'_> {
    async fn read(&self, store: &mut Store<'_>) -> Result<Read, HubSpotError> {
        let mut calls = 0;
        self.client.begin_mark();
        for archived in ["false", "true"] {
            let paged = self
                .client
                .list(
                    "/crm/v3/owners",
                    &[("archived", archived.to_string())],
                    |page| {
                        let mut batch = Batch {
                            read: page.len() as u64,
                            ..Batch::default()
                        };
                        let fields = self.fields();
                        for o in page {
                            if let Some(id) = o.get("id").and_then(id_text) {
                                let modstamp = o
                                    .get("updatedAt")
                                    .and_then(Value::as_str)
                                    .map(str::to_string);
                                let Value::Object(o) = o else { continue };
                                batch.rows.push(MirrorRow {
                                    id,
                                    modstamp,
                                    data: mirror::row(&fields, o),
                                });
                            }
                        }
                        store.put(batch)
                    },
                )
                .await?;
            calls += paged.calls;
        }
        Ok(Read {
            calls,
            started: self.client.mark(),
        })
    }
}

impl Reader for OwnerReader<'_> {
    type Error = HubSpotError;

    fn object(&self) -> &str {
        "owners"
    }

    fn signature(&self) -> String {
        "owners".into()
    }

    fn fields(&self) -> Vec<String> {
        OWNER_FIELDS.iter().map(|f| f.to_string()).collect()
    }

    async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, HubSpotError> {
        self.read(store).await
    }

    async fn read_since(
        &self,
        _: DateTime<Utc>,
        store: &mut Store<'_>,
    ) -> Result<Read, HubSpotError> {
        self.read(store).await
    }
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

/// Builds the dataset from the mirror and the PRM tables.
pub(crate) fn build(
    state: &State,
    settings: &Settings,
    plan: &Plan,
    stages: &[Stage],
    prm: PrmTables,
) -> Result<Loaded, StateError> {
    let PrmTables {
        partners,
        reps,
        registrations,
    } = prm;
    let mut accounts = Mapped::<Account>::new(SOURCE, "company");
    mirror::scan(state, SOURCE, "companies", |id, r| {
        let p = match r {
            Ok(r) => r,
            Err(e) => return accounts.reject(id, e),
        };
        let Some(name) = text(&p, "name") else {
            return accounts.reject(id, "name: empty".into());
        };
        accounts.rows.push(Account {
            id: id.to_string(),
            name,
            domain: text(&p, "domain"),
            website: text(&p, "website"),
            owner_id: text(&p, "hubspot_owner_id"),
        });
    })?;

    let mut users = Mapped::<User>::new(SOURCE, "owner");
    mirror::scan(state, SOURCE, "owners", |id, r| {
        let Ok(o) = r else { return };
        let name = [text(&o, "firstName"), text(&o, "lastName")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        users.rows.push(User {
            id: id.to_string(),
            name: (!name.is_empty()).then_some(name),
            email: text(&o, "email"),
        });
    })?;

    // A deal's partner property holds the partner's id or its company's id.
    let mut partner_of: FastMap<String, String> = FastMap::default();
    for p in &partners.rows {
        if let Some(c) = &p.crm_account_id {
            partner_of.insert(c.clone(), p.id.clone());
        }
        partner_of.insert(p.id.clone(), p.id.clone());
    }
    let stage_of: BTreeMap<(&str, &str), &Stage> = stages
        .iter()
        .map(|s| ((s.pipeline.as_str(), s.id.as_str()), s))
        .collect();
    let money = &settings.scorecard;
    let mut opportunities = Mapped::<Opportunity>::new(SOURCE, "deal");
    mirror::scan_into(
        state,
        SOURCE,
        "deals",
        &mut opportunities,
        |id, r| -> Result<Opportunity, String> {
            let account_id = r
                .get(COMPANIES)
                .and_then(Value::as_array)
                .and_then(|c| c.first())
                .and_then(id_text)
                .ok_or("no associated company (a deal without a company cannot be matched)")?;
            let pipeline = text(&r, "pipeline").unwrap_or_else(|| "default".into());
            let stage_id = text(&r, "dealstage").ok_or("dealstage: empty")?;
            let stage = stage_of
                .get(&(pipeline.as_str(), stage_id.as_str()))
                .ok_or_else(|| {
                    format!("dealstage: '{stage_id}' is not a stage of pipeline '{pipeline}'")
                })?;
            let status = match (stage.closed, stage.won) {
                (true, true) => OpportunityStatus::Won,
                (true, false) => OpportunityStatus::Lost,
                _ => OpportunityStatus::Open,
            };
            let created_at = timestamp(&r, "createdate")?.ok_or("createdate: empty")?;
            let amount = number(&r, "amount")?
                .map(|value| crate::values::money(value, text(&r, "deal_currency_code"), money));
            let partner_id = match plan.partner.as_deref().and_then(|f| text(&r, f)) {
                None => None,
                Some(v) => Some(partner_of.get(&v).cloned().ok_or_else(|| {
                    format!(
                        "{}: '{v}' is neither a partner's id nor a partner company's id",
                        plan.partner.as_deref().unwrap_or("partner")
                    )
                })?),
            };
            Ok(Opportunity {
                id: id.to_string(),
                account_id,
                status,
                created_at,
                name: text(&r, "dealname"),
                owner_id: text(&r, "hubspot_owner_id"),
                stage: stage.label.clone().or(Some(stage_id)),
                amount,
                close_date: timestamp(&r, "closedate")?.map(|t| date_of(&t)),
                partner_id,
                partner_rep: plan.partner_rep.as_deref().and_then(|f| text(&r, f)),
                registration_id: plan.registration.as_deref().and_then(|f| text(&r, f)),
                campaign_id: plan.campaign.as_deref().and_then(|f| text(&r, f)),
            })
        },
    )?;

    Ok(link(
        accounts.table(),
        partners,
        reps,
        opportunities.table(),
        registrations,
        users.table(),
    ))
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
