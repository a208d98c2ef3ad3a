//! PartnerStack (Vendor API v2) as the PRM: partnerships are the partners,
//! deals (and, optionally, leads) the registrations, and the team members
//! named on deals the reps.
//!
//! - HTTP Basic with the public key as user and the secret key as password.
//! - Lists page with `limit=250` and `starting_after=<last item's key>` until
//!   `data.has_more` is false; incremental reads add `min_updated` (epoch
//!   milliseconds), the mark being PartnerStack's clock (`Date`) when the
//!   previous read began, less 5 minutes. Every timestamp is epoch ms.
//! - PartnerStack publishes no rate limits: a conservative limiter
//!   (`prm.partnerstack.max_requests_per_second`, default 2), 429 waits
//!   (`Retry-After`, else 10 s) and 5xx back off, on the shared machinery.
//! - **Reps.** The Vendor API has no endpoint listing a partner's team
//!   members, so the reps are the team members named on the partner's deals
//!   (`team_member`). A rep who never registered a deal is invisible: the
//!   active-seller rate's denominator counts only reps who registered at
//!   least one deal, so the rate reads higher than a full roster would give.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::config::{ExternalKey, PartnerstackSettings, Secret, Settings};
use crate::connectors::files::PrmTables;
use crate::fast::FastMap;
use crate::http::{Answer, CallError, Next, Upstream};
use crate::metrics::Metrics;
use crate::model::{Partner, PartnerRep, Registration, RegistrationStatus};
use crate::store::{MirrorRow, State, StateError};
use crate::sync::{
    self as mirror, Batch, Fields, Horizon, Mapped, MirrorError, ObjectReport, Read, Reader,
    Record, Store, number, text,
};
use crate::values::parse_timestamp;

pub(crate) const SOURCE: &str = "partnerstack";

/// A full read every 7 days reconciles what `min_updated` cannot see (a
/// deal deleted in PartnerStack).
pub(crate) const HORIZON: Horizon = Horizon {
    max_age: Duration::from_secs(7 * 86_400),
    reason: "the weekly full read",
};

#[derive(Debug, thiserror::Error)]
pub enum PartnerStackError {
    #[error("PartnerStack refused the API keys ({status}): {message}")]
    Auth { status: u16, message: String },
    #[error("PartnerStack answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("unexpected response from PartnerStack: {0}")]
    Decode(String),
    #[error(transparent)]
    Upstream(#[from] CallError),
}

pub struct PartnerStackClient {
    upstream: Upstream,
    base: String,
    public_key: Secret,
    secret_key: Secret,
}

impl PartnerStackClient {
    pub fn new(
        settings: &PartnerstackSettings,
        metrics: Option<std::sync::Arc<Metrics>>,
    ) -> anyhow::Result<PartnerStackClient> {
        let upstream = Upstream::new(
            "partnerstack",
            Upstream::per_second(settings.max_requests_per_second),
            Duration::from_secs(settings.timeout_secs),
        )?
        .with_metrics(metrics);
        Ok(PartnerStackClient {
            upstream,
            base: settings.base_url.trim_end_matches('/').to_string(),
            public_key: settings.public_key.clone().unwrap_or(Secret::new("")),
            secret_key: settings.secret_key.clone().unwrap_or(Secret::new("")),
        })
    }

