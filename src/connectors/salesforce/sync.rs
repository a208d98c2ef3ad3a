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

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::{SalesforceClient, SalesforceError};
use crate::store::{MirrorRow, State};
pub(crate) use crate::sync::ObjectReport;
use crate::sync::{self as mirror, Batch, Horizon, MirrorError, Read, Reader, Store};
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
    pub client: &'a SalesforceClient,
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
    client: &SalesforceClient,
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
/// longer kept), tracking the newest `SystemModstamp`.
fn split_page(page: Vec<Value>, spec: &ObjectSpec) -> Batch {
    let mut batch = Batch {
        read: page.len() as u64,
        rows: Vec::with_capacity(page.len()),
        ..Batch::default()
    };
    for record in page {
        let Value::Object(mut record) = record else {
            continue;
        };
        record.remove("attributes");
        let Some(id) = record.get("Id").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        if let Some(t) = record
            .get("SystemModstamp")
            .and_then(Value::as_str)
            .and_then(parse_timestamp)
            && batch.newest.is_none_or(|n| t > n)
        {
            batch.newest = Some(t);
        }
        let deleted = record.remove("IsDeleted").and_then(|v| v.as_bool()) == Some(true);
        if deleted || !spec.keep.keeps(&record) {
            batch.gone.push(id);
            continue;
        }
        batch.rows.push(MirrorRow {
            id,
            data: mirror::row(spec.stored(), record),
        });
    }
    batch
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
        let batch = split_page(page, &spec(Keep::NotNull("PartnerAccountId".into())));
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
