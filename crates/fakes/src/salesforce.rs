//! An in-process, stateful fake of the Salesforce REST API for integration
//! tests and the benchmark (`examples/fake_salesforce.rs` runs it standalone).
//!
//! It serves the OAuth token endpoint (client credentials, JWT bearer,
//! refresh token with optional rotation), SOQL `query`/`queryAll` with
//! server-side cursors, `describe`, and sObject Collections updates
//! (`PATCH /composite/sobjects`), with `Sforce-Limit-Info` accounting and
//! injectable faults. Wire shapes follow `/work/shared/reference/crm-apis.md`
//! (Parts A and D).
//!
//! Storage is compact enough for a million rows: per object a `Vec` of rows
//! whose values sit in schema order, an id -> row map, and query cursors that
//! hold row indices (values are read when a page is served). Reference,
//! picklist and date strings are interned.
//!
//! This file must stay self-contained: the example includes it by `#[path]`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng as _;
use serde_json::{Value, json};

use crate::shared::{
    basic_credentials, bearer, form_decode, form_get, header_str, http_date, parse_form,
    take_matching,
};

/// How many logged requests and composite bodies are kept (oldest dropped).
const LOG_CAP: usize = 20_000;
/// How many query cursors are kept (oldest dropped).
const CURSOR_CAP: usize = 64;
const MAX_BODY: usize = 256 << 20;
const SESSION_EXPIRED: &str =
    r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
const NOT_FOUND: &str =
    r#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#;
const LIMIT_EXCEEDED: &str =
    r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
const ORG_ID: &str = "00Dxx0000000001EAA";
const USER_ID: &str = "005xx000001SvZ2AAK";

/// Configuration of a [`FakeSalesforce`].
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// The API version the fake advertises, e.g. `"v62.0"` (any `vNN.N` path is served).
    pub api_version: String,
    pub client_id: String,
    pub client_secret: String,
    /// The username a JWT bearer assertion must name in `sub`.
    pub username: String,
    /// Verifies RS256 JWT bearer assertions. The default is the test key pair's
    /// public half, `tests/fixtures/salesforce/test_jwt_key.pub.pem`.
    pub jwt_public_key_pem: Option<String>,
    /// The currently valid refresh token.
    pub refresh_token: String,
    /// Each refresh returns a new `refresh_token` and invalidates the old one.
    pub rotate_refresh_tokens: bool,
    /// Daily API allocation (the `M` of `api-usage=N/M`).
    pub api_max: u64,
    /// Starting usage (the `N` of `api-usage=N/M`).
    pub api_used: u64,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            api_version: "v62.0".into(),
            client_id: "fake-client-id".into(),
            client_secret: "fake-client-secret".into(),
            username: "integration@example.com".into(),
            jwt_public_key_pem: Some(
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../tests/fixtures/salesforce/test_jwt_key.pub.pem"
                ))
                .to_string(),
            ),
            refresh_token: "fake-refresh-1".into(),
            rotate_refresh_tokens: false,
            api_max: 100_000,
            api_used: 0,
        }
    }
}

/// Request counts by kind. `total_data` counts every request except token requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    pub token: usize,
    /// First pages of `query` and `queryAll`.
    pub query: usize,
    /// `nextRecordsUrl` pages.
    pub query_more: usize,
    pub describe: usize,
    pub composite: usize,
    pub other: usize,
    pub total_data: usize,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The decoded `q` parameter of a query request.
    pub soql: Option<String>,
    /// The body of any non-GET request (token requests included).
    pub body: Option<String>,
    /// The `Sforce-Query-Options` header, if sent.
    pub query_options: Option<String>,
    /// The request carried `Authorization: Bearer <currently valid token>`.
    pub auth_valid: bool,
    pub status: u16,
}

/// The fake server. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct FakeSalesforce {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    config: FakeConfig,
    state: Mutex<State>,
}

// ---------------------------------------------------------------------------
// Storage

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Id,
    Text,
    Bool,
    Num,
    Ref,
    Date,
    DateTime,
    Picklist,
}

impl Kind {
    fn of(kind: &str) -> Kind {
        match kind.to_ascii_lowercase().as_str() {
            "id" => Kind::Id,
            "boolean" => Kind::Bool,
            "percent" | "double" | "currency" | "int" | "long" => Kind::Num,
            "reference" => Kind::Ref,
            "date" => Kind::Date,
            "datetime" => Kind::DateTime,
            "picklist" | "multipicklist" | "combobox" => Kind::Picklist,
            _ => Kind::Text,
        }
    }

