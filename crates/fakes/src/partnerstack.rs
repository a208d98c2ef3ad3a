//! An in-process, stateful fake of the PartnerStack Vendor API v2 for
//! integration tests. Wire shapes follow
//! `/work/shared/reference/prm-and-dealreg.md` §1.1 and PartnerStack's public
//! reference (docs.partnerstack.com/reference).
//!
//! # What it serves (all under `/api/v2`, all `GET`)
//!
//! - `/partnerships`, `/deals`, `/leads`, `/groups`: lists in the envelope
//!   `{"data": {"items": [...], "has_more": bool}, "message": "Page returned
//!   successfully", "status": 200}`.
//! - `/partnerships/{key}`, `/deals/{key}` (also by `external_key`, as the
//!   vendor's "update a deal" path allows), `/leads/{key}`, `/groups/{key}`:
//!   `{"data": {...}, "message": "...", "status": 200}`.
//! - Errors use `{"message": "...", "status": 4xx|5xx}`: 401 (missing or
//!   wrong Basic credentials), 400 (bad parameters), 404 (unknown path or key),
//!   405 (a method other than GET), 429 (over the per-second budget).
//!
//! There is no team-member endpoint: PartnerStack documents none (the
//! reference's open question). Reps are only visible as `team`/`team_member`
//! objects on deals.
//!
//! # Paging and ordering
//!
//! `limit` 1..=250 (default 10; anything else, or a non-integer, is a 400).
//! `starting_after=<key>` returns the items after that item, `ending_before=<key>`
//! the `limit` items just before it; both at once is a 400, and so is a key the
//! fake does not hold. `has_more` says whether more items lie beyond the page in
//! the direction of travel. An empty value counts as absent.
//!
//! Items are ordered by `(created_at, key)` ascending (newest last) so that
//! paging is stable while records are updated. `FakeConfig::newest_first`
//! flips the default to descending (a secondary source says partnerships come
//! newest first). `/partnerships` also takes `order_by` =
//! `created_at | -created_at | updated_at | -updated_at` (documented there);
//! the tie-break is always `key`. A cursor is placed by the cursor item's own
//! position, so it still works after that item stops matching a filter.
//!
//! # Filters
//!
//! `min_updated`, `max_updated`, `min_created`, `max_created` (epoch ms, both
//! bounds inclusive; non-integers are a 400) on `/deals`, `/leads`,
//! `/partnerships`; `partner_key` and `group` (matches `group_key`) on `/deals`;
//! `include_archived` (`true|false|1|0`) on `/partnerships`: archived ones are
//! hidden by default. Other parameters are ignored, as are filters on endpoints
//! that do not take them.
//!
//! # Records
//!
//! Records are stored as the JSON objects given, verbatim, plus: `key` when
//! missing (`part_`/`deal_`/`lead_`/`group_` + a sequence number + random
//! letters, so keys sort in insertion order), `created_at`/`updated_at` set to the fake
//! clock when missing or not integers, and `archived: false` (partnerships,
//! groups) and `default: false` (groups) when missing. All timestamps are epoch
//! milliseconds. `sample_*` build realistic records. Per PartnerStack's
//! reference, deal `amount` is an integer in **cents**, `close_date` is
//! `YYYY-MM-DD`, `stage` is a per-group configurable string, and `source` is
//! `"partner"` or `"vendor"`. The reference documents `fields` as an *array of
//! objects* and `field_data` as an object (deprecated); the samples put the
//! custom fields (`approved_at`, `expires_at`) in an object under both `fields`
//! and `field_data` (the brief's shape); a client should tolerate either.
//!
//! # Rust API
//!
//! ```text
//! FakePartnerStack::start(FakeConfig) -> FakePartnerStack            (async)
//! FakePartnerStack::start_on(FakeConfig, SocketAddr) -> io::Result<_> (async)
//! url() -> "http://127.0.0.1:PORT/api/v2"   origin() -> "http://127.0.0.1:PORT"
//! config() -> &FakeConfig
//! insert(Resource, Value) -> String (key; an existing key is replaced)
//! insert_many(Resource, impl IntoIterator<Item = Value>) -> Vec<String>
//! insert_partnership / insert_deal / insert_lead / insert_group(Value) -> String
//! update(Resource, key, patch) -> bool      update_deal(key, patch) -> bool
//!     (objects merge recursively, other values replace; `key` is kept;
//!      `updated_at` becomes the fake clock unless the patch sets it)
//! archive_partnership(key) -> bool (archived = true, updated_at bumped)
//! remove(Resource, key) -> bool   get(Resource, key) -> Option<Value>
//! all(Resource) -> Vec<Value> (by created_at, key)   count(Resource) -> usize
//! set_now(ms)  advance(ms)  now() -> i64   (the clock is real time until set)
//! set_rate_limit(Option<u32>)  set_retry_after(Option<u64>)
//! fail_next(n, status, body)   (after auth; queued; 429s get Retry-After)
//! fail_matching(pattern, skip, n, status, body)   (the calls whose path?query holds pattern)
//! send_clock_as_date(bool)     (the fake clock as the Date header)
//! calls() -> Calls   requests() -> Vec<LoggedRequest>   reset_counts()
//! sample_partnership(n) / sample_deal(n, partner_key) / sample_lead(n, partner_key)
//!     / sample_group(n) -> Value
//! ```
//!
//! Order of checks per request: rate limit (429), auth (401), injected
//! fault, then routing. Every request is counted and logged.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use rand::Rng as _;
use serde_json::{Map, Value, json};