    /// Pages a list (`limit=250`, `starting_after`), handing each page's
    /// items to `on_page`; returns the calls made.
    pub async fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
        mut on_page: impl FnMut(Vec<Value>) -> bool,
    ) -> Result<u64, PartnerStackError> {
        // One page: its items and, when there are more, the key to start after.
        let fetch = |after: Option<String>| {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("limit", "250".into()));
            if let Some(a) = after {
                q.push(("starting_after", a));
            }
            let url = format!("{}{path}", self.base);
            async move {
                let q = &q;
                let mut body: Value = self
                    .upstream
                    .call(
                        |_| {
                            let request = self.upstream.http.get(&url).query(q).basic_auth(
                                self.public_key.expose(),
                                Some(self.secret_key.expose()),
                            );
                            async { Ok::<_, PartnerStackError>(request) }
                        },
                        |answer| judge(path, answer),
                    )
                    .await?;
                let data = body
                    .get_mut("data")
                    .ok_or_else(|| PartnerStackError::Decode(format!("{path}: no data")))?;
                // Taken out of the page, not copied.
                let items = match data.get_mut("items").map(Value::take) {
                    Some(Value::Array(items)) => items,
                    _ => return Err(PartnerStackError::Decode(format!("{path}: no data.items"))),
                };
                let has_more = data
                    .get("has_more")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let last = items
                    .last()
                    .and_then(|i| i.get("key"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let next = match (has_more, last) {
                    (true, Some(key)) => Some(key),
                    (true, None) => {
                        return Err(PartnerStackError::Decode(format!(
                            "{path}: has_more with an empty page"
                        )));
                    }
                    (false, _) => None,
                };
                Ok((items, next))
            }
        };
        let stopped =
            || PartnerStackError::Decode("stopped: the state could not store a page".into());
        let mut calls = 1;
        let (mut items, mut next) = fetch(None).await?;
        // Pipelined: the next page is asked for before this one is stored.
        while let Some(after) = next {
            let store = &mut on_page;
            let (fetched, stored) = tokio::join!(fetch(Some(after)), async move { store(items) });
            if !stored {
                return Err(stopped());
            }
            (items, next) = fetched?;
            calls += 1;
        }
        if !on_page(items) {
            return Err(stopped());
        }
        Ok(calls)
    }
}

fn judge(path: &str, answer: Answer) -> Next<Value, PartnerStackError> {
    let message = || {
        serde_json::from_str::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| answer.body.chars().take(200).collect())
    };
    match answer.status {
        200..=299 => match serde_json::from_str(&answer.body) {
            Ok(v) => Next::Return(v),
            Err(e) => Next::Fail(PartnerStackError::Decode(format!("{path}: {e}"))),
        },
        401 | 403 => Next::Fail(PartnerStackError::Auth {
            status: answer.status,
            message: message(),
        }),
        429 => Next::Wait(
            answer.retry_after().unwrap_or(Duration::from_secs(10)),
            "429".into(),
        ),
        s if s >= 500 => Next::Retry(format!("{s}: {}", message())),
        s => Next::Fail(PartnerStackError::Api {
            status: s,
            message: message(),
        }),
    }
}

/// An epoch-milliseconds timestamp (PartnerStack's only form).
fn epoch_ms(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let ms = match v? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Utc.timestamp_millis_opt(ms).single()
}

/// One list resource read into the mirror.
struct ListReader<'a> {
    client: &'a PartnerStackClient,
    resource: &'static str,
}

/// The fields of each resource the mapping reads ([`build`]): a stored row
/// holds these only.
fn stored_fields(resource: &str) -> &'static [&'static str] {
    match resource {
        "partnerships" => &[
            "partner_key",
            "team",
            "first_name",
            "last_name",
            "email",
            "m_data",
            "group",
        ],
        "deals" => &[
            "partner_key",
            "account_name",
            "stage",
            "created_at",
            "team_member",
            "external_key",
            "amount",
            "fields",
            "field_data",
        ],
        "leads" => &[
            "partner_key",
            "account_name",
            "company",
            "name",
            "created_at",
            "approved",
            "external_key",
            "amount",
        ],
        _ => &[],
    }
}

impl ListReader<'_> {
    async fn read(
        &self,
        query: Vec<(&str, String)>,
        store: &mut Store<'_>,
    ) -> Result<Read, PartnerStackError> {
        self.client.upstream.begin_mark();
        let calls = self
            .client
            .list(&format!("/{}", self.resource), &query, |items| {
                let mut batch = Batch {
                    read: items.len() as u64,
                    ..Batch::default()
                };
                let fields = self.fields();
                for item in items {
                    let Some(key) = item.get("key").and_then(Value::as_str).map(str::to_string)
                    else {
                        continue;
                    };
                    let updated = epoch_ms(item.get("updated_at"));
                    if let Some(t) = updated
                        && batch.newest.is_none_or(|n| t > n)
                    {
                        batch.newest = Some(t);
                    }
                    if item.get("archived").and_then(Value::as_bool) == Some(true) {
                        batch.gone.push(key);
                        continue;
                    }
                    let Value::Object(item) = item else { continue };
                    batch.rows.push(MirrorRow {
                        id: key,
                        data: mirror::row(&fields, item),
                    });
                }
                store.put(batch)
            })
            .await?;
        Ok(Read {
            calls,
            started: self.client.upstream.mark(),
        })
    }
}

