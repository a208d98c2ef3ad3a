//! The incremental mirror every API source shares: each object's records are
//! kept in the state (`mirror` table), so a cycle asks the upstream only for
//! what changed. A source says how to read an object whole and how to read
//! what changed since a moment ([`Reader`]); this module decides which,
//! stores the pages as they arrive, and keeps the cursor.
//!
//! - A **full read** runs the first time, on `once --full`, when what is read
//!   changed (the reader's signature: fields, filters), when the last sync is
//!   older than the source's horizon (deletions may have been forgotten
//!   upstream), or when nothing has marked a starting point yet. It stores
//!   every page, then sweeps away the records it did not see.
//! - An **incremental read** starts at the mark less [`OVERLAP`]: the mark
//!   is the upstream's own clock (its `Date` header) when the previous read
//!   began, so our clock's skew never matters, and the overlap covers
//!   transactions that were running then and committed later with an older
//!   timestamp. A record read twice is simply stored again (the mirror is
//!   keyed by id).
//! - The cursor moves only once an object's read finished. A read that fails
//!   half-way has stored whole pages only, each of them current, and the next
//!   cycle starts again from the old cursor: nothing is lost and nothing is
//!   half-written.
//!
//! **Layout.** A record is stored as its values only, a JSON array in the
//! order of the fields its reader names ([`Reader::fields`]); the field list
//! is kept once per object (a *layout*, `mirror_layouts`), and each row
//! names its layout. A change of fields starts a new layout; rows of the old
//! one stay readable until the full read that the change forces has swept
//! them, and the sweep forgets the layouts no row uses any more. Rows from
//! before layouts (JSON objects with field names) are replaced by one full
//! read (the cursor says which format its rows are in).

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::dataset::Table;
use crate::fast::FastMap;
use crate::model::Rejected;
use crate::store::{MirrorRow, State, StateError};
use crate::values::parse_timestamp;

/// How far back an incremental read reaches before the mark.
pub(crate) const OVERLAP: Duration = Duration::from_secs(5 * 60);

/// One page's worth of changes.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Records to store (new or changed).
    pub rows: Vec<MirrorRow>,
    /// Ids to remove (deleted or archived upstream, or no longer kept).
    pub gone: Vec<String>,
    /// Records read, whatever became of them.
    pub read: u64,
    /// The newest modification time in the page.
    pub newest: Option<DateTime<Utc>>,
}

/// Where a reader puts its pages. `put` returns false when storing failed:
/// the reader must stop and return (the failure is reported from here).
pub(crate) struct Store<'a> {
    state: &'a State,
    source: &'a str,
    object: &'a str,
    generation: i64,
    layout: i64,
    failure: Option<StateError>,
    read: u64,
    removed: u64,
    newest: Option<DateTime<Utc>>,
}

impl Store<'_> {
    pub(crate) fn put(&mut self, batch: Batch) -> bool {
        self.read += batch.read;
        self.removed += batch.gone.len() as u64;
        if let Some(t) = batch.newest
            && self.newest.is_none_or(|n| t > n)
        {
            self.newest = Some(t);
        }
        match self.state.mirror_apply(
            self.source,
            self.object,
            self.generation,
            self.layout,
            &batch.rows,
            &batch.gone,
        ) {
            Ok(()) => true,
            Err(e) => {
                self.failure = Some(e);
                false
            }
        }
    }
}

/// What a read cost, and when the upstream's clock says it began.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Read {
    pub calls: u64,
    pub started: Option<DateTime<Utc>>,
}

/// How a source reads one object.
pub(crate) trait Reader {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The object's name (also its name in the mirror).
    fn object(&self) -> &str;

    /// What the mirror's content depends on (fields, filters): a change
    /// means a full read.
    fn signature(&self) -> String;

    /// The fields each stored row holds, in order: the rows a reader puts
    /// are their values in this order ([`row`]). Names are unique.
    fn fields(&self) -> Vec<String>;

    /// Reads every record.
    async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, Self::Error>;

    /// Reads what changed at or after `since` (deleted records included,
    /// as removals).
    async fn read_since(
        &self,
        since: DateTime<Utc>,
        store: &mut Store<'_>,
    ) -> Result<Read, Self::Error>;
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Upstream(E),
    #[error(transparent)]
    State(#[from] StateError),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    /// Where the next incremental read starts (before the overlap).
    mark: Option<DateTime<Utc>>,
    signature: String,
    /// When the last read of this object finished (our clock).
    synced_at: DateTime<Utc>,
    /// The full read whose records the mirror holds.
    generation: i64,
    /// How the rows are stored: 0 (absent: before layouts) JSON objects with
    /// field names, [`ROWS`] values by position.
    #[serde(default)]
    rows: u32,
}

/// The row format this version writes: values by position.
const ROWS: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Full,
    Incremental,
}

/// What one object's sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectReport {
    pub object: String,
    pub mode: Mode,
    /// Why a full read ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Records read (deleted ones included).
    pub fetched: u64,
    /// Records removed from the mirror (deleted upstream, no longer kept, or
    /// not seen by a full read).
    pub removed: u64,
    /// Read calls.
    pub calls: u64,
}