use crate::shared::{basic_credentials as basic, http_date, parse_form, pct_decode};

/// The largest request body read. This fake answers from the method, the
/// path and the headers; a body is read and dropped.
const MAX_BODY: usize = 1 << 20;

/// How many logged requests are kept (oldest dropped).
const LOG_CAP: usize = 20_000;
const MAX_LIMIT: usize = 250;
const DEFAULT_LIMIT: usize = 10;
const PAGE_MESSAGE: &str = "Page returned successfully";
const BASE: &str = "/api/v2";

/// Configuration of a [`FakePartnerStack`].
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// The Basic-auth username.
    pub public_key: String,
    /// The Basic-auth password.
    pub secret_key: String,
    /// Requests allowed per one-second window (`None`: unlimited).
    pub rate_limit_per_sec: Option<u32>,
    /// `Retry-After` seconds sent with 429s (`None`: no header).
    pub retry_after_secs: Option<u64>,
    /// Lists default to newest first (`created_at` descending).
    pub newest_first: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            public_key: "pk_test_fake".into(),
            secret_key: "sk_test_fake".into(),
            rate_limit_per_sec: None,
            retry_after_secs: Some(1),
            newest_first: false,
        }
    }
}

/// The resources the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    Partnerships,
    Deals,
    Leads,
    Groups,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Partnerships,
        Resource::Deals,
        Resource::Leads,
        Resource::Groups,
    ];

    /// The path segment, e.g. `"deals"`.
    pub fn path(self) -> &'static str {
        match self {
            Resource::Partnerships => "partnerships",
            Resource::Deals => "deals",
            Resource::Leads => "leads",
            Resource::Groups => "groups",
        }
    }

    fn of(seg: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.path() == seg)
    }

    fn prefix(self) -> &'static str {
        match self {
            Resource::Partnerships => "part",
            Resource::Deals => "deal",
            Resource::Leads => "lead",
            Resource::Groups => "group",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Resource::Partnerships => "Partnership",
            Resource::Deals => "Deal",
            Resource::Leads => "Lead",
            Resource::Groups => "Group",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn time_filters(self) -> bool {
        !matches!(self, Resource::Groups)
    }
}

/// Request counts. Per-resource counts include single-record GETs and
/// requests answered 401/429 or with an injected fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    pub partnerships: usize,
    pub deals: usize,
    pub leads: usize,
    pub groups: usize,
    /// Paths that match no resource.
    pub other: usize,
    pub total: usize,
    pub unauthorized: usize,
    pub rate_limited: usize,
    /// Answered by `fail_next`.
    pub injected: usize,
}

impl Calls {
    pub fn of(&self, r: Resource) -> usize {
        match r {
            Resource::Partnerships => self.partnerships,
            Resource::Deals => self.deals,
            Resource::Leads => self.leads,
            Resource::Groups => self.groups,
        }
    }

    fn bump(&mut self, r: Resource) {
        match r {
            Resource::Partnerships => self.partnerships += 1,
            Resource::Deals => self.deals += 1,
            Resource::Leads => self.leads += 1,
            Resource::Groups => self.groups += 1,
        }
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub status: u16,
}

/// The fake server. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct FakePartnerStack {
    inner: Arc<Inner>,
}

struct Inner {
    origin: String,
    config: FakeConfig,
    state: Mutex<State>,
}

// ---------------------------------------------------------------------------
// Storage

type Record = Map<String, Value>;

#[derive(Default)]
struct Table {
    /// `(created_at, key)` -> record: the default list order.
    rows: BTreeMap<(i64, String), Record>,
    /// key -> created_at.
    index: HashMap<String, i64>,
}