impl Reader for ListReader<'_> {
    type Error = PartnerStackError;

    fn object(&self) -> &str {
        self.resource
    }

    fn signature(&self) -> String {
        format!("{}|{}", self.resource, self.fields().join(","))
    }

    fn fields(&self) -> Vec<String> {
        stored_fields(self.resource)
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, PartnerStackError> {
        self.read(Vec::new(), store).await
    }

    async fn read_since(
        &self,
        since: DateTime<Utc>,
        store: &mut Store<'_>,
    ) -> Result<Read, PartnerStackError> {
        self.read(
            vec![("min_updated", since.timestamp_millis().to_string())],
            store,
        )
        .await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    PartnerStack(#[from] PartnerStackError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<MirrorError<PartnerStackError>> for PullError {
    fn from(e: MirrorError<PartnerStackError>) -> Self {
        match e {
            MirrorError::Upstream(e) => PullError::PartnerStack(e),
            MirrorError::State(e) => PullError::State(e),
        }
    }
}

/// Syncs partnerships, deals (and leads) into the mirror and maps them onto
/// the PRM tables.
pub(crate) async fn pull(
    client: &PartnerStackClient,
    state: &State,
    settings: &Settings,
    full: bool,
) -> Result<(PrmTables, Vec<ObjectReport>), PullError> {
    let ps = settings.prm.partnerstack();
    let now = Utc::now();
    let mut reports = Vec::new();
    let mut resources = vec!["partnerships", "deals"];
    if ps.leads_as_registrations {
        resources.push("leads");
    }
    for resource in resources {
        let reader = ListReader { client, resource };
        reports.push(mirror::sync(state, SOURCE, &reader, full, HORIZON, now).await?);
    }
    Ok((build(state, &ps)?, reports))
}

/// A display name for a partnership: its team's name, else its contact's.
fn partner_name<R: Fields + ?Sized>(p: &R) -> Option<String> {
    p.field("team")
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .or_else(|| {
            let name = [text(p, "first_name"), text(p, "last_name")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            (!name.is_empty()).then_some(name)
        })
        .or_else(|| text(p, "email"))
}

/// A customer name given as text or as an object with a `name`.
fn name_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Object(o) => o.get("name").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Maps the mirrored PartnerStack records onto partners, reps and
/// registrations.
pub(crate) fn build(state: &State, ps: &PartnerstackSettings) -> Result<PrmTables, StateError> {
    let mut partners = Mapped::<Partner>::new(SOURCE, "partnership");
    mirror::scan(state, SOURCE, "partnerships", |key, p| {
        let p = match p {
            Ok(p) => p,
            Err(e) => return partners.reject(key, e),
        };
        let Some(id) = text(&p, "partner_key") else {
            return partners.reject(key, "partner_key: empty".into());
        };
        let Some(name) = partner_name(&p) else {
            return partners.reject(key, "no team name, contact name or email".into());
        };
        let crm_account_id = (!ps.crm_account_field.is_empty())
            .then(|| {
                p.get("m_data")
                    .and_then(|m| m.get(&ps.crm_account_field))
                    .and_then(|v| match v {
                        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
            })
            .flatten();
        partners.rows.push(Partner {
            id,
            name,
            tier: p
                .get("group")
                .and_then(|g| g.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string),
            crm_account_id,
            domain: None,
        });
    })?;

    let mut registrations = Mapped::<Registration>::new(SOURCE, "deal");
    // Reps: the team members named on deals, by key, with their first deal.
    let mut reps: FastMap<String, PartnerRep> = FastMap::default();
    let custom = |d: &Record<'_>, field: &str| custom_field(d, field);
    let when = |v: Option<Value>| -> Option<DateTime<Utc>> {
        match v? {
            Value::String(s) => parse_timestamp(&s).or_else(|| epoch_ms(Some(&Value::String(s)))),
            other => epoch_ms(Some(&other)),
        }
    };
    mirror::scan(state, SOURCE, "deals", |key, d| {
        let d = match d {
            Ok(d) => d,
            Err(e) => return registrations.reject(key, e),
        };
        let mapped = (|| -> Result<Registration, String> {
            let partner_id = text(&d, "partner_key").ok_or("partner_key: empty")?;
            let customer_name = name_of(d.get("account_name")).ok_or("account_name: empty")?;
            let stage = text(&d, "stage").ok_or("stage: empty")?;
            let status = ps
                .status_of(&stage)
                .ok_or_else(|| format!("stage: '{stage}' is not in prm.partnerstack.stage_map"))?;
            let submitted_at =
                epoch_ms(d.get("created_at")).ok_or("created_at: not epoch milliseconds")?;
            let member = d.get("team_member").and_then(Value::as_object);
            let rep = member.and_then(|m| {
                let key = text(m, "key");
                let email = text(m, "email");
                let id = key.clone().or_else(|| email.clone())?;
                let name = [text(m, "first_name"), text(m, "last_name")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                let entry = reps.entry(id.clone()).or_insert_with(|| PartnerRep {
                    id: id.clone(),
                    partner_id: partner_id.clone(),
                    email: email.clone(),
                    name: (!name.is_empty()).then_some(name),
                    active: true,
                    joined_on: None,
                    left_on: None,
                });
                Some(entry.email.clone().unwrap_or(id))
            });
            let external = text(&d, "external_key");
            let (account_id, opportunity_id) = match ps.external_key {
                ExternalKey::Opportunity => (None, external),
                ExternalKey::Account => (external, None),
            };
            Ok(Registration {
                id: key.to_string(),
                partner_id,
                customer_name,
                status,
                submitted_at,
                rep,
                customer_domain: None,
                account_id,
                opportunity_id,
                approved_at: when(custom(&d, &ps.approved_at_field)),
                expires_at: when(custom(&d, &ps.expires_at_field)),
                // PartnerStack amounts are integer cents.
                amount: number(&d, "amount")?.map(|cents| cents / 100.0),
            })
        })();
        match mapped {
            Ok(r) => registrations.rows.push(r),
            Err(e) => registrations.reject(key, e),
        }
    })?;
    if ps.leads_as_registrations {
        mirror::scan(state, SOURCE, "leads", |key, l| {
            let l = match l {
                Ok(l) => l,
                Err(e) => return registrations.reject(key, e),
            };
            let mapped = (|| -> Result<Registration, String> {
                let partner_id = text(&l, "partner_key").ok_or("partner_key: empty")?;
                let customer_name = name_of(l.get("account_name"))
                    .or_else(|| name_of(l.get("company")))
                    .or_else(|| text(&l, "name"))
                    .ok_or("no customer name")?;
                let submitted_at =
                    epoch_ms(l.get("created_at")).ok_or("created_at: not epoch milliseconds")?;
                let approved = l.get("approved").and_then(Value::as_bool) == Some(true);
                Ok(Registration {
                    id: format!("lead:{key}"),
                    partner_id,
                    customer_name,
                    status: if approved {
                        RegistrationStatus::Approved
                    } else {
                        RegistrationStatus::Submitted
                    },
                    submitted_at,
                    rep: None,
                    customer_domain: None,
                    account_id: text(&l, "external_key"),
                    opportunity_id: None,
                    approved_at: None,
                    expires_at: None,
                    amount: number(&l, "amount")?.map(|cents| cents / 100.0),
                })
            })();
            match mapped {
                Ok(r) => registrations.rows.push(r),
                Err(e) => registrations.reject(key, e),
            }
        })?;
    }
    let mut reps = Mapped {
        label: format!("{SOURCE} team_member"),
        rows: reps.into_values().collect::<Vec<_>>(),
        rejected: Vec::new(),
    };
    reps.rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(PrmTables {
        partners: partners.table(),
        reps: reps.table(),
        registrations: registrations.table(),
    })
}

/// Identifiers of an item of a deal's `fields` list, most stable first:
/// PartnerStack documents `api_name`, `field_key`, `internal_name` and `name`
/// (the editable display label); `key`, `field` and `slug` are kept for
/// older or hand-made payloads.
const FIELD_IDS: [&str; 7] = [
    "api_name",
    "field_key",
    "internal_name",
    "name",
    "key",
    "field",
    "slug",
];

/// A deal's custom field `field`: from `fields` (a list of items with
/// `api_name`, `field_key`, `internal_name`, `name`, `type` and `value`, or
/// an object) or `field_data` (an object). In a list, an item whose
/// `api_name` is `field` wins over one whose `field_key` is, and so on down
/// [`FIELD_IDS`], so a display label never shadows an API name.
fn custom_field<R: Fields + ?Sized>(d: &R, field: &str) -> Option<Value> {
    if field.is_empty() {
        return None;
    }
    ["fields", "field_data"]
        .iter()
        .find_map(|k| match d.field(k)? {
            Value::Object(o) => o.get(field).cloned(),
            Value::Array(items) => FIELD_IDS.iter().find_map(|id| {
                items
                    .iter()
                    .find(|item| item.get(*id).and_then(Value::as_str) == Some(field))
                    .and_then(|item| item.get("value").cloned())
            }),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn deal(key: &str, extra: Value) -> MirrorRow {
        let mut d = json!({
            "key": key, "partner_key": "northwind", "account_name": "Acme Corp",
            "stage": "approved", "created_at": 1_788_000_000_000i64, "amount": 1_250_050,
        });
        if let (Some(d), Value::Object(extra)) = (d.as_object_mut(), extra) {
            d.extend(extra);
        }
        MirrorRow {
            id: key.into(),
            data: mirror::row(&deal_fields(), d.as_object().unwrap().clone()),
        }
    }

    fn deal_fields() -> Vec<String> {
        stored_fields("deals")
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    /// Custom fields as a list of `{key, value}`, as an object, or in
    /// `field_data`, in epoch ms or ISO; amounts in integer cents.
    #[test]
    fn custom_fields_in_every_form_and_amounts_in_cents() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::scratch_copy(&dir.path().join("none.db")).unwrap();
        let approved = 1_790_000_000_000i64;
        let expires = 1_795_000_000_000i64;
        let iso = |ms: i64| {
            DateTime::<Utc>::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339()
        };
        let layout = state
            .mirror_layout(SOURCE, "deals", &Value::from(deal_fields()).to_string())
            .unwrap();
        state
            .mirror_apply(
                SOURCE,
                "deals",
                1,
                layout,
                &[
                    deal(
                        "as_list",
                        json!({"fields": [{"key": "approved_at", "value": approved}, {"key": "expires_at", "value": iso(expires)}]}),
                    ),
                    deal(
                        "as_object",
                        json!({"fields": {"approved_at": iso(approved), "expires_at": expires}}),
                    ),
                    deal(
                        "in_field_data",
                        json!({"field_data": {"approved_at": approved.to_string(), "expires_at": expires}}),
                    ),
                    deal("none", json!({"amount": null})),
                ],
                &[],
            )
            .unwrap();
        let registrations = build(&state, &PartnerstackSettings::default())
            .unwrap()
            .registrations;
        let by_id: BTreeMap<&str, &Registration> = registrations
            .rows
            .iter()
            .map(|r| (r.id.as_str(), r))
            .collect();
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms);
        for key in ["as_list", "as_object", "in_field_data"] {
            let r = by_id[key];
            assert_eq!(r.approved_at, at(approved), "{key}");
            assert_eq!(r.expires_at, at(expires), "{key}");
            assert_eq!(r.amount, Some(12_500.50), "{key}: cents");
        }
        let none = by_id["none"];
        assert_eq!(
            (none.approved_at, none.expires_at, none.amount),
            (None, None, None)
        );
    }
}
