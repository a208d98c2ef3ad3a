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

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use serde_json::{Map, Value};

use crate::model::Rejected;
use crate::sources::files::Table;
use crate::state::{MirrorRow, State, StateError};
use crate::values::parse_timestamp;

/// How far back an incremental read reaches before the mark.
pub const OVERLAP: Duration = Duration::from_secs(5 * 60);

/// One page's worth of changes.
#[derive(Debug, Default)]
pub struct Batch {
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
pub struct Store<'a> {
    state: &'a State,
    source: &'a str,
    object: &'a str,
    generation: i64,
    failure: Option<StateError>,
    read: u64,
    removed: u64,
    newest: Option<DateTime<Utc>>,
}

impl Store<'_> {
    pub fn put(&mut self, batch: Batch) -> bool {
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
pub struct Read {
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
}

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
pub struct Horizon {
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
        (Some(c), _) if c.signature != signature => Some("the fields read changed"),
        (Some(c), _) if (wall_now - c.synced_at).to_std().unwrap_or_default() > horizon.max_age => {
            Some(horizon.reason)
        }
        (Some(_), None) => Some("nothing seen yet"),
        (Some(_), Some(_)) => None,
    };
    let generation = match (reason, since) {
        (None, Some((c, _))) => c.generation,
        _ => wall_now.timestamp_millis(),
    };
    let mut store = Store {
        state,
        source,
        object: reader.object(),
        generation,
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
    if reason.is_some() {
        removed += state.mirror_sweep(source, reader.object(), generation)? as u64;
    }
    let next = Cursor {
        mark: read
            .started
            .or(store.newest)
            .or_else(|| since.map(|(_, m)| m)),
        signature,
        synced_at: wall_now,
        generation,
    };
    state.set_cursor(
        &key,
        &serde_json::to_string(&next).unwrap_or_default(),
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

/// Reads every mirrored record of an object and maps each, parsed, with
/// `map` on all cores, a chunk at a time (parsing a million JSON records is
/// most of building a dataset); rows and rejections land in `into`, in id
/// order.
pub fn scan_into<T: Send>(
    state: &State,
    source: &str,
    object: &str,
    into: &mut Mapped<T>,
    map: impl Fn(&str, Map<String, Value>) -> Result<T, String> + Sync,
) -> Result<(), StateError> {
    use rayon::prelude::*;
    const CHUNK: usize = 16_384;
    let mut chunk: Vec<(String, String)> = Vec::with_capacity(CHUNK);
    let flush = |chunk: &mut Vec<(String, String)>, into: &mut Mapped<T>| {
        let mapped: Vec<Result<T, String>> = chunk
            .par_iter()
            .map(|(id, data)| {
                serde_json::from_str(data)
                    .map_err(|e| format!("unreadable mirror record: {e}"))
                    .and_then(|r| map(id, r))
            })
            .collect();
        for ((id, _), m) in chunk.drain(..).zip(mapped) {
            match m {
                Ok(row) => into.rows.push(row),
                Err(e) => into.reject(&id, e),
            }
        }
    };
    state.mirror_scan(source, object, |id, data| {
        chunk.push((id.to_string(), data.to_string()));
        if chunk.len() == CHUNK {
            flush(&mut chunk, into);
        }
    })?;
    flush(&mut chunk, into);
    Ok(())
}

/// Reads every mirrored record of an object and hands each, parsed, to
/// `each`.
pub fn scan(
    state: &State,
    source: &str,
    object: &str,
    mut each: impl FnMut(&str, Result<Map<String, Value>, String>),
) -> Result<(), StateError> {
    state.mirror_scan(source, object, |id, data| {
        each(
            id,
            serde_json::from_str(data).map_err(|e| format!("unreadable mirror record: {e}")),
        )
    })
}

/// A field's text: strings as they are, numbers and booleans printed; empty
/// and null are absent.
pub fn text(r: &Map<String, Value>, field: &str) -> Option<String> {
    match r.get(field)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn flag(r: &Map<String, Value>, field: &str) -> Option<bool> {
    match r.get(field)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => crate::values::parse_bool(s),
        _ => None,
    }
}

pub fn number(r: &Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match r.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => crate::values::parse_amount(s)
            .map(Some)
            .ok_or_else(|| format!("{field}: not a number: '{s}'")),
        Some(v) => Err(format!("{field}: not a number: {v}")),
    }
}

pub fn timestamp(
    r: &Map<String, Value>,
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
pub struct Mapped<T> {
    pub label: String,
    pub rows: Vec<T>,
    pub rejected: Vec<Rejected>,
}

impl<T> Mapped<T> {
    pub fn new(source: &str, object: &str) -> Self {
        Mapped {
            label: format!("{source} {object}"),
            rows: Vec::new(),
            rejected: Vec::new(),
        }
    }

    pub fn reject(&mut self, id: &str, reason: String) {
        self.rejected.push(Rejected {
            file: format!("{} {id}", self.label),
            line: 0,
            reason,
        });
    }

    pub fn table(self) -> Table<T> {
        Table::from_records(&self.label, self.rows, self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// An upstream with a clock: id -> (modified ms, deleted, version).
    #[derive(Default)]
    struct Upstream {
        now: i64,
        records: BTreeMap<u8, (i64, bool, u32)>,
    }

    struct FakeReader(std::sync::Mutex<Upstream>);

    impl FakeReader {
        fn read(&self, since: Option<i64>, store: &mut Store<'_>) -> Result<Read, StateError> {
            let up = self.0.lock().unwrap();
            let mut batch = Batch::default();
            for (id, (modified, deleted, version)) in &up.records {
                let wanted = match since {
                    None => !deleted,
                    Some(s) => *modified >= s,
                };
                if !wanted {
                    continue;
                }
                batch.read += 1;
                if *deleted {
                    batch.gone.push(id.to_string());
                } else {
                    batch.rows.push(MirrorRow {
                        id: id.to_string(),
                        modstamp: None,
                        data: version.to_string(),
                    });
                }
            }
            store.put(batch);
            Ok(Read {
                calls: 1,
                started: Utc.timestamp_millis_opt(up.now).single(),
            })
        }
    }

    impl Reader for FakeReader {
        type Error = StateError;
        fn object(&self) -> &str {
            "thing"
        }
        fn signature(&self) -> String {
            "thing".into()
        }
        async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, StateError> {
            self.read(None, store)
        }
        async fn read_since(
            &self,
            since: DateTime<Utc>,
            store: &mut Store<'_>,
        ) -> Result<Read, StateError> {
            self.read(Some(since.timestamp_millis()), store)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Upsert(u8),
        /// A change committed late, stamped up to 4 minutes in the past
        /// (inside the overlap).
        LateUpsert(u8, i64),
        Delete(u8),
        /// A hard delete the upstream forgets at once.
        Purge(u8),
        Advance(i64),
        Sync {
            full: bool,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12).prop_map(Op::Upsert),
            1 => (0u8..12, 1i64..240_000).prop_map(|(i, b)| Op::LateUpsert(i, b)),
            2 => (0u8..12).prop_map(Op::Delete),
            1 => (0u8..12).prop_map(Op::Purge),
            2 => (1i64..3_600_000).prop_map(Op::Advance),
            3 => Just(Op::Sync { full: false }),
            1 => Just(Op::Sync { full: true }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever happens upstream between syncs (changes, late commits
        /// inside the overlap, soft deletes), after a sync the mirror holds
        /// exactly the live records, each at its latest version. A purge
        /// (a hard delete the upstream forgets) is seen at the next full read.
        #[test]
        fn after_a_sync_the_mirror_is_the_live_set(ops in proptest::collection::vec(op(), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let state = State::scratch_copy(&dir.path().join("none.db")).unwrap();
            let reader = FakeReader(std::sync::Mutex::new(Upstream {
                now: 1_800_000_000_000,
                ..Default::default()
            }));
            let horizon = Horizon { max_age: Duration::from_secs(u64::MAX / 4), reason: "old" };
            let mut purged_since_full = false;
            for op in ops {
                let mut up = reader.0.lock().unwrap();
                let now = up.now;
                match op {
                    Op::Upsert(id) => {
                        let v = up.records.get(&id).map_or(0, |r| r.2 + 1);
                        up.records.insert(id, (now, false, v));
                    }
                    Op::LateUpsert(id, back) => {
                        let v = up.records.get(&id).map_or(0, |r| r.2 + 1);
                        up.records.insert(id, (now - back, false, v));
                    }
                    Op::Delete(id) => {
                        if let Some(r) = up.records.get_mut(&id) {
                            *r = (now, true, r.2);
                        }
                    }
                    Op::Purge(id) => {
                        if up.records.remove(&id).is_some() {
                            purged_since_full = true;
                        }
                    }
                    Op::Advance(ms) => up.now += ms,
                    Op::Sync { full } => {
                        drop(up);
                        let wall = Utc.timestamp_millis_opt(now).single().unwrap();
                        let report = rt
                            .block_on(sync(&state, "test", &reader, full, horizon, wall))
                            .unwrap();
                        if report.mode == Mode::Full {
                            purged_since_full = false;
                        }
                        let mut mirror = BTreeMap::new();
                        state
                            .mirror_scan("test", "thing", |id, data| {
                                mirror.insert(id.parse::<u8>().unwrap(), data.parse::<u32>().unwrap());
                            })
                            .unwrap();
                        let mut up = reader.0.lock().unwrap();
                        let live: BTreeMap<u8, u32> = up
                            .records
                            .iter()
                            .filter(|(_, r)| !r.1)
                            .map(|(id, r)| (*id, r.2))
                            .collect();
                        if purged_since_full {
                            // Only what is still live must be right.
                            for (id, v) in &live {
                                prop_assert_eq!(mirror.get(id), Some(v));
                            }
                        } else {
                            prop_assert_eq!(&mirror, &live);
                        }
                        // Time moves on after a read.
                        up.now += 1;
                    }
                }
            }
        }
    }
}
