//! An in-process, stateful fake of the HubSpot CRM API for integration tests
//! and the benchmark (`examples/fake_hubspot.rs` runs it standalone).
//!
//! Wire shapes follow `/work/shared/reference/crm-apis.md` (Parts B and D).
//! Paths are served under `/crm/v3/...` and under the date-versioned form
//! `/crm/{api}/{YYYY-MM}/...` (same handlers); object types may be named
//! `deals`/`0-3` or `companies`/`0-2`.
//!
//! Endpoints:
//! - `POST /oauth/v1/token` (and `/oauth/v3/token`), form
//!   `grant_type=refresh_token&client_id&client_secret&refresh_token` ->
//!   `{"token_type":"bearer","refresh_token","access_token","expires_in"}`;
//!   errors are 400 `{"status":"BAD_REFRESH_TOKEN"|"BAD_CLIENT_ID"|
//!   "BAD_CLIENT_SECRET"|"BAD_GRANT_TYPE","message","correlationId","requestId"}`.
//! - `GET /crm/v3/objects/{t}` (list: `limit` 1..=100, opaque `after`,
//!   `properties`, `associations`, `archived`), `GET|DELETE /crm/v3/objects/{t}/{id}`,
//!   `POST /crm/v3/objects/{t}/search`, `POST /crm/v3/objects/{t}/batch/update`,
//!   `POST /crm/v3/objects/{t}/batch/read`.
//! - `GET|POST /crm/v3/properties/{t}`, `GET /crm/v3/properties/{t}/{name}`.
//! - `GET /crm/v3/pipelines/deals[/{id}]`, `GET /crm/v3/owners[/{id}]`.
//!
//! Every data call needs `Authorization: Bearer <token>`: the configured
//! private-app token or an unexpired OAuth access token (expiry runs on the
//! fake clock). Accepted calls count against a rolling 10-second budget and a
//! daily budget (and searches against a per-second budget); the
//! `X-HubSpot-RateLimit-*` headers ride on every authenticated data response
//! (the daily pair for private-app tokens only).
//!
//! Rust surface (all on [`FakeHubSpot`], cheap to clone, shared state):
//! - start: [`FakeHubSpot::start`], [`FakeHubSpot::start_on`], `url`, `config`,
//!   `private_token`, `current_refresh_token`, `set_refresh_token`.
//! - data: `insert_company(id, props)`, `insert_deal(id, props, companies)`,
//!   `insert_object(object, record)` / `insert_many(object, records)` (the JSONL
//!   line shape), `insert_owner(owner)`, `update_deal(id, props)`,
//!   `update(object, id, props)`, `associate(deal, company)`, `archive_deal(id)`,
//!   `archive(object, id)`, `restore(object, id)`, `company(id)`, `deal(id)`,
//!   `object(object, id)`, `count(object)`, `add_property(object, name, type)`,
//!   `property_names(object)`, `set_pipelines(..)`, `set_now`, `advance_secs`, `now`.
//! - faults: `fail_next(n, status, body)`, `expire_tokens()`,
//!   `expire_tokens_after(n)`, `revoke_private_token(bool)`,
//!   `fail_updates_for(ids)`, `fail_updates_with(ids, category, message)`,
//!   `clear_update_failures()`, `omit_results_in_207(bool)`,
//!   `set_daily_remaining(n)`, `set_rate_limits(ten_secondly, daily)`,
//!   `set_search_per_second(n)`, `set_retry_after(secs)`, `reset_rate_window()`,
//!   `force_429(policy, n)`, `set_scopes(Some(..))`,
//!   `fail_matching(pattern, skip, n, status, body)` (a fault on the calls whose
//!   `path?query` holds `pattern`, after `skip` of them), `send_clock_as_date(bool)`
//!   (the fake clock as the `Date` header).
//! - observation: `calls()`, `requests()`, `batch_bodies()`, `search_bodies()`,
//!   `reset_counts()`, `daily_used()`.
//!
//! Storage is compact enough for a few hundred thousand deals: per object a
//! `Vec` of records whose property values sit in schema order (enumeration and
//! partner values interned), an id -> index map, and `createdate` /
//! `hs_lastmodifieddate` / `hs_object_id` kept as record fields. Lists page in
//! storage (insertion) order; search sorts only the rows it must return.
//!
//! This file must stay self-contained: the example includes it by `#[path]`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng as _;
use serde_json::{Map, Value, json};

use crate::shared::{
    bearer, form_get, http_date, parse_form, pct_decode, pct_encode, take_matching,
};

/// How many logged requests and batch bodies are kept (oldest dropped).
const LOG_CAP: usize = 20_000;
const MAX_BODY: usize = 64 << 20;
/// Search cannot page past this many results.
pub const SEARCH_CAP: usize = 10_000;
const AUTH_MESSAGE: &str = "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview";

/// Configuration of a [`FakeHubSpot`].
#[derive(Clone, Debug)]
pub struct HubSpotConfig {
    /// The account ("hub") id, used in record `url`s.
    pub portal_id: u64,
    /// The static private-app token (`Authorization: Bearer pat-...`).
    pub private_app_token: String,
    pub client_id: String,
    pub client_secret: String,
    /// The currently valid OAuth refresh token.
    pub refresh_token: String,
    /// Each refresh returns a new `refresh_token` and invalidates the old one
    /// (HubSpot v1 returns the same one, so the default is false).
    pub rotate_refresh_tokens: bool,
    /// `expires_in` of issued access tokens, in seconds of the fake clock.
    pub access_token_ttl_secs: u64,
    /// Rolling 10-second budget (`X-HubSpot-RateLimit-Max`).
    pub ten_secondly_max: u64,
    /// Daily budget (`X-HubSpot-RateLimit-Daily`).
    pub daily_max: u64,
    /// Search requests allowed per rolling second (0 = unlimited).
    pub search_per_second: u64,
    /// `Retry-After` seconds sent with 429s (HubSpot documents none).
    pub retry_after_secs: Option<u64>,
    /// Put the rate-limit headers on search responses too.
    pub search_rate_headers: bool,
    /// List `limit` above 100 is clamped instead of rejected with 400.
    pub clamp_list_limit: bool,
}

impl Default for HubSpotConfig {
    fn default() -> Self {
        HubSpotConfig {
            portal_id: 4_242_424,
            private_app_token: "pat-na1-00000000-0000-0000-0000-fakeprivapp".into(),
            client_id: "fake-hubspot-client-id".into(),
            client_secret: "fake-hubspot-client-secret".into(),
            refresh_token: "fake-hubspot-refresh-1".into(),
            rotate_refresh_tokens: false,
            access_token_ttl_secs: 1800,
            ten_secondly_max: 100,
            daily_max: 250_000,
            search_per_second: 5,
            retry_after_secs: None,
            search_rate_headers: true,
            clamp_list_limit: false,
        }
    }
}

/// Which limit a 429 reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RatePolicy {
    /// `policyName: TEN_SECONDLY_ROLLING`.
    TenSecondlyRolling,
    /// `policyName: DAILY`.
    Daily,
    /// The search per-second limit (`policyName: SECONDLY`, an assumption).
    SearchSecondly,
}

/// The kind of token a request authenticated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    PrivateApp,
    OAuth,
}

/// A deal pipeline stage; `metadata.isClosed` / `metadata.probability` are
/// rendered as strings (`"true"`, `"1.0"`).
#[derive(Clone, Debug)]
pub struct Stage {
    pub id: String,
    pub label: String,
    pub is_closed: bool,
    pub probability: f64,
}

#[derive(Clone, Debug)]
pub struct Pipeline {
    pub id: String,
    pub label: String,
    pub stages: Vec<Stage>,
}

impl Pipeline {
    /// HubSpot's default deal pipeline (`default`, "Sales Pipeline").
    pub fn default_sales() -> Pipeline {
        let stage = |id: &str, label: &str, is_closed: bool, probability: f64| Stage {
            id: id.into(),
            label: label.into(),
            is_closed,
            probability,
        };
        Pipeline {
            id: "default".into(),
            label: "Sales Pipeline".into(),
            stages: vec![
                stage("appointmentscheduled", "Appointment Scheduled", false, 0.2),
                stage("qualifiedtobuy", "Qualified To Buy", false, 0.4),
                stage(
                    "presentationscheduled",
                    "Presentation Scheduled",
                    false,
                    0.6,
                ),
                stage(
                    "decisionmakerboughtin",
                    "Decision Maker Bought-In",
                    false,
                    0.8,
                ),
                stage("contractsent", "Contract Sent", false, 0.9),
                stage("closedwon", "Closed Won", true, 1.0),
                stage("closedlost", "Closed Lost", true, 0.0),
            ],
        }
    }
}

/// Request counts by endpoint kind. `total` counts every request except
/// token requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    pub token: usize,
    pub list_companies: usize,
    pub list_deals: usize,
    /// Single-object `GET`/`DELETE`.
    pub read: usize,
    pub search: usize,
    pub owners: usize,
    pub pipelines: usize,
    pub properties: usize,
    pub batch_update: usize,
    pub batch_read: usize,
    /// v4 association batch reads.
    pub assoc_read: usize,
    pub other: usize,
    pub total: usize,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The body of any non-GET request (token requests included).
    pub body: Option<String>,
    /// The token kind, when the request carried a currently valid token.
    pub auth: Option<TokenKind>,
    pub status: u16,
}

/// The fake server. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct FakeHubSpot {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    config: HubSpotConfig,
    state: Mutex<State>,
}

// ---------------------------------------------------------------------------
// Storage

/// Property indices 0..3 are kept as record fields.
const P_ID: usize = 0;
const P_CREATED: usize = 1;
const P_MODIFIED: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PKind {
    Str,
    Num,
    Time,
    Bool,
}

impl PKind {
    fn of(type_: &str) -> PKind {
        match type_ {
            "number" => PKind::Num,
            "datetime" | "date" => PKind::Time,
            "bool" => PKind::Bool,
            _ => PKind::Str,
        }
    }
}

struct PropDef {
    name: String,
    label: String,
    type_: String,
    field_type: String,
    group: String,
    hubspot_defined: bool,
    read_only: bool,
    kind: PKind,
    intern: bool,
    created: i64,
}

struct Rec {
    id: Arc<str>,
    vals: Box<[Option<Arc<str>>]>,
    created: i64,
    updated: i64,
    /// `archivedAt` when archived.
    archived: Option<i64>,
    /// Ids in the associated table (deals -> companies, companies -> deals).
    assoc: Vec<Arc<str>>,
}

impl Rec {
    fn get(&self, pi: usize) -> Option<&Arc<str>> {
        self.vals.get(pi).and_then(Option::as_ref)
    }

    fn set(&mut self, pi: usize, v: Option<Arc<str>>) {
        if pi >= self.vals.len() {
            let mut vals = std::mem::take(&mut self.vals).into_vec();
            vals.resize(pi + 1, None);
            self.vals = vals.into_boxed_slice();
        }
        self.vals[pi] = v;
    }
}