/// When a full read is forced by age: `horizon` and how to say it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Horizon {
    pub max_age: Duration,
    pub reason: &'static str,
}

/// Brings one object's mirror up to date. `wall_now` is the real clock
/// (upstream timestamps are real time, whatever `--now` says).
pub(crate) async fn sync<R: Reader>(
    state: &State,
    source: &str,
    reader: &R,
    full: bool,
    horizon: Horizon,
    wall_now: DateTime<Utc>,
) -> Result<ObjectReport, MirrorError<R::Error>> {
    let key = format!("{source}/{}", reader.object());
    let cursor: Option<Cursor> = state
        .cursor(&key)?
        .and_then(|text| serde_json::from_str(&text).ok());
    let signature = reader.signature();
    let since = cursor.as_ref().and_then(|c| c.mark.map(|m| (c, m)));
    let reason = match (&cursor, since) {
        _ if full => Some("requested"),
        (None, _) => Some("first sync"),
        (Some(c), _) if c.rows != ROWS => {
            Some("the mirror's records are stored with their field names (older version)")
        }
        (Some(c), _) if c.signature != signature => Some("the fields read changed"),
        (Some(c), _) if (wall_now - c.synced_at).to_std().unwrap_or_default() > horizon.max_age => {
            Some(horizon.reason)
        }
        (Some(_), None) => Some("nothing seen yet"),
        (Some(_), Some(_)) => None,
    };
    // `stored`: whether the mirror held records of this object before the
    // read (only then can a full read leave any to sweep).
    let (generation, stored) = match (reason, since) {
        (None, Some((c, _))) => (c.generation, true),
        // Newer than every record stored so far, even when our clock went
        // back (or two full reads share a millisecond): the sweep removes
        // what is older.
        _ => match state.mirror_generation(source, reader.object())? {
            Some(g) => (wall_now.timestamp_millis().max(g + 1), true),
            None => (wall_now.timestamp_millis(), false),
        },
    };
    let fields = Value::from(reader.fields()).to_string();
    let layout = state.mirror_layout(source, reader.object(), &fields)?;
    let mut store = Store {
        state,
        source,
        object: reader.object(),
        generation,
        layout,
        failure: None,
        read: 0,
        removed: 0,
        newest: None,
    };
    let read = match (reason, since) {
        (None, Some((_, mark))) => {
            let from = mark - chrono::Duration::from_std(OVERLAP).unwrap_or_default();
            reader.read_since(from, &mut store).await
        }
        _ => reader.read_all(&mut store).await,
    };
    if let Some(e) = store.failure.take() {
        return Err(e.into());
    }
    let read = read.map_err(MirrorError::Upstream)?;
    let mut removed = store.removed;
    // A full read into an empty mirror stored every record it holds: there
    // is nothing older to sweep, and the sweep would scan them all (0.16 s
    // for a million). Layouts left from before are swept by the next full
    // read that finds records.
    if reason.is_some() && stored {
        removed += state.mirror_sweep(source, reader.object(), generation, layout)? as u64;
    }
    let next = Cursor {
        mark: read
            .started
            .or(store.newest)
            .or_else(|| since.map(|(_, m)| m)),
        signature,
        synced_at: wall_now,
        generation,
        rows: ROWS,
    };
    state.set_cursor(
        &key,
        &serde_json::to_string(&next)
            .expect("a sync cursor (strings and timestamps) serialises to JSON"),
        wall_now,
    )?;
    let report = ObjectReport {
        object: reader.object().to_string(),
        mode: if reason.is_some() {
            Mode::Full
        } else {
            Mode::Incremental
        },
        reason,
        fetched: store.read,
        removed,
        calls: read.calls,
    };
    tracing::info!(
        source,
        object = %report.object,
        mode = ?report.mode,
        reason = report.reason.unwrap_or(""),
        fetched = report.fetched,
        removed = report.removed,
        calls = report.calls,
        "Object synced."
    );
    Ok(report)
}

/// A record's values in the order of `fields` (a field the record lacks is
/// null), as the mirror stores them.
pub(crate) fn row(fields: &[String], mut record: Map<String, Value>) -> String {
    Value::Array(
        fields
            .iter()
            .map(|f| record.remove(f).unwrap_or(Value::Null))
            .collect(),
    )
    .to_string()
}

/// A JSON object's members as raw JSON text, borrowed from the page they came
/// in: a reader takes out the few it keeps without building a map of values
/// per record. A repeated name reads as its last value, as in a parsed
/// object.
#[derive(Debug, Default)]
pub(crate) struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> RawObject<'a> {
    /// The members of `raw`, or `None` when it is not an object.
    pub(crate) fn parse(raw: &'a RawValue) -> Option<RawObject<'a>> {
        serde_json::from_str(raw.get()).ok()
    }

    /// A member's raw value (`null` included).
    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// A member that is a string, unescaped (`None` for any other type).
    pub(crate) fn str(&self, name: &str) -> Option<Cow<'a, str>> {
        let raw = self.get(name)?.get();
        if !raw.starts_with('"') {
            return None;
        }
        match serde_json::from_str::<&str>(raw) {
            Ok(s) => Some(Cow::Borrowed(s)),
            // Escapes: the unescaped text is a new string.
            Err(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
        }
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<RawObject<'de>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((name, value)) = map.next_entry::<Name<'de>, &'de RawValue>()? {
                    members.push((name.0, value));
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(Members)
    }
}