    fn interned(self) -> bool {
        matches!(self, Kind::Ref | Kind::Picklist | Kind::Date)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Val {
    Null,
    Bool(bool),
    Num(f64),
    /// Milliseconds since the epoch.
    Time(i64),
    Str(Arc<str>),
    /// Raw JSON text of an array or object (kept verbatim).
    Json(Arc<str>),
}

static NULL_VAL: Val = Val::Null;
static TRUE_VAL: Val = Val::Bool(true);
static FALSE_VAL: Val = Val::Bool(false);

/// A row's value of field `fi`; `IsDeleted` comes from the row's flag.
fn field_val(row: &Row, fi: usize, is_deleted: bool) -> &Val {
    if !is_deleted {
        row.get(fi)
    } else if row.deleted {
        &TRUE_VAL
    } else {
        &FALSE_VAL
    }
}

struct FieldDef {
    name: String,
    type_name: String,
    kind: Kind,
    hidden: bool,
}

struct Row {
    vals: Box<[Val]>,
    deleted: bool,
}

impl Row {
    fn get(&self, fi: usize) -> &Val {
        self.vals.get(fi).unwrap_or(&NULL_VAL)
    }

    fn set(&mut self, fi: usize, v: Val) {
        if fi >= self.vals.len() {
            let mut vals = std::mem::take(&mut self.vals).into_vec();
            vals.resize(fi + 1, Val::Null);
            self.vals = vals.into_boxed_slice();
        }
        self.vals[fi] = v;
    }
}

/// Field 0 of every table is `Id`.
struct Table {
    name: String,
    prefix: String,
    fields: Vec<FieldDef>,
    rows: Vec<Option<Row>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Table {
    fn new(name: &str, prefix: &str, fields: &[(&str, &str)]) -> Table {
        let mut t = Table {
            name: name.to_string(),
            prefix: prefix.to_string(),
            fields: Vec::new(),
            rows: Vec::new(),
            ids: HashMap::new(),
        };
        t.add_field("Id", "id");
        for (f, k) in fields {
            t.add_field(f, k);
        }
        t
    }

    /// Visible field by case-insensitive name.
    fn field(&self, name: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| !f.hidden && f.name.eq_ignore_ascii_case(name))
    }

    fn add_field(&mut self, name: &str, kind: &str) {
        if let Some(i) = self
            .fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
        {
            let f = &mut self.fields[i];
            f.hidden = false;
            f.type_name = kind.to_string();
            f.kind = Kind::of(kind);
        } else {
            self.fields.push(FieldDef {
                name: name.to_string(),
                type_name: kind.to_string(),
                kind: Kind::of(kind),
                hidden: false,
            });
        }
    }

    fn is_deleted_field(&self, fi: usize) -> bool {
        self.fields[fi].name == "IsDeleted"
    }

    fn row_mut(&mut self, id: &str) -> Option<&mut Row> {
        let i = *self.ids.get(id)? as usize;
        self.rows.get_mut(i)?.as_mut()
    }

    fn row(&self, id: &str) -> Option<&Row> {
        let i = *self.ids.get(id)? as usize;
        self.rows.get(i)?.as_ref()
    }

    /// Sets `SystemModstamp` (and `LastModifiedDate` when `user_edit`) to `now`.
    fn bump(&mut self, id: &str, now: i64, user_edit: bool) {
        let stamp = self.field("SystemModstamp");
        let lmd = if user_edit {
            self.field("LastModifiedDate")
        } else {
            None
        };
        if let Some(row) = self.row_mut(id) {
            for fi in [stamp, lmd].into_iter().flatten() {
                row.set(fi, Val::Time(now));
            }
        }
    }
}

struct Cursor {
    table: usize,
    fields: Vec<usize>,
    indices: Vec<u32>,
    batch: usize,
}

struct State {
    tables: Vec<Table>,
    interner: HashSet<Arc<str>>,
    now: Option<i64>,
    next_id: u64,
    tokens: HashSet<String>,
    refresh_token: String,
    refresh_counter: u64,
    expire_after: Option<usize>,
    fails: VecDeque<(usize, u16, String)>,
    /// Canned answers for the next calls whose `path?query` contains the pattern.
    fails_matching: VecDeque<(String, usize, usize, u16, String)>,
    date_from_clock: bool,
    write_failures: HashSet<String>,
    api_used: u64,
    api_max: u64,
    calls: Calls,
    log: VecDeque<LoggedRequest>,
    composite_bodies: VecDeque<Value>,
    grants: Vec<String>,
    cursors: HashMap<u64, Cursor>,
    cursor_order: VecDeque<u64>,
    next_cursor: u64,
}

impl State {
    fn new(config: &FakeConfig) -> State {
        let audit: [(&str, &str); 3] = [
            ("CreatedDate", "datetime"),
            ("LastModifiedDate", "datetime"),
            ("SystemModstamp", "datetime"),
        ];
        let with_audit = |fields: &[(&'static str, &'static str)], deleted: bool| {
            let mut v: Vec<(&str, &str)> = fields.to_vec();
            v.extend_from_slice(&audit);
            if deleted {
                v.push(("IsDeleted", "boolean"));
            }
            v
        };
        let tables = vec![
            Table::new(
                "Account",
                "001",
                &[
                    ("Name", "string"),
                    ("Website", "url"),
                    ("IsPartner", "boolean"),
                    ("OwnerId", "reference"),
                    ("Type", "picklist"),
                    ("CreatedDate", "datetime"),
                    ("LastModifiedDate", "datetime"),
                    ("SystemModstamp", "datetime"),
                    ("IsDeleted", "boolean"),
                    ("Active_Seller_Rate__c", "percent"),
                    ("Partner_Reps__c", "double"),
                    ("Partner_Tier__c", "picklist"),
                ],
            ),
            Table::new(
                "Opportunity",
                "006",
                &[
                    ("AccountId", "reference"),
                    ("OwnerId", "reference"),
                    ("Name", "string"),
                    ("StageName", "picklist"),
                    ("IsClosed", "boolean"),
                    ("IsWon", "boolean"),
                    ("Amount", "currency"),
                    ("CloseDate", "date"),
                    ("CreatedDate", "datetime"),
                    ("LastModifiedDate", "datetime"),
                    ("SystemModstamp", "datetime"),
                    ("IsDeleted", "boolean"),
                    ("PartnerAccountId", "reference"),
                    ("Partner_Rep__c", "string"),
                    ("Deal_Registration__c", "string"),
                ],
            ),
            Table::new(
                "User",
                "005",
                &with_audit(
                    &[
                        ("Name", "string"),
                        ("Email", "string"),
                        ("IsActive", "boolean"),
                        ("UserType", "picklist"),
                        ("AccountId", "reference"),
                        ("ContactId", "reference"),
                    ],
                    false,
                ),
            ),
            Table::new(
                "Lead",
                "00Q",
                &with_audit(
                    &[
                        ("Company", "string"),
                        ("Website", "url"),
                        ("Status", "picklist"),
                        ("PartnerAccountId", "reference"),
                        ("CreatedById", "reference"),
                        ("OwnerId", "reference"),
                        ("ConvertedAccountId", "reference"),
                        ("ConvertedOpportunityId", "reference"),
                        ("ConvertedDate", "date"),
                    ],
                    true,
                ),
            ),
            Table::new(
                "OpportunityPartner",
                "00J",
                &[
                    ("OpportunityId", "reference"),
                    ("AccountToId", "reference"),
                    ("IsPrimary", "boolean"),
                    ("Role", "picklist"),
                    ("CreatedDate", "datetime"),
                    ("SystemModstamp", "datetime"),
                    ("IsDeleted", "boolean"),
                ],
            ),
        ];
        State {
            tables,
            interner: HashSet::new(),
            now: None,
            next_id: 1,
            tokens: HashSet::new(),
            refresh_token: config.refresh_token.clone(),
            refresh_counter: 1,
            expire_after: None,
            fails: VecDeque::new(),
            fails_matching: VecDeque::new(),
            date_from_clock: false,
            write_failures: HashSet::new(),
            api_used: config.api_used,
            api_max: config.api_max,
            calls: Calls::default(),
            log: VecDeque::new(),
            composite_bodies: VecDeque::new(),
            grants: Vec::new(),
            cursors: HashMap::new(),
            cursor_order: VecDeque::new(),
            next_cursor: 1,
        }
    }

    fn clock(&self) -> i64 {
        self.now.unwrap_or_else(|| Utc::now().timestamp_millis())
    }

    fn table(&self, name: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The table, created with `Id`, audit fields and `IsDeleted` if unknown.
    fn table_or_create(&mut self, name: &str) -> usize {
        if let Some(i) = self.table(name) {
            return i;
        }
        let prefix = format!("a{:02}", self.tables.len() % 100);
        self.tables.push(Table::new(
            name,
            &prefix,
            &[
                ("CreatedDate", "datetime"),
                ("LastModifiedDate", "datetime"),
                ("SystemModstamp", "datetime"),
                ("IsDeleted", "boolean"),
            ],
        ));
        self.tables.len() - 1
    }

    fn insert(&mut self, object: &str, record: Value) {
        let Value::Object(map) = record else {
            return;
        };
        let ti = match self.table(object) {
            Some(i) => i,
            None => {
                // An unknown object gets the record's fields, typed by their values.
                let ti = self.table_or_create(object);
                for (k, v) in &map {
                    let t = &mut self.tables[ti];
                    if t.field(k).is_none() {
                        t.add_field(k, guess_kind(v));
                    }
                }
                ti
            }
        };
        let now = self.clock();
        let table = &mut self.tables[ti];
        let nf = table.fields.len();
        let mut vals = vec![Val::Null; nf];
        let mut seen = vec![false; nf];
        let mut deleted = false;
        let mut id: Option<Arc<str>> = None;
        for (k, v) in map {
            let Some(fi) = table.field(&k) else {
                continue;
            };
            if table.is_deleted_field(fi) {
                deleted = v.as_bool().unwrap_or(false);
                continue;
            }
            let kind = table.fields[fi].kind;
            let val = to_val_lenient(kind, v, &mut self.interner);
            if fi == 0
                && let Val::Str(s) = &val
            {
                id = Some(s.clone());
            }
            vals[fi] = val;
            seen[fi] = true;
        }
        for name in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            if let Some(fi) = table.field(name)
                && !seen[fi]
            {
                vals[fi] = Val::Time(now);
            }
        }
        let id = id.unwrap_or_else(|| {
            let id: Arc<str> = format!("{}FAKE{:011}", table.prefix, self.next_id).into();
            self.next_id += 1;
            id
        });
        vals[0] = Val::Str(id.clone());
        let row = Row {
            vals: vals.into_boxed_slice(),
            deleted,
        };
        if let Some(&i) = table.ids.get(&*id) {
            table.rows[i as usize] = Some(row);
        } else {
            let Ok(i) = u32::try_from(table.rows.len()) else {
                return;
            };
            table.rows.push(Some(row));
            table.ids.insert(id, i);
        }
    }

    fn log(&mut self, entry: LoggedRequest) {
        if self.log.len() >= LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }
}

fn guess_kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(_) => "double",
        Value::String(s) if parse_datetime(s).is_some() => "datetime",
        Value::String(s) if parse_date(s).is_some() => "date",
        _ => "string",
    }
}