impl Table {
    fn get(&self, key: &str) -> Option<&Record> {
        let created = *self.index.get(key)?;
        self.rows.get(&(created, key.to_string()))
    }

    fn remove(&mut self, key: &str) -> Option<Record> {
        let created = self.index.remove(key)?;
        self.rows.remove(&(created, key.to_string()))
    }

    /// `rec` must hold a string `key` and an integer `created_at`.
    fn put(&mut self, rec: Record) {
        let key = rec.get("key").and_then(Value::as_str).unwrap_or_default();
        let key = key.to_string();
        let created = ms_of(&rec, "created_at");
        self.remove(&key);
        self.index.insert(key.clone(), created);
        self.rows.insert((created, key), rec);
    }
}

fn ms_of(rec: &Record, field: &str) -> i64 {
    rec.get(field).and_then(Value::as_i64).unwrap_or(0)
}

fn str_of<'a>(rec: &'a Record, field: &str) -> Option<&'a str> {
    rec.get(field).and_then(Value::as_str)
}

/// Objects merge recursively; anything else (null included) replaces.
fn merge(target: &mut Record, patch: Record) {
    for (k, v) in patch {
        match (target.get_mut(&k), v) {
            (Some(Value::Object(t)), Value::Object(p)) => merge(t, p),
            (_, v) => {
                target.insert(k, v);
            }
        }
    }
}

struct Fail {
    left: usize,
    status: u16,
    body: String,
}

struct State {
    tables: [Table; 4],
    now: Option<i64>,
    seq: u64,
    rate_limit: Option<u32>,
    retry_after: Option<u64>,
    newest_first: bool,
    /// Start of the current one-second window and requests admitted in it.
    window: Option<(Instant, u32)>,
    fails: VecDeque<Fail>,
    /// Canned answers for the next calls whose `path?query` contains the pattern.
    fails_matching: VecDeque<(String, usize, Fail)>,
    date_from_clock: bool,
    calls: Calls,
    log: VecDeque<LoggedRequest>,
}

impl State {
    fn new(config: &FakeConfig) -> State {
        State {
            tables: Default::default(),
            now: None,
            seq: 0,
            rate_limit: config.rate_limit_per_sec,
            retry_after: config.retry_after_secs,
            newest_first: config.newest_first,
            window: None,
            fails: VecDeque::new(),
            fails_matching: VecDeque::new(),
            date_from_clock: false,
            calls: Calls::default(),
            log: VecDeque::new(),
        }
    }

    fn table(&self, r: Resource) -> &Table {
        &self.tables[r.index()]
    }

    fn table_mut(&mut self, r: Resource) -> &mut Table {
        &mut self.tables[r.index()]
    }

    fn now_ms(&self) -> i64 {
        self.now
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
    }

    fn new_key(&mut self, r: Resource) -> String {
        self.seq += 1;
        let random: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(8)
            .map(char::from)
            .collect();
        format!("{}_{:06}{random}", r.prefix(), self.seq)
    }