/// A member name, borrowed unless it holds escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Text)
    }
}

/// [`row`] for a record read as raw members: the values' JSON text in the
/// order of `fields` (a field the record lacks is null), copied as the
/// upstream wrote it. It reads back as the same values.
pub(crate) fn raw_row(fields: &[String], record: &RawObject) -> String {
    let values: Vec<&str> = fields
        .iter()
        .map(|f| record.get(f).map_or("null", RawValue::get))
        .collect();
    let mut out =
        String::with_capacity(2 + values.len() + values.iter().map(|v| v.len()).sum::<usize>());
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(v);
    }
    out.push(']');
    out
}

/// A stored record: its values, read by field name through its layout.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    fields: &'a [String],
    values: Vec<Value>,
}

impl Record<'_> {
    /// A field's value; a null one is absent.
    pub fn get(&self, field: &str) -> Option<&Value> {
        let i = self.fields.iter().position(|f| f == field)?;
        self.values.get(i).filter(|v| !v.is_null())
    }

    /// The record as a JSON object (tests, inspection).
    pub fn to_map(&self) -> Map<String, Value> {
        self.fields
            .iter()
            .cloned()
            .zip(self.values.iter().cloned())
            .collect()
    }
}

/// What the field readers ([`text`], [`flag`], ...) read: a stored record,
/// or a JSON object inside one.
pub(crate) trait Fields {
    fn field(&self, name: &str) -> Option<&Value>;
}

impl Fields for Record<'_> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

impl Fields for Map<String, Value> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// An object's layouts: number -> field names (or why they are unreadable).
struct Layouts(FastMap<i64, Result<Vec<String>, String>>);

impl Layouts {
    fn load(state: &State, source: &str, object: &str) -> Result<Layouts, StateError> {
        Ok(Layouts(
            state
                .mirror_layouts(source, object)?
                .into_iter()
                .map(|(layout, fields)| {
                    let names = serde_json::from_str::<Vec<String>>(&fields)
                        .map_err(|e| format!("unreadable mirror layout {layout}: {e}"));
                    (layout, names)
                })
                .collect(),
        ))
    }

    /// Parses one stored row.
    fn record(&self, layout: Option<i64>, data: &str) -> Result<Record<'_>, String> {
        let Some(layout) = layout else {
            return Err(
                "unreadable mirror record: stored with field names by an older version \
                 (the next full read replaces it)"
                    .into(),
            );
        };
        let fields = match self.0.get(&layout) {
            Some(Ok(fields)) => fields.as_slice(),
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(format!("unreadable mirror record: unknown layout {layout}")),
        };
        let values: Vec<Value> =
            serde_json::from_str(data).map_err(|e| format!("unreadable mirror record: {e}"))?;
        if values.len() != fields.len() {
            return Err(format!(
                "unreadable mirror record: {} values for {} fields",
                values.len(),
                fields.len()
            ));
        }
        Ok(Record { fields, values })
    }
}

/// Reads every mirrored record of an object and maps each, parsed, with
/// `map` on all cores, a chunk at a time (parsing a million records is
/// most of building a dataset); rows and rejections land in `into`, in id
/// order. The rows are read from the state on this thread while the chunk
/// before is mapped on another, so reading and mapping overlap.
pub(crate) fn scan_into<T: Send>(
    state: &State,
    source: &str,
    object: &str,
    into: &mut Mapped<T>,
    map: impl Fn(&str, Record<'_>) -> Result<T, String> + Sync,
) -> Result<(), StateError> {
    use rayon::prelude::*;
    const CHUNK: usize = 16_384;
    type Chunk = Vec<(String, Option<i64>, String)>;
    let layouts = Layouts::load(state, source, object)?;
    let (layouts, map) = (&layouts, &map);
    std::thread::scope(|scope| {
        // Two chunks in flight at most: one being mapped, one waiting.
        let (send, chunks) = std::sync::mpsc::sync_channel::<Chunk>(1);
        let mapper = scope.spawn(move || {
            for mut chunk in chunks {
                let mapped: Vec<Result<T, String>> = chunk
                    .par_iter()
                    .map(|(id, layout, data)| {
                        layouts.record(*layout, data).and_then(|r| map(id, r))
                    })
                    .collect();
                into.rows.reserve(mapped.len());
                for ((id, _, _), m) in chunk.drain(..).zip(mapped) {
                    match m {
                        Ok(row) => into.rows.push(row),
                        Err(e) => into.reject(&id, e),
                    }
                }
            }
        });
        let mut chunk: Chunk = Vec::with_capacity(CHUNK);
        let scanned = state.mirror_scan(source, object, |id, layout, data| {
            chunk.push((id.to_string(), layout, data.to_string()));
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                // The mapper only stops early by panicking, which the join
                // below reports.
                let _ = send.send(full);
            }
        });
        if !chunk.is_empty() {
            let _ = send.send(chunk);
        }
        drop(send);
        if let Err(panic) = mapper.join() {
            std::panic::resume_unwind(panic);
        }
        scanned
    })
}