fn intern(interner: &mut HashSet<Arc<str>>, s: &str) -> Arc<str> {
    if let Some(a) = interner.get(s) {
        return a.clone();
    }
    let a: Arc<str> = s.into();
    interner.insert(a.clone());
    a
}

fn make_str(kind: Kind, s: &str, interner: &mut HashSet<Arc<str>>) -> Val {
    if kind.interned() {
        Val::Str(intern(interner, s))
    } else {
        Val::Str(s.into())
    }
}

/// Converts a JSON value for a field of `kind`, as a write through the API would.
fn to_val_strict(
    kind: Kind,
    v: &Value,
    interner: &mut HashSet<Arc<str>>,
) -> Result<Val, &'static str> {
    Ok(match (kind, v) {
        (_, Value::Null) => Val::Null,
        (Kind::Bool, Value::Bool(b)) => Val::Bool(*b),
        (Kind::Bool, Value::String(s)) if s.eq_ignore_ascii_case("true") => Val::Bool(true),
        (Kind::Bool, Value::String(s)) if s.eq_ignore_ascii_case("false") => Val::Bool(false),
        (Kind::Bool, _) => return Err("boolean"),
        (Kind::Num, Value::Number(n)) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
        (Kind::Num, Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Val::Num(f),
            _ => return Err("double"),
        },
        (Kind::Num, _) => return Err("double"),
        (Kind::DateTime, Value::String(s)) => match parse_datetime(s) {
            Some(ms) => Val::Time(ms),
            None => return Err("dateTime"),
        },
        (Kind::DateTime, _) => return Err("dateTime"),
        (Kind::Date, Value::String(s)) => match parse_date(s) {
            Some(d) => make_str(kind, &d, interner),
            None => return Err("date"),
        },
        (Kind::Date, _) => return Err("date"),
        (_, Value::String(s)) => make_str(kind, s, interner),
        (_, Value::Number(n)) => make_str(kind, &n.to_string(), interner),
        (_, Value::Bool(b)) => make_str(kind, if *b { "true" } else { "false" }, interner),
        (_, Value::Array(_) | Value::Object(_)) => return Err("string"),
    })
}

/// Like [`to_val_strict`], but keeps whatever it cannot convert as it is.
fn to_val_lenient(kind: Kind, v: Value, interner: &mut HashSet<Arc<str>>) -> Val {
    if let Ok(val) = to_val_strict(kind, &v, interner) {
        return val;
    }
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(b),
        Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => make_str(kind, &s, interner),
        other => Val::Json(other.to_string().into()),
    }
}

fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() < 19 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d.timestamp_millis());
        }
    }
    None
}

fn parse_date(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.format("%Y-%m-%d").to_string())
}

fn format_datetime(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        None => "1970-01-01T00:00:00.000+0000".to_string(),
    }
}

fn val_to_json(v: &Val, kind: Kind) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Val::Time(ms) if kind == Kind::Date => Value::String(format_datetime(*ms)[..10].into()),
        Val::Time(ms) => Value::String(format_datetime(*ms)),
        Val::Str(s) => Value::String(s.to_string()),
        Val::Json(s) => serde_json::from_str(s).unwrap_or(Value::Null),
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                let _ = write!(out, "\\u{:04x}", b);
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}

fn write_val(out: &mut Vec<u8>, v: &Val, kind: Kind) {
    match v {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::Num(n) => {
            if n.is_finite() {
                let _ = serde_json::to_writer(&mut *out, n);
            } else {
                out.extend_from_slice(b"null");
            }
        }
        Val::Time(ms) => {
            let s = format_datetime(*ms);
            let s = if kind == Kind::Date { &s[..10] } else { &s[..] };
            write_json_str(out, s);
        }
        Val::Str(s) => write_json_str(out, s),
        Val::Json(s) => out.extend_from_slice(s.as_bytes()),
    }
}

// ---------------------------------------------------------------------------
// SOQL

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(&'static str),
    Comma,
    LParen,
    RParen,
}

fn tokenize(q: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if c == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let e = chars.get(i + 1).ok_or("unterminated string literal")?;
                        s.push(match e {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            other => *other,
                        });
                        i += 2;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c == '!' || c == '<' || c == '>' || c == '=' {
            let next = chars.get(i + 1).copied();
            let (op, len) = match (c, next) {
                ('!', Some('=')) => ("!=", 2),
                ('<', Some('>')) => ("!=", 2),
                ('<', Some('=')) => ("<=", 2),
                ('>', Some('=')) => (">=", 2),
                ('<', _) => ("<", 1),
                ('>', _) => (">", 1),
                ('=', _) => ("=", 1),
                _ => return Err(format!("unexpected character '{c}'")),
            };
            out.push(Tok::Op(op));
            i += len;
        } else if c.is_alphanumeric() || c == '_' || c == '-' {
            let numeric = c.is_ascii_digit() || c == '-';
            let start = i;
            i += 1;
            while let Some(&ch) = chars.get(i) {
                let ok = ch.is_alphanumeric()
                    || ch == '_'
                    || ch == '.'
                    || ch == ':'
                    || (numeric && (ch == '+' || ch == '-'));
                if !ok {
                    break;
                }
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected character '{c}'"));
        }
    }
    Ok(out)
}

#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Time(i64),
    Date(String),
    Str(String),
}

#[derive(Clone, Debug)]
struct RawCond {
    field: String,
    op: &'static str,
    lits: Vec<Lit>,
}