struct Table {
    /// Plural API name, e.g. `deals`.
    name: &'static str,
    /// Upper-case singular for messages, e.g. `DEAL`.
    upper: &'static str,
    type_id: &'static str,
    /// The other table's name and this side's association type label.
    assoc_name: &'static str,
    assoc_type: &'static str,
    group: &'static str,
    defaults: &'static [&'static str],
    props: Vec<PropDef>,
    prop_idx: HashMap<String, usize>,
    recs: Vec<Rec>,
    ids: HashMap<Arc<str>, u32>,
}

impl Table {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &'static str,
        upper: &'static str,
        type_id: &'static str,
        assoc_name: &'static str,
        assoc_type: &'static str,
        group: &'static str,
        defaults: &'static [&'static str],
        props: &[(&str, &str, &str, bool)],
    ) -> Table {
        let mut t = Table {
            name,
            upper,
            type_id,
            assoc_name,
            assoc_type,
            group,
            defaults,
            props: Vec::new(),
            prop_idx: HashMap::new(),
            recs: Vec::new(),
            ids: HashMap::new(),
        };
        t.add_prop("hs_object_id", "number", "number", true, 0);
        t.add_prop("createdate", "datetime", "date", true, 0);
        t.add_prop("hs_lastmodifieddate", "datetime", "date", true, 0);
        for p in t.props.iter_mut() {
            p.read_only = true;
        }
        for &(n, ty, ft, hs) in props {
            t.add_prop(n, ty, ft, hs, 0);
        }
        t
    }

    fn add_prop(&mut self, name: &str, type_: &str, field_type: &str, hs: bool, now: i64) -> usize {
        if let Some(&i) = self.prop_idx.get(name) {
            return i;
        }
        let intern = type_ == "enumeration"
            || type_ == "bool"
            || name.starts_with("channel_partner")
            || name == "hubspot_owner_id";
        self.props.push(PropDef {
            name: name.to_string(),
            label: label_of(name),
            type_: type_.to_string(),
            field_type: field_type.to_string(),
            group: self.group.to_string(),
            hubspot_defined: hs,
            read_only: false,
            kind: PKind::of(type_),
            intern,
            created: now,
        });
        self.prop_idx.insert(name.to_string(), self.props.len() - 1);
        self.props.len() - 1
    }

    fn rec(&self, id: &str) -> Option<&Rec> {
        self.recs.get(*self.ids.get(id)? as usize)
    }

    fn rec_mut(&mut self, id: &str) -> Option<&mut Rec> {
        let i = *self.ids.get(id)? as usize;
        self.recs.get_mut(i)
    }

    /// A property value as on the wire.
    fn value(&self, rec: &Rec, pi: usize) -> Option<String> {
        match pi {
            P_ID => Some(rec.id.to_string()),
            P_CREATED => Some(fmt_time(rec.created)),
            P_MODIFIED => Some(fmt_time(rec.updated)),
            _ => rec.get(pi).map(|s| s.to_string()),
        }
    }

    /// Property indices for a request: the named ones that exist (unknown
    /// names are ignored, as HubSpot does) or the defaults, plus the three
    /// always-returned ones.
    fn select(&self, names: Option<&[String]>) -> Vec<usize> {
        let mut out = vec![P_CREATED, P_MODIFIED, P_ID];
        let push = |out: &mut Vec<usize>, n: &str| {
            if let Some(&i) = self.prop_idx.get(n)
                && !out.contains(&i)
            {
                out.push(i);
            }
        };
        match names {
            Some(names) => names.iter().for_each(|n| push(&mut out, n.as_str())),
            None => self.defaults.iter().for_each(|n| push(&mut out, n)),
        }
        out
    }

    fn render(&self, rec: &Rec, props: &[usize], assoc: bool, portal: u64) -> Value {
        let mut p = Map::new();
        for &pi in props {
            let v = self.value(rec, pi).map_or(Value::Null, Value::String);
            p.insert(self.props[pi].name.clone(), v);
        }
        let mut o = Map::new();
        o.insert("id".into(), Value::String(rec.id.to_string()));
        o.insert("properties".into(), Value::Object(p));
        o.insert("createdAt".into(), Value::String(fmt_time(rec.created)));
        o.insert("updatedAt".into(), Value::String(fmt_time(rec.updated)));
        o.insert("archived".into(), Value::Bool(rec.archived.is_some()));
        if let Some(at) = rec.archived {
            o.insert("archivedAt".into(), Value::String(fmt_time(at)));
        }
        if assoc && !rec.assoc.is_empty() {
            let results: Vec<Value> = rec
                .assoc
                .iter()
                .map(|id| json!({"id": &**id, "type": self.assoc_type}))
                .collect();
            o.insert(
                "associations".into(),
                json!({ self.assoc_name: {"results": results} }),
            );
        }
        o.insert(
            "url".into(),
            Value::String(format!(
                "https://app.hubspot.com/contacts/{portal}/record/{}/{}",
                self.type_id, rec.id
            )),
        );
        Value::Object(o)
    }

    /// Every set property (for read-back), with associations.
    fn render_full(&self, rec: &Rec, portal: u64) -> Value {
        let props: Vec<usize> = (0..self.props.len())
            .filter(|&pi| pi < 3 || rec.get(pi).is_some())
            .collect();
        self.render(rec, &props, true, portal)
    }
}

fn label_of(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for (i, w) in name.split('_').filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let mut c = w.chars();
        if let Some(f) = c.next() {
            s.extend(f.to_uppercase());
            s.push_str(c.as_str());
        }
    }
    s
}

const COMPANY_DEFAULTS: &[&str] = &["name", "domain"];
const DEAL_DEFAULTS: &[&str] = &["dealname", "amount", "closedate", "pipeline", "dealstage"];

struct State {
    tables: Vec<Table>,
    owners: Vec<Value>,
    pipelines: Vec<Pipeline>,
    interner: HashSet<Arc<str>>,
    now: Option<i64>,
    next_id: u64,
    tokens: HashMap<String, i64>,
    refresh_token: String,
    refresh_counter: u64,
    private_valid: bool,
    scopes: Option<HashSet<String>>,
    expire_after: Option<usize>,
    fails: VecDeque<(usize, u16, String)>,
    /// Canned answers for the next calls whose `path?query` contains the pattern.
    fails_matching: VecDeque<(String, usize, usize, u16, String)>,
    date_from_clock: bool,
    forced: VecDeque<(usize, RatePolicy)>,
    update_failures: HashMap<String, (String, String)>,
    omit_207_results: bool,
    ten_secondly_max: u64,
    daily_max: u64,
    daily_used: u64,
    search_per_second: u64,
    retry_after: Option<u64>,
    window: VecDeque<Instant>,
    search_window: VecDeque<Instant>,
    calls: Calls,
    log: VecDeque<LoggedRequest>,
    batch_bodies: VecDeque<Value>,
    search_bodies: VecDeque<Value>,
}

impl State {
    fn new(config: &HubSpotConfig) -> State {
        let companies = Table::new(
            "companies",
            "COMPANY",
            "0-2",
            "deals",
            "company_to_deal",
            "companyinformation",
            COMPANY_DEFAULTS,
            &[
                ("name", "string", "text", true),
                ("domain", "string", "text", true),
                ("website", "string", "text", true),
                ("industry", "enumeration", "select", true),
                ("hubspot_owner_id", "enumeration", "select", true),
            ],
        );
        let deals = Table::new(
            "deals",
            "DEAL",
            "0-3",
            "companies",
            "deal_to_company",
            "dealinformation",
            DEAL_DEFAULTS,
            &[
                ("dealname", "string", "text", true),
                ("amount", "number", "number", true),
                ("closedate", "datetime", "date", true),
                ("dealstage", "enumeration", "radio", true),
                ("pipeline", "enumeration", "select", true),
                ("hubspot_owner_id", "enumeration", "select", true),
                ("deal_currency_code", "enumeration", "select", true),
                ("dealtype", "enumeration", "radio", true),
                ("channel_partner", "string", "text", false),
                ("channel_partner_rep", "string", "text", false),
                ("channel_registration_id", "string", "text", false),
            ],
        );
        State {
            tables: vec![companies, deals],
            owners: Vec::new(),
            pipelines: vec![Pipeline::default_sales()],
            interner: HashSet::new(),
            now: None,
            next_id: 1,
            tokens: HashMap::new(),
            refresh_token: config.refresh_token.clone(),
            refresh_counter: 1,
            private_valid: true,
            scopes: None,
            expire_after: None,
            fails: VecDeque::new(),
            fails_matching: VecDeque::new(),
            date_from_clock: false,
            forced: VecDeque::new(),
            update_failures: HashMap::new(),
            omit_207_results: false,
            ten_secondly_max: config.ten_secondly_max,
            daily_max: config.daily_max,
            daily_used: 0,
            search_per_second: config.search_per_second,
            retry_after: config.retry_after_secs,
            window: VecDeque::new(),
            search_window: VecDeque::new(),
            calls: Calls::default(),
            log: VecDeque::new(),
            batch_bodies: VecDeque::new(),
            search_bodies: VecDeque::new(),
        }
    }

    fn clock(&self) -> i64 {
        self.now.unwrap_or_else(|| Utc::now().timestamp_millis())
    }

    fn table(&self, name: &str) -> Option<usize> {
        let name = match name.to_ascii_lowercase().as_str() {
            "companies" | "company" | "0-2" => "companies",
            "deals" | "deal" | "0-3" => "deals",
            _ => return None,
        };
        self.tables.iter().position(|t| t.name == name)
    }

    fn intern_val(&mut self, ti: usize, pi: usize, s: &str) -> Arc<str> {
        if self.tables[ti].props[pi].intern {
            if let Some(a) = self.interner.get(s) {
                return a.clone();
            }
            let a: Arc<str> = s.into();
            self.interner.insert(a.clone());
            a
        } else {
            s.into()
        }
    }

