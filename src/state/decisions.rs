//! The decisions table (schema step 5): an append-only audit trail of what
//! people decided about findings. Rows are only ever inserted (triggers
//! refuse UPDATE and DELETE); the current standing of a finding is the fold
//! of its rows in id order (see [`crate::decisions`]).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{State, StateError};
use crate::values::format_timestamp;

/// One row of the audit trail, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DecisionRow {
    pub id: i64,
    pub finding_key: String,
    /// `partner_keeps`, `direct_keeps`, `split`, `not_a_conflict`, `snooze`,
    /// `assign` or `reopened`.
    pub outcome: String,
    pub by: String,
    pub note: Option<String>,
    /// A snooze's last day (`YYYY-MM-DD`).
    pub until: Option<String>,
    pub assignee: Option<String>,
    pub at: String,
    /// The opportunity and partner ids the finding had then (JSON).
    #[serde(skip)]
    pub basis: String,
}

/// A row to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDecisionRow {
    pub finding_key: String,
    pub outcome: String,
    pub by: String,
    pub note: Option<String>,
    pub until: Option<String>,
    pub assignee: Option<String>,
    pub basis: String,
}

/// What the findings table says about a finding a decision names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingBrief {
    pub kind: String,
    pub payload: String,
    pub resolved_at: Option<String>,
}

const COLUMNS: &str = "id, finding_key, outcome, decided_by, note, until, assignee, at, basis";

fn row(r: &rusqlite::Row) -> rusqlite::Result<DecisionRow> {
    Ok(DecisionRow {
        id: r.get(0)?,
        finding_key: r.get(1)?,
        outcome: r.get(2)?,
        by: r.get(3)?,
        note: r.get(4)?,
        until: r.get(5)?,
        assignee: r.get(6)?,
        at: r.get(7)?,
        basis: r.get(8)?,
    })
}

impl State {
    /// The finding a decision would name, if the state knows it.
    pub fn finding_brief(&self, key: &str) -> Result<Option<FindingBrief>, StateError> {
        self.conn()
            .query_row(
                "SELECT kind, payload, resolved_at FROM findings WHERE key = ?1",
                [key],
                |r| {
                    Ok(FindingBrief {
                        kind: r.get(0)?,
                        payload: r.get(1)?,
                        resolved_at: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Appends rows to the audit trail, in one transaction; returns their ids.
    pub fn append_decisions(
        &self,
        rows: &[NewDecisionRow],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StateError> {
        let at = format_timestamp(&now);
        let mut ids = Vec::with_capacity(rows.len());
        self.in_transaction(|tx| {
            let mut insert = tx.prepare(
                "INSERT INTO decisions (finding_key, outcome, decided_by, note, until, assignee, at, basis)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for d in rows {
                insert.execute(params![
                    d.finding_key,
                    d.outcome,
                    d.by,
                    d.note,
                    d.until,
                    d.assignee,
                    at,
                    d.basis
                ])?;
                ids.push(tx.last_insert_rowid());
            }
            Ok(())
        })?;
        Ok(ids)
    }

    /// The audit trail of one finding, oldest first.
    pub fn decisions_of(&self, key: &str) -> Result<Vec<DecisionRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM decisions WHERE finding_key = ?1 ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map([key], row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))
    }

    /// The whole audit trail, oldest first.
    pub fn all_decisions(&self) -> Result<Vec<DecisionRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM decisions ORDER BY id"))
            .map_err(|e| self.err(e))?;
        stmt.query_map([], row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        crate::values::parse_timestamp("2026-11-26T00:00:00Z").unwrap()
    }

    fn new_row(key: &str, outcome: &str) -> NewDecisionRow {
        NewDecisionRow {
            finding_key: key.into(),
            outcome: outcome.into(),
            by: "ana@example.com".into(),
            note: Some("why".into()),
            until: None,
            assignee: None,
            basis: "{}".into(),
        }
    }

    #[test]
    fn the_trail_is_append_only() {
        let s = State::open(std::path::Path::new(":memory:")).unwrap();
        let ids = s
            .append_decisions(&[new_row("k1", "split"), new_row("k2", "snooze")], now())
            .unwrap();
        assert_eq!(ids.len(), 2);
        let trail = s.decisions_of("k1").unwrap();
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].outcome, "split");
        assert_eq!(trail[0].at, "2026-11-26T00:00:00Z");
        let conn = s.conn();
        let upd = conn.execute("UPDATE decisions SET outcome = 'x'", []);
        assert!(upd.is_err(), "an update must be refused");
        let del = conn.execute("DELETE FROM decisions", []);
        assert!(del.is_err(), "a delete must be refused");
        drop(conn);
        assert_eq!(s.all_decisions().unwrap().len(), 2);
    }
}