#[derive(Clone, Debug)]
struct RawQuery {
    fields: Vec<String>,
    object: String,
    conds: Vec<RawCond>,
    order: Option<(String, bool, Option<bool>)>,
    limit: Option<usize>,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), String> {
        if self.is_kw(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expecting '{kw}', found {}", self.describe_next()))
        }
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            None => "end of query".into(),
            Some(Tok::Word(w)) => format!("'{w}'"),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Op(o)) => format!("'{o}'"),
            Some(Tok::Comma) => "','".into(),
            Some(Tok::LParen) => "'('".into(),
            Some(Tok::RParen) => "')'".into(),
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Word(w))
                if w.chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_') =>
            {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(format!("expecting a name, found {}", self.describe_next())),
        }
    }

    fn literal(&mut self) -> Result<Lit, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Word(w)) => {
                if w.eq_ignore_ascii_case("null") {
                    Ok(Lit::Null)
                } else if w.eq_ignore_ascii_case("true") {
                    Ok(Lit::Bool(true))
                } else if w.eq_ignore_ascii_case("false") {
                    Ok(Lit::Bool(false))
                } else if let Some(ms) = parse_datetime(&w) {
                    Ok(Lit::Time(ms))
                } else if let Some(d) = parse_date(&w) {
                    Ok(Lit::Date(d))
                } else if let Ok(n) = w.parse::<f64>() {
                    Ok(Lit::Num(n))
                } else {
                    Err(format!("unexpected token: '{w}'"))
                }
            }
            _ => {
                self.pos -= 1;
                Err(format!("expecting a value, found {}", self.describe_next()))
            }
        }
    }

    fn parse(mut self) -> Result<RawQuery, String> {
        self.expect_kw("SELECT")?;
        let mut fields = vec![self.ident()?];
        while self.peek() == Some(&Tok::Comma) {
            self.pos += 1;
            fields.push(self.ident()?);
        }
        self.expect_kw("FROM")?;
        let object = self.ident()?;
        let mut conds = Vec::new();
        if self.is_kw("WHERE") {
            self.pos += 1;
            loop {
                let field = self.ident()?;
                if self.is_kw("IN") {
                    self.pos += 1;
                    if self.next() != Some(Tok::LParen) {
                        return Err("expecting '(' after IN".into());
                    }
                    let mut lits = vec![self.literal()?];
                    loop {
                        match self.next() {
                            Some(Tok::Comma) => lits.push(self.literal()?),
                            Some(Tok::RParen) => break,
                            _ => return Err("expecting ',' or ')' in IN list".into()),
                        }
                    }
                    conds.push(RawCond {
                        field,
                        op: "=",
                        lits,
                    });
                } else {
                    let op = match self.next() {
                        Some(Tok::Op(op)) => op,
                        _ => {
                            self.pos -= 1;
                            return Err(format!(
                                "expecting an operator, found {}",
                                self.describe_next()
                            ));
                        }
                    };
                    let lit = self.literal()?;
                    conds.push(RawCond {
                        field,
                        op,
                        lits: vec![lit],
                    });
                }
                if self.is_kw("AND") {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        let mut order = None;
        if self.is_kw("ORDER") {
            self.pos += 1;
            self.expect_kw("BY")?;
            let field = self.ident()?;
            let mut desc = false;
            if self.is_kw("ASC") {
                self.pos += 1;
            } else if self.is_kw("DESC") {
                self.pos += 1;
                desc = true;
            }
            let mut nulls_first = None;
            if self.is_kw("NULLS") {
                self.pos += 1;
                if self.is_kw("FIRST") {
                    nulls_first = Some(true);
                } else if self.is_kw("LAST") {
                    nulls_first = Some(false);
                } else {
                    return Err("expecting FIRST or LAST after NULLS".into());
                }
                self.pos += 1;
            }
            order = Some((field, desc, nulls_first));
        }
        let mut limit = None;
        if self.is_kw("LIMIT") {
            self.pos += 1;
            match self.next() {
                Some(Tok::Word(w)) => match w.parse::<usize>() {
                    Ok(n) => limit = Some(n),
                    Err(_) => return Err(format!("invalid LIMIT '{w}'")),
                },
                _ => return Err("expecting a number after LIMIT".into()),
            }
        }
        if self.peek().is_some() {
            return Err(format!("unexpected token: {}", self.describe_next()));
        }
        Ok(RawQuery {
            fields,
            object,
            conds,
            order,
            limit,
        })
    }
}

struct Cond {
    fi: usize,
    is_deleted: bool,
    op: &'static str,
    lits: Vec<Lit>,
}

fn cmp_val_lit(v: &Val, lit: &Lit) -> Option<std::cmp::Ordering> {
    match (v, lit) {
        (Val::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Val::Num(a), Lit::Num(b)) => a.partial_cmp(b),
        (Val::Time(a), Lit::Time(b)) => Some(a.cmp(b)),
        (Val::Str(a), Lit::Date(b)) => Some((**a).cmp(b.as_str())),
        (Val::Str(a), Lit::Str(b)) => Some(cmp_ci(a, b)),
        _ => None,
    }
}

fn cmp_ci(a: &str, b: &str) -> std::cmp::Ordering {
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

impl Cond {
    fn matches(&self, row: &Row) -> bool {
        let v = field_val(row, self.fi, self.is_deleted);
        use std::cmp::Ordering::*;
        self.lits.iter().any(|lit| {
            if *lit == Lit::Null {
                return match self.op {
                    "=" => *v == Val::Null,
                    "!=" => *v != Val::Null,
                    _ => false,
                };
            }
            if *v == Val::Null {
                return self.op == "!=";
            }
            let ord = cmp_val_lit(v, lit);
            match self.op {
                "=" => ord == Some(Equal),
                "!=" => ord != Some(Equal),
                "<" => ord == Some(Less),
                "<=" => matches!(ord, Some(Less | Equal)),
                ">" => ord == Some(Greater),
                ">=" => matches!(ord, Some(Greater | Equal)),
                _ => false,
            }
        })
    }
}

fn rank(v: &Val) -> u8 {
    match v {
        Val::Null => 0,
        Val::Bool(_) => 1,
        Val::Num(_) => 2,
        Val::Time(_) => 3,
        Val::Str(_) => 4,
        Val::Json(_) => 5,
    }
}

fn cmp_vals(a: &Val, b: &Val) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    match (a, b) {
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y).unwrap_or(Equal),
        (Val::Time(x), Val::Time(y)) => x.cmp(y),
        (Val::Str(x), Val::Str(y)) => cmp_ci(x, y),
        (Val::Json(x), Val::Json(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn lit_fits(kind: Kind, lit: &Lit) -> Result<(), &'static str> {
    match (kind, lit) {
        (_, Lit::Null) => Ok(()),
        (Kind::Bool, Lit::Bool(_)) => Ok(()),
        (Kind::Bool, _) => Err("boolean"),
        (Kind::Num, Lit::Num(_)) => Ok(()),
        (Kind::Num, _) => Err("double"),
        (Kind::DateTime, Lit::Time(_)) => Ok(()),
        (Kind::DateTime, _) => Err("dateTime"),
        (Kind::Date, Lit::Date(_)) => Ok(()),
        (Kind::Date, _) => Err("date"),
        (_, Lit::Str(_)) => Ok(()),
        _ => Err("string"),
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

    fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(status, &json!([{"message": message, "errorCode": code}]))
    }

    fn oauth(error: &str, description: &str) -> Reply {
        Reply::json(
            400,
            &json!({"error": error, "error_description": description}),
        )
    }
}

enum Route {
    Token,
    Query { all: bool, version: String },
    QueryMore { locator: String, version: String },
    Describe { object: String },
    Composite,
    Other,
}

fn route(path: &str) -> Route {
    if path == "/services/oauth2/token" {
        return Route::Token;
    }
    let Some(rest) = path.strip_prefix("/services/data/") else {
        return Route::Other;
    };
    let rest = rest.trim_end_matches('/');
    let mut parts = rest.split('/');
    let Some(version) = parts.next() else {
        return Route::Other;
    };
    if !version.starts_with('v') || version.len() < 2 {
        return Route::Other;
    }
    let version = version.to_string();
    let segs: Vec<&str> = parts.collect();
    match segs.as_slice() {
        ["query"] => Route::Query {
            all: false,
            version,
        },
        ["queryAll"] => Route::Query { all: true, version },
        ["query" | "queryAll", loc] => Route::QueryMore {
            locator: (*loc).to_string(),
            version,
        },
        ["sobjects", obj, "describe"] => Route::Describe {
            object: (*obj).to_string(),
        },
        ["composite", "sobjects"] => Route::Composite,
        _ => Route::Other,
    }
}

/// The client id and secret of an `Authorization: Basic` header, each
/// form-decoded first (RFC 6749 §2.3.1).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let (id, secret) = basic_credentials(headers)?;
    Some((form_decode(&id), form_decode(&secret)))
}

fn batch_size(headers: &HeaderMap) -> usize {
    let Some(v) = header_str(headers, "sforce-query-options") else {
        return 2000;
    };
    v.split([',', ';'])
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
        .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        .map_or(2000, |n| n.clamp(200, 2000) as usize)
}

#[derive(serde::Deserialize)]
struct JwtClaims {
    iss: Option<String>,
    sub: Option<String>,
}

// ---------------------------------------------------------------------------
// The server

impl FakeSalesforce {
    /// Binds `127.0.0.1:0` and serves in a tokio task.
    pub async fn start(config: FakeConfig) -> FakeSalesforce {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        FakeSalesforce::start_on(config, addr)
            .await
            .expect("the fake Salesforce binds a local port")
    }

    /// Binds `addr` (e.g. a fixed port for a standalone run) and serves in a tokio task.
    pub async fn start_on(config: FakeConfig, addr: SocketAddr) -> std::io::Result<FakeSalesforce> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let state = State::new(&config);
        let fake = FakeSalesforce {
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

    /// `http://127.0.0.1:PORT`; also the `instance_url` handed out.
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    pub fn config(&self) -> &FakeConfig {
        &self.inner.config
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // -- schema ------------------------------------------------------------

    /// Adds (or re-types, or un-hides) a field; creates the object if unknown.
    pub fn add_field(&self, object: &str, field: &str, kind: &str) {
        let mut st = self.st();
        let ti = st.table_or_create(object);
        st.tables[ti].add_field(field, kind);
    }

    /// Hides a field from queries, describe and writes (`Id` cannot be removed).
    /// Stored values survive; `add_field` brings them back.
    pub fn remove_field(&self, object: &str, field: &str) {
        let mut st = self.st();
        if let Some(ti) = st.table(object) {
            let t = &mut st.tables[ti];
            if let Some(fi) = t.field(field)
                && fi != 0
            {
                t.fields[fi].hidden = true;
            }
        }
    }

    /// Field names of an object (visible ones, schema order).
    pub fn fields(&self, object: &str) -> Vec<String> {
        let st = self.st();
        st.table(object).map_or_else(Vec::new, |ti| {
            st.tables[ti]
                .fields
                .iter()
                .filter(|f| !f.hidden)
                .map(|f| f.name.clone())
                .collect()
        })
    }

    /// Turns on the PRM's Market Development Funds (a PRM / Channel licence):
    /// `PartnerFundRequest` and `PartnerFundClaim` with their standard
    /// fields, `PartnerFundRequest.CampaignId` only with `campaign` (it is
    /// missing from some orgs' field lists). Without this, describe of
    /// either answers 404 `NOT_FOUND` and SOQL `INVALID_TYPE`, as an org
    /// without MDF does.
    pub fn enable_mdf(&self, campaign: bool) {
        let mut request = vec![
            ("Title", "string"),
            ("ChannelPartnerId", "reference"),
            ("AllocationId", "reference"),
            ("BudgetId", "reference"),
            ("Activity", "picklist"),
            ("Amount", "currency"),
            ("RequestedAmount", "currency"),
            ("Status", "picklist"),
            ("DesiredOutcome", "textarea"),
        ];
        if campaign {
            request.push(("CampaignId", "reference"));
        }
        let claim = [
            ("Title", "string"),
            ("RequestId", "reference"),
            ("Amount", "currency"),
            ("Status", "picklist"),
            ("ChannelPartnerId", "reference"),
            ("AllocationId", "reference"),
            ("BudgetId", "reference"),
        ];
        let mut st = self.st();
        for (object, fields) in [
            ("PartnerFundRequest", &request[..]),
            ("PartnerFundClaim", &claim[..]),
        ] {
            let ti = st.table_or_create(object);
            for (field, kind) in fields {
                st.tables[ti].add_field(field, kind);
            }
        }
    }

    // -- data --------------------------------------------------------------

    /// Inserts (or replaces, by `Id`) a record. Fields not in the schema are
    /// dropped; a missing `Id` is generated; `CreatedDate`, `LastModifiedDate`
    /// and `SystemModstamp` default to the fake clock; `IsDeleted` defaults to
    /// false. An unknown object is created with the record's fields.
    pub fn insert(&self, object: &str, record: Value) {
        self.st().insert(object, record);
    }

    /// Inserts many records under one lock.
    pub fn insert_many(&self, object: &str, records: impl IntoIterator<Item = Value>) {
        let mut st = self.st();
        for r in records {
            st.insert(object, r);
        }
    }

    /// Sets fields of a stored record (deleted ones too) and bumps
    /// `SystemModstamp` and `LastModifiedDate` (unless `fields` sets them).
    pub fn update(&self, object: &str, id: &str, fields: Value) {
        let mut st = self.st();
        let now = st.clock();
        let Some(ti) = st.table(object) else {
            return;
        };
        let State {
            tables, interner, ..
        } = &mut *st;
        let table = &mut tables[ti];
        if table.row(id).is_none() {
            return;
        }
        table.bump(id, now, true);
        let Value::Object(map) = fields else {
            return;
        };
        let mut sets = Vec::new();
        let mut deleted = None;
        for (k, v) in map {
            let Some(fi) = table.field(&k) else {
                continue;
            };
            if fi == 0 {
                continue;
            }
            if table.is_deleted_field(fi) {
                deleted = v.as_bool();
                continue;
            }
            sets.push((fi, to_val_lenient(table.fields[fi].kind, v, interner)));
        }
        if let Some(row) = table.row_mut(id) {
            for (fi, v) in sets {
                row.set(fi, v);
            }
            if let Some(d) = deleted {
                row.deleted = d;
            }
        }
    }

    /// Soft delete: `IsDeleted` true and `SystemModstamp` bumped. `query` no
    /// longer returns the record; `queryAll` does.
    pub fn delete(&self, object: &str, id: &str) {
        let mut st = self.st();
        let now = st.clock();
        let Some(ti) = st.table(object) else {
            return;
        };
        let table = &mut st.tables[ti];
        if let Some(row) = table.row_mut(id) {
            row.deleted = true;
            table.bump(id, now, false);
        }
    }

    /// Undoes a soft delete (like the recycle bin), bumping `SystemModstamp`.
    pub fn undelete(&self, object: &str, id: &str) {
        let mut st = self.st();
        let now = st.clock();
        let Some(ti) = st.table(object) else {
            return;
        };
        let table = &mut st.tables[ti];
        if let Some(row) = table.row_mut(id) {
            row.deleted = false;
            table.bump(id, now, false);
        }
    }

    /// Hard delete: gone from everything (open cursors skip it).
    pub fn purge(&self, object: &str, id: &str) {
        let mut st = self.st();
        let Some(ti) = st.table(object) else {
            return;
        };
        let table = &mut st.tables[ti];
        if let Some(i) = table.ids.remove(id)
            && let Some(slot) = table.rows.get_mut(i as usize)
        {
            *slot = None;
        }
    }

    /// A stored record (soft-deleted ones too) as JSON, values as on the wire.
    pub fn record(&self, object: &str, id: &str) -> Option<Value> {
        let st = self.st();
        let table = &st.tables[st.table(object)?];
        let row = table.row(id)?;
        let mut map = serde_json::Map::new();
        for (fi, f) in table.fields.iter().enumerate() {
            if f.hidden {
                continue;
            }
            let v = if table.is_deleted_field(fi) {
                Value::Bool(row.deleted)
            } else {
                val_to_json(row.get(fi), f.kind)
            };
            map.insert(f.name.clone(), v);
        }
        Some(Value::Object(map))
    }

    /// Number of stored records of an object (soft-deleted ones included).
    pub fn count(&self, object: &str) -> usize {
        let st = self.st();
        st.table(object).map_or(0, |ti| st.tables[ti].ids.len())
    }

    /// Sets the fake clock used for default and bumped timestamps.
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.st().now = Some(t.timestamp_millis());
    }

    // -- faults ------------------------------------------------------------

    /// Answers carry the fake clock as their `Date` header (the upstream's
    /// own clock, which the mirror's cursor follows) instead of real time.
    pub fn send_clock_as_date(&self, on: bool) {
        self.st().date_from_clock = on;
    }

    /// Every issued access token becomes invalid now.
    pub fn expire_sessions(&self) {
        let mut st = self.st();
        st.tokens.clear();
        st.expire_after = None;
    }

    /// After `data_calls` more authenticated data calls (which succeed), all
    /// tokens become invalid. `0` expires them now.
    pub fn expire_sessions_after(&self, data_calls: usize) {
        let mut st = self.st();
        if data_calls == 0 {
            st.tokens.clear();
            st.expire_after = None;
        } else {
            st.expire_after = Some(data_calls);
        }
    }

    /// The next `n` authenticated data calls get this canned answer (JSON
    /// content type, `Sforce-Limit-Info` included). Calls queue up.
    pub fn fail_next(&self, n: usize, status: u16, body: &str) {
        if n > 0 {
            self.st().fails.push_back((n, status, body.to_string()));
        }
    }

    /// The next `n` authenticated data calls whose `path?query` contains
    /// `pattern`, after the first `skip` of them pass (e.g. `/query/01g` for a query's second page) get this
    /// canned answer; other calls pass. Patterns queue up.
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

    /// Composite updates of these ids fail per record with
    /// `FIELD_CUSTOM_VALIDATION_EXCEPTION` until cleared.
    pub fn fail_writes_for(&self, ids: &[&str]) {
        let mut st = self.st();
        st.write_failures.extend(ids.iter().map(|s| s.to_string()));
    }

    pub fn clear_write_failures(&self) {
        self.st().write_failures.clear();
    }

    pub fn set_api_usage(&self, used: u64, max: u64) {
        let mut st = self.st();
        st.api_used = used;
        st.api_max = max;
    }

    /// `(used, max)` as the next `Sforce-Limit-Info` would report before counting.
    pub fn api_usage(&self) -> (u64, u64) {
        let st = self.st();
        (st.api_used, st.api_max)
    }

    /// The refresh token the fake currently accepts.
    pub fn current_refresh_token(&self) -> String {
        self.st().refresh_token.clone()
    }

    // -- observation -------------------------------------------------------

    pub fn calls(&self) -> Calls {
        self.st().calls
    }

    /// The last requests (up to 20,000), oldest first, token requests included.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.st().log.iter().cloned().collect()
    }

    /// Parsed bodies of composite requests (up to the last 20,000).
    pub fn composite_bodies(&self) -> Vec<Value> {
        self.st().composite_bodies.iter().cloned().collect()
    }

    /// Zeroes the call counts and clears the request log, composite bodies
    /// and token grants.
    pub fn reset_counts(&self) {
        let mut st = self.st();
        st.calls = Calls::default();
        st.log.clear();
        st.composite_bodies.clear();
        st.grants.clear();
    }

    /// `grant_type` of each token request, in order (`""` when missing).
    pub fn token_grants(&self) -> Vec<String> {
        self.st().grants.clone()
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
        let soql = match &route {
            Route::Query { .. } => query.and_then(|q| {
                parse_form(q)
                    .into_iter()
                    .find(|(k, _)| k == "q")
                    .map(|(_, v)| v)
            }),
            _ => None,
        };
        let mut st = self.st();
        let mut auth_valid = false;
        let mut limit_info = None;

        let reply = if let Route::Token = route {
            st.calls.token += 1;
            if *method == Method::POST {
                self.token(&mut st, headers, &body_text)
            } else {
                Reply::raw(404, NOT_FOUND)
            }
        } else {
            match &route {
                Route::Query { .. } => st.calls.query += 1,
                Route::QueryMore { .. } => st.calls.query_more += 1,
                Route::Describe { .. } => st.calls.describe += 1,
                Route::Composite => st.calls.composite += 1,
                Route::Other | Route::Token => st.calls.other += 1,
            }
            st.calls.total_data += 1;
            auth_valid = bearer(headers).is_some_and(|t| st.tokens.contains(t));
            let reply = if st.api_used.saturating_add(1) > st.api_max {
                Reply::raw(403, LIMIT_EXCEEDED)
            } else {
                st.api_used += 1;
                if !auth_valid {
                    Reply::raw(401, SESSION_EXPIRED)
                } else {
                    if let Some(k) = st.expire_after {
                        if k <= 1 {
                            st.tokens.clear();
                            st.expire_after = None;
                        } else {
                            st.expire_after = Some(k - 1);
                        }
                    }
                    if let Some((status, canned)) = take_matching(
                        &mut st.fails_matching,
                        &format!("{path}?{}", query.unwrap_or("")),
                    ) {
                        Reply::raw(status, &canned)
                    } else if let Some((n, status, canned)) = st.fails.front_mut() {
                        let reply = Reply::raw(*status, canned);
                        *n -= 1;
                        if *n == 0 {
                            st.fails.pop_front();
                        }
                        reply
                    } else {
                        self.data(&mut st, method, route, headers, soql.as_deref(), body)
                    }
                }
            };
            limit_info = Some(format!("api-usage={}/{}", st.api_used, st.api_max));
            reply
        };

        st.log(LoggedRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
            soql,
            body: (*method != Method::GET).then_some(body_text),
            query_options: header_str(headers, "sforce-query-options").map(str::to_string),
            auth_valid,
            status: reply.status,
        });
        let date = st.date_from_clock.then(|| st.clock());
        drop(st);

        let status =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = Response::new(Body::from(reply.body));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        if let Some(v) = date.and_then(http_date) {
            resp.headers_mut().insert(header::DATE, v);
        }
        if let Some(info) = limit_info.and_then(|s| HeaderValue::from_str(&s).ok()) {
            resp.headers_mut().insert("sforce-limit-info", info);
        }
        resp
    }

    fn data(
        &self,
        st: &mut State,
        method: &Method,
        route: Route,
        headers: &HeaderMap,
        soql: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let not_allowed = |allowed: &str| {
            Reply::error(
                405,
                "METHOD_NOT_ALLOWED",
                &format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
            )
        };
        match route {
            Route::Query { all, version } => {
                if *method != Method::GET {
                    return not_allowed("GET,HEAD");
                }
                let Some(soql) = soql else {
                    return Reply::error(
                        400,
                        "MALFORMED_QUERY",
                        "A query string has to be specified",
                    );
                };
                self.query(st, soql, all, &version, batch_size(headers))
            }
            Route::QueryMore { locator, version } => {
                if *method != Method::GET {
                    return not_allowed("GET,HEAD");
                }
                self.query_more(st, &locator, &version)
            }
            Route::Describe { object } => {
                if *method != Method::GET {
                    return not_allowed("GET,HEAD");
                }
                let Some(ti) = st.table(&object) else {
                    return Reply::raw(404, NOT_FOUND);
                };
                let t = &st.tables[ti];
                let fields: Vec<Value> = t
                    .fields
                    .iter()
                    .filter(|f| !f.hidden)
                    .map(|f| {
                        json!({
                            "name": f.name,
                            "type": f.type_name,
                            "label": f.name,
                            "custom": f.name.ends_with("__c"),
                            "nillable": f.name != "Id",
                        })
                    })
                    .collect();
                Reply::json(
                    200,
                    &json!({
                        "name": t.name,
                        "label": t.name,
                        "keyPrefix": t.prefix,
                        "custom": t.name.ends_with("__c"),
                        "queryable": true,
                        "updateable": true,
                        "fields": fields,
                    }),
                )
            }
            Route::Composite => {
                if *method != Method::PATCH {
                    return not_allowed("PATCH");
                }
                self.composite(st, body)
            }
            Route::Other | Route::Token => Reply::raw(404, NOT_FOUND),
        }
    }

    fn token(&self, st: &mut State, headers: &HeaderMap, body: &str) -> Reply {
        let cfg = &self.inner.config;
        let form = parse_form(body);
        let grant = form_get(&form, "grant_type").unwrap_or("").to_string();
        st.grants.push(grant.clone());
        let basic = basic(headers);
        let client_ok = || {
            let (id, secret) = match (
                form_get(&form, "client_id"),
                form_get(&form, "client_secret"),
                &basic,
            ) {
                (Some(id), Some(secret), _) => (id, secret),
                (_, _, Some((id, secret))) => (id.as_str(), secret.as_str()),
                (Some(id), None, None) => (id, ""),
                _ => ("", ""),
            };
            id == cfg.client_id && secret == cfg.client_secret
        };
        let mut new_refresh = None;
        match grant.as_str() {
            "client_credentials" => {
                if !client_ok() {
                    return Reply::oauth("invalid_client", "invalid client credentials");
                }
            }
            "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
                let Some(assertion) = form_get(&form, "assertion") else {
                    return Reply::oauth("invalid_grant", "invalid assertion");
                };
                match self.verify_jwt(assertion) {
                    Ok(()) => {}
                    Err(description) => return Reply::oauth("invalid_grant", description),
                }
            }
            "refresh_token" => {
                if !client_ok() {
                    return Reply::oauth("invalid_client", "invalid client credentials");
                }
                if form_get(&form, "refresh_token") != Some(st.refresh_token.as_str()) {
                    return Reply::oauth("invalid_grant", "expired access/refresh token");
                }
                if cfg.rotate_refresh_tokens {
                    st.refresh_counter += 1;
                    st.refresh_token = format!("fake-refresh-{}", st.refresh_counter);
                    new_refresh = Some(st.refresh_token.clone());
                }
            }
            "" => return Reply::oauth("invalid_request", "grant type not specified"),
            _ => return Reply::oauth("unsupported_grant_type", "grant type not supported"),
        }
        let random: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(48)
            .map(char::from)
            .collect();
        let token = format!("00Dfake!{random}");
        st.tokens.insert(token.clone());
        let url = &self.inner.url;
        let signature =
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let mut resp = json!({
            "access_token": token,
            "instance_url": url,
            "id": format!("{url}/id/{ORG_ID}/{USER_ID}"),
            "token_type": "Bearer",
            "issued_at": Utc::now().timestamp_millis().to_string(),
            "signature": signature,
            "scope": "api",
        });
        if let Some(r) = new_refresh {
            resp["refresh_token"] = Value::String(r);
        }
        Reply::json(200, &resp)
    }

    fn verify_jwt(&self, assertion: &str) -> Result<(), &'static str> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        let cfg = &self.inner.config;
        let pem = cfg
            .jwt_public_key_pem
            .as_deref()
            .ok_or("invalid assertion")?;
        let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| "invalid assertion")?;
        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = 0;
        v.set_audience(&[
            self.inner.url.as_str(),
            "https://login.salesforce.com",
            "https://test.salesforce.com",
        ]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let data = decode::<JwtClaims>(assertion, &key, &v).map_err(|_| "invalid assertion")?;
        if data.claims.iss.as_deref() != Some(cfg.client_id.as_str()) {
            return Err("invalid assertion");
        }
        if data.claims.sub.as_deref() != Some(cfg.username.as_str()) {
            return Err("user hasn't approved this consumer");
        }
        Ok(())
    }

    fn query(&self, st: &mut State, soql: &str, all: bool, version: &str, batch: usize) -> Reply {
        let raw = match tokenize(soql).and_then(|toks| Parser { toks, pos: 0 }.parse()) {
            Ok(q) => q,
            Err(e) => return Reply::error(400, "MALFORMED_QUERY", &e),
        };
        let Some(ti) = st.table(&raw.object) else {
            return Reply::error(
                400,
                "INVALID_TYPE",
                &format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                    raw.object
                ),
            );
        };
        let table = &st.tables[ti];
        let no_column = |f: &str| {
            Reply::error(
                400,
                "INVALID_FIELD",
                &format!(
                    "No such column '{f}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                    table.name
                ),
            )
        };
        let mut fields = Vec::with_capacity(raw.fields.len());
        for f in &raw.fields {
            let Some(fi) = table.field(f) else {
                return no_column(f);
            };
            if fields.contains(&fi) {
                return Reply::error(
                    400,
                    "MALFORMED_QUERY",
                    &format!("duplicate field selected: {}", table.fields[fi].name),
                );
            }
            fields.push(fi);
        }
        let mut conds = Vec::with_capacity(raw.conds.len());
        for c in raw.conds {
            let Some(fi) = table.field(&c.field) else {
                return no_column(&c.field);
            };
            let def = &table.fields[fi];
            for lit in &c.lits {
                if let Err(ty) = lit_fits(def.kind, lit) {
                    return Reply::error(
                        400,
                        "INVALID_FIELD",
                        &format!(
                            "value of filter criterion for field '{}' must be of type {ty} and should not be enclosed in quotes",
                            def.name
                        ),
                    );
                }
            }
            conds.push(Cond {
                fi,
                is_deleted: table.is_deleted_field(fi),
                op: c.op,
                lits: c.lits,
            });
        }
        let order = match &raw.order {
            Some((f, desc, nulls_first)) => {
                let Some(fi) = table.field(f) else {
                    return no_column(f);
                };
                Some((fi, *desc, nulls_first.unwrap_or(!*desc)))
            }
            None => None,
        };
        let mut indices: Vec<u32> = Vec::new();
        for (i, row) in table.rows.iter().enumerate() {
            let Some(row) = row else {
                continue;
            };
            if row.deleted && !all {
                continue;
            }
            if conds.iter().all(|c| c.matches(row)) {
                indices.push(i as u32);
            }
        }
        if let Some((fi, desc, nulls_first)) = order {
            let is_del = table.is_deleted_field(fi);
            let rows = &table.rows;
            indices.sort_by(|&a, &b| {
                let ka = rows[a as usize]
                    .as_ref()
                    .map_or(&NULL_VAL, |r| field_val(r, fi, is_del));
                let kb = rows[b as usize]
                    .as_ref()
                    .map_or(&NULL_VAL, |r| field_val(r, fi, is_del));
                match (*ka == Val::Null, *kb == Val::Null) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) if nulls_first => std::cmp::Ordering::Less,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) if nulls_first => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    (false, false) => {
                        let o = cmp_vals(ka, kb);
                        if desc { o.reverse() } else { o }
                    }
                }
            });
        }
        if let Some(limit) = raw.limit {
            indices.truncate(limit);
        }
        let cursor = Cursor {
            table: ti,
            fields,
            indices,
            batch,
        };
        let more = cursor.indices.len() > batch;
        let n = if more {
            st.next_cursor += 1;
            st.next_cursor - 1
        } else {
            0
        };
        let body = render_page(st, &cursor, 0, version, n);
        if more {
            if st.cursor_order.len() >= CURSOR_CAP
                && let Some(old) = st.cursor_order.pop_front()
            {
                st.cursors.remove(&old);
            }
            st.cursors.insert(n, cursor);
            st.cursor_order.push_back(n);
        }
        Reply { status: 200, body }
    }

    fn query_more(&self, st: &mut State, locator: &str, version: &str) -> Reply {
        let invalid = || Reply::error(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
        let Some((loc, offset)) = locator.rsplit_once('-') else {
            return invalid();
        };
        let (Some(n), Ok(offset)) = (
            loc.strip_prefix("01gFAKE")
                .and_then(|n| n.parse::<u64>().ok()),
            offset.parse::<usize>(),
        ) else {
            return invalid();
        };
        let Some(cursor) = st.cursors.get(&n) else {
            return invalid();
        };
        if offset > cursor.indices.len() {
            return invalid();
        }
        let body = render_page(st, cursor, offset, version, n);
        Reply { status: 200, body }
    }

    fn composite(&self, st: &mut State, body: &[u8]) -> Reply {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Reply::error(
                    400,
                    "JSON_PARSER_ERROR",
                    &format!("Json Deserialization failed: {e}"),
                );
            }
        };
        if st.composite_bodies.len() >= LOG_CAP {
            st.composite_bodies.pop_front();
        }
        st.composite_bodies.push_back(v.clone());
        let all_or_none = v.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
        let Some(records) = v.get("records").and_then(Value::as_array) else {
            return Reply::error(
                400,
                "JSON_PARSER_ERROR",
                "Json Deserialization failed: 'records' must be an array",
            );
        };
        if records.len() > 200 {
            return Reply::error(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            );
        }
        type Plan = Result<(usize, String, Vec<(usize, Val)>), Value>;
        let fail = |code: &str, message: &str, fields: Vec<String>| -> Plan {
            Err(json!([{"statusCode": code, "message": message, "fields": fields}]))
        };
        let read_only = [
            "CreatedDate",
            "LastModifiedDate",
            "SystemModstamp",
            "IsDeleted",
            "CreatedById",
            "LastModifiedById",
            "IsClosed",
            "IsWon",
        ];
        let mut plans: Vec<Plan> = Vec::with_capacity(records.len());
        for rec in records {
            let Some(obj) = rec.as_object() else {
                plans.push(fail("MISSING_ARGUMENT", "record must be an object", vec![]));
                continue;
            };
            let ty = obj
                .get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Value::as_str);
            let Some(ty) = ty else {
                plans.push(fail(
                    "MISSING_ARGUMENT",
                    "sObject type must be specified in attributes",
                    vec![],
                ));
                continue;
            };
            let Some(ti) = st.table(ty) else {
                return Reply::error(
                    400,
                    "INVALID_TYPE",
                    &format!("sObject type '{ty}' is not supported."),
                );
            };
            let State {
                tables,
                interner,
                write_failures,
                ..
            } = &mut *st;
            let table = &tables[ti];
            let mut sets = Vec::new();
            let mut names = Vec::new();
            let mut ro = Vec::new();
            for (k, val) in obj {
                if k == "attributes" || k.eq_ignore_ascii_case("id") {
                    continue;
                }
                let Some(fi) = table.field(k) else {
                    return Reply::error(
                        400,
                        "INVALID_FIELD",
                        &format!("No such column '{k}' on sobject of type {}", table.name),
                    );
                };
                let def = &table.fields[fi];
                let converted = match to_val_strict(def.kind, val, interner) {
                    Ok(c) => c,
                    Err(ty) => {
                        return Reply::error(
                            400,
                            "JSON_PARSER_ERROR",
                            &format!(
                                "Cannot deserialize instance of {ty} from {} value for field {}",
                                json_kind(val),
                                def.name
                            ),
                        );
                    }
                };
                if read_only.contains(&def.name.as_str()) {
                    ro.push(def.name.clone());
                }
                names.push(def.name.clone());
                sets.push((fi, converted));
            }
            let id = obj
                .get("id")
                .or_else(|| obj.get("Id"))
                .and_then(Value::as_str);
            let Some(id) = id else {
                plans.push(fail(
                    "MISSING_ARGUMENT",
                    "Id not specified in an update call",
                    vec![],
                ));
                continue;
            };
            let plan = match table.row(id) {
                None => fail(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    vec![],
                ),
                Some(row) if row.deleted => fail("ENTITY_IS_DELETED", "entity is deleted", vec![]),
                Some(_) if write_failures.contains(id) => fail(
                    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    "rejected by the fake",
                    names,
                ),
                Some(_) if !ro.is_empty() => fail(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    &format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                        ro.join(", ")
                    ),
                    ro,
                ),
                Some(_) => Ok((ti, id.to_string(), sets)),
            };
            plans.push(plan);
        }
        let any_failed = plans.iter().any(Result::is_err);
        let now = st.clock();
        let results: Vec<Value> = plans
            .into_iter()
            .map(|plan| match plan {
                Err(errors) => json!({"success": false, "errors": errors}),
                Ok(_) if all_or_none && any_failed => json!({
                    "success": false,
                    "errors": [{
                        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
                        "fields": [],
                    }],
                }),
                Ok((ti, id, sets)) => {
                    let table = &mut st.tables[ti];
                    table.bump(&id, now, true);
                    if let Some(row) = table.row_mut(&id) {
                        for (fi, v) in sets {
                            row.set(fi, v);
                        }
                    }
                    json!({"id": id, "success": true, "errors": []})
                }
            })
            .collect();
        Reply::json(200, &Value::Array(results))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Renders the page of `cursor` (locator number `locator`) starting at `offset`.