    /// Inserts (or replaces, by id) a record of the JSONL shape
    /// `{"id", "properties": {..}, "associations": {"companies": [..]},
    /// "createdAt"?, "updatedAt"?, "archived"?}`. Unknown properties are
    /// added to the schema as strings.
    fn insert(&mut self, ti: usize, record: &Value) {
        let now = self.clock();
        let props = record.get("properties").and_then(Value::as_object);
        let id: Arc<str> = match record
            .get("id")
            .or_else(|| props.and_then(|p| p.get("hs_object_id")))
        {
            Some(Value::String(s)) if !s.is_empty() => s.as_str().into(),
            Some(Value::Number(n)) => n.to_string().into(),
            _ => {
                let id = format!("{}", 90_000_000_000u64 + self.next_id);
                self.next_id += 1;
                id.into()
            }
        };
        let time_of = |v: Option<&Value>| v.and_then(json_scalar).and_then(|s| parse_time(&s));
        let mut created = time_of(record.get("createdAt"))
            .or_else(|| time_of(props.and_then(|p| p.get("createdate"))))
            .unwrap_or(now);
        let updated = time_of(record.get("updatedAt"))
            .or_else(|| time_of(props.and_then(|p| p.get("hs_lastmodifieddate"))))
            .unwrap_or(now.max(created));
        if created > updated {
            created = updated;
        }
        let archived = match record.get("archived") {
            Some(Value::Bool(true)) => Some(time_of(record.get("archivedAt")).unwrap_or(updated)),
            _ => None,
        };
        let mut sets: Vec<(usize, Option<Arc<str>>)> = Vec::new();
        if let Some(props) = props {
            for (k, v) in props {
                if k == "hs_object_id" || k == "createdate" || k == "hs_lastmodifieddate" {
                    continue;
                }
                let pi = match self.tables[ti].prop_idx.get(k.as_str()) {
                    Some(&pi) => pi,
                    None => self.tables[ti].add_prop(k, "string", "text", false, now),
                };
                let val = json_scalar(v).map(|s| self.intern_val(ti, pi, &s));
                sets.push((pi, val));
            }
        }
        let mut rec = Rec {
            id: id.clone(),
            vals: Box::new([]),
            created,
            updated,
            archived,
            assoc: Vec::new(),
        };
        if let Some(max) = sets.iter().map(|(pi, _)| *pi).max() {
            rec.vals = vec![None; max + 1].into_boxed_slice();
            for (pi, v) in sets {
                rec.vals[pi] = v;
            }
        }
        let table = &mut self.tables[ti];
        if let Some(&i) = table.ids.get(&*id) {
            rec.assoc = std::mem::take(&mut table.recs[i as usize].assoc);
            table.recs[i as usize] = rec;
        } else {
            let Ok(i) = u32::try_from(table.recs.len()) else {
                return;
            };
            table.recs.push(rec);
            table.ids.insert(id.clone(), i);
        }
        let other = table.assoc_name;
        let links: Vec<String> = record
            .get("associations")
            .and_then(|a| a.get(other))
            .map(assoc_ids)
            .unwrap_or_default();
        for other_id in links {
            self.associate(ti, &id, &other_id);
        }
    }

    /// Links `id` in table `ti` with `other_id` in the associated table (both sides).
    fn associate(&mut self, ti: usize, id: &str, other_id: &str) {
        let Some(oi) = self.table(self.tables[ti].assoc_name) else {
            return;
        };
        let other_arc: Arc<str> = other_id.into();
        if let Some(rec) = self.tables[ti].rec_mut(id)
            && !rec.assoc.iter().any(|a| **a == *other_id)
        {
            rec.assoc.push(other_arc);
        }
        let id_arc: Arc<str> = id.into();
        if let Some(rec) = self.tables[oi].rec_mut(other_id)
            && !rec.assoc.iter().any(|a| **a == *id)
        {
            rec.assoc.push(id_arc);
        }
    }

