//! Salesforce objects read into the shared mirror ([`crate::sync`]).
//!
//! - A **full read** is `SELECT <fields> FROM <Object> [WHERE <keep>]`
//!   through `query` (2,000 a page). Besides the mirror's own reasons it runs
//!   when the last sync is older than 15 days: deleted records stay visible
//!   to `queryAll` only while they are in the recycle bin.
//! - An **incremental read** is `... WHERE SystemModstamp >= <mark - 5 min>
//!   ORDER BY SystemModstamp` through `queryAll`, with `IsDeleted`: deleted
//!   records come back and leave the mirror, so a deleted opportunity never
//!   keeps a finding alive. The mark is Salesforce's clock (`Date`) when the
//!   last read's first page answered.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::client::{SalesforceClient, SalesforceError};
use crate::store::{MirrorRow, State};
pub(crate) use crate::sync::ObjectReport;
use crate::sync::{self as mirror, Batch, Horizon, MirrorError, RawObject, Read, Reader, Store};
use crate::values::parse_timestamp;

/// The mirror's source name in the state.
pub(crate) const SOURCE: &str = "salesforce";

/// A cursor older than this triggers a full sync (the recycle bin's 15 days:
/// deletions older than that may have left `queryAll`).
pub(crate) const MAX_CURSOR_AGE: Duration = Duration::from_secs(15 * 86_400);

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

    fn keeps(&self, record: &RawObject) -> bool {
        let raw = |f: &str| record.get(f).map(RawValue::get);
        match self {
            Keep::All => true,
            Keep::NotNull(f) => raw(f).is_some_and(|v| v != "null" && v != "\"\""),
            Keep::IsTrue(f) => raw(f) == Some("true"),
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

    /// The fields a stored row holds: all but `Id` (the mirror's own id) and
    /// `SystemModstamp` (which moves the cursor and is not stored).
    pub fn stored(&self) -> &[String] {
        self.fields.get(2..).unwrap_or_default()
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
}

/// The datetime literal form SOQL takes (unquoted, UTC).
fn soql_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The horizon past which a full read is forced: the recycle bin's 15 days.
pub(crate) const HORIZON: Horizon = Horizon {
    max_age: MAX_CURSOR_AGE,
    reason: "the last sync is older than 15 days",
};

/// One object of the org, read through SOQL.
pub(crate) struct SoqlReader<'a> {
    pub client: &'a Arc<SalesforceClient>,
    pub spec: &'a ObjectSpec,
}

impl SoqlReader<'_> {
    async fn read(
        &self,
        soql: &str,
        all: bool,
        store: &mut Store<'_>,
    ) -> Result<Read, SalesforceError> {
        let spec = self.spec;
        let queried = self
            .client
            .query_pages(soql, all, |page| {
                let batch = split_page(page, spec);
                if store.put(batch) {
                    Ok(())
                } else {
                    Err(SalesforceError::Decode(
                        "stopped: the state could not store a page".into(),
                    ))
                }
            })
            .await?;
        Ok(Read {
            calls: queried.pages,
            started: queried.started,
        })
    }
}

impl Reader for SoqlReader<'_> {
    type Error = SalesforceError;

    fn object(&self) -> &str {
        &self.spec.object
    }

    fn signature(&self) -> String {
        self.spec.signature()
    }

    fn fields(&self) -> Vec<String> {
        self.spec.stored().to_vec()
    }

    async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, SalesforceError> {
        let filter = self
            .spec
            .keep
            .soql()
            .map(|w| format!(" WHERE {w}"))
            .unwrap_or_default();
        let soql = format!(
            "SELECT {} FROM {}{filter}",
            self.spec.fields.join(", "),
            self.spec.object
        );
        self.read(&soql, false, store).await
    }

    async fn read_since(
        &self,
        since: DateTime<Utc>,
        store: &mut Store<'_>,
    ) -> Result<Read, SalesforceError> {
        let deleted = if self.spec.deletable {
            ", IsDeleted"
        } else {
            ""
        };
        let soql = format!(
            "SELECT {}{deleted} FROM {} WHERE SystemModstamp >= {} ORDER BY SystemModstamp",
            self.spec.fields.join(", "),
            self.spec.object,
            soql_datetime(since)
        );
        self.read(&soql, self.spec.deletable, store).await
    }
}

/// Brings one object's mirror up to date.
pub(crate) async fn sync_object(
    client: &Arc<SalesforceClient>,
    state: &State,
    spec: &ObjectSpec,
    full: bool,
    wall_now: DateTime<Utc>,
) -> Result<ObjectReport, MirrorError<SalesforceError>> {
    mirror::sync(
        state,
        SOURCE,
        &SoqlReader { client, spec },
        full,
        HORIZON,
        wall_now,
    )
    .await
}

