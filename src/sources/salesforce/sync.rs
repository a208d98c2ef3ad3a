//! The incremental mirror: each object's records are kept in the state
//! (`mirror` table), so a cycle asks Salesforce only for what changed.
//!
//! - A **full sync** reads every record (`query`, 2,000 a page), stores each
//!   page as it arrives, then sweeps away the records it did not see. It runs
//!   the first time, on `once --full`, when the fields read changed (new
//!   configuration or org), and when the last sync is older than
//!   [`MAX_CURSOR_AGE`]: deleted records stay visible to `queryAll` only while
//!   they are in the recycle bin (15 days), so an older cursor could miss
//!   deletions.
//! - An **incremental sync** reads `WHERE SystemModstamp >= mark - 5 min`
//!   through `queryAll`: records changed since the last sync, deleted ones
//!   included (`IsDeleted = true`, which removes them from the mirror). The
//!   mark is Salesforce's own clock (the `Date` header) when the last sync's
//!   query ran, so no clock skew of ours matters; the 5 minutes cover
//!   transactions that were running then and committed later with an older
//!   `SystemModstamp`. A record read twice is simply stored again (the
//!   mirror is keyed by Id). Without a `Date` header the mark is the newest
//!   `SystemModstamp` seen.
//! - The cursor moves only once an object's sync finished. A sync that fails half-way has stored whole pages only,
//!   each of them current, and the next cycle starts again from the old
//!   cursor: nothing is lost and nothing is half-written.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{SalesforceClient, SalesforceError};
use crate::state::{MirrorRow, State, StateError};
use crate::values::parse_timestamp;

/// The mirror's source name in the state.
pub const SOURCE: &str = "salesforce";

/// How far back an incremental read reaches before the cursor.
pub const OVERLAP: Duration = Duration::from_secs(5 * 60);

/// A cursor older than this triggers a full sync (the recycle bin's 15 days:
/// deletions older than that may have left `queryAll`).
pub const MAX_CURSOR_AGE: Duration = Duration::from_secs(15 * 86_400);

/// Which records of an object belong in the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    All,
    /// Only records where this field is set (registrations: the partner).
    NotNull(String),
    /// Only records where this boolean field is true (primary partners).
    IsTrue(String),
}

impl Keep {
    fn soql(&self) -> Option<String> {
        match self {
            Keep::All => None,
            Keep::NotNull(f) => Some(format!("{f} != null")),
            Keep::IsTrue(f) => Some(format!("{f} = true")),
        }
    }

    fn keeps(&self, record: &serde_json::Map<String, Value>) -> bool {
        match self {
            Keep::All => true,
            Keep::NotNull(f) => record
                .get(f)
                .is_some_and(|v| !v.is_null() && v.as_str() != Some("")),
            Keep::IsTrue(f) => record.get(f).and_then(Value::as_bool) == Some(true),
        }
    }
}

/// One object to mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSpec {
    pub object: String,
    /// The fields read; `Id` and `SystemModstamp` are always among them.
    pub fields: Vec<String>,
    /// Whether the object has `IsDeleted` (every object but User).
    pub deletable: bool,
    pub keep: Keep,
}

impl ObjectSpec {
    pub fn new(object: &str, fields: &[&str], deletable: bool, keep: Keep) -> ObjectSpec {
        let mut all: Vec<String> = vec!["Id".into(), "SystemModstamp".into()];
        for f in fields {
            if !all.iter().any(|a| a.eq_ignore_ascii_case(f)) {
                all.push((*f).to_string());
            }
        }
        ObjectSpec {
            object: object.into(),
            fields: all,
            deletable,
            keep,
        }
    }

    /// What the mirror's content depends on: a change means a full sync.
    fn signature(&self) -> String {
        format!(
            "{}|{}|{:?}",
            self.object,
            self.fields.join(","),
            self.keep.soql()
        )
    }