fn render_page(st: &State, cursor: &Cursor, offset: usize, version: &str, locator: u64) -> Vec<u8> {
    let table = &st.tables[cursor.table];
    let total = cursor.indices.len();
    let start = offset.min(total);
    let end = start.saturating_add(cursor.batch).min(total);
    let done = end >= total;
    let mut out = Vec::with_capacity(64 + (end - start) * 96 * (cursor.fields.len() + 2));
    let _ = write!(out, "{{\"totalSize\":{total},\"done\":{done},");
    if !done {
        let _ = write!(
            out,
            "\"nextRecordsUrl\":\"/services/data/{version}/query/01gFAKE{locator}-{end}\","
        );
    }
    out.extend_from_slice(b"\"records\":[");
    let kinds: Vec<(Kind, bool)> = cursor
        .fields
        .iter()
        .map(|&fi| (table.fields[fi].kind, table.is_deleted_field(fi)))
        .collect();
    let mut first = true;
    for &i in &cursor.indices[start..end] {
        let Some(Some(row)) = table.rows.get(i as usize) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(b"{\"attributes\":{\"type\":");
        write_json_str(&mut out, &table.name);
        out.extend_from_slice(b",\"url\":");
        let id = match row.get(0) {
            Val::Str(s) => s.clone(),
            _ => Arc::from(""),
        };
        write_json_str(
            &mut out,
            &format!("/services/data/{version}/sobjects/{}/{id}", table.name),
        );
        out.push(b'}');
        for (&fi, &(kind, is_del)) in cursor.fields.iter().zip(&kinds) {
            out.push(b',');
            write_json_str(&mut out, &table.fields[fi].name);
            out.push(b':');
            write_val(&mut out, field_val(row, fi, is_del), kind);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}