    /// Fills `key`, timestamps and per-resource defaults.
    fn normalize(&mut self, r: Resource, rec: Value) -> Record {
        let mut m = match rec {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let now = self.now_ms();
        if str_of(&m, "key").is_none_or(|k| k.is_empty()) {
            let key = self.new_key(r);
            m.insert("key".into(), Value::String(key));
        }
        for field in ["created_at", "updated_at"] {
            if m.get(field).and_then(Value::as_i64).is_none() {
                m.insert(field.into(), json!(now));
            }
        }
        let defaults: &[(&str, Value)] = match r {
            Resource::Partnerships => &[("archived", Value::Bool(false))],
            Resource::Groups => &[
                ("archived", Value::Bool(false)),
                ("default", Value::Bool(false)),
            ],
            Resource::Deals | Resource::Leads => &[],
        };
        for (k, v) in defaults {
            m.entry(k.to_string()).or_insert_with(|| v.clone());
        }
        m
    }

    fn insert(&mut self, r: Resource, rec: Value) -> String {
        let rec = self.normalize(r, rec);
        let key = str_of(&rec, "key").unwrap_or_default().to_string();
        self.table_mut(r).put(rec);
        key
    }

    fn update(&mut self, r: Resource, key: &str, patch: Value) -> bool {
        let Some(mut rec) = self.table_mut(r).remove(key) else {
            return false;
        };
        let mut patch = match patch {
            Value::Object(p) => p,
            _ => Map::new(),
        };
        patch.remove("key");
        if !patch.contains_key("updated_at") {
            patch.insert("updated_at".into(), json!(self.now_ms()));
        }
        merge(&mut rec, patch);
        let rec = self.normalize(r, Value::Object(rec));
        self.table_mut(r).put(rec);
        true
    }

    /// Counts a request against the per-second budget; false when over it.
    fn admit(&mut self) -> bool {
        let Some(budget) = self.rate_limit else {
            return true;
        };
        let now = Instant::now();
        let fresh = self
            .window
            .is_none_or(|(start, _)| now.duration_since(start) >= Duration::from_secs(1));
        if fresh {
            self.window = Some((now, 0));
        }
        match self.window.as_mut() {
            Some((_, n)) if *n < budget => {
                *n += 1;
                true
            }
            _ => false,
        }
    }

    fn take_fail(&mut self) -> Option<Reply> {
        let f = self.fails.front_mut()?;
        let reply = Reply::raw(f.status, &f.body);
        f.left -= 1;
        if f.left == 0 {
            self.fails.pop_front();
        }
        Some(reply)
    }

    fn take_matching(&mut self, target: &str) -> Option<Reply> {
        let i = self
            .fails_matching
            .iter()
            .position(|(p, ..)| target.contains(p.as_str()))?;
        let (_, skip, f) = &mut self.fails_matching[i];
        if *skip > 0 {
            *skip -= 1;
            return None;
        }
        let reply = Reply::raw(f.status, &f.body);
        f.left -= 1;
        if f.left == 0 {
            self.fails_matching.remove(i);
        }
        Some(reply)
    }

    fn log(&mut self, entry: LoggedRequest) {
        if self.log.len() >= LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    // -- serving -----------------------------------------------------------

    fn serve(&self, method: &Method, route: Route, query: Option<&str>) -> Reply {
        match route {
            Route::Other => Reply::error(404, "Not found"),
            _ if *method != Method::GET => Reply::error(405, "Method not allowed"),
            Route::One(r, key) => {
                let table = self.table(r);
                let found = table.get(&key).or_else(|| {
                    (r == Resource::Deals)
                        .then(|| {
                            table
                                .rows
                                .values()
                                .find(|m| str_of(m, "external_key") == Some(key.as_str()))
                        })
                        .flatten()
                });
                match found {
                    Some(rec) => Reply::json(
                        200,
                        &json!({
                            "data": rec,
                            "message": format!("{} returned successfully", r.singular()),
                            "status": 200,
                        }),
                    ),
                    None => Reply::error(404, &format!("{} not found", r.singular())),
                }
            }
            Route::List(r) => match ListParams::parse(r, query) {
                Ok(params) => self.list(r, &params),
                Err(message) => Reply::error(400, &message),
            },
        }
    }

    fn list(&self, r: Resource, p: &ListParams) -> Reply {
        let table = self.table(r);
        let (by_updated, desc) = p.order.unwrap_or((false, self.newest_first));
        let sort_val = |m: &Record| {
            if by_updated {
                ms_of(m, "updated_at")
            } else {
                ms_of(m, "created_at")
            }
        };
        let cursor = |key: &str, param: &str| -> Result<(i64, String), Reply> {
            match table.get(key) {
                Some(m) => Ok((sort_val(m), key.to_string())),
                None => Err(Reply::error(
                    400,
                    &format!("{param}: no {} with key {key}", r.path()),
                )),
            }
        };
        let limit = p.limit;
        if !by_updated && p.ending_before.is_none() {
            // The rows are kept in the default order: walk them from the
            // cursor and stop after one more than a page (whether there are
            // more), so that paging through a large list costs each page,
            // not the whole list, as it would on a real server.
            let after = match &p.starting_after {
                Some(k) => match cursor(k, "starting_after") {
                    Ok(c) => Some(c),
                    Err(e) => return e,
                },
                None => None,
            };
            let rows: Box<dyn Iterator<Item = &Record>> = match (&after, desc) {
                (None, false) => Box::new(table.rows.values()),
                (None, true) => Box::new(table.rows.values().rev()),
                (Some(c), false) => Box::new(
                    table
                        .rows
                        .range((Bound::Excluded(c.clone()), Bound::Unbounded))
                        .map(|(_, m)| m),
                ),
                (Some(c), true) => Box::new(table.rows.range(..c.clone()).rev().map(|(_, m)| m)),
            };
            let mut items: Vec<&Record> =
                rows.filter(|m| p.matches(r, m)).take(limit + 1).collect();
            let has_more = items.len() > limit;
            items.truncate(limit);
            return Reply::page(&items, has_more);
        }
        let mut items: Vec<(i64, &str, &Record)> = table
            .rows
            .iter()
            .filter(|(_, m)| p.matches(r, m))
            .map(|((_, k), m)| (sort_val(m), k.as_str(), m))
            .collect();
        if by_updated {
            items.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        }
        if desc {
            items.reverse();
        }
        // Position of an item relative to a cursor, in list order.
        let cmp = |it: &(i64, &str, &Record), c: &(i64, &str)| {
            let o = (it.0, it.1).cmp(c);
            if desc { o.reverse() } else { o }
        };
        let (page, has_more) = if let Some(k) = &p.starting_after {
            let c = match cursor(k, "starting_after") {
                Ok(c) => c,
                Err(e) => return e,
            };
            let start =
                items.partition_point(|it| cmp(it, &(c.0, c.1.as_str())) != Ordering::Greater);
            let rest = &items[start..];
            (&rest[..rest.len().min(limit)], rest.len() > limit)
        } else if let Some(k) = &p.ending_before {
            let c = match cursor(k, "ending_before") {
                Ok(c) => c,
                Err(e) => return e,
            };
            let end = items.partition_point(|it| cmp(it, &(c.0, c.1.as_str())) == Ordering::Less);
            let from = end.saturating_sub(limit);
            (&items[from..end], from > 0)
        } else {
            (&items[..items.len().min(limit)], items.len() > limit)
        };
        let items: Vec<&Record> = page.iter().map(|(_, _, m)| *m).collect();
        Reply::page(&items, has_more)
    }
}

// ---------------------------------------------------------------------------
// Query parameters

struct ListParams {
    limit: usize,
    starting_after: Option<String>,
    ending_before: Option<String>,
    min_updated: Option<i64>,
    max_updated: Option<i64>,
    min_created: Option<i64>,
    max_created: Option<i64>,
    partner_key: Option<String>,
    group: Option<String>,
    include_archived: bool,
    /// `(by updated_at, descending)`.
    order: Option<(bool, bool)>,
}

impl ListParams {
    fn parse(r: Resource, query: Option<&str>) -> Result<ListParams, String> {
        let form = parse_form(query.unwrap_or(""));
        // First occurrence wins; an empty value counts as absent.
        let get = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let ms = |name: &str| -> Result<Option<i64>, String> {
            match get(name) {
                None => Ok(None),
                Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                    format!("{name} must be an integer timestamp in epoch milliseconds")
                }),
            }
        };
        let limit = match get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
                Ok(_) => return Err(format!("limit must be between 1 and {MAX_LIMIT}")),
                Err(_) => return Err("limit must be an integer".into()),
            },
        };
        let starting_after = get("starting_after").map(str::to_string);
        let ending_before = get("ending_before").map(str::to_string);
        if starting_after.is_some() && ending_before.is_some() {
            return Err("starting_after and ending_before cannot be used together".into());
        }
        let mut p = ListParams {
            limit,
            starting_after,
            ending_before,
            min_updated: None,
            max_updated: None,
            min_created: None,
            max_created: None,
            partner_key: None,
            group: None,
            include_archived: false,
            order: None,
        };
        if r.time_filters() {
            p.min_updated = ms("min_updated")?;
            p.max_updated = ms("max_updated")?;
            p.min_created = ms("min_created")?;
            p.max_created = ms("max_created")?;
        }
        if r == Resource::Deals {
            p.partner_key = get("partner_key").map(str::to_string);
            p.group = get("group").map(str::to_string);
        }
        if r == Resource::Partnerships {
            p.include_archived = match get("include_archived") {
                None => false,
                Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
                Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
                Some(_) => return Err("include_archived must be true or false".into()),
            };
            p.order = match get("order_by") {
                None => None,
                Some("created_at") => Some((false, false)),
                Some("-created_at") => Some((false, true)),
                Some("updated_at") => Some((true, false)),
                Some("-updated_at") => Some((true, true)),
                Some(_) => {
                    return Err(
                        "order_by must be one of created_at, -created_at, updated_at, -updated_at"
                            .into(),
                    );
                }
            };
        }
        Ok(p)
    }

    fn matches(&self, r: Resource, m: &Record) -> bool {
        let created = ms_of(m, "created_at");
        let updated = ms_of(m, "updated_at");
        let in_range = |v: i64, lo: Option<i64>, hi: Option<i64>| {
            lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v <= hi)
        };
        in_range(created, self.min_created, self.max_created)
            && in_range(updated, self.min_updated, self.max_updated)
            && self
                .partner_key
                .as_deref()
                .is_none_or(|pk| str_of(m, "partner_key") == Some(pk))
            && self
                .group
                .as_deref()
                .is_none_or(|g| str_of(m, "group_key") == Some(g))
            && (r != Resource::Partnerships
                || self.include_archived
                || m.get("archived") != Some(&Value::Bool(true)))
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

    /// A list page in PartnerStack's envelope.
    fn page(items: &[&Record], has_more: bool) -> Reply {
        Reply::json(
            200,
            &json!({
                "data": {"items": items, "has_more": has_more},
                "message": PAGE_MESSAGE,
                "status": 200,
            }),
        )
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({"message": message, "status": status}))
    }
}