    fn cursor_key(&self) -> String {
        format!("{SOURCE}/{}", self.object)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    /// Where the next incremental read starts (before the overlap):
    /// Salesforce's clock when the last read began.
    mark: Option<DateTime<Utc>>,
    signature: String,
    /// When the last sync of this object finished (our clock).
    synced_at: DateTime<Utc>,
    /// The full sync whose records the mirror holds.
    generation: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    #[error(transparent)]
    State(#[from] StateError),
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
    /// Why a full sync ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Records read (deleted ones included).
    pub fetched: u64,
    /// Records removed from the mirror (deleted upstream, no longer kept, or
    /// not seen by a full sync).
    pub removed: u64,
    /// Query calls (first page and each further page).
    pub calls: u64,
}

/// The datetime literal form SOQL takes (unquoted, UTC).
fn soql_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Brings one object's mirror up to date. `wall_now` is the real clock
/// (Salesforce's timestamps are real time, whatever `--now` says).
pub async fn sync_object(
    client: &SalesforceClient,
    state: &State,
    spec: &ObjectSpec,
    full: bool,
    wall_now: DateTime<Utc>,
) -> Result<ObjectReport, SyncError> {
    let key = spec.cursor_key();
    let cursor: Option<Cursor> = state
        .cursor(&key)?
        .and_then(|text| serde_json::from_str(&text).ok());
    let signature = spec.signature();
    let since = cursor.as_ref().and_then(|c| c.mark.map(|m| (c, m)));
    let reason = match (&cursor, since) {
        _ if full => Some("requested"),
        (None, _) => Some("first sync"),
        (Some(c), _) if c.signature != signature => Some("the fields read changed"),
        (Some(c), _) if (wall_now - c.synced_at).to_std().unwrap_or_default() > MAX_CURSOR_AGE => {
            Some("the last sync is older than 15 days")
        }
        (Some(_), None) => Some("nothing seen yet"),
        (Some(_), Some(_)) => None,
    };
    let fields = spec.fields.join(", ");
    let mut newest: Option<DateTime<Utc>> = None;
    let mut fetched = 0u64;
    let mut removed = 0u64;
    let mut failure: Option<StateError> = None;
    let (generation, queried) = match (reason, since) {
        (None, Some((c, since))) => {
            let since = since - chrono::Duration::from_std(OVERLAP).unwrap_or_default();
            let deleted = if spec.deletable { ", IsDeleted" } else { "" };
            let soql = format!(
                "SELECT {fields}{deleted} FROM {} WHERE SystemModstamp >= {} ORDER BY SystemModstamp",
                spec.object,
                soql_datetime(since)
            );
            let queried = client
                .query_pages(&soql, spec.deletable, |page| {
                    fetched += page.len() as u64;
                    let (rows, gone) = split_page(page, spec, &mut newest);
                    removed += gone.len() as u64;
                    state
                        .mirror_apply(SOURCE, &spec.object, c.generation, &rows, &gone)
                        .map_err(|e| stop(&mut failure, e))
                })
                .await;
            if let Some(e) = failure {
                return Err(e.into());
            }
            (c.generation, queried?)
        }
        _ => {
            let generation = wall_now.timestamp_millis();
            let filter = spec
                .keep
                .soql()
                .map(|w| format!(" WHERE {w}"))
                .unwrap_or_default();
            let soql = format!("SELECT {fields} FROM {}{filter}", spec.object);
            let queried = client
                .query_pages(&soql, false, |page| {
                    fetched += page.len() as u64;
                    let (rows, _) = split_page(page, spec, &mut newest);
                    state
                        .mirror_apply(SOURCE, &spec.object, generation, &rows, &[])
                        .map_err(|e| stop(&mut failure, e))
                })
                .await;
            if let Some(e) = failure {
                return Err(e.into());
            }
            let queried = queried?;
            removed = state.mirror_sweep(SOURCE, &spec.object, generation)? as u64;
            (generation, queried)
        }
    };
    let next = Cursor {
        mark: queried.started.or(newest).or_else(|| since.map(|(_, m)| m)),
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
        object: spec.object.clone(),
        mode: if reason.is_some() {
            Mode::Full
        } else {
            Mode::Incremental
        },
        reason,
        fetched,
        removed,
        calls: queried.pages,
    };
    tracing::info!(
        object = %report.object,
        mode = ?report.mode,
        reason = report.reason.unwrap_or(""),
        fetched = report.fetched,
        removed = report.removed,
        calls = report.calls,
        "Salesforce object synced."
    );
    Ok(report)
}

/// Keeps a state error aside (the page callback can only return a
/// Salesforce error) and stops the paging.
fn stop(slot: &mut Option<StateError>, e: StateError) -> SalesforceError {
    let message = e.to_string();
    *slot = Some(e);
    SalesforceError::Decode(format!("stopped: {message}"))
}

/// Splits a page into records to store and ids to remove (deleted, or no
/// longer kept), tracking the newest `SystemModstamp`.
fn split_page(
    page: Vec<Value>,
    spec: &ObjectSpec,
    newest: &mut Option<DateTime<Utc>>,
) -> (Vec<MirrorRow>, Vec<String>) {
    let mut rows = Vec::with_capacity(page.len());
    let mut gone = Vec::new();
    for record in page {
        let Value::Object(mut record) = record else {
            continue;
        };
        record.remove("attributes");
        let Some(id) = record.get("Id").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let modstamp = record
            .get("SystemModstamp")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(t) = modstamp.as_deref().and_then(parse_timestamp)
            && newest.is_none_or(|n| t > n)
        {
            *newest = Some(t);
        }
        let deleted = record.remove("IsDeleted").and_then(|v| v.as_bool()) == Some(true);
        if deleted || !spec.keep.keeps(&record) {
            gone.push(id);
            continue;
        }
        rows.push(MirrorRow {
            id,
            modstamp,
            data: Value::Object(record).to_string(),
        });
    }
    (rows, gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(keep: Keep) -> ObjectSpec {
        ObjectSpec::new("Lead", &["Company", "PartnerAccountId"], true, keep)
    }

    #[test]
    fn a_page_splits_into_kept_records_and_removals() {
        let page = vec![
            json!({"attributes": {"type": "Lead"}, "Id": "00Q1", "SystemModstamp": "2026-11-01T10:00:00.000+0000", "Company": "Acme", "PartnerAccountId": "001P", "IsDeleted": false}),
            json!({"attributes": {"type": "Lead"}, "Id": "00Q2", "SystemModstamp": "2026-11-02T10:00:00.000+0000", "Company": "Beta", "PartnerAccountId": null, "IsDeleted": false}),
            json!({"attributes": {"type": "Lead"}, "Id": "00Q3", "SystemModstamp": "2026-11-01T12:00:00.000+0000", "Company": "Gone", "PartnerAccountId": "001P", "IsDeleted": true}),
        ];
        let mut newest = None;
        let (rows, gone) = split_page(
            page,
            &spec(Keep::NotNull("PartnerAccountId".into())),
            &mut newest,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, "00Q1");
        assert!(!rows[0].data.contains("attributes"));
        assert_eq!(gone, ["00Q2", "00Q3"]);
        assert_eq!(
            newest,
            parse_timestamp("2026-11-02T10:00:00.000+0000"),
            "the newest stamp, deleted records included"
        );
    }

    #[test]
    fn the_signature_follows_fields_and_filter() {
        let a = spec(Keep::All);
        let b = spec(Keep::NotNull("PartnerAccountId".into()));
        let c = ObjectSpec::new("Lead", &["Company"], true, Keep::All);
        assert_ne!(a.signature(), b.signature());
        assert_ne!(a.signature(), c.signature());
        assert_eq!(a.fields[..2], ["Id", "SystemModstamp"]);
    }

    #[test]
    fn soql_datetimes_are_unquoted_utc() {
        let t = parse_timestamp("2026-11-01T10:00:00.000+0200").unwrap();
        assert_eq!(soql_datetime(t), "2026-11-01T08:00:00Z");
    }
}