/// Splits a page into records to store and ids to remove (deleted, or no
/// longer kept), tracking the newest `SystemModstamp`. Each record is read
/// as raw members: the stored values are copied as Salesforce wrote them.
fn split_page(page: Vec<&RawValue>, spec: &ObjectSpec) -> Batch {
    let mut batch = Batch {
        read: page.len() as u64,
        rows: Vec::with_capacity(page.len()),
        ..Batch::default()
    };
    for raw in page {
        let Some(record) = RawObject::parse(raw) else {
            continue;
        };
        let Some(id) = record.str("Id").map(Cow::into_owned) else {
            continue;
        };
        if let Some(t) = record
            .str("SystemModstamp")
            .and_then(|s| parse_timestamp(&s))
            && batch.newest.is_none_or(|n| t > n)
        {
            batch.newest = Some(t);
        }
        let deleted = record.get("IsDeleted").map(RawValue::get) == Some("true");
        if deleted || !spec.keep.keeps(&record) {
            batch.gone.push(id);
            continue;
        }
        batch.rows.push(MirrorRow {
            id,
            data: mirror::raw_row(spec.stored(), &record),
        });
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(keep: Keep) -> ObjectSpec {
        ObjectSpec::new("Lead", &["Company", "PartnerAccountId"], true, keep)
    }

    /// A page's records as the client hands them over: raw JSON, borrowed.
    fn records(text: &str) -> Vec<&RawValue> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_page_splits_into_kept_records_and_removals() {
        let page = r#"[
            {"attributes": {"type": "Lead"}, "Id": "00Q1", "SystemModstamp": "2026-11-01T10:00:00.000+0000", "Company": "Acme", "PartnerAccountId": "001P", "IsDeleted": false},
            {"attributes": {"type": "Lead"}, "Id": "00Q2", "SystemModstamp": "2026-11-02T10:00:00.000+0000", "Company": "Beta", "PartnerAccountId": null, "IsDeleted": false},
            {"attributes": {"type": "Lead"}, "Id": "00Q3", "SystemModstamp": "2026-11-01T12:00:00.000+0000", "Company": "Gone", "PartnerAccountId": "001P", "IsDeleted": true}
        ]"#;
        let batch = split_page(
            records(page),
            &spec(Keep::NotNull("PartnerAccountId".into())),
        );
        assert_eq!(batch.read, 3);
        assert_eq!(batch.rows.len(), 1);
        assert_eq!(batch.rows[0].id, "00Q1");
        assert_eq!(
            batch.rows[0].data, r#"["Acme","001P"]"#,
            "the values of the fields read, in order, without Id and SystemModstamp (the row's own)"
        );
        assert_eq!(batch.gone, ["00Q2", "00Q3"]);
        assert_eq!(
            batch.newest,
            parse_timestamp("2026-11-02T10:00:00.000+0000"),
            "the newest stamp, deleted records included"
        );
    }

    #[test]
    fn the_filters_read_raw_values_as_the_parsed_ones_did() {
        let page = r#"[
            {"Id": "1", "Company": "A", "PartnerAccountId": ""},
            {"Id": "2", "Company": "B", "PartnerAccountId": "001P"},
            {"Id": "3", "Company": "C"},
            {"Id": "4", "Company": "D", "PartnerAccountId": false},
            {"Id": "5", "Company": "E", "PartnerAccountId": true},
            {"Id": "6", "Company": "F", "PartnerAccountId": "true"},
            {"Id": "7", "Company": "G", "PartnerAccountId": null, "PartnerAccountId": "001Q"}
        ]"#;
        let kept = |keep: Keep| -> Vec<String> {
            split_page(records(page), &spec(keep))
                .rows
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(kept(Keep::All), ["1", "2", "3", "4", "5", "6", "7"]);
        assert_eq!(
            kept(Keep::NotNull("PartnerAccountId".into())),
            ["2", "4", "5", "6", "7"],
            "set means neither null nor empty text, and a repeated name reads as its last value"
        );
        assert_eq!(
            kept(Keep::IsTrue("PartnerAccountId".into())),
            ["5"],
            "only the boolean true, not the text"
        );
    }

    #[test]
    fn raw_records_store_what_parsed_records_stored() {
        // Escapes, unicode, numbers in odd forms, nested relationship
        // objects, whitespace, a missing field: the stored text may keep
        // Salesforce's spelling, but it must read back as the same values.
        let page = r#"[
            {"Id":"00\u0051A","SystemModstamp":"2026-11-01T10:00:00.000+0000","Company":"Caf\u00e9 \"Noir\" \/ Co","PartnerAccountId":{ "attributes" : {"type":"Account"}, "Name" : "P\u00e9" }},
            {"Id": "00QB", "Company": 1.5E3, "PartnerAccountId": [1, 2.0, -0]},
            {"Id": "00QC", "Company": "Zürich 北京 😀"},
            {"Company": "no id"},
            "not an object",
            [1, {"Id": "00QX"}, [2]],
            null, true, 3.5, -4, 18446744073709551615,
            {"Id": 42, "Company": "an id that is not text"}
        ]"#;
        let s = spec(Keep::All);
        let batch = split_page(records(page), &s);
        assert_eq!(batch.read, 12, "every record counts as read, kept or not");
        let ids: Vec<&str> = batch.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["00QA", "00QB", "00QC"],
            "ids unescaped; records without a text id skipped"
        );
        let parsed: Vec<serde_json::Value> = serde_json::from_str(page).unwrap();
        for (row, record) in batch.rows.iter().zip(parsed) {
            let serde_json::Value::Object(record) = record else {
                unreachable!()
            };
            let stored: serde_json::Value = serde_json::from_str(&row.data).unwrap();
            let before: serde_json::Value =
                serde_json::from_str(&mirror::row(s.stored(), record)).unwrap();
            assert_eq!(stored, before, "{}", row.data);
        }
        assert_eq!(
            batch.newest,
            parse_timestamp("2026-11-01T10:00:00.000+0000")
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
        // Stable (the cursor stores it: a signature that changed between
        // runs would force a full read every cycle), and made of the
        // object, its fields and its filter.
        assert_eq!(a.signature(), spec(Keep::All).signature());
        assert_eq!(
            b.signature(),
            "Lead|Id,SystemModstamp,Company,PartnerAccountId|Some(\"PartnerAccountId != null\")"
        );
        assert_eq!(c.signature(), "Lead|Id,SystemModstamp,Company|None");
    }

    #[test]
    fn soql_datetimes_are_unquoted_utc() {
        let t = parse_timestamp("2026-11-01T10:00:00.000+0200").unwrap();
        assert_eq!(soql_datetime(t), "2026-11-01T08:00:00Z");
    }
}