enum Route {
    List(Resource),
    One(Resource, String),
    Other,
}

impl Route {
    fn resource(&self) -> Option<Resource> {
        match self {
            Route::List(r) | Route::One(r, _) => Some(*r),
            Route::Other => None,
        }
    }
}

fn route(path: &str) -> Route {
    let Some(rest) = path.strip_prefix(BASE) else {
        return Route::Other;
    };
    let Some(rest) = rest.strip_prefix('/') else {
        return Route::Other;
    };
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match segs.as_slice() {
        [seg] => Resource::of(seg).map_or(Route::Other, Route::List),
        [seg, key] if !key.is_empty() => {
            Resource::of(seg).map_or(Route::Other, |r| Route::One(r, pct_decode(key)))
        }
        _ => Route::Other,
    }
}

// ---------------------------------------------------------------------------
// The server

impl FakePartnerStack {
    /// Binds `127.0.0.1:0` and serves in a tokio task.
    pub async fn start(config: FakeConfig) -> FakePartnerStack {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        FakePartnerStack::start_on(config, addr)
            .await
            .expect("the fake PartnerStack binds a local port")
    }

    /// Binds `addr` and serves in a tokio task.
    pub async fn start_on(
        config: FakeConfig,
        addr: SocketAddr,
    ) -> std::io::Result<FakePartnerStack> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let state = State::new(&config);
        let fake = FakePartnerStack {
            inner: Arc::new(Inner {
                origin: format!("http://{local}"),
                config,
                state: Mutex::new(state),
            }),
        };
        let served = fake.clone();
        crate::shared::serve(listener, MAX_BODY, move |method, uri, headers, _body| {
            served.respond(method, uri, headers)
        });
        Ok(fake)
    }

    /// `http://127.0.0.1:PORT/api/v2`: use it as the client's `base_url`.
    pub fn url(&self) -> String {
        format!("{}{BASE}", self.inner.origin)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.inner.origin.clone()
    }

    pub fn config(&self) -> &FakeConfig {
        &self.inner.config
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // -- data --------------------------------------------------------------

    /// Stores a record (see the module docs for the fields filled in) and
    /// returns its key. A record with an existing key replaces it.
    pub fn insert(&self, r: Resource, record: Value) -> String {
        self.st().insert(r, record)
    }

    pub fn insert_many(
        &self,
        r: Resource,
        records: impl IntoIterator<Item = Value>,
    ) -> Vec<String> {
        let mut st = self.st();
        records.into_iter().map(|rec| st.insert(r, rec)).collect()
    }

    pub fn insert_partnership(&self, record: Value) -> String {
        self.insert(Resource::Partnerships, record)
    }

    pub fn insert_deal(&self, record: Value) -> String {
        self.insert(Resource::Deals, record)
    }

    pub fn insert_lead(&self, record: Value) -> String {
        self.insert(Resource::Leads, record)
    }

    pub fn insert_group(&self, record: Value) -> String {
        self.insert(Resource::Groups, record)
    }

    /// Merges `patch` into a record (objects recursively, other values
    /// replace), keeps its `key`, and sets `updated_at` to the fake clock
    /// unless the patch sets it. False when the key is unknown.
    pub fn update(&self, r: Resource, key: &str, patch: Value) -> bool {
        self.st().update(r, key, patch)
    }

    pub fn update_deal(&self, key: &str, patch: Value) -> bool {
        self.update(Resource::Deals, key, patch)
    }

    /// `archived: true` and a bumped `updated_at`.
    pub fn archive_partnership(&self, key: &str) -> bool {
        self.update(Resource::Partnerships, key, json!({"archived": true}))
    }

    /// Deletes a record outright (lists stop showing it).
    pub fn remove(&self, r: Resource, key: &str) -> bool {
        self.st().table_mut(r).remove(key).is_some()
    }

    pub fn get(&self, r: Resource, key: &str) -> Option<Value> {
        self.st().table(r).get(key).cloned().map(Value::Object)
    }

    /// Every record, archived ones included, by `(created_at, key)`.
    pub fn all(&self, r: Resource) -> Vec<Value> {
        let st = self.st();
        st.table(r)
            .rows
            .values()
            .cloned()
            .map(Value::Object)
            .collect()
    }

    pub fn count(&self, r: Resource) -> usize {
        self.st().table(r).rows.len()
    }

    // -- clock -------------------------------------------------------------

    /// Sets the fake clock (epoch ms) used for default and bumped timestamps.
    pub fn set_now(&self, ms: i64) {
        self.st().now = Some(ms);
    }

    /// Moves the fake clock forward (from real time if it was never set).
    pub fn advance(&self, ms: i64) {
        let mut st = self.st();
        let now = st.now_ms();
        st.now = Some(now.saturating_add(ms));
    }

    /// The fake clock (real time until set).
    pub fn now(&self) -> i64 {
        self.st().now_ms()
    }

    // -- limits and faults -------------------------------------------------

    /// Requests allowed per one-second window; `None` lifts the limit.
    pub fn set_rate_limit(&self, per_sec: Option<u32>) {
        let mut st = self.st();
        st.rate_limit = per_sec;
        st.window = None;
    }

    pub fn set_retry_after(&self, secs: Option<u64>) {
        self.st().retry_after = secs;
    }

    /// The next `n` authenticated requests get this status and raw body
    /// (JSON content type; e.g. a 5xx burst, or status 200 with a truncated
    /// body). Calls queue up.
    pub fn fail_next(&self, n: usize, status: u16, body: &str) {
        if n > 0 {
            self.st().fails.push_back(Fail {
                left: n,
                status,
                body: body.to_string(),
            });
        }
    }

    /// Answers carry the fake clock as their `Date` header (the upstream's
    /// own clock, which the mirror's cursor follows) instead of real time.
    pub fn send_clock_as_date(&self, on: bool) {
        self.st().date_from_clock = on;
    }

    /// The next `n` authenticated requests whose `path?query` contains
    /// `pattern`, after the first `skip` of them pass (e.g. `starting_after=` for a second page) get this status
    /// and raw body; other requests pass. Patterns queue up.
    pub fn fail_matching(&self, pattern: &str, skip: usize, n: usize, status: u16, body: &str) {
        if n > 0 {
            self.st().fails_matching.push_back((
                pattern.to_string(),
                skip,
                Fail {
                    left: n,
                    status,
                    body: body.to_string(),
                },
            ));
        }
    }

    // -- observation -------------------------------------------------------

    pub fn calls(&self) -> Calls {
        self.st().calls
    }

    /// The last requests (up to 20,000), oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.st().log.iter().cloned().collect()
    }

    /// Zeroes the call counts and clears the request log.
    pub fn reset_counts(&self) {
        let mut st = self.st();
        st.calls = Calls::default();
        st.log.clear();
    }

    // -- request handling --------------------------------------------------

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let c = &self.inner.config;
        basic(headers).is_some_and(|(user, pass)| user == c.public_key && pass == c.secret_key)
    }

    fn respond(
        &self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
    ) -> Response<Body> {
        let path = uri.path();
        let query = uri.query();
        let route = route(path);
        let mut st = self.st();
        st.calls.total += 1;
        match route.resource() {
            Some(r) => st.calls.bump(r),
            None => st.calls.other += 1,
        }
        let mut retry_after = None;
        let reply = if !st.admit() {
            st.calls.rate_limited += 1;
            retry_after = st.retry_after;
            Reply::error(429, "Too many requests")
        } else if !self.authorized(headers) {
            st.calls.unauthorized += 1;
            Reply::error(401, "Unauthorized")
        } else if let Some(canned) = st
            .take_matching(&format!("{path}?{}", query.unwrap_or("")))
            .or_else(|| st.take_fail())
        {
            st.calls.injected += 1;
            if canned.status == 429 {
                retry_after = st.retry_after;
            }
            canned
        } else {
            st.serve(method, route, query)
        };
        st.log(LoggedRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
            status: reply.status,
        });
        let date = st.date_from_clock.then(|| {
            st.now
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
        });
        drop(st);

        let status =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = Response::new(Body::from(reply.body));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        if let Some(v) = date.and_then(http_date) {
            headers.insert(header::DATE, v);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"api\""),
            );
        }
        resp
    }
}