/// Reads every mirrored record of an object and hands each, parsed, to
/// `each`.
pub fn scan(
    state: &State,
    source: &str,
    object: &str,
    mut each: impl FnMut(&str, Result<Record<'_>, String>),
) -> Result<(), StateError> {
    let layouts = Layouts::load(state, source, object)?;
    state.mirror_scan(source, object, |id, layout, data| {
        each(id, layouts.record(layout, data))
    })
}

/// Stores records given as JSON objects (an id and its fields) in a layout
/// made of every field they hold: for tests that set a mirror up by hand.
#[cfg(test)]
pub(crate) fn put_objects(
    state: &State,
    source: &str,
    object: &str,
    generation: i64,
    records: &[(String, Map<String, Value>)],
) -> Result<(), StateError> {
    let mut fields: Vec<String> = Vec::new();
    for (_, r) in records {
        for k in r.keys() {
            if !fields.contains(k) {
                fields.push(k.clone());
            }
        }
    }
    let layout = state.mirror_layout(source, object, &Value::from(fields.clone()).to_string())?;
    let rows: Vec<MirrorRow> = records
        .iter()
        .map(|(id, r)| MirrorRow {
            id: id.clone(),
            data: row(&fields, r.clone()),
        })
        .collect();
    state.mirror_apply(source, object, generation, layout, &rows, &[])
}

/// A field's text: strings as they are, numbers and booleans printed; empty
/// and null are absent.
pub(crate) fn text<R: Fields + ?Sized>(r: &R, field: &str) -> Option<String> {
    match r.field(field)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn flag<R: Fields + ?Sized>(r: &R, field: &str) -> Option<bool> {
    match r.field(field)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => crate::values::parse_bool(s),
        _ => None,
    }
}

pub(crate) fn number<R: Fields + ?Sized>(r: &R, field: &str) -> Result<Option<f64>, String> {
    match r.field(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => crate::values::parse_amount(s)
            .map(Some)
            .ok_or_else(|| format!("{field}: not a number: '{s}'")),
        Some(v) => Err(format!("{field}: not a number: {v}")),
    }
}

pub(crate) fn timestamp<R: Fields + ?Sized>(
    r: &R,
    field: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
    match text(r, field) {
        None => Ok(None),
        Some(s) => parse_timestamp(&s)
            .map(Some)
            .ok_or_else(|| format!("{field}: not a timestamp: '{s}'")),
    }
}

/// Records of one object, each parsed, mapped, or rejected with its Id.
pub(crate) struct Mapped<T> {
    pub label: String,
    pub rows: Vec<T>,
    pub rejected: Vec<Rejected>,
}

impl<T> Mapped<T> {
    pub(crate) fn new(source: &str, object: &str) -> Self {
        Mapped {
            label: format!("{source} {object}"),
            rows: Vec::new(),
            rejected: Vec::new(),
        }
    }

    pub(crate) fn reject(&mut self, id: &str, reason: String) {
        self.rejected.push(Rejected {
            file: format!("{} {id}", self.label),
            line: 0,
            reason,
        });
    }

    pub(crate) fn table(self) -> Table<T> {
        Table::from_records(&self.label, self.rows, self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Records a page holds: small, so that an object spans several pages.
    const PAGE: usize = 3;
    /// Upstream time one page takes.
    const PAGE_MS: i64 = 1_000;
    /// The horizon the property test runs with: two hours of our clock.
    const MAX_AGE_MS: i64 = 2 * 3_600_000;
    const OVERLAP_MS: i64 = 300_000;

    /// A change upstream.
    #[derive(Debug, Clone)]
    enum Change {
        Upsert(u8),
        /// A change whose transaction began `.1` ms before it committed:
        /// stamped then, visible only now.
        Late(u8, i64),
        Delete(u8),
        /// A hard delete the upstream forgets at once.
        Purge(u8),
    }

    /// An upstream with its own clock: id -> (modified ms, deleted, version).
    #[derive(Default)]
    struct Upstream {
        now: i64,
        records: BTreeMap<u8, (i64, bool, u32)>,
        /// For the next read: changes committed after its first page, and
        /// the page at which it fails (a page past the end fails after the
        /// last one).
        during: Vec<Change>,
        fail_at: Option<usize>,
    }

    impl Upstream {
        fn apply(&mut self, change: &Change) {
            let now = self.now;
            match *change {
                Change::Upsert(id) => {
                    let v = self.records.get(&id).map_or(0, |r| r.2 + 1);
                    self.records.insert(id, (now, false, v));
                }
                Change::Late(id, back) => {
                    let v = self.records.get(&id).map_or(0, |r| r.2 + 1);
                    self.records.insert(id, (now - back, false, v));
                }
                Change::Delete(id) => {
                    if let Some(r) = self.records.get_mut(&id) {
                        *r = (now, true, r.2);
                    }
                }
                Change::Purge(id) => {
                    self.records.remove(&id);
                }
            }
        }

        fn live(&self) -> BTreeMap<u8, u32> {
            self.records
                .iter()
                .filter(|(_, r)| !r.1)
                .map(|(id, r)| (*id, r.2))
                .collect()
        }
    }

    struct FakeReader(std::sync::Mutex<Upstream>);

    impl FakeReader {
        /// Pages of [`PAGE`] records in id order, each read live (as an API's
        /// pages are): a change to an id not reached yet is seen, one to an
        /// id already passed is not.
        fn read(&self, since: Option<i64>, store: &mut Store<'_>) -> Result<Read, std::io::Error> {
            let mut up = self.0.lock().unwrap();
            let started = Utc.timestamp_millis_opt(up.now).single();
            let during = std::mem::take(&mut up.during);
            let fail_at = up.fail_at.take();
            let mut applied = false;
            let mut after: Option<u8> = None;
            let mut page = 0;
            loop {
                if fail_at == Some(page) {
                    if !applied {
                        during.iter().for_each(|c| up.apply(c));
                    }
                    return Err(std::io::Error::other("injected failure"));
                }
                let mut batch = Batch::default();
                let ids: Vec<u8> = up
                    .records
                    .iter()
                    .filter(|(id, _)| after.is_none_or(|a| **id > a))
                    .filter(|(_, (modified, deleted, _))| match since {
                        None => !deleted,
                        Some(s) => *modified >= s,
                    })
                    .map(|(id, _)| *id)
                    .take(PAGE)
                    .collect();
                if ids.is_empty() && page > 0 {
                    break;
                }
                for id in &ids {
                    let (_, deleted, version) = up.records[id];
                    batch.read += 1;
                    if deleted {
                        batch.gone.push(id.to_string());
                    } else {
                        batch.rows.push(MirrorRow {
                            id: id.to_string(),
                            data: format!("[{version}]"),
                        });
                    }
                }
                after = ids.last().copied().or(after);
                store.put(batch);
                up.now += PAGE_MS;
                if !applied {
                    during.iter().for_each(|c| up.apply(c));
                    applied = true;
                }
                page += 1;
                if ids.len() < PAGE {
                    break;
                }
            }
            if fail_at.is_some() {
                return Err(std::io::Error::other(
                    "injected failure after the last page",
                ));
            }
            Ok(Read {
                calls: page as u64,
                started,
            })
        }
    }

    impl Reader for FakeReader {
        type Error = std::io::Error;
        fn object(&self) -> &str {
            "thing"
        }
        fn signature(&self) -> String {
            "thing".into()
        }
        fn fields(&self) -> Vec<String> {
            vec!["version".into()]
        }
        async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, Self::Error> {
            self.read(None, store)
        }
        async fn read_since(
            &self,
            since: DateTime<Utc>,
            store: &mut Store<'_>,
        ) -> Result<Read, Self::Error> {
            self.read(Some(since.timestamp_millis()), store)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Change(Change),
        Advance(i64),
        /// A sync with our clock `offset` ms off the upstream's, changes
        /// committed while it reads, and maybe a failure at a page.
        Sync {
            full: bool,
            offset: i64,
            during: Vec<Change>,
            fail_at: Option<usize>,
        },
    }

    fn id() -> impl Strategy<Value = u8> {
        0u8..12
    }

    /// How late a commit is: anywhere inside the overlap, exactly at its
    /// edge, and past it.
    fn lateness() -> impl Strategy<Value = i64> {
        prop_oneof![
            2 => 1i64..OVERLAP_MS,
            2 => Just(OVERLAP_MS),
            1 => Just(OVERLAP_MS + 1),
            1 => OVERLAP_MS + 1..3 * OVERLAP_MS,
        ]
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            4 => id().prop_map(Change::Upsert),
            2 => (id(), lateness()).prop_map(|(i, b)| Change::Late(i, b)),
            2 => id().prop_map(Change::Delete),
            1 => id().prop_map(Change::Purge),
        ]
    }

    /// Changes during a read: any lateness within the overlap (a
    /// transaction running when the read began).
    fn change_during() -> impl Strategy<Value = Change> {
        prop_oneof![
            2 => id().prop_map(Change::Upsert),
            1 => (id(), 1i64..=OVERLAP_MS).prop_map(|(i, b)| Change::Late(i, b)),
            1 => id().prop_map(Change::Delete),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => change().prop_map(Op::Change),
            1 => (1i64..5_000).prop_map(Op::Advance),
            2 => (1i64..3_600_000).prop_map(Op::Advance),
            4 => (
                prop::bool::weighted(0.15),
                -600_000i64..=600_000,
                prop::collection::vec(change_during(), 0..4),
                prop::option::weighted(0.25, 0usize..5),
            )
                .prop_map(|(full, offset, during, fail_at)| Op::Sync {
                    full,
                    offset,
                    during,
                    fail_at,
                }),
        ]
    }

    fn mirror(state: &State) -> BTreeMap<u8, u32> {
        let mut mirror = BTreeMap::new();
        scan(state, "test", "thing", |id, r| {
            let version = r.unwrap().get("version").unwrap().as_u64().unwrap();
            mirror.insert(id.parse::<u8>().unwrap(), version as u32);
        })
        .unwrap();
        mirror
    }

    /// One record a page; fails before the page `fail_at` when set.
    struct ListReader {
        fields: Vec<String>,
        records: Vec<(String, Vec<Value>)>,
        fail_at: Option<usize>,
    }

    impl ListReader {
        fn read(&self, store: &mut Store<'_>) -> Result<Read, std::io::Error> {
            for (page, (id, values)) in self.records.iter().enumerate() {
                if self.fail_at == Some(page) {
                    return Err(std::io::Error::other("injected failure"));
                }
                let record: Map<String, Value> = self
                    .fields
                    .iter()
                    .cloned()
                    .zip(values.iter().cloned())
                    .collect();
                store.put(Batch {
                    rows: vec![MirrorRow {
                        id: id.clone(),
                        data: row(&self.fields, record),
                    }],
                    read: 1,
                    ..Batch::default()
                });
            }
            Ok(Read {
                calls: self.records.len() as u64,
                started: Some(at(1_800_000_000_000)),
            })
        }
    }

    impl Reader for ListReader {
        type Error = std::io::Error;
        fn object(&self) -> &str {
            "thing"
        }
        fn signature(&self) -> String {
            self.fields.join(",")
        }
        fn fields(&self) -> Vec<String> {
            self.fields.clone()
        }
        async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, Self::Error> {
            self.read(store)
        }
        async fn read_since(
            &self,
            _: DateTime<Utc>,
            store: &mut Store<'_>,
        ) -> Result<Read, Self::Error> {
            self.read(store)
        }
    }

    const HORIZON: Horizon = Horizon {
        max_age: Duration::from_secs(86_400),
        reason: "old",
    };

    /// Every record by id, as (field, value) pairs of its layout, or the
    /// reason it is unreadable.
    fn records(state: &State) -> BTreeMap<String, Result<Vec<(String, Value)>, String>> {
        let mut out = BTreeMap::new();
        scan(state, "test", "thing", |id, r| {
            out.insert(id.to_string(), r.map(|r| r.to_map().into_iter().collect()));
        })
        .unwrap();
        out
    }

    fn pairs(p: &[(&str, Value)]) -> Result<Vec<(String, Value)>, String> {
        Ok(p.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn a_record_is_stored_as_its_values_and_read_by_name() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.db")).unwrap();
        let reader = ListReader {
            fields: vec!["Name".into(), "Amount".into(), "Open".into()],
            records: vec![("a".into(), vec!["Acme".into(), 2.5.into(), Value::Null])],
            fail_at: None,
        };
        rt.block_on(sync(
            &state,
            "test",
            &reader,
            false,
            HORIZON,
            at(1_800_000_000_000),
        ))
        .unwrap();
        let mut stored = Vec::new();
        state
            .mirror_scan("test", "thing", |_, _, data| stored.push(data.to_string()))
            .unwrap();
        assert_eq!(
            stored,
            [r#"["Acme",2.5,null]"#],
            "values only, in field order"
        );
        scan(&state, "test", "thing", |_, r| {
            let r = r.unwrap();
            assert_eq!(text(&r, "Name").as_deref(), Some("Acme"));
            assert_eq!(number(&r, "Amount"), Ok(Some(2.5)));
            assert_eq!(r.get("Open"), None, "null is absent");
            assert_eq!(r.get("Missing"), None);
        })
        .unwrap();
    }

    /// Read and mapped on two threads, several chunks long: every record
    /// once, rows in id order, and each rejection under its record's id.
    #[test]
    fn scan_into_maps_every_chunk_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.db")).unwrap();
        let n = 40_000;
        let records: Vec<(String, Map<String, Value>)> = (0..n)
            .map(|i| {
                let mut r = Map::new();
                r.insert("N".into(), Value::from(i));
                (format!("r{i:06}"), r)
            })
            .collect();
        put_objects(&state, "test", "thing", 1, &records).unwrap();
        let mut into = Mapped::new("test", "thing");
        scan_into(&state, "test", "thing", &mut into, |id, r| {
            let n = number(&r, "N")?.ok_or("N: empty")? as u64;
            if n % 1_000 == 7 {
                return Err(format!("{id}: refused"));
            }
            Ok(n)
        })
        .unwrap();
        let want: Vec<u64> = (0..n).filter(|i| i % 1_000 != 7).collect();
        assert_eq!(into.rows, want);
        assert_eq!(into.rejected.len(), 40);
        for (k, r) in into.rejected.iter().enumerate() {
            let id = format!("r{:06}", k * 1_000 + 7);
            assert_eq!(r.file, format!("test thing {id}"));
            assert_eq!(r.reason, format!("{id}: refused"));
        }
    }

    /// A change of fields stores the records in a new layout; while the
    /// full read it forces is unfinished, the records not read again keep
    /// theirs and read as they were; once it finished, the old layout goes.
    #[test]
    fn a_change_of_fields_keeps_old_rows_readable_until_the_full_read_sweeps_them() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.db")).unwrap();
        let now = at(1_800_000_000_000);
        let old = ListReader {
            fields: vec!["Name".into()],
            records: vec![
                ("a".into(), vec!["A".into()]),
                ("b".into(), vec!["B".into()]),
            ],
            fail_at: None,
        };
        rt.block_on(sync(&state, "test", &old, false, HORIZON, now))
            .unwrap();
        let mut new = ListReader {
            fields: vec!["Amount".into(), "Name".into()],
            records: vec![
                ("a".into(), vec![1.into(), "A2".into()]),
                ("b".into(), vec![2.into(), "B2".into()]),
            ],
            fail_at: Some(1),
        };
        let later = now + chrono::Duration::minutes(1);
        assert!(
            rt.block_on(sync(&state, "test", &new, false, HORIZON, later))
                .is_err()
        );
        assert_eq!(
            records(&state),
            BTreeMap::from([
                (
                    "a".to_string(),
                    pairs(&[("Amount", 1.into()), ("Name", "A2".into())])
                ),
                ("b".to_string(), pairs(&[("Name", "B".into())])),
            ])
        );
        assert_eq!(state.mirror_layouts("test", "thing").unwrap().len(), 2);
        new.fail_at = None;
        let report = rt
            .block_on(sync(&state, "test", &new, false, HORIZON, later))
            .unwrap();
        assert_eq!(report.reason, Some("the fields read changed"));
        assert_eq!(
            records(&state),
            BTreeMap::from([
                (
                    "a".to_string(),
                    pairs(&[("Amount", 1.into()), ("Name", "A2".into())])
                ),
                (
                    "b".to_string(),
                    pairs(&[("Amount", 2.into()), ("Name", "B2".into())])
                ),
            ])
        );
        assert_eq!(
            state.mirror_layouts("test", "thing").unwrap(),
            [(2, r#"["Amount","Name"]"#.to_string())],
            "the old layout went with the sweep"
        );
    }

    /// A state from before layouts: its rows are JSON objects with field
    /// names, its cursors say nothing of the format. The next sync reads in
    /// full, says why, and leaves values only; until it succeeds the old
    /// rows stay (unreadable to the mapping, which runs only after every
    /// object synced).
    #[test]
    fn rows_stored_with_field_names_are_replaced_by_one_full_read() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let state = State::open(&path).unwrap();
        let now = at(1_800_000_000_000);
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute(
                "INSERT INTO mirror (source, object, id, modstamp, generation, data)
                 VALUES ('test', 'thing', 'a', NULL, 5, '{\"Name\":\"A\"}'),
                        ('test', 'thing', 'gone', NULL, 5, '{\"Name\":\"G\"}')",
                [],
            )
            .unwrap();
        }
        let old_cursor = serde_json::json!({
            "mark": now - chrono::Duration::minutes(10),
            "signature": "Name",
            "synced_at": now - chrono::Duration::minutes(10),
            "generation": 5,
        });
        state
            .set_cursor("test/thing", &old_cursor.to_string(), now)
            .unwrap();
        let before = records(&state);
        assert_eq!(before.len(), 2);
        assert!(
            before["a"]
                .as_ref()
                .is_err_and(|e| e.contains("older version")),
            "{before:?}"
        );
        let mut reader = ListReader {
            fields: vec!["Name".into()],
            records: vec![
                ("a".into(), vec!["A".into()]),
                ("b".into(), vec!["B".into()]),
            ],
            fail_at: Some(1),
        };
        assert!(
            rt.block_on(sync(&state, "test", &reader, false, HORIZON, now))
                .is_err()
        );
        assert_eq!(records(&state).len(), 2, "a failed read removes nothing");
        reader.fail_at = None;
        let report = rt
            .block_on(sync(&state, "test", &reader, false, HORIZON, now))
            .unwrap();
        assert_eq!(report.mode, Mode::Full);
        assert_eq!(
            report.reason,
            Some("the mirror's records are stored with their field names (older version)")
        );
        assert_eq!(report.removed, 1, "the record not seen again is swept");
        assert_eq!(
            records(&state),
            BTreeMap::from([
                ("a".to_string(), pairs(&[("Name", "A".into())])),
                ("b".to_string(), pairs(&[("Name", "B".into())])),
            ])
        );
        let next = rt
            .block_on(sync(&state, "test", &reader, false, HORIZON, now))
            .unwrap();
        assert_eq!(next.mode, Mode::Incremental, "once is enough");
    }

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).single().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever happens upstream (changes, commits during a read, late
        /// commits up to and past the overlap, soft and hard deletes), with
        /// our clock up to 10 minutes off the upstream's, reads that fail
        /// half-way and cursors that age past the horizon:
        /// - a sync reads in full exactly when it must, and says why;
        /// - a failed sync leaves the cursor where it was and removes
        ///   nothing it should not;
        /// - after a sync, the mirror holds exactly the live records, each
        ///   at its latest version, except those changed during that read
        ///   (caught by the next one), a purge (caught by the next full
        ///   read) and a commit later than the overlap allows (likewise).
        #[test]
        fn after_a_sync_the_mirror_is_the_live_set(ops in proptest::collection::vec(op(), 1..80)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let state = State::scratch_copy(&dir.path().join("none.db")).unwrap();
            let reader = FakeReader(std::sync::Mutex::new(Upstream {
                now: 1_800_000_000_000,
                ..Default::default()
            }));
            let horizon = Horizon {
                max_age: Duration::from_millis(MAX_AGE_MS as u64),
                reason: "old",
            };
            // The model: the upstream time the last successful read began
            // (the cursor's mark), our time it finished, and the ids the
            // mirror may have wrong until the next full read.
            let mut mark: Option<i64> = None;
            let mut synced_at: Option<i64> = None;
            let mut sticky: BTreeSet<u8> = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Change(change) => {
                        let mut up = reader.0.lock().unwrap();
                        let existed = up.records.contains_key(&match change {
                            Change::Upsert(i) | Change::Late(i, _) | Change::Delete(i) | Change::Purge(i) => i,
                        });
                        up.apply(&change);
                        match change {
                            Change::Late(i, back) => {
                                // Stamped before the next read's reach: it may be missed.
                                if mark.is_some_and(|m| up.now - back < m - OVERLAP_MS) {
                                    sticky.insert(i);
                                } else {
                                    sticky.remove(&i);
                                }
                            }
                            Change::Purge(i) if existed => {
                                sticky.insert(i);
                            }
                            Change::Upsert(i) => {
                                sticky.remove(&i);
                            }
                            Change::Delete(i) if existed => {
                                sticky.remove(&i);
                            }
                            _ => {}
                        }
                    }
                    Op::Advance(ms) => reader.0.lock().unwrap().now += ms,
                    Op::Sync { full, offset, during, fail_at } => {
                        let (wall, started) = {
                            let mut up = reader.0.lock().unwrap();
                            up.during = during.clone();
                            up.fail_at = fail_at;
                            (up.now + offset, up.now)
                        };
                        let expected = if full {
                            Some("requested")
                        } else if synced_at.is_none() {
                            Some("first sync")
                        } else if synced_at.is_some_and(|s| wall - s > MAX_AGE_MS) {
                            Some("old")
                        } else {
                            None
                        };
                        let touched: BTreeSet<u8> = during
                            .iter()
                            .map(|c| match *c {
                                Change::Upsert(i) | Change::Late(i, _) | Change::Delete(i) | Change::Purge(i) => i,
                            })
                            .collect();
                        let cursor_before = state.cursor("test/thing").unwrap();
                        let mirror_before = mirror(&state);
                        let result = rt.block_on(sync(&state, "test", &reader, full, horizon, at(wall)));
                        let after = mirror(&state);
                        let mut up = reader.0.lock().unwrap();
                        for c in &during {
                            match c {
                                Change::Upsert(i) | Change::Late(i, _) => {
                                    sticky.remove(i);
                                }
                                // A delete of a purged record changes nothing.
                                Change::Delete(i) if up.records.contains_key(i) => {
                                    sticky.remove(i);
                                }
                                _ => {}
                            }
                        }
                        if fail_at.is_some() {
                            prop_assert!(result.is_err(), "a failed read fails the sync");
                            prop_assert_eq!(
                                state.cursor("test/thing").unwrap(),
                                cursor_before,
                                "a failed read leaves the cursor"
                            );
                            // Nothing removed but what the upstream deleted.
                            for id in mirror_before.keys() {
                                if !after.contains_key(id) && !touched.contains(id) {
                                    prop_assert!(
                                        up.records.get(id).is_none_or(|r| r.1),
                                        "record {} removed by a failed read", id
                                    );
                                }
                            }
                        } else {
                            let report = result.unwrap();
                            prop_assert_eq!(report.reason, expected);
                            prop_assert_eq!(
                                report.mode,
                                if expected.is_some() { Mode::Full } else { Mode::Incremental }
                            );
                            if expected.is_some() {
                                sticky.clear();
                            }
                            mark = Some(started);
                            synced_at = Some(wall);
                            let live = up.live();
                            for id in live.keys().chain(after.keys()) {
                                if sticky.contains(id) || touched.contains(id) {
                                    continue;
                                }
                                prop_assert_eq!(after.get(id), live.get(id), "record {}", id);
                            }
                        }
                        // Time moves on after a read.
                        up.now += 1;
                    }
                }
            }
        }
    }
}