    fn log(&mut self, entry: LoggedRequest) {
        if self.log.len() >= LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    fn rate_headers(&self, kind: TokenKind) -> Vec<(&'static str, String)> {
        let used = self.window.len() as u64;
        let mut h = vec![
            ("x-hubspot-ratelimit-max", self.ten_secondly_max.to_string()),
            (
                "x-hubspot-ratelimit-remaining",
                self.ten_secondly_max.saturating_sub(used).to_string(),
            ),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000".into()),
        ];
        if kind == TokenKind::PrivateApp {
            h.push(("x-hubspot-ratelimit-daily", self.daily_max.to_string()));
            h.push((
                "x-hubspot-ratelimit-daily-remaining",
                self.daily_max.saturating_sub(self.daily_used).to_string(),
            ));
        }
        h
    }

    fn prune_windows(&mut self, now: Instant) {
        while let Some(&t) = self.window.front() {
            if now.duration_since(t) >= Duration::from_secs(10) {
                self.window.pop_front();
            } else {
                break;
            }
        }
        while let Some(&t) = self.search_window.front() {
            if now.duration_since(t) >= Duration::from_secs(1) {
                self.search_window.pop_front();
            } else {
                break;
            }
        }
    }
}

/// Ids from `["1", 2, {"id": "3"}]` or `{"results": [{"id": ..}]}`.
fn assoc_ids(v: &Value) -> Vec<String> {
    let arr = match v {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("results") {
            Some(Value::Array(a)) => a,
            _ => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    arr.iter()
        .filter_map(|x| match x {
            Value::Object(o) => o.get("id").and_then(json_scalar),
            other => json_scalar(other),
        })
        .collect()
}

/// A scalar as HubSpot stores it (a string); `None` for null, arrays and objects.
fn json_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn fmt_time(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

/// Milliseconds since the epoch from an epoch-ms number string, an ISO-8601
/// datetime or a `YYYY-MM-DD` date (midnight UTC).
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && (s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('-')) {
        return s.parse::<i64>().ok();
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d.timestamp_millis());
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(d.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

fn correlation_id() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Order of ids: numeric ids by value, others after them by text.
fn cmp_id(a: &str, b: &str) -> std::cmp::Ordering {
    (a.len(), a).cmp(&(b.len(), b))
}

// ---------------------------------------------------------------------------
// Search filters

#[derive(Clone, Debug, PartialEq)]
enum Key {
    Num(f64),
    Str(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    Has,
    NotHas,
    Contains,
    NotContains,
}

impl Op {
    fn of(s: &str) -> Option<Op> {
        Some(match s {
            "EQ" => Op::Eq,
            "NEQ" => Op::Neq,
            "LT" => Op::Lt,
            "LTE" => Op::Lte,
            "GT" => Op::Gt,
            "GTE" => Op::Gte,
            "BETWEEN" => Op::Between,
            "IN" => Op::In,
            "NOT_IN" => Op::NotIn,
            "HAS_PROPERTY" => Op::Has,
            "NOT_HAS_PROPERTY" => Op::NotHas,
            "CONTAINS_TOKEN" => Op::Contains,
            "NOT_CONTAINS_TOKEN" => Op::NotContains,
            _ => return None,
        })
    }
}

struct Filter {
    pi: usize,
    kind: PKind,
    op: Op,
    vals: Vec<Key>,
    high: Option<Key>,
    token: String,
}

fn to_key(kind: PKind, s: &str) -> Option<Key> {
    match kind {
        PKind::Num => s.trim().parse::<f64>().ok().map(Key::Num),
        PKind::Time => parse_time(s).map(|ms| Key::Num(ms as f64)),
        PKind::Str | PKind::Bool => Some(Key::Str(s.to_lowercase())),
    }
}

fn rec_key(table: &Table, rec: &Rec, pi: usize, kind: PKind) -> Option<Key> {
    let key = match pi {
        P_CREATED => Some(Key::Num(rec.created as f64)),
        P_MODIFIED => Some(Key::Num(rec.updated as f64)),
        P_ID => to_key(kind, &rec.id),
        _ => rec.get(pi).and_then(|s| to_key(kind, s)),
    };
    // A stored value the type cannot read compares as text.
    key.or_else(|| table.value(rec, pi).map(|s| Key::Str(s.to_lowercase())))
}

fn cmp_key(a: &Key, b: &Key) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Key::Num(x), Key::Num(y)) => x.partial_cmp(y),
        (Key::Str(x), Key::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Filter {
    fn matches(&self, table: &Table, rec: &Rec) -> bool {
        use std::cmp::Ordering::*;
        let present = match self.pi {
            P_ID | P_CREATED | P_MODIFIED => true,
            pi => rec.get(pi).is_some_and(|s| !s.is_empty()),
        };
        match self.op {
            Op::Has => return present,
            Op::NotHas => return !present,
            _ => {}
        }
        if !present {
            return matches!(self.op, Op::Neq | Op::NotIn | Op::NotContains);
        }
        if matches!(self.op, Op::Contains | Op::NotContains) {
            let v = table.value(rec, self.pi).unwrap_or_default().to_lowercase();
            let t = self.token.trim_matches('*');
            let hit = if self.token.contains('*') {
                v.contains(t)
            } else {
                v.split(|c: char| !c.is_alphanumeric()).any(|w| w == t)
            };
            return hit == (self.op == Op::Contains);
        }
        let Some(k) = rec_key(table, rec, self.pi, self.kind) else {
            return false;
        };
        let ord = |lit: &Key| cmp_key(&k, lit);
        match self.op {
            Op::Eq => self.vals.first().is_some_and(|l| ord(l) == Some(Equal)),
            Op::Neq => self.vals.first().is_none_or(|l| ord(l) != Some(Equal)),
            Op::Lt => self.vals.first().is_some_and(|l| ord(l) == Some(Less)),
            Op::Lte => self
                .vals
                .first()
                .is_some_and(|l| matches!(ord(l), Some(Less | Equal))),
            Op::Gt => self.vals.first().is_some_and(|l| ord(l) == Some(Greater)),
            Op::Gte => self
                .vals
                .first()
                .is_some_and(|l| matches!(ord(l), Some(Greater | Equal))),
            Op::Between => {
                let lo = self
                    .vals
                    .first()
                    .is_some_and(|l| matches!(ord(l), Some(Greater | Equal)));
                let hi = self
                    .high
                    .as_ref()
                    .is_some_and(|h| matches!(ord(h), Some(Less | Equal)));
                lo && hi
            }
            Op::In => self.vals.iter().any(|l| ord(l) == Some(Equal)),
            Op::NotIn => !self.vals.iter().any(|l| ord(l) == Some(Equal)),
            Op::Has | Op::NotHas | Op::Contains | Op::NotContains => false,
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP plumbing

struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    fn raw(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    /// The standard error shape `{"status":"error","message","correlationId","category"}`.
    fn error(status: u16, category: &str, message: &str) -> Reply {
        Reply::json(
            status,
            &json!({
                "status": "error",
                "message": message,
                "correlationId": correlation_id(),
                "category": category,
            }),
        )
    }

    fn validation(message: &str) -> Reply {
        Reply::error(400, "VALIDATION_ERROR", message)
    }

    fn oauth(status: &str, message: &str) -> Reply {
        Reply::json(
            400,
            &json!({
                "status": status,
                "message": message,
                "correlationId": correlation_id(),
                "requestId": correlation_id(),
            }),
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Token,
    List(String),
    Object(String, String),
    Search(String),
    BatchUpdate(String),
    BatchRead(String),
    /// `POST /crm/v4/associations/{from}/{to}/batch/read`.
    AssocBatchRead(String, String),
    Properties(String),
    Property(String, String),
    Pipelines(String),
    Pipeline(String, String),
    Owners,
    Owner(String),
    Other,
}

fn is_date_version(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
}

fn route(path: &str) -> Route {
    let segs: Vec<String> = path.trim_matches('/').split('/').map(pct_decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["oauth", "v1" | "v3", "token"] => return Route::Token,
        ["crm", ..] => {}
        _ => return Route::Other,
    }
    if let ["v4", "associations", from, to, "batch", "read"] = &segs[1..] {
        return Route::AssocBatchRead(from.to_string(), to.to_string());
    }
    let (api, rest) = match &segs[1..] {
        ["v3", api, rest @ ..] => (*api, rest),
        [api, version, rest @ ..] if is_date_version(version) => (*api, rest),
        _ => return Route::Other,
    };
    let s = |x: &&str| (*x).to_string();
    match (api, rest) {
        ("objects", [t]) => Route::List(s(t)),
        ("objects", [t, "search"]) => Route::Search(s(t)),
        ("objects", [t, "batch", "update"]) => Route::BatchUpdate(s(t)),
        ("objects", [t, "batch", "read"]) => Route::BatchRead(s(t)),
        ("objects", [t, id]) => Route::Object(s(t), s(id)),
        ("properties", [t]) => Route::Properties(s(t)),
        ("properties", [t, name]) => Route::Property(s(t), s(name)),
        ("pipelines", [t]) => Route::Pipelines(s(t)),
        ("pipelines", [t, id]) => Route::Pipeline(s(t), s(id)),
        ("owners", []) => Route::Owners,
        ("owners", [id]) => Route::Owner(s(id)),
        _ => Route::Other,
    }
}

/// All values of a repeatable, comma-separated parameter (`properties=a,b&properties=c`).
fn form_list(form: &[(String, String)], key: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut seen = false;
    for (k, v) in form {
        if k == key {
            seen = true;
            out.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
    }
    seen.then_some(out)
}

fn encode_after(i: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("fake:{i}"))
}

fn decode_after(s: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    let s = String::from_utf8(bytes).ok()?;
    s.strip_prefix("fake:")?.parse().ok()
}

fn paging(after: &str) -> Value {
    json!({"next": {"after": after, "link": format!("?after={}", pct_encode(after))}})
}

fn required_scope(route: &Route, method: &Method, table: Option<&str>) -> Option<String> {
    let obj = table.unwrap_or("deals");
    let write = *method != Method::GET;
    Some(match route {
        Route::List(_) | Route::Search(_) | Route::BatchRead(_) | Route::AssocBatchRead(..) => {
            format!("crm.objects.{obj}.read")
        }
        Route::Object(..) if write => format!("crm.objects.{obj}.write"),
        Route::Object(..) => format!("crm.objects.{obj}.read"),
        Route::BatchUpdate(_) => format!("crm.objects.{obj}.write"),
        Route::Properties(_) | Route::Property(..) if write => format!("crm.schemas.{obj}.write"),
        Route::Properties(_) | Route::Property(..) => format!("crm.schemas.{obj}.read"),
        Route::Pipelines(_) | Route::Pipeline(..) => format!("crm.objects.{obj}.read"),
        Route::Owners | Route::Owner(_) => "crm.objects.owners.read".to_string(),
        Route::Token | Route::Other => return None,
    })
}

// ---------------------------------------------------------------------------
// The server

impl FakeHubSpot {
    /// Binds `127.0.0.1:0` and serves in a tokio task.
    pub async fn start(config: HubSpotConfig) -> FakeHubSpot {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        FakeHubSpot::start_on(config, addr)
            .await
            .expect("the fake HubSpot binds a local port")
    }

    /// Binds `addr` (e.g. a fixed port for a standalone run) and serves in a tokio task.
    pub async fn start_on(config: HubSpotConfig, addr: SocketAddr) -> std::io::Result<FakeHubSpot> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let state = State::new(&config);
        let fake = FakeHubSpot {
            inner: Arc::new(Inner {
                url: format!("http://{local}"),
                config,
                state: Mutex::new(state),
            }),
        };
        let served = fake.clone();
        crate::shared::serve(listener, MAX_BODY, move |method, uri, headers, body| {
            served.respond(method, uri, headers, body)
        });
        Ok(fake)
    }

    /// `http://127.0.0.1:PORT` (the API base; the token URL is `{url}/oauth/v1/token`).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    pub fn config(&self) -> &HubSpotConfig {
        &self.inner.config
    }

    /// The configured private-app token.
    pub fn private_token(&self) -> String {
        self.inner.config.private_app_token.clone()
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // -- data --------------------------------------------------------------

    /// Inserts (or replaces) a company; `props` is a JSON object of property
    /// values (non-strings are stored as their text).
    pub fn insert_company(&self, id: &str, props: Value) {
        self.insert_object("companies", json!({"id": id, "properties": props}));
    }

    /// Inserts (or replaces) a deal associated with `companies`.
    pub fn insert_deal(&self, id: &str, props: Value, companies: &[&str]) {
        self.insert_object(
            "deals",
            json!({"id": id, "properties": props, "associations": {"companies": companies}}),
        );
    }

    /// Inserts (or replaces, by id) a record of the JSONL shape
    /// `{"id", "properties": {..}, "associations": {"companies": ["id"]},
    /// "createdAt"?, "updatedAt"?, "archived"?}` into `companies` or `deals`
    /// (`owners` takes owner objects). `createdate`/`hs_lastmodifieddate`
    /// default to the fake clock; unknown properties join the schema as strings.
    pub fn insert_object(&self, object: &str, record: Value) {
        self.insert_many(object, std::iter::once(record));
    }

    /// Inserts many records under one lock.
    pub fn insert_many(&self, object: &str, records: impl IntoIterator<Item = Value>) {
        let mut st = self.st();
        if object == "owners" {
            for r in records {
                insert_owner(&mut st, r);
            }
            return;
        }
        let Some(ti) = st.table(object) else {
            return;
        };
        for r in records {
            st.insert(ti, &r);
        }
    }

    /// Inserts (or replaces, by `id`) an owner object as the API returns it
    /// (`id`, `email`, `firstName`, `lastName`, `userId`, `archived`, ...).
    /// Missing `archived`/`createdAt`/`updatedAt`/`type` are filled in.
    pub fn insert_owner(&self, owner: Value) {
        insert_owner(&mut self.st(), owner);
    }

    /// Sets deal properties and bumps `hs_lastmodifieddate`/`updatedAt` to the
    /// fake clock (or to the given `hs_lastmodifieddate`).
    pub fn update_deal(&self, id: &str, props: Value) {
        self.update("deals", id, props);
    }

    /// Like [`FakeHubSpot::update_deal`] for any object; null clears a value.
    pub fn update(&self, object: &str, id: &str, props: Value) {
        let mut st = self.st();
        let now = st.clock();
        let Some(ti) = st.table(object) else {
            return;
        };
        if st.tables[ti].rec(id).is_none() {
            return;
        }
        let mut updated = now;
        let mut sets = Vec::new();
        if let Value::Object(map) = props {
            for (k, v) in map {
                match k.as_str() {
                    "hs_object_id" => continue,
                    "createdate" => {
                        if let Some(ms) = json_scalar(&v).and_then(|s| parse_time(&s))
                            && let Some(r) = st.tables[ti].rec_mut(id)
                        {
                            r.created = ms;
                        }
                        continue;
                    }
                    "hs_lastmodifieddate" => {
                        if let Some(ms) = json_scalar(&v).and_then(|s| parse_time(&s)) {
                            updated = ms;
                        }
                        continue;
                    }
                    _ => {}
                }
                let pi = match st.tables[ti].prop_idx.get(&k) {
                    Some(&pi) => pi,
                    None => st.tables[ti].add_prop(&k, "string", "text", false, now),
                };
                let val = json_scalar(&v).map(|s| st.intern_val(ti, pi, &s));
                sets.push((pi, val));
            }
        }
        if let Some(rec) = st.tables[ti].rec_mut(id) {
            for (pi, v) in sets {
                rec.set(pi, v);
            }
            rec.updated = updated;
        }
    }

    /// Associates a deal with a company (both directions).
    pub fn associate(&self, deal: &str, company: &str) {
        let mut st = self.st();
        if let Some(ti) = st.table("deals") {
            st.associate(ti, deal, company);
        }
    }

    /// Archives a deal (HubSpot's soft delete): `archived=true` lists return
    /// it, default lists and search do not. Bumps `updatedAt`.
    pub fn archive_deal(&self, id: &str) {
        self.archive("deals", id);
    }

    pub fn archive(&self, object: &str, id: &str) {
        let mut st = self.st();
        let now = st.clock();
        let Some(ti) = st.table(object) else {
            return;
        };
        if let Some(rec) = st.tables[ti].rec_mut(id) {
            rec.archived = Some(now);
            rec.updated = now;
        }
    }

    /// Un-archives (restores) a record, bumping `updatedAt`.
    pub fn restore(&self, object: &str, id: &str) {
        let mut st = self.st();
        let now = st.clock();
        let Some(ti) = st.table(object) else {
            return;
        };
        if let Some(rec) = st.tables[ti].rec_mut(id) {
            rec.archived = None;
            rec.updated = now;
        }
    }

    /// A stored company (archived ones too) with every set property and its
    /// associations, as the API would render it.
    pub fn company(&self, id: &str) -> Option<Value> {
        self.object("companies", id)
    }

    pub fn deal(&self, id: &str) -> Option<Value> {
        self.object("deals", id)
    }

    pub fn object(&self, object: &str, id: &str) -> Option<Value> {
        let st = self.st();
        let t = &st.tables[st.table(object)?];
        Some(t.render_full(t.rec(id)?, self.inner.config.portal_id))
    }

    /// Stored records of an object (archived included); `owners` counts owners.
    pub fn count(&self, object: &str) -> usize {
        let st = self.st();
        if object == "owners" {
            return st.owners.len();
        }
        st.table(object).map_or(0, |ti| st.tables[ti].recs.len())
    }

    /// Defines a property (`type` one of `string`, `number`, `datetime`,
    /// `date`, `bool`, `enumeration`, ...); a no-op if it exists.
    pub fn add_property(&self, object: &str, name: &str, type_: &str) {
        let mut st = self.st();
        let now = st.clock();
        if let Some(ti) = st.table(object) {
            let ft = match type_ {
                "number" => "number",
                "datetime" | "date" => "date",
                "bool" => "booleancheckbox",
                "enumeration" => "select",
                _ => "text",
            };
            st.tables[ti].add_prop(name, type_, ft, false, now);
        }
    }

    pub fn property_names(&self, object: &str) -> Vec<String> {
        let st = self.st();
        st.table(object).map_or_else(Vec::new, |ti| {
            st.tables[ti].props.iter().map(|p| p.name.clone()).collect()
        })
    }

    /// Replaces the deal pipelines (default: [`Pipeline::default_sales`]).
    pub fn set_pipelines(&self, pipelines: Vec<Pipeline>) {
        self.st().pipelines = pipelines;
    }

    /// Sets the fake clock (timestamps of inserts/updates, token expiry).
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.st().now = Some(t.timestamp_millis());
    }

    /// Moves the fake clock forward (starting from real time if unset).
    pub fn advance_secs(&self, secs: i64) {
        let mut st = self.st();
        let now = st.clock();
        st.now = Some(now.saturating_add(secs.saturating_mul(1000)));
    }

    pub fn now(&self) -> DateTime<Utc> {
        let ms = self.st().clock();
        DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
    }

    // -- faults ------------------------------------------------------------

    /// Answers carry the fake clock as their `Date` header (the upstream's
    /// own clock, which the mirror's cursor follows) instead of real time.
    pub fn send_clock_as_date(&self, on: bool) {
        self.st().date_from_clock = on;
    }

    /// The next `n` authenticated data calls get this canned answer (JSON
    /// content type and rate headers included). Calls queue up.
    pub fn fail_next(&self, n: usize, status: u16, body: &str) {
        if n > 0 {
            self.st().fails.push_back((n, status, body.to_string()));
        }
    }

    /// The next `n` authenticated data calls whose `path?query` contains
    /// `pattern`, after the first `skip` of them pass (e.g. `after=` for a list's second page) get this canned
    /// answer; other calls pass. Patterns queue up.
    pub fn fail_matching(&self, pattern: &str, skip: usize, n: usize, status: u16, body: &str) {
        if n > 0 {
            self.st().fails_matching.push_back((
                pattern.to_string(),
                skip,
                n,
                status,
                body.to_string(),
            ));
        }
    }

    /// Every issued OAuth access token becomes invalid now (the private-app
    /// token is unaffected; see [`FakeHubSpot::revoke_private_token`]).
    pub fn expire_tokens(&self) {
        let mut st = self.st();
        st.tokens.clear();
        st.expire_after = None;
    }

    /// After `data_calls` more authenticated data calls (which succeed), all
    /// OAuth tokens become invalid. `0` expires them now.
    pub fn expire_tokens_after(&self, data_calls: usize) {
        let mut st = self.st();
        if data_calls == 0 {
            st.tokens.clear();
            st.expire_after = None;
        } else {
            st.expire_after = Some(data_calls);
        }
    }

    /// Makes the private-app token invalid (`true`) or valid again.
    pub fn revoke_private_token(&self, revoked: bool) {
        self.st().private_valid = !revoked;
    }

    /// Replaces the accepted refresh token (the old one stops working).
    pub fn set_refresh_token(&self, token: &str) {
        self.st().refresh_token = token.to_string();
    }

    /// The refresh token the fake currently accepts.
    pub fn current_refresh_token(&self) -> String {
        self.st().refresh_token.clone()
    }

    /// Limits every token to these scopes (`None`: all scopes). Calls that
    /// need another scope get 403 `MISSING_SCOPES`.
    pub fn set_scopes(&self, scopes: Option<&[&str]>) {
        self.st().scopes = scopes.map(|s| s.iter().map(|x| x.to_string()).collect());
    }

    /// Batch updates of these ids fail (207) with `VALIDATION_ERROR` until cleared.
    pub fn fail_updates_for(&self, ids: &[&str]) {
        self.fail_updates_with(ids, "VALIDATION_ERROR", "rejected by the fake");
    }

    /// Batch updates of these ids fail (207) with this category and message.
    pub fn fail_updates_with(&self, ids: &[&str], category: &str, message: &str) {
        let mut st = self.st();
        for id in ids {
            st.update_failures
                .insert(id.to_string(), (category.to_string(), message.to_string()));
        }
    }

    pub fn clear_update_failures(&self) {
        self.st().update_failures.clear();
    }

    /// 207 batch responses leave out `results` entirely.
    pub fn omit_results_in_207(&self, omit: bool) {
        self.st().omit_207_results = omit;
    }

    /// The daily budget has `n` calls left.
    pub fn set_daily_remaining(&self, n: u64) {
        let mut st = self.st();
        st.daily_used = st.daily_max.saturating_sub(n);
    }

    /// Calls used today.
    pub fn daily_used(&self) -> u64 {
        self.st().daily_used
    }

    pub fn set_rate_limits(&self, ten_secondly_max: u64, daily_max: u64) {
        let mut st = self.st();
        st.ten_secondly_max = ten_secondly_max;
        st.daily_max = daily_max;
    }

    /// Search requests allowed per rolling second (0 = unlimited).
    pub fn set_search_per_second(&self, n: u64) {
        self.st().search_per_second = n;
    }

    /// `Retry-After` seconds on 429s (`None`: no header, as HubSpot documents).
    pub fn set_retry_after(&self, secs: Option<u64>) {
        self.st().retry_after = secs;
    }

    /// Forgets the calls in the 10-second and search windows.
    pub fn reset_rate_window(&self) {
        let mut st = self.st();
        st.window.clear();
        st.search_window.clear();
    }

    /// The next `n` authenticated data calls get a 429 for `policy`.
    pub fn force_429(&self, policy: RatePolicy, n: usize) {
        if n > 0 {
            self.st().forced.push_back((n, policy));
        }
    }

    // -- observation -------------------------------------------------------

    pub fn calls(&self) -> Calls {
        self.st().calls
    }

    /// The last requests (up to 20,000), oldest first, token requests included.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.st().log.iter().cloned().collect()
    }

    /// Parsed bodies of batch update requests (up to the last 20,000).
    pub fn batch_bodies(&self) -> Vec<Value> {
        self.st().batch_bodies.iter().cloned().collect()
    }

    /// Parsed bodies of search requests (up to the last 20,000).
    pub fn search_bodies(&self) -> Vec<Value> {
        self.st().search_bodies.iter().cloned().collect()
    }

    /// Zeroes the call counts and clears the request log and bodies.
    pub fn reset_counts(&self) {
        let mut st = self.st();
        st.calls = Calls::default();
        st.log.clear();
        st.batch_bodies.clear();
        st.search_bodies.clear();
    }

    // -- request handling --------------------------------------------------

    fn respond(
        &self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Body> {
        let path = uri.path();
        let query = uri.query();
        let route = route(path);
        let body_text = String::from_utf8_lossy(body).into_owned();
        let mut st = self.st();
        let mut auth = None;
        let mut rate_headers = Vec::new();
        let mut retry_after = None;

        let reply = if route == Route::Token {
            st.calls.token += 1;
            if *method == Method::POST {
                self.token(&mut st, &body_text)
            } else {
                Reply::error(405, "METHOD_NOT_ALLOWED", "Use POST")
            }
        } else {
            let is_search = matches!(route, Route::Search(_));
            match &route {
                Route::List(t) if st.table(t).is_some_and(|i| st.tables[i].name == "deals") => {
                    st.calls.list_deals += 1
                }
                Route::List(_) => st.calls.list_companies += 1,
                Route::Object(..) => st.calls.read += 1,
                Route::Search(_) => st.calls.search += 1,
                Route::BatchUpdate(_) => st.calls.batch_update += 1,
                Route::BatchRead(_) => st.calls.batch_read += 1,
                Route::AssocBatchRead(..) => st.calls.assoc_read += 1,
                Route::Properties(_) | Route::Property(..) => st.calls.properties += 1,
                Route::Pipelines(_) | Route::Pipeline(..) => st.calls.pipelines += 1,
                Route::Owners | Route::Owner(_) => st.calls.owners += 1,
                Route::Other | Route::Token => st.calls.other += 1,
            }
            st.calls.total += 1;
            let now_ms = st.clock();
            let cfg = &self.inner.config;
            auth = bearer(headers).and_then(|t| {
                if t == cfg.private_app_token && st.private_valid {
                    Some(TokenKind::PrivateApp)
                } else if st.tokens.get(t).is_some_and(|&exp| exp > now_ms) {
                    Some(TokenKind::OAuth)
                } else {
                    None
                }
            });
            match auth {
                None => Reply::json(
                    401,
                    &json!({
                        "status": "error",
                        "message": AUTH_MESSAGE,
                        "correlationId": correlation_id(),
                        "category": "INVALID_AUTHENTICATION",
                    }),
                ),
                Some(kind) => {
                    if kind == TokenKind::OAuth
                        && let Some(k) = st.expire_after
                    {
                        if k <= 1 {
                            st.tokens.clear();
                            st.expire_after = None;
                        } else {
                            st.expire_after = Some(k - 1);
                        }
                    }
                    let reply = self.limited(&mut st, is_search);
                    let reply = match reply {
                        Some(r) => {
                            retry_after = st.retry_after;
                            r
                        }
                        None => match take_matching(
                            &mut st.fails_matching,
                            &format!("{path}?{}", query.unwrap_or("")),
                        ) {
                            Some((status, canned)) => Reply::raw(status, &canned),
                            None => self.authorized(&mut st, method, &route, query, body),
                        },
                    };
                    if !is_search || cfg.search_rate_headers {
                        rate_headers = st.rate_headers(kind);
                    }
                    if reply.status == 429 {
                        // Forced 429s report an exhausted budget.
                        for (name, v) in rate_headers.iter_mut() {
                            if *name == "x-hubspot-ratelimit-remaining"
                                && reply.body.windows(10).any(|w| w == b"TEN_SECOND")
                            {
                                *v = "0".into();
                            }
                            if *name == "x-hubspot-ratelimit-daily-remaining"
                                && reply.body.windows(7).any(|w| w == b"\"DAILY\"")
                            {
                                *v = "0".into();
                            }
                        }
                    }
                    reply
                }
            }
        };

        st.log(LoggedRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
            body: (*method != Method::GET).then_some(body_text),
            auth,
            status: reply.status,
        });
        let date = st.date_from_clock.then(|| st.clock());
        drop(st);

        let status =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = Response::new(Body::from(reply.body));
        *resp.status_mut() = status;
        if let Some(v) = date.and_then(http_date) {
            resp.headers_mut().insert(header::DATE, v);
        }
        if status != StatusCode::NO_CONTENT {
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf-8"),
            );
        }
        for (name, v) in rate_headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(name, v);
            }
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            && let Some(v) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }

    /// Forced 429s, then the real budgets; counts the call when it passes.
    fn limited(&self, st: &mut State, is_search: bool) -> Option<Reply> {
        if let Some((n, policy)) = st.forced.front_mut() {
            let policy = *policy;
            *n -= 1;
            if *n == 0 {
                st.forced.pop_front();
            }
            return Some(rate_limited(policy));
        }
        let now = Instant::now();
        st.prune_windows(now);
        if st.window.len() as u64 >= st.ten_secondly_max {
            return Some(rate_limited(RatePolicy::TenSecondlyRolling));
        }
        if st.daily_used >= st.daily_max {
            return Some(rate_limited(RatePolicy::Daily));
        }
        if is_search
            && st.search_per_second > 0
            && st.search_window.len() as u64 >= st.search_per_second
        {
            return Some(rate_limited(RatePolicy::SearchSecondly));
        }
        st.window.push_back(now);
        st.daily_used += 1;
        if is_search {
            st.search_window.push_back(now);
        }
        None
    }

    /// An authenticated, in-budget call: scopes, canned failures, then data.
    fn authorized(
        &self,
        st: &mut State,
        method: &Method,
        route: &Route,
        query: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let obj = match route {
            Route::List(t)
            | Route::Object(t, _)
            | Route::Search(t)
            | Route::BatchUpdate(t)
            | Route::BatchRead(t)
            | Route::AssocBatchRead(t, _)
            | Route::Properties(t)
            | Route::Property(t, _)
            | Route::Pipelines(t)
            | Route::Pipeline(t, _) => Some(t.as_str()),
            _ => None,
        };
        let ti = obj.and_then(|t| st.table(t));
        if let Some(scopes) = &st.scopes {
            let name = ti.map(|i| st.tables[i].name);
            if let Some(needed) = required_scope(route, method, name)
                && !scopes.contains(&needed)
            {
                return Reply::json(
                    403,
                    &json!({
                        "status": "error",
                        "message": "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
                        "correlationId": correlation_id(),
                        "errors": [{
                            "message": "One or more of the following scopes are required.",
                            "context": {"requiredGranularScopes": [needed]},
                        }],
                        "links": {"scopes": "https://developers.hubspot.com/scopes"},
                        "category": "MISSING_SCOPES",
                    }),
                );
            }
        }
        if let Some((n, status, canned)) = st.fails.front_mut() {
            let reply = Reply::raw(*status, canned);
            *n -= 1;
            if *n == 0 {
                st.fails.pop_front();
            }
            return reply;
        }
        if let (Some(t), None) = (obj, ti)
            && !matches!(route, Route::Pipelines(_) | Route::Pipeline(..))
        {
            return Reply::error(
                400,
                "VALIDATION_ERROR",
                &format!("Unable to infer object type from: {t}"),
            );
        }
        let form = parse_form(query.unwrap_or(""));
        let not_allowed =
            || Reply::error(405, "METHOD_NOT_ALLOWED", &format!("{method} not allowed"));
        let (is_get, is_post) = (*method == Method::GET, *method == Method::POST);
        match route {
            Route::List(_) if is_get => self.list(st, ti.unwrap_or(0), &form),
            Route::Object(_, id) if is_get => self.read_one(st, ti.unwrap_or(0), id, &form),
            Route::Object(_, id) if *method == Method::DELETE => {
                let now = st.clock();
                if let Some(rec) = st.tables[ti.unwrap_or(0)].rec_mut(id)
                    && rec.archived.is_none()
                {
                    rec.archived = Some(now);
                    rec.updated = now;
                }
                Reply::raw(204, "")
            }
            Route::Search(_) if is_post => self.search(st, ti.unwrap_or(0), body),
            Route::BatchUpdate(_) if is_post => self.batch_update(st, ti.unwrap_or(0), body),
            Route::BatchRead(_) if is_post => self.batch_read(st, ti.unwrap_or(0), &form, body),
            Route::AssocBatchRead(_, to) if is_post => {
                self.assoc_batch_read(st, ti.unwrap_or(0), to, body)
            }
            Route::Properties(_) if is_get => {
                let t = &st.tables[ti.unwrap_or(0)];
                let results: Vec<Value> = t.props.iter().map(render_prop).collect();
                Reply::json(200, &json!({ "results": results }))
            }
            Route::Properties(_) if is_post => self.create_property(st, ti.unwrap_or(0), body),
            Route::Property(_, name) if is_get => {
                let t = &st.tables[ti.unwrap_or(0)];
                match t.prop_idx.get(name.as_str()) {
                    Some(&pi) => Reply::json(200, &render_prop(&t.props[pi])),
                    None => Reply::error(
                        404,
                        "OBJECT_NOT_FOUND",
                        &format!("property {name} does not exist"),
                    ),
                }
            }
            Route::Pipelines(_) if is_get => {
                let results: Vec<Value> = if ti.is_some_and(|i| st.tables[i].name == "deals") {
                    st.pipelines.iter().map(render_pipeline).collect()
                } else {
                    Vec::new()
                };
                Reply::json(200, &json!({ "results": results }))
            }
            Route::Pipeline(_, id) if is_get => {
                let found = ti
                    .filter(|&i| st.tables[i].name == "deals")
                    .and_then(|_| st.pipelines.iter().find(|p| p.id == *id));
                match found {
                    Some(p) => Reply::json(200, &render_pipeline(p)),
                    None => Reply::error(
                        404,
                        "OBJECT_NOT_FOUND",
                        &format!("Unable to find pipeline {id}"),
                    ),
                }
            }
            Route::Owners if is_get => self.owners(st, &form),
            Route::Owner(id) if is_get => match st
                .owners
                .iter()
                .find(|o| o.get("id").and_then(json_scalar).as_deref() == Some(id.as_str()))
            {
                Some(o) => Reply::json(200, o),
                None => Reply::error(404, "OBJECT_NOT_FOUND", &format!("Owner {id} not found")),
            },
            Route::Other | Route::Token => Reply::error(
                404,
                "OBJECT_NOT_FOUND",
                "The requested resource does not exist",
            ),
            _ => not_allowed(),
        }
    }

    fn token(&self, st: &mut State, body: &str) -> Reply {
        let cfg = &self.inner.config;
        let form = parse_form(body);
        if form_get(&form, "grant_type") != Some("refresh_token") {
            return Reply::oauth("BAD_GRANT_TYPE", "missing or invalid grant type");
        }
        if form_get(&form, "client_id") != Some(cfg.client_id.as_str()) {
            return Reply::oauth("BAD_CLIENT_ID", "missing or unknown client id");
        }
        if form_get(&form, "client_secret") != Some(cfg.client_secret.as_str()) {
            return Reply::oauth("BAD_CLIENT_SECRET", "missing or invalid client secret");
        }
        if form_get(&form, "refresh_token") != Some(st.refresh_token.as_str()) {
            return Reply::oauth("BAD_REFRESH_TOKEN", "missing or unknown refresh token");
        }
        if cfg.rotate_refresh_tokens {
            st.refresh_counter += 1;
            st.refresh_token = format!("fake-hubspot-refresh-{}", st.refresh_counter);
        }
        let random: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(64)
            .map(char::from)
            .collect();
        let token = format!("CJfake{random}");
        let exp = st
            .clock()
            .saturating_add((cfg.access_token_ttl_secs as i64).saturating_mul(1000));
        st.tokens.insert(token.clone(), exp);
        Reply::json(
            200,
            &json!({
                "token_type": "bearer",
                "refresh_token": st.refresh_token,
                "access_token": token,
                "expires_in": cfg.access_token_ttl_secs,
            }),
        )
    }

    fn list(&self, st: &State, ti: usize, form: &[(String, String)]) -> Reply {
        let cfg = &self.inner.config;
        let table = &st.tables[ti];
        let limit = match form_get(form, "limit") {
            None => 10,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                Ok(n) if n > 100 && cfg.clamp_list_limit => 100,
                Ok(n) if n > 100 => {
                    return Reply::validation(&format!(
                        "limit must be less than or equal to 100, got {n}"
                    ));
                }
                _ => return Reply::validation(&format!("Invalid limit: '{s}'")),
            },
        };
        let start = match form_get(form, "after") {
            None | Some("") => 0,
            Some(a) => match decode_after(a) {
                Some(i) => i,
                None => return Reply::validation(&format!("Invalid after: '{a}'")),
            },
        };
        let archived = form_get(form, "archived").is_some_and(|a| a.eq_ignore_ascii_case("true"));
        let names = form_list(form, "properties");
        let props = table.select(names.as_deref());
        let assoc = form_list(form, "associations")
            .is_some_and(|a| a.iter().any(|x| x == table.assoc_name));
        let mut results = Vec::with_capacity(limit);
        let mut next = None;
        for (i, rec) in table.recs.iter().enumerate().skip(start) {
            if rec.archived.is_some() != archived {
                continue;
            }
            if results.len() == limit {
                next = Some(i);
                break;
            }
            results.push(table.render(rec, &props, assoc, cfg.portal_id));
        }
        let mut out = json!({ "results": results });
        if let Some(i) = next {
            out["paging"] = paging(&encode_after(i));
        }
        Reply::json(200, &out)
    }

    fn read_one(&self, st: &State, ti: usize, id: &str, form: &[(String, String)]) -> Reply {
        let table = &st.tables[ti];
        let archived = form_get(form, "archived").is_some_and(|a| a.eq_ignore_ascii_case("true"));
        let rec = match form_get(form, "idProperty") {
            Some(p) if p != "hs_object_id" => table.prop_idx.get(p).and_then(|&pi| {
                table
                    .recs
                    .iter()
                    .find(|r| r.get(pi).is_some_and(|v| **v == *id))
            }),
            _ => table.rec(id),
        };
        match rec {
            Some(rec) if rec.archived.is_some() == archived => {
                let names = form_list(form, "properties");
                let props = table.select(names.as_deref());
                let assoc = form_list(form, "associations")
                    .is_some_and(|a| a.iter().any(|x| x == table.assoc_name));
                Reply::json(
                    200,
                    &table.render(rec, &props, assoc, self.inner.config.portal_id),
                )
            }
            _ => Reply::json(
                404,
                &json!({
                    "status": "error",
                    "message": "Object not found.  objectId are usually numeric.",
                    "correlationId": correlation_id(),
                    "context": {"id": [id]},
                    "category": "OBJECT_NOT_FOUND",
                }),
            ),
        }
    }

    fn search(&self, st: &mut State, ti: usize, body: &[u8]) -> Reply {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Reply::validation("Invalid input JSON: expected an object"),
            Err(e) => return Reply::validation(&format!("Invalid input JSON on line 1: {e}")),
        };
        if st.search_bodies.len() >= LOG_CAP {
            st.search_bodies.pop_front();
        }
        st.search_bodies.push_back(v.clone());
        let table = &st.tables[ti];
        // Filters: at most 5 groups of 6, 18 in all.
        let groups = match v.get("filterGroups") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(g)) => g.clone(),
            Some(_) => return Reply::validation("filterGroups must be an array"),
        };
        if groups.len() > 5 {
            return Reply::validation(&format!(
                "Too many filter groups ({}). The maximum is 5.",
                groups.len()
            ));
        }
        let mut compiled: Vec<Vec<Filter>> = Vec::with_capacity(groups.len());
        let mut total_filters = 0;
        for g in &groups {
            let filters = match g.get("filters") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(f)) => f.clone(),
                Some(_) => return Reply::validation("filters must be an array"),
            };
            if filters.len() > 6 {
                return Reply::validation(&format!(
                    "Too many filters in a group ({}). The maximum is 6.",
                    filters.len()
                ));
            }
            total_filters += filters.len();
            let mut out = Vec::with_capacity(filters.len());
            for f in &filters {
                match compile_filter(table, f) {
                    Ok(f) => out.push(f),
                    Err(msg) => return Reply::validation(&msg),
                }
            }
            compiled.push(out);
        }
        if total_filters > 18 {
            return Reply::validation(&format!(
                "Too many filters ({total_filters}). The maximum is 18."
            ));
        }
        // Sort: the first of ["prop" | "-prop" | {"propertyName","direction"}].
        let sort = match v.get("sorts") {
            None | Some(Value::Null) => None,
            Some(Value::Array(s)) => match s.first() {
                None => None,
                Some(Value::String(name)) => match name.strip_prefix('-') {
                    Some(n) => Some((n.to_string(), true)),
                    None => Some((name.clone(), false)),
                },
                Some(Value::Object(o)) => {
                    let Some(name) = o.get("propertyName").and_then(Value::as_str) else {
                        return Reply::validation("sorts[0].propertyName is required");
                    };
                    let desc = match o.get("direction").and_then(Value::as_str) {
                        None | Some("ASCENDING") => false,
                        Some("DESCENDING") => true,
                        Some(d) => {
                            return Reply::validation(&format!("Invalid sort direction: {d}"));
                        }
                    };
                    Some((name.to_string(), desc))
                }
                Some(_) => return Reply::validation("Invalid sorts"),
            },
            Some(_) => return Reply::validation("sorts must be an array"),
        };
        let sort = match sort {
            Some((name, desc)) => match table.prop_idx.get(&name) {
                Some(&pi) => Some((pi, table.props[pi].kind, desc)),
                None => {
                    return Reply::validation(&format!(
                        "Property \"{name}\" does not exist and cannot be sorted on"
                    ));
                }
            },
            None => None,
        };
        let names: Option<Vec<String>> = match v.get("properties") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            ),
            Some(_) => return Reply::validation("properties must be an array"),
        };
        let limit = match v.get("limit") {
            None | Some(Value::Null) => 10,
            Some(l) => match l.as_u64() {
                Some(n) if n <= 200 => n as usize,
                Some(n) => {
                    return Reply::validation(&format!(
                        "limit must be less than or equal to 200, got {n}"
                    ));
                }
                None => return Reply::validation("limit must be a non-negative integer"),
            },
        };
        let after = match v.get("after") {
            None | Some(Value::Null) => 0,
            Some(a) => match json_scalar(a).and_then(|s| s.trim().parse::<usize>().ok()) {
                Some(n) => n,
                None => return Reply::validation(&format!("Invalid after: {a}")),
            },
        };
        if after >= SEARCH_CAP {
            return Reply::validation(&format!(
                "Search results are limited to {SEARCH_CAP} results. Cannot page past {SEARCH_CAP} (after={after})."
            ));
        }
        let text = v
            .get("query")
            .and_then(Value::as_str)
            .map(str::to_lowercase)
            .filter(|q| !q.trim().is_empty());

        // Matching rows.
        let mut matches: Vec<u32> = Vec::new();
        for (i, rec) in table.recs.iter().enumerate() {
            if rec.archived.is_some() {
                continue;
            }
            if !compiled.is_empty()
                && !compiled
                    .iter()
                    .any(|g| g.iter().all(|f| f.matches(table, rec)))
            {
                continue;
            }
            if let Some(q) = &text {
                let hit = rec
                    .vals
                    .iter()
                    .flatten()
                    .any(|s| s.to_lowercase().contains(q.as_str()))
                    || rec.id.contains(q.as_str());
                if !hit {
                    continue;
                }
            }
            matches.push(i as u32);
        }
        let total = matches.len();
        // Order: the sort property (nulls last), then id; only the rows up
        // to `after + limit` are fully sorted.
        let desc = sort.is_some_and(|s| s.2);
        let mut rows: Vec<(Option<Key>, &str, u32)> = matches
            .into_iter()
            .map(|i| {
                let rec = &table.recs[i as usize];
                let k = sort.and_then(|(pi, kind, _)| rec_key(table, rec, pi, kind));
                (k, &*rec.id, i)
            })
            .collect();
        let cmp = |a: &(Option<Key>, &str, u32), b: &(Option<Key>, &str, u32)| {
            use std::cmp::Ordering::*;
            let o = match (&a.0, &b.0) {
                (None, None) => Equal,
                (None, Some(_)) => Greater,
                (Some(_), None) => Less,
                (Some(x), Some(y)) => {
                    let o = cmp_key(x, y).unwrap_or(Equal);
                    if desc { o.reverse() } else { o }
                }
            };
            o.then_with(|| cmp_id(a.1, b.1))
        };
        let end = after.saturating_add(limit).min(total);
        if end < rows.len() && end > 0 {
            rows.select_nth_unstable_by(end, cmp);
            rows.truncate(end);
        }
        if end == 0 {
            rows.clear();
        }
        rows.sort_unstable_by(cmp);
        let props = table.select(names.as_deref());
        let portal = self.inner.config.portal_id;
        let results: Vec<Value> = rows
            .iter()
            .skip(after)
            .map(|&(_, _, i)| {
                let mut o = table.render(&table.recs[i as usize], &props, false, portal);
                if let Value::Object(m) = &mut o {
                    m.remove("url");
                }
                o
            })
            .collect();
        let mut out = json!({"total": total, "results": results});
        if limit > 0 && end < total {
            out["paging"] = json!({"next": {"after": end.to_string()}});
        }
        Reply::json(200, &out)
    }

    fn batch_update(&self, st: &mut State, ti: usize, body: &[u8]) -> Reply {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Reply::validation(&format!("Invalid input JSON on line 1: {e}")),
        };
        if st.batch_bodies.len() >= LOG_CAP {
            st.batch_bodies.pop_front();
        }
        st.batch_bodies.push_back(v.clone());
        let Some(inputs) = v.get("inputs").and_then(Value::as_array) else {
            return Reply::validation("Invalid input JSON: 'inputs' must be an array");
        };
        if inputs.is_empty() {
            return Reply::validation("inputs must not be empty");
        }
        if inputs.len() > 100 {
            return Reply::validation(&format!(
                "The maximum number of inputs supported in a batch request is 100, but {} were provided",
                inputs.len()
            ));
        }
        let now = st.clock();
        let table = &st.tables[ti];
        // Validate the whole request first, as HubSpot does.
        let mut invalid: Vec<Value> = Vec::new();
        let mut ids: Vec<String> = Vec::with_capacity(inputs.len());
        let mut plans: Vec<Vec<(usize, Option<String>)>> = Vec::with_capacity(inputs.len());
        for input in inputs {
            let Some(id) = input.get("id").and_then(json_scalar) else {
                return Reply::validation("Invalid input JSON: every input needs an 'id'");
            };
            let props = match input.get("properties") {
                Some(Value::Object(p)) => p,
                _ => {
                    return Reply::validation(
                        "Invalid input JSON: every input needs a 'properties' object",
                    );
                }
            };
            let mut sets = Vec::with_capacity(props.len());
            for (k, val) in props {
                let bad = |error: &str, message: String| {
                    json!({
                        "isValid": false,
                        "message": message,
                        "error": error,
                        "name": k,
                        "localizedErrorMessage": message,
                    })
                };
                let Some(&pi) = table.prop_idx.get(k.as_str()) else {
                    invalid.push(bad(
                        "PROPERTY_DOESNT_EXIST",
                        format!("Property \"{k}\" does not exist"),
                    ));
                    continue;
                };
                let def = &table.props[pi];
                if def.read_only {
                    invalid.push(bad(
                        "READ_ONLY_VALUE",
                        format!("\"{k}\" is a read only property; its value cannot be set."),
                    ));
                    continue;
                }
                if matches!(val, Value::Array(_) | Value::Object(_)) {
                    invalid.push(bad(
                        "INVALID_OPTION",
                        format!("{} was not a valid value for {k}", val),
                    ));
                    continue;
                }
                let s = json_scalar(val).filter(|s| !s.is_empty());
                let ok = match (&s, def.kind) {
                    (None, _) => true,
                    (Some(s), PKind::Num) => s.trim().parse::<f64>().is_ok_and(f64::is_finite),
                    (Some(s), PKind::Time) => parse_time(s).is_some(),
                    (Some(s), PKind::Bool) => s == "true" || s == "false",
                    (Some(_), PKind::Str) => true,
                };
                if !ok {
                    let error = match def.kind {
                        PKind::Num => "INVALID_FLOAT",
                        PKind::Time => "INVALID_DATE",
                        _ => "INVALID_OPTION",
                    };
                    invalid.push(bad(
                        error,
                        format!(
                            "{} was not a valid {} for {k}",
                            s.unwrap_or_default(),
                            def.type_
                        ),
                    ));
                    continue;
                }
                let s = match (s, def.kind) {
                    (Some(s), PKind::Time) if def.type_ == "datetime" => {
                        parse_time(&s).map(fmt_time)
                    }
                    (s, _) => s,
                };
                sets.push((pi, s));
            }
            ids.push(id);
            plans.push(sets);
        }
        if !invalid.is_empty() {
            let list = serde_json::to_string(&invalid).unwrap_or_default();
            return Reply::validation(&format!("Property values were not valid: {list}"));
        }
        let mut seen = HashSet::new();
        let dups: Vec<&String> = ids.iter().filter(|id| !seen.insert(id.as_str())).collect();
        if !dups.is_empty() {
            return Reply::validation(&format!("Duplicate IDs found in batch input: {dups:?}"));
        }
        let upper = table.upper;
        let mut missing = Vec::new();
        let mut errors = Vec::new();
        let mut results = Vec::new();
        let portal = self.inner.config.portal_id;
        for (id, sets) in ids.into_iter().zip(plans) {
            let exists = st.tables[ti].rec(&id).is_some_and(|r| r.archived.is_none());
            if !exists {
                missing.push(id);
                continue;
            }
            if let Some((category, message)) = st.update_failures.get(&id) {
                errors.push(json!({
                    "status": "error",
                    "category": category,
                    "message": message,
                    "context": {"ids": [id]},
                    "errors": [],
                }));
                continue;
            }
            let vals: Vec<(usize, Option<Arc<str>>)> = sets
                .iter()
                .map(|(pi, s)| (*pi, s.as_deref().map(|s| st.intern_val(ti, *pi, s))))
                .collect();
            let table = &mut st.tables[ti];
            if let Some(rec) = table.rec_mut(&id) {
                for (pi, v) in vals {
                    rec.set(pi, v);
                }
                rec.updated = now;
            }
            let table = &st.tables[ti];
            if let Some(rec) = table.rec(&id) {
                let mut props: Vec<usize> = vec![P_CREATED, P_MODIFIED, P_ID];
                props.extend(sets.iter().map(|(pi, _)| *pi));
                let mut o = table.render(rec, &props, false, portal);
                if let Value::Object(m) = &mut o {
                    m.remove("url");
                }
                results.push(o);
            }
        }
        if !missing.is_empty() {
            errors.insert(
                0,
                json!({
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": format!("Could not get some {upper} objects, they may be deleted or not exist. Check that ids are valid."),
                    "context": {"ids": missing},
                    "errors": [],
                }),
            );
        }
        batch_reply(st, results, errors, now)
    }

    fn batch_read(
        &self,
        st: &mut State,
        ti: usize,
        form: &[(String, String)],
        body: &[u8],
    ) -> Reply {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Reply::validation(&format!("Invalid input JSON on line 1: {e}")),
        };
        let Some(inputs) = v.get("inputs").and_then(Value::as_array) else {
            return Reply::validation("Invalid input JSON: 'inputs' must be an array");
        };
        if inputs.len() > 100 {
            return Reply::validation(&format!(
                "The maximum number of inputs supported in a batch request is 100, but {} were provided",
                inputs.len()
            ));
        }
        let archived = form_get(form, "archived").is_some_and(|a| a.eq_ignore_ascii_case("true"));
        let names: Option<Vec<String>> = v.get("properties").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        });
        let now = st.clock();
        let table = &st.tables[ti];
        let props = table.select(names.as_deref());
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for input in inputs {
            let Some(id) = input.get("id").and_then(json_scalar) else {
                return Reply::validation("Invalid input JSON: every input needs an 'id'");
            };
            match table.rec(&id) {
                Some(rec) if rec.archived.is_some() == archived => {
                    let mut o = table.render(rec, &props, false, self.inner.config.portal_id);
                    if let Value::Object(m) = &mut o {
                        m.remove("url");
                    }
                    results.push(o);
                }
                _ => missing.push(id),
            }
        }
        let mut errors = Vec::new();
        if !missing.is_empty() {
            errors.push(json!({
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", table.upper),
                "context": {"ids": missing},
                "errors": [],
            }));
        }
        batch_reply(st, results, errors, now)
    }

    /// Associations v4 batch read: each input's associated ids in the other
    /// table, primary (typeId 5 for deal -> company) first, ids as numbers
    /// as HubSpot's examples show them.
    fn assoc_batch_read(&self, st: &mut State, ti: usize, to: &str, body: &[u8]) -> Reply {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Reply::validation(&format!("Invalid input JSON on line 1: {e}")),
        };
        let Some(inputs) = v.get("inputs").and_then(Value::as_array) else {
            return Reply::validation("Invalid input JSON: 'inputs' must be an array");
        };
        if inputs.len() > 1000 {
            return Reply::validation("The maximum number of inputs supported is 1000");
        }
        let table = &st.tables[ti];
        if table.assoc_name != to {
            return Reply::validation(&format!("unknown association {} -> {to}", table.upper));
        }
        let now = st.clock();
        let mut results = Vec::new();
        for input in inputs {
            let Some(id) = input.get("id").and_then(json_scalar) else {
                return Reply::validation("Invalid input JSON: every input needs an 'id'");
            };
            let Some(rec) = table.rec(&id) else { continue };
            let to: Vec<Value> = rec
                .assoc
                .iter()
                .enumerate()
                .map(|(i, other)| {
                    let id: Value = other
                        .parse::<u64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::String(other.to_string()));
                    let mut types =
                        vec![json!({"category": "HUBSPOT_DEFINED", "typeId": 341, "label": null})];
                    if i == 0 {
                        types.insert(
                            0,
                            json!({"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"}),
                        );
                    }
                    json!({"toObjectId": id, "associationTypes": types})
                })
                .collect();
            results.push(json!({"from": {"id": id}, "to": to}));
        }
        batch_reply(st, results, Vec::new(), now)
    }

    fn create_property(&self, st: &mut State, ti: usize, body: &[u8]) -> Reply {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Reply::validation("Invalid input JSON: expected an object"),
            Err(e) => return Reply::validation(&format!("Invalid input JSON on line 1: {e}")),
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let missing: Vec<&str> = ["name", "label", "type", "fieldType", "groupName"]
            .into_iter()
            .filter(|k| field(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Reply::validation(&format!("Missing required fields: {}", missing.join(", ")));
        }
        let name = field("name").unwrap_or_default();
        let type_ = field("type").unwrap_or_default();
        let field_type = field("fieldType").unwrap_or_default();
        const TYPES: &[&str] = &[
            "bool",
            "date",
            "datetime",
            "enumeration",
            "number",
            "phone_number",
            "string",
        ];
        const FIELD_TYPES: &[&str] = &[
            "booleancheckbox",
            "calculation_equation",
            "checkbox",
            "date",
            "file",
            "html",
            "number",
            "phonenumber",
            "radio",
            "select",
            "text",
            "textarea",
        ];
        if !TYPES.contains(&type_) {
            return Reply::validation(&format!("Invalid type: {type_}"));
        }
        if !FIELD_TYPES.contains(&field_type) {
            return Reply::validation(&format!("Invalid fieldType: {field_type}"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || !name.as_bytes()[0].is_ascii_lowercase()
        {
            return Reply::validation(&format!(
                "Property name '{name}' must start with a lowercase letter and contain only lowercase letters, digits and underscores"
            ));
        }
        let now = st.clock();
        let table = &mut st.tables[ti];
        if table.prop_idx.contains_key(name) {
            return Reply::error(
                409,
                "OBJECT_ALREADY_EXISTS",
                &format!("Property named '{name}' already exists."),
            );
        }
        let pi = table.add_prop(name, type_, field_type, false, now);
        let def = &mut table.props[pi];
        def.label = field("label").unwrap_or_default().to_string();
        def.group = field("groupName").unwrap_or_default().to_string();
        let mut out = render_prop(def);
        if let Some(d) = field("description") {
            out["description"] = Value::String(d.to_string());
        }
        Reply::json(201, &out)
    }

    fn owners(&self, st: &State, form: &[(String, String)]) -> Reply {
        let limit = match form_get(form, "limit") {
            None => 100,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n.min(500),
                _ => return Reply::validation(&format!("Invalid limit: '{s}'")),
            },
        };
        let start = match form_get(form, "after") {
            None | Some("") => 0,
            Some(a) => match decode_after(a) {
                Some(i) => i,
                None => return Reply::validation(&format!("Invalid after: '{a}'")),
            },
        };
        let archived = form_get(form, "archived").is_some_and(|a| a.eq_ignore_ascii_case("true"));
        let email = form_get(form, "email");
        let mut results = Vec::new();
        let mut next = None;
        for (i, o) in st.owners.iter().enumerate().skip(start) {
            if o.get("archived").and_then(Value::as_bool).unwrap_or(false) != archived {
                continue;
            }
            if let Some(e) = email
                && !o
                    .get("email")
                    .and_then(Value::as_str)
                    .is_some_and(|x| x.eq_ignore_ascii_case(e))
            {
                continue;
            }
            if results.len() == limit {
                next = Some(i);
                break;
            }
            results.push(o.clone());
        }
        let mut out = json!({ "results": results });
        if let Some(i) = next {
            out["paging"] = paging(&encode_after(i));
        }
        Reply::json(200, &out)
    }
}

fn insert_owner(st: &mut State, owner: Value) {
    let Value::Object(mut o) = owner else {
        return;
    };
    let now = fmt_time(st.clock());
    let id = match o.get("id").and_then(json_scalar) {
        Some(id) => id,
        None => {
            let id = format!("{}", 70_000_000 + st.next_id);
            st.next_id += 1;
            id
        }
    };
    o.insert("id".into(), Value::String(id.clone()));
    o.entry("type").or_insert_with(|| json!("PERSON"));
    o.entry("archived").or_insert(Value::Bool(false));
    o.entry("createdAt")
        .or_insert_with(|| Value::String(now.clone()));
    o.entry("updatedAt").or_insert_with(|| Value::String(now));
    let owner = Value::Object(o);
    match st
        .owners
        .iter_mut()
        .find(|x| x.get("id").and_then(json_scalar).as_deref() == Some(id.as_str()))
    {
        Some(slot) => *slot = owner,
        None => st.owners.push(owner),
    }
}

fn batch_reply(st: &State, results: Vec<Value>, errors: Vec<Value>, now: i64) -> Reply {
    let stamp = fmt_time(now);
    if errors.is_empty() {
        return Reply::json(
            200,
            &json!({
                "status": "COMPLETE",
                "results": results,
                "startedAt": stamp,
                "completedAt": stamp,
            }),
        );
    }
    let mut out = json!({
        "status": "COMPLETE",
        "numErrors": errors.len(),
        "errors": errors,
        "startedAt": stamp,
        "completedAt": stamp,
    });
    if !st.omit_207_results {
        out["results"] = Value::Array(results);
    }
    Reply::json(207, &out)
}

fn rate_limited(policy: RatePolicy) -> Reply {
    let (message, name, group) = match policy {
        RatePolicy::TenSecondlyRolling => (
            "You have reached your ten_secondly_rolling limit.",
            "TEN_SECONDLY_ROLLING",
            "publicapi",
        ),
        RatePolicy::Daily => ("You have reached your daily limit.", "DAILY", "publicapi"),
        RatePolicy::SearchSecondly => (
            "You have reached your secondly limit.",
            "SECONDLY",
            "publicapi:crm-search",
        ),
    };
    Reply::json(
        429,
        &json!({
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": correlation_id(),
            "policyName": name,
            "groupName": group,
            "requestId": correlation_id(),
        }),
    )
}

fn compile_filter(table: &Table, f: &Value) -> Result<Filter, String> {
    let Some(name) = f.get("propertyName").and_then(Value::as_str) else {
        return Err("filter.propertyName is required".into());
    };
    let op_name = f.get("operator").and_then(Value::as_str).unwrap_or("EQ");
    let Some(op) = Op::of(op_name) else {
        return Err(format!("Invalid filter operator: {op_name}"));
    };
    let Some(&pi) = table.prop_idx.get(name) else {
        return Err(format!(
            "There was a problem with the request. Property \"{name}\" does not exist"
        ));
    };
    let kind = table.props[pi].kind;
    let key = |v: &Value| -> Result<Key, String> {
        let s = json_scalar(v).ok_or_else(|| format!("Invalid value for {name}: {v}"))?;
        to_key(kind, &s).ok_or_else(|| format!("Invalid value for {name}: {s}"))
    };
    let mut vals = Vec::new();
    let mut high = None;
    let mut token = String::new();
    match op {
        Op::Has | Op::NotHas => {}
        Op::In | Op::NotIn => {
            let Some(arr) = f.get("values").and_then(Value::as_array) else {
                return Err(format!("{op_name} needs 'values'"));
            };
            for v in arr {
                vals.push(key(v)?);
            }
        }
        Op::Contains | Op::NotContains => {
            token = f
                .get("value")
                .and_then(json_scalar)
                .ok_or_else(|| format!("{op_name} needs 'value'"))?
                .to_lowercase();
        }
        _ => {
            let v = f
                .get("value")
                .ok_or_else(|| format!("{op_name} needs 'value'"))?;
            vals.push(key(v)?);
            if op == Op::Between {
                let h = f
                    .get("highValue")
                    .ok_or_else(|| "BETWEEN needs 'highValue'".to_string())?;
                high = Some(key(h)?);
            }
        }
    }
    Ok(Filter {
        pi,
        kind,
        op,
        vals,
        high,
        token,
    })
}

fn render_prop(p: &PropDef) -> Value {
    let stamp = fmt_time(p.created);
    let mut o = json!({
        "name": p.name,
        "label": p.label,
        "type": p.type_,
        "fieldType": p.field_type,
        "description": "",
        "groupName": p.group,
        "options": [],
        "displayOrder": -1,
        "calculated": false,
        "externalOptions": false,
        "hasUniqueValue": p.name == "hs_object_id",
        "hidden": false,
        "modificationMetadata": {
            "archivable": !p.hubspot_defined,
            "readOnlyDefinition": p.hubspot_defined,
            "readOnlyValue": p.read_only,
        },
        "formField": !p.read_only,
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": false,
    });
    if p.hubspot_defined {
        o["hubspotDefined"] = Value::Bool(true);
    }
    o
}

fn render_pipeline(p: &Pipeline) -> Value {
    let stamp = "2020-01-01T00:00:00.000Z";
    let stages: Vec<Value> = p
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let closed = if s.is_closed { "true" } else { "false" };
            json!({
                "id": s.id,
                "label": s.label,
                "displayOrder": i,
                "metadata": {
                    "isClosed": closed,
                    "probability": format!("{:?}", s.probability),
                },
                "createdAt": stamp,
                "updatedAt": stamp,
                "archived": false,
            })
        })
        .collect();
    json!({
        "id": p.id,
        "label": p.label,
        "displayOrder": 0,
        "stages": stages,
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": false,
    })
}