// ---------------------------------------------------------------------------
// Sample records (no key or timestamps: the fake fills them)

const FIRST_NAMES: [&str; 8] = [
    "Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro",
];
const LAST_NAMES: [&str; 8] = [
    "Nguyen", "Okafor", "Schmidt", "Patel", "Rossi", "Kim", "Silva", "Dubois",
];
/// Assumed stage names: stages are configured per group in PartnerStack.
pub const SAMPLE_STAGES: [&str; 5] = ["new", "qualified", "proposal", "closed-won", "closed-lost"];

/// A group (tier): `sample_group(n)` cycles Registered (the default), Silver, Gold, Platinum.
pub fn sample_group(n: usize) -> Value {
    const TIERS: [&str; 4] = ["Registered", "Silver", "Gold", "Platinum"];
    let name = TIERS[n % TIERS.len()];
    json!({
        "key": format!("group_{}", name.to_ascii_lowercase()),
        "name": name,
        "slug": name.to_ascii_lowercase(),
        "default": n.is_multiple_of(TIERS.len()),
        "archived": false,
        "features": {"deals": true, "leads": true},
    })
}

/// A partnership whose `partner_key` is `partner-NNNN`, in group
/// `sample_group(n)`, with a CRM account id in `m_data`.
pub fn sample_partnership(n: usize) -> Value {
    let group = sample_group(n);
    let first = FIRST_NAMES[n % FIRST_NAMES.len()];
    let last = LAST_NAMES[(n / FIRST_NAMES.len()) % LAST_NAMES.len()];
    json!({
        "partner_key": format!("partner-{n:04}"),
        "email": format!("{}.{}{n}@partner{n}.example.com", first.to_ascii_lowercase(), last.to_ascii_lowercase()),
        "first_name": first,
        "last_name": last,
        "group": {"key": group["key"], "name": group["name"], "slug": group["slug"]},
        "joined_at": 1_735_689_600_000_i64 + n as i64 * 86_400_000,
        "manager": {"key": "mgr_0001", "email": "channel.manager@vendor.example.com", "name": "Morgan Lee"},
        "team": {"key": format!("team_{n:04}"), "name": format!("Partner {n} Solutions")},
        "tags": ["reseller"],
        "m_data": {"salesforce_account_id": format!("001xx{n:013}")},
        "stats": {"CUSTOMER_COUNT": n % 7, "LEAD_COUNT": n % 5},
        "archived": false,
    })
}

/// A deal for `partner_key`: amount in cents, stage from [`SAMPLE_STAGES`],
/// custom fields `approved_at`/`expires_at` (90 days later).
pub fn sample_deal(n: usize, partner_key: &str) -> Value {
    let stage = SAMPLE_STAGES[n % SAMPLE_STAGES.len()];
    let approved_at = 1_767_225_600_000_i64 + n as i64 * 3_600_000;
    let custom = json!({
        "approved_at": approved_at,
        "expires_at": approved_at + 90 * 86_400_000,
    });
    let first = FIRST_NAMES[n % FIRST_NAMES.len()];
    let last = LAST_NAMES[n % LAST_NAMES.len()];
    json!({
        "partner_key": partner_key,
        "account_name": format!("Acme {n:04} Inc."),
        "amount": 1_250_000 + (n as i64 % 40) * 50_000,
        "close_date": format!("2026-{:02}-{:02}", 1 + n % 12, 1 + n % 28),
        "stage": stage,
        "lost_reason": (stage == "closed-lost").then_some("Chose a competitor"),
        "contact_first_name": "Jordan",
        "contact_last_name": format!("Buyer{n}"),
        "customer_key": null,
        "external_key": format!("006xx{n:013}"),
        "group_key": "group_gold",
        "mold_key": "mold_deal_default",
        "source": "partner",
        "team": {"key": format!("team_{partner_key}"), "name": format!("{partner_key} team")},
        "team_member": {
            "key": format!("tm_{partner_key}_{}", n % 3),
            "email": format!("{}.{}@{partner_key}.example.com", first.to_ascii_lowercase(), last.to_ascii_lowercase()),
            "first_name": first,
            "last_name": last,
        },
        "fields": custom.clone(),
        "field_data": custom,
        "meta": {},
    })
}

/// A lead for `partner_key` (amount in cents).
pub fn sample_lead(n: usize, partner_key: &str) -> Value {
    const STATUSES: [&str; 4] = ["new", "approved", "converted", "rejected"];
    let status = STATUSES[n % STATUSES.len()];
    json!({
        "partner_key": partner_key,
        "amount": 500_000 + (n as i64 % 10) * 10_000,
        "approved": matches!(status, "approved" | "converted"),
        "status": status,
        "external_key": format!("00Qxx{n:013}"),
        "group_key": "group_gold",
        "mold_key": "mold_lead_default",
        "email": format!("prospect{n}@customer{n}.example.com"),
        "name": format!("Prospect {n}"),
        "company": format!("Customer {n:04} Ltd"),
        "fields": {"employees": 50 + n % 500},
        "field_data": {"employees": 50 + n % 500},
        "meta": {},
    })
}
