//! The console's reads on the state (issue 16): open findings filtered,
//! sorted by value at risk and paged; one finding with its timeline; counts
//! for the overview; the last run. Each page is a few indexed queries, so
//! it stays fast with tens of thousands of findings.
//!
//! The value at risk is kept in a column of its own, derived from the
//! stored payload (the same rule as the `findings` command and the alerts:
//! open and won opportunities' amounts, else the registrations'): on SQLite
//! written with a new finding ([`Columns`], step 12) and re-derived by a
//! trigger when its payload changes (step 11); on PostgreSQL by triggers.
//! The list sorts on an index.

use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use rusqlite::{OptionalExtension, params};

use super::pg::Pg;
use super::{Sqlite, StateError, StoredFinding};
use crate::values::format_timestamp;

/// The value at risk of a payload, in SQL (`p` is the payload).
macro_rules! risk_sql {
    ($p:literal) => {
        concat!(
            "CASE WHEN json_valid(", $p, ") THEN COALESCE(
                (SELECT SUM(json_extract(e.value, '$.amount')) FROM json_each(", $p, ", '$.evidence') e
                  WHERE json_extract(e.value, '$.type') = 'opportunity'
                    AND json_extract(e.value, '$.status') IS NOT 'lost'
                    AND json_type(e.value, '$.amount') IN ('integer', 'real')),
                CASE WHEN NOT EXISTS (SELECT 1 FROM json_each(", $p, ", '$.evidence') e
                                       WHERE json_extract(e.value, '$.type') IS NOT 'registration')
                THEN (SELECT SUM(json_extract(e.value, '$.amount')) FROM json_each(", $p, ", '$.evidence') e
                       WHERE json_extract(e.value, '$.status') IS NOT 'lost'
                         AND json_type(e.value, '$.amount') IN ('integer', 'real'))
                END) END"
        )
    };
}

/// Schema step 7 (appended to `MIGRATIONS`; its PostgreSQL twin is step 7
/// in `store/pg.rs`).
pub(super) const MIGRATION: &str = concat!(
    "ALTER TABLE findings ADD COLUMN value_at_risk REAL;
    ALTER TABLE findings ADD COLUMN account_id TEXT;
    ALTER TABLE findings ADD COLUMN account_name TEXT;
    CREATE TABLE finding_partners (
        partner_id  TEXT NOT NULL,
        key         TEXT NOT NULL,
        PRIMARY KEY (partner_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX finding_partners_key ON finding_partners (key);
    CREATE TRIGGER findings_risk_insert AFTER INSERT ON findings BEGIN
        UPDATE findings SET value_at_risk = ",
    risk_sql!("NEW.payload"),
    ",
        account_id = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_id') END,
        account_name = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_name') END
        WHERE key = NEW.key;
        INSERT OR IGNORE INTO finding_partners (partner_id, key)
            SELECT j.value, NEW.key FROM json_each(CASE WHEN json_valid(NEW.payload) THEN NEW.payload ELSE '{}' END, '$.partner_ids') j
            WHERE j.type = 'text';
    END;
    CREATE TRIGGER findings_risk_update AFTER UPDATE OF payload ON findings BEGIN
        UPDATE findings SET value_at_risk = ",
    risk_sql!("NEW.payload"),
    ",
        account_id = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_id') END,
        account_name = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_name') END
        WHERE key = NEW.key;
        DELETE FROM finding_partners WHERE key = NEW.key;
        INSERT OR IGNORE INTO finding_partners (partner_id, key)
            SELECT j.value, NEW.key FROM json_each(CASE WHEN json_valid(NEW.payload) THEN NEW.payload ELSE '{}' END, '$.partner_ids') j
            WHERE j.type = 'text';
    END;
    UPDATE findings SET payload = payload;
    -- The list's order, with the filtered columns along so that counting
    -- and filtering read the index, not the rows and their payloads.
    CREATE INDEX findings_open_risk ON findings (value_at_risk DESC, key, severity, kind, account_id, account_name) WHERE resolved_at IS NULL;
    CREATE INDEX findings_open_kind ON findings (kind, value_at_risk DESC, key) WHERE resolved_at IS NULL;
    CREATE INDEX findings_open_account ON findings (account_id) WHERE resolved_at IS NULL;
    CREATE INDEX outbox_finding ON outbox (finding_key, id);
    CREATE INDEX runs_finished ON runs (finished_at);"
);

/// Schema step 8: the partner triggers insert each partner once. Inside a
/// trigger fired by the cycle's upsert, SQLite applies the outer
/// statement's conflict policy, not the trigger's `OR IGNORE`, so a payload
/// naming one partner twice made the second save of that finding fail
/// (the engine lists each partner once today, so it could not happen yet).
/// The PostgreSQL twin (step 8 in `store/pg.rs`) changes nothing: its
/// function already removes duplicates.
pub(super) const MIGRATION_8: &str = concat!(
    "DROP TRIGGER findings_risk_insert;
    DROP TRIGGER findings_risk_update;
    CREATE TRIGGER findings_risk_insert AFTER INSERT ON findings BEGIN
        UPDATE findings SET value_at_risk = ",
    risk_sql!("NEW.payload"),
    ",
        account_id = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_id') END,
        account_name = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_name') END
        WHERE key = NEW.key;
        INSERT OR IGNORE INTO finding_partners (partner_id, key)
            SELECT DISTINCT j.value, NEW.key FROM json_each(CASE WHEN json_valid(NEW.payload) THEN NEW.payload ELSE '{}' END, '$.partner_ids') j
            WHERE j.type = 'text'
              AND NOT EXISTS (SELECT 1 FROM finding_partners fp WHERE fp.partner_id = j.value AND fp.key = NEW.key);
    END;
    CREATE TRIGGER findings_risk_update AFTER UPDATE OF payload ON findings BEGIN
        UPDATE findings SET value_at_risk = ",
    risk_sql!("NEW.payload"),
    ",
        account_id = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_id') END,
        account_name = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_name') END
        WHERE key = NEW.key;
        DELETE FROM finding_partners WHERE key = NEW.key;
        INSERT OR IGNORE INTO finding_partners (partner_id, key)
            SELECT DISTINCT j.value, NEW.key FROM json_each(CASE WHEN json_valid(NEW.payload) THEN NEW.payload ELSE '{}' END, '$.partner_ids') j
            WHERE j.type = 'text';
    END;"
);

/// Schema step 12: a new finding's console columns and partner rows come
/// with its insert ([`Columns`], computed by the cycle's writer from the
/// payload), not from a trigger that parses the payload again and writes the
/// row a second time: storing a first cycle's 60,781 findings took 2.8 s
/// with that trigger and about 1 s without (BENCHMARKS.md). The account
/// search learns of an inserted finding from its own insert trigger now
/// (before, from the UPDATE the dropped trigger made). A changed payload is
/// still handled by step 11's update trigger. PostgreSQL's twin is a no-op:
/// its triggers fill the columns in the row as it is inserted.
pub(super) const MIGRATION_12: &str = "DROP TRIGGER findings_risk_insert;
    CREATE TRIGGER findings_account_search_insert AFTER INSERT ON findings
        WHEN NEW.resolved_at IS NULL AND NEW.account_name IS NOT NULL
    BEGIN
        INSERT INTO finding_accounts (key, account_name) VALUES (NEW.key, NEW.account_name);
    END;";

/// Schema step 13: the account search learns of new findings from the
/// cycle's writer, in one statement for all of them ([`INDEX_NEW_ACCOUNTS`]),
/// not from a trigger on each insert. FTS5 flushes its pending terms to disk
/// at every statement-level savepoint, and each insert into `findings` was a
/// statement of its own: a first cycle wrote 60,000 one-row segments and
/// merged them. PostgreSQL's twin is a no-op (`pg_trgm` has no such flush).
pub(super) const MIGRATION_13: &str = "DROP TRIGGER findings_account_search_insert;";

/// The open findings among `?1` (a JSON array of keys) that name an account,
/// into the account search: one statement, so FTS5 keeps the new terms in
/// memory and writes them once.
pub(super) const INDEX_NEW_ACCOUNTS: &str = "INSERT INTO finding_accounts (key, account_name)
    SELECT f.key, f.account_name FROM json_each(?1) AS j JOIN findings AS f ON f.key = j.value
    WHERE f.resolved_at IS NULL AND f.account_name IS NOT NULL";

/// A finding's console columns, computed from its payload by the same rules
/// as the SQL of [`risk_sql`] and the triggers of step 7 (tested against
/// that SQL): the value at risk, the account, the partners.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Columns {
    pub(crate) value_at_risk: Option<f64>,
    pub(crate) account_id: Option<String>,
    pub(crate) account_name: Option<String>,
    /// Distinct, in payload order.
    pub(crate) partners: Vec<String>,
}

impl Columns {
    /// The columns of a stored payload; all empty when it is not JSON.
    pub(crate) fn of(payload: &str) -> Columns {
        use serde_json::Value;
        let Ok(v) = serde_json::from_str::<Value>(payload) else {
            return Columns::default();
        };
        // `json_extract` of a string is its text; of another scalar, its
        // SQL value (not expected in a payload, kept as its JSON text).
        let text = |field: &str| -> Option<String> {
            match v.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            }
        };
        // `json_each(p, '$.evidence')`: an array's items, an object's
        // values, a scalar itself; nothing when absent.
        let evidence: Vec<&Value> = match v.get("evidence") {
            None => Vec::new(),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(Value::Object(members)) => members.values().collect(),
            Some(scalar) => vec![scalar],
        };
        // A member's text, when it is a string (what `json_extract` compares).
        fn field<'v>(e: &'v Value, name: &str) -> Option<&'v str> {
            e.get(name).and_then(Value::as_str)
        }
        let not_lost = |e: &Value| field(e, "status") != Some("lost");
        let amount = |e: &Value| match e.get("amount") {
            Some(Value::Number(n)) => n.as_f64(),
            _ => None,
        };
        // SUM over no rows is NULL.
        let sum =
            |values: Vec<f64>| -> Option<f64> { (!values.is_empty()).then(|| kahan_sum(&values)) };
        let opportunities = sum(evidence
            .iter()
            .filter(|e| field(e, "type") == Some("opportunity"))
            .filter(|e| not_lost(e))
            .filter_map(|e| amount(e))
            .collect());
        let only_registrations = evidence
            .iter()
            .all(|e| field(e, "type") == Some("registration"));
        let value_at_risk = opportunities.or_else(|| {
            only_registrations
                .then(|| {
                    sum(evidence
                        .iter()
                        .filter(|e| not_lost(e))
                        .filter_map(|e| amount(e))
                        .collect())
                })
                .flatten()
        });
        let mut partners: Vec<String> = Vec::new();
        if let Some(Value::Array(ids)) = v.get("partner_ids") {
            for id in ids {
                if let Value::String(id) = id
                    && !partners.contains(id)
                {
                    partners.push(id.clone());
                }
            }
        }
        Columns {
            value_at_risk,
            account_id: text("account_id"),
            account_name: text("account_name"),
            partners,
        }
    }
}

/// A sum as SQLite's `SUM` makes it over reals (Kahan-Babuska-Neumaier).
fn kahan_sum(values: &[f64]) -> f64 {
    let mut sum = 0.0f64;
    let mut c = 0.0f64;
    for &x in values {
        let t = sum + x;
        if sum.abs() > x.abs() {
            c += (sum - t) + x;
        } else {
            c += (x - t) + sum;
        }
        sum = t;
    }
    sum + c
}

/// Schema step 11: step 8's update trigger, run only when the payload
/// changed (PostgreSQL's twin of step 7 already has this `WHEN`).
pub(super) const MIGRATION_11: &str = concat!(
    "DROP TRIGGER findings_risk_update;
    CREATE TRIGGER findings_risk_update AFTER UPDATE OF payload ON findings
        WHEN OLD.payload IS NOT NEW.payload
    BEGIN
        UPDATE findings SET value_at_risk = ",
    risk_sql!("NEW.payload"),
    ",
        account_id = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_id') END,
        account_name = CASE WHEN json_valid(NEW.payload) THEN json_extract(NEW.payload, '$.account_name') END
        WHERE key = NEW.key;
        DELETE FROM finding_partners WHERE key = NEW.key;
        INSERT OR IGNORE INTO finding_partners (partner_id, key)
            SELECT DISTINCT j.value, NEW.key FROM json_each(CASE WHEN json_valid(NEW.payload) THEN NEW.payload ELSE '{}' END, '$.partner_ids') j
            WHERE j.type = 'text';
    END;"
);

/// Schema step 9: the account search (`/findings?account=`) reads a
/// trigram index instead of scanning every open finding's account name.
/// `finding_accounts` holds the open findings' account names, one row each
/// under a stable integer id (an `INTEGER PRIMARY KEY`, which `VACUUM`
/// keeps); `finding_accounts_fts` is an FTS5 index over it with the
/// `trigram` tokenizer (SQLite 3.34+, FTS5 is in rusqlite's bundled build),
/// kept by the standard external-content triggers. The findings' triggers
/// change it only when a finding's account name or open state changes, so
/// a cycle that sees the same findings again writes nothing here. The
/// PostgreSQL twin (step 9 in `store/pg.rs`) is a `pg_trgm` index.
pub(super) const MIGRATION_9: &str = "CREATE TABLE finding_accounts (
        id            INTEGER PRIMARY KEY,
        key           TEXT NOT NULL UNIQUE,
        account_name  TEXT NOT NULL
    );
    CREATE VIRTUAL TABLE finding_accounts_fts USING fts5(
        account_name, content = 'finding_accounts', content_rowid = 'id', tokenize = 'trigram'
    );
    CREATE TRIGGER finding_accounts_insert AFTER INSERT ON finding_accounts BEGIN
        INSERT INTO finding_accounts_fts (rowid, account_name) VALUES (NEW.id, NEW.account_name);
    END;
    CREATE TRIGGER finding_accounts_delete AFTER DELETE ON finding_accounts BEGIN
        INSERT INTO finding_accounts_fts (finding_accounts_fts, rowid, account_name)
            VALUES ('delete', OLD.id, OLD.account_name);
    END;
    -- A new finding gets its account name from step 7's insert trigger, by
    -- an UPDATE: this trigger sees it (OLD.account_name is then NULL).
    CREATE TRIGGER findings_account_search AFTER UPDATE OF account_name, resolved_at ON findings
        WHEN OLD.account_name IS NOT NEW.account_name OR OLD.resolved_at IS NOT NEW.resolved_at
    BEGIN
        DELETE FROM finding_accounts WHERE key = OLD.key;
        INSERT INTO finding_accounts (key, account_name)
            SELECT NEW.key, NEW.account_name
            WHERE NEW.resolved_at IS NULL AND NEW.account_name IS NOT NULL;
    END;
    CREATE TRIGGER findings_account_search_delete AFTER DELETE ON findings BEGIN
        DELETE FROM finding_accounts WHERE key = OLD.key;
    END;
    INSERT INTO finding_accounts (key, account_name)
        SELECT key, account_name FROM findings
        WHERE resolved_at IS NULL AND account_name IS NOT NULL;";

/// Account searches shorter than this (in characters) cannot use a trigram
/// index (a trigram index finds nothing for them): they scan the open
/// findings' account names, as before step 9. One or two characters match
/// most names anyway, so the index would not narrow them much.
pub const ACCOUNT_SEARCH_MIN_CHARS: usize = 3;

/// The `LIKE` pattern for a substring, its wildcards and escape escaped
/// (`ESCAPE '\'`).
fn like_substring(s: &str) -> String {
    format!(
        "%{}%",
        s.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// An FTS5 query for `s` as one phrase: in double quotes, a double quote
/// doubled, so no character of it is query syntax. With the trigram
/// tokenizer the phrase matches the names that hold `s` as a substring,
/// case folded (Unicode folding, a superset of `LIKE`'s ASCII-only one).
fn fts_phrase(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The console's filters on the open findings (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingFilter {
    pub kind: Option<String>,
    pub severity: Option<String>,
    pub partner_id: Option<String>,
    /// Matches the account id exactly or the account name as a substring.
    pub account: Option<String>,
    /// Only these keys (e.g. the decided ones), when set.
    pub within: Option<Vec<String>>,
    /// Not these keys (e.g. decided or snoozed ones).
    pub without: Vec<String>,
}

/// One page of open findings, highest value at risk first.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingPage {
    pub total: u64,
    pub rows: Vec<(StoredFinding, Option<f64>)>,
}

/// The open findings of one kind: how many, and their value at risk.
#[derive(Debug, Clone, PartialEq)]
pub struct KindCount {
    pub kind: String,
    pub open: u64,
    pub value_at_risk: f64,
}

/// An event in a finding's life, for its timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEvent {
    pub at: String,
    pub what: String,
}

/// The last run of a cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRun {
    pub started_at: String,
    pub finished_at: String,
    pub outcome: String,
}

const COLUMNS: &str = "key, kind, severity, notified, payload, first_seen, resolved_at, notified_at, closed_as, value_at_risk";

fn stored(r: &rusqlite::Row) -> rusqlite::Result<(StoredFinding, Option<f64>)> {
    Ok((
        StoredFinding {
            key: r.get(0)?,
            kind: r.get(1)?,
            severity: r.get(2)?,
            notified: r.get(3)?,
            payload: r.get(4)?,
            first_seen: r.get(5)?,
            resolved_at: r.get(6)?,
            notified_at: r.get(7)?,
            closed_as: r.get(8)?,
        },
        r.get(9)?,
    ))
}

/// A finding's dates, for its timeline.
struct Life {
    first: String,
    last: String,
    closed: Option<String>,
    closed_as: Option<String>,
}

/// An alert of a finding, for its timeline.
struct Message {
    created: String,
    reason: String,
    route: String,
    status: String,
    sent: Option<String>,
}

/// A finding's timeline from its dates and its alerts (both backends):
/// first seen, alerts queued and sent, last seen, closed; oldest first.
fn timeline(life: Life, messages: Vec<Message>) -> Vec<TimelineEvent> {
    let mut events = vec![TimelineEvent {
        at: life.first,
        what: "first seen".into(),
    }];
    for m in messages {
        let route = m.route;
        events.push(TimelineEvent {
            at: m.created,
            what: format!("alert queued to route {route} ({})", m.reason),
        });
        if let Some(sent) = m.sent {
            events.push(TimelineEvent {
                at: sent,
                what: format!("alert delivered to route {route}"),
            });
        } else if m.status != "pending" {
            events.push(TimelineEvent {
                at: String::new(),
                what: format!("alert to route {route}: {}", m.status),
            });
        }
    }
    events.push(TimelineEvent {
        at: life.last,
        what: "last seen by a cycle".into(),
    });
    if let Some(at) = life.closed {
        events.push(TimelineEvent {
            at,
            what: match life.closed_as.as_deref() {
                Some("aged_out") => "closed: aged out of its window".into(),
                _ => "closed: resolved in the data".into(),
            },
        });
    }
    events.sort_by(|a, b| a.at.cmp(&b.at));
    events
}

/// The SQLite `FROM` and `WHERE` of the open findings matching `filter`,
/// and its arguments.
fn sqlite_filter(filter: &FindingFilter) -> (&'static str, String, Vec<String>) {
    let mut from = "findings f";
    let mut clauses = vec!["f.resolved_at IS NULL".to_string()];
    let mut args: Vec<String> = Vec::new();
    let arg = |v: &str, args: &mut Vec<String>| {
        args.push(v.to_string());
        format!("?{}", args.len())
    };
    if let Some(k) = &filter.kind {
        let a = arg(k, &mut args);
        clauses.push(format!("f.kind = {a}"));
    }
    if let Some(s) = &filter.severity {
        let a = arg(s, &mut args);
        clauses.push(format!("f.severity = {a}"));
    }
    if let Some(p) = &filter.partner_id {
        let a = arg(p, &mut args);
        clauses.push(format!(
            "f.key IN (SELECT key FROM finding_partners WHERE partner_id = {a})"
        ));
    }
    if let Some(acc) = &filter.account {
        let a = arg(acc, &mut args);
        let like = arg(&like_substring(acc), &mut args);
        // The predicate is the same either way (the account id, or the
        // name as a case-blind substring); from 3 characters the
        // trigram index first narrows the rows to check to those
        // whose name holds the search's trigrams (a superset).
        // (A NUL would end the FTS5 query early: such a search scans.)
        if acc.chars().count() >= ACCOUNT_SEARCH_MIN_CHARS && !acc.contains('\0') {
            let q = arg(&fts_phrase(acc), &mut args);
            clauses.push(format!(
                "f.key IN (SELECT key FROM findings WHERE account_id = {a} AND resolved_at IS NULL
                           UNION ALL
                           SELECT a.key FROM finding_accounts a WHERE a.id IN
                               (SELECT rowid FROM finding_accounts_fts WHERE finding_accounts_fts MATCH {q}))"
            ));
        } else {
            // The scan reads the open-risk index, which carries the
            // account's columns; left to itself the planner counted
            // through the account-id index and read every row (80 ms at
            // 57k open findings instead of 10-25).
            from = "findings f INDEXED BY findings_open_risk";
        }
        clauses.push(format!(
            "(f.account_id = {a} OR f.account_name LIKE {like} ESCAPE '\\')"
        ));
    }
    if let Some(keys) = &filter.within {
        let a = arg(&serde_json::to_string(keys).unwrap_or_default(), &mut args);
        clauses.push(format!("f.key IN (SELECT value FROM json_each({a}))"));
    }
    if !filter.without.is_empty() {
        let a = arg(
            &serde_json::to_string(&filter.without).unwrap_or_default(),
            &mut args,
        );
        clauses.push(format!("f.key NOT IN (SELECT value FROM json_each({a}))"));
    }
    (from, clauses.join(" AND "), args)
}

impl Sqlite {
    /// Open findings by kind (leaving out the keys in `without`: decided or
    /// snoozed ones), with their summed value at risk.
    pub(super) fn console_open_by_kind(
        &self,
        without: &[String],
    ) -> Result<Vec<KindCount>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kind, COUNT(*), COALESCE(SUM(value_at_risk), 0) FROM findings
                 WHERE resolved_at IS NULL AND key NOT IN (SELECT value FROM json_each(?1))
                 GROUP BY kind ORDER BY kind",
            )
            .map_err(|e| self.err(e))?;
        let without = serde_json::to_string(without).unwrap_or_else(|_| "[]".into());
        stmt.query_map(params![without], |r| {
            Ok(KindCount {
                kind: r.get(0)?,
                open: r.get::<_, i64>(1)?.max(0) as u64,
                value_at_risk: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// One page (`limit` rows from `offset`) of the open findings matching
    /// `filter`, highest value at risk first (unknown values last: SQLite
    /// sorts NULL lowest), then by key; and how many match in all. The
    /// order is the open-risk index's, so a page never sorts the list.
    pub(super) fn console_open_findings(
        &self,
        filter: &FindingFilter,
        offset: u64,
        limit: u64,
    ) -> Result<FindingPage, StateError> {
        let (from, filter_sql, args) = sqlite_filter(filter);
        let conn = self.conn();
        let total: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM {from} WHERE {filter_sql}"),
                rusqlite::params_from_iter(args.iter()),
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let columns = COLUMNS
            .split(", ")
            .map(|c| format!("f.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM {from} WHERE {filter_sql}
             ORDER BY f.value_at_risk DESC, f.key
             LIMIT {} OFFSET {}",
            limit.min(1000),
            offset
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), stored)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(FindingPage {
            total: total.max(0) as u64,
            rows,
        })
    }

    /// One finding (open or closed) by key.
    pub(super) fn console_finding(
        &self,
        key: &str,
    ) -> Result<Option<(StoredFinding, Option<f64>)>, StateError> {
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM findings WHERE key = ?1"),
            params![key],
            stored,
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// A finding's life: first seen, alerts queued and sent, last seen,
    /// closed; oldest first.
    pub(super) fn console_timeline(&self, key: &str) -> Result<Vec<TimelineEvent>, StateError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT first_seen, last_seen, resolved_at, closed_as FROM findings WHERE key = ?1",
                params![key],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((first, last, closed, closed_as)) = row else {
            return Ok(Vec::new());
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT created_at, reason, route, status, sent_at FROM outbox
                 WHERE finding_key = ?1 ORDER BY id LIMIT 200",
            )
            .map_err(|e| self.err(e))?;
        let messages = stmt
            .query_map(params![key], |r| {
                Ok(Message {
                    created: r.get(0)?,
                    reason: r.get(1)?,
                    route: r.get(2)?,
                    status: r.get(3)?,
                    sent: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(timeline(
            Life {
                first,
                last,
                closed,
                closed_as,
            },
            messages,
        ))
    }

    /// The last cycle run recorded, if any.
    pub(super) fn console_last_run(&self) -> Result<Option<LastRun>, StateError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT started_at, finished_at, outcome FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok(LastRun {
                    started_at: r.get(0)?,
                    finished_at: r.get(1)?,
                    outcome: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(|e| self.err(e))
    }
}

/// A PostgreSQL row of [`COLUMNS`] (timestamps as the SQLite state's text).
fn pg_stored(r: &postgres::Row) -> (StoredFinding, Option<f64>) {
    let at = |i: usize| {
        r.get::<_, Option<DateTime<Utc>>>(i)
            .map(|t| format_timestamp(&t))
    };
    (
        StoredFinding {
            key: r.get(0),
            kind: r.get(1),
            severity: r.get(2),
            notified: r.get(3),
            payload: r.get(4),
            first_seen: at(5).unwrap_or_default(),
            resolved_at: at(6),
            notified_at: at(7),
            closed_as: r.get(8),
        },
        r.get(9),
    )
}

/// The console on a PostgreSQL state: the same results as on SQLite. SQL
/// sorts NULL first in a descending order there, hence `NULLS LAST`; keys
/// compare bytewise (`COLLATE "C"`) as SQLite's do, so pages agree.
impl Pg {
    pub(super) fn console_open_by_kind(
        &self,
        without: &[String],
    ) -> Result<Vec<KindCount>, StateError> {
        let without = without.to_vec();
        self.with(move |c| {
            let rows = c.query(
                "SELECT kind, count(*), COALESCE(sum(value_at_risk), 0)::double precision FROM findings
                 WHERE resolved_at IS NULL AND key <> ALL($1::text[])
                 GROUP BY kind ORDER BY kind COLLATE \"C\"",
                &[&without],
            )?;
            Ok(rows
                .iter()
                .map(|r| KindCount {
                    kind: r.get(0),
                    open: r.get::<_, i64>(1).max(0) as u64,
                    value_at_risk: r.get(2),
                })
                .collect())
        })
    }

    /// See the SQLite twin. The account's substring match is case-blind
    /// (ILIKE), as SQLite's LIKE is.
    pub(super) fn console_open_findings(
        &self,
        filter: &FindingFilter,
        offset: u64,
        limit: u64,
    ) -> Result<FindingPage, StateError> {
        type Param = Box<dyn ToSql + Sync + Send>;
        let mut clauses = vec!["f.resolved_at IS NULL".to_string()];
        let mut args: Vec<Param> = Vec::new();
        let mut arg = |v: Param| {
            args.push(v);
            format!("${}", args.len())
        };
        if let Some(k) = &filter.kind {
            let a = arg(Box::new(k.clone()));
            clauses.push(format!("f.kind = {a}"));
        }
        if let Some(s) = &filter.severity {
            let a = arg(Box::new(s.clone()));
            clauses.push(format!("f.severity = {a}"));
        }
        if let Some(p) = &filter.partner_id {
            let a = arg(Box::new(p.clone()));
            clauses.push(format!(
                "f.key IN (SELECT key FROM finding_partners WHERE partner_id = {a})"
            ));
        }
        if let Some(acc) = &filter.account {
            let a = arg(Box::new(acc.clone()));
            let like = arg(Box::new(like_substring(acc)));
            clauses.push(format!(
                "(f.account_id = {a} OR f.account_name ILIKE {like} ESCAPE '\\')"
            ));
        }
        if let Some(keys) = &filter.within {
            let a = arg(Box::new(keys.clone()));
            clauses.push(format!("f.key = ANY({a}::text[])"));
        }
        if !filter.without.is_empty() {
            let a = arg(Box::new(filter.without.clone()));
            clauses.push(format!("f.key <> ALL({a}::text[])"));
        }
        let filter_sql = clauses.join(" AND ");
        let columns = COLUMNS
            .split(", ")
            .map(|c| format!("f.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let count = format!("SELECT count(*) FROM findings f WHERE {filter_sql}");
        // The page's keys first, from the open-risk index alone (it carries
        // the filtered columns), then their rows: asked for the rows with a
        // deep OFFSET at once, the planner sorted every open finding with
        // its payload instead (210 ms for the last page at 57k).
        let select = format!(
            "SELECT {columns} FROM findings f WHERE f.key IN (
                 SELECT f.key FROM findings f WHERE {filter_sql}
                 ORDER BY f.value_at_risk DESC NULLS LAST, f.key COLLATE \"C\"
                 LIMIT {} OFFSET {})
             ORDER BY f.value_at_risk DESC NULLS LAST, f.key COLLATE \"C\"",
            limit.min(1000),
            offset.min(i64::MAX as u64)
        );
        self.with(move |c| {
            let params: Vec<&(dyn ToSql + Sync)> = args
                .iter()
                .map(|a| a.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let total: i64 = c.query_one(count.as_str(), &params)?.get(0);
            let rows = c.query(select.as_str(), &params)?;
            Ok(FindingPage {
                total: total.max(0) as u64,
                rows: rows.iter().map(pg_stored).collect(),
            })
        })
    }

    pub(super) fn console_finding(
        &self,
        key: &str,
    ) -> Result<Option<(StoredFinding, Option<f64>)>, StateError> {
        let key = key.to_string();
        self.with(move |c| {
            Ok(c.query_opt(
                format!("SELECT {COLUMNS} FROM findings WHERE key = $1").as_str(),
                &[&key],
            )?
            .map(|r| pg_stored(&r)))
        })
    }

    pub(super) fn console_timeline(&self, key: &str) -> Result<Vec<TimelineEvent>, StateError> {
        let key = key.to_string();
        let (finding, messages) = self.with(move |c| {
            let finding = c.query_opt(
                "SELECT first_seen, last_seen, resolved_at, closed_as FROM findings WHERE key = $1",
                &[&key],
            )?;
            let Some(f) = finding else {
                return Ok((None, Vec::new()));
            };
            let messages = c.query(
                "SELECT created_at, reason, route, status, sent_at FROM outbox
                 WHERE finding_key = $1 ORDER BY id LIMIT 200",
                &[&key],
            )?;
            let at = |r: &postgres::Row, i| {
                r.get::<_, Option<DateTime<Utc>>>(i)
                    .map(|t| format_timestamp(&t))
            };
            Ok((
                Some(Life {
                    first: at(&f, 0).unwrap_or_default(),
                    last: at(&f, 1).unwrap_or_default(),
                    closed: at(&f, 2),
                    closed_as: f.get(3),
                }),
                messages
                    .iter()
                    .map(|r| Message {
                        created: at(r, 0).unwrap_or_default(),
                        reason: r.get(1),
                        route: r.get(2),
                        status: r.get(3),
                        sent: at(r, 4),
                    })
                    .collect(),
            ))
        })?;
        Ok(finding.map_or_else(Vec::new, |f| timeline(f, messages)))
    }

    pub(super) fn console_last_run(&self) -> Result<Option<LastRun>, StateError> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT started_at, finished_at, outcome FROM runs ORDER BY id DESC LIMIT 1",
                &[],
            )?
            .map(|r| LastRun {
                started_at: format_timestamp(&r.get::<_, DateTime<Utc>>(0)),
                finished_at: format_timestamp(&r.get::<_, DateTime<Utc>>(1)),
                outcome: r.get(2),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FindingUpdate;
    use chrono::TimeZone;

    fn payload(partners: &[&str], evidence: &[(&str, &str, Option<f64>)]) -> String {
        serde_json::json!({
            "partner_ids": partners,
            "account_id": "A-1",
            "account_name": "Acme 100% Corp",
            "evidence": evidence.iter().map(|(t, s, a)| serde_json::json!({"type": t, "status": s, "amount": a})).collect::<Vec<_>>(),
        })
        .to_string()
    }

    fn seen(key: &str, kind: &str, payload: String) -> FindingUpdate {
        FindingUpdate {
            key: key.into(),
            kind: kind.into(),
            severity: "warning".into(),
            payload,
            notified: None,
        }
    }

    /// The console columns as step 7's SQL computes them from a payload;
    /// `None` where that SQL fails (an evidence item that is a string: the
    /// trigger's `json_extract` of it is an error, and the insert failed).
    fn columns_in_sql(payload: &str) -> Option<Columns> {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let (value_at_risk, account_id, account_name): (Option<f64>, Option<String>, Option<String>) = conn
            .query_row(
                concat!(
                    "SELECT ",
                    risk_sql!("?1"),
                    ", CAST(CASE WHEN json_valid(?1) THEN json_extract(?1, '$.account_id') END AS TEXT),
                       CAST(CASE WHEN json_valid(?1) THEN json_extract(?1, '$.account_name') END AS TEXT)"
                ),
                [payload],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .ok()?;
        let mut partners = conn
            .prepare(
                "SELECT DISTINCT j.value FROM json_each(CASE WHEN json_valid(?1) THEN ?1 ELSE '{}' END, '$.partner_ids') j
                 WHERE j.type = 'text'",
            )
            .unwrap();
        let partners = partners
            .query_map([payload], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap();
        Some(Columns {
            value_at_risk,
            account_id,
            account_name,
            partners,
        })
    }

    fn same_columns(rust: &Columns, sql: &Columns) -> bool {
        let close = match (rust.value_at_risk, sql.value_at_risk) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            (a, b) => a == b,
        };
        let mut a = rust.partners.clone();
        let mut b = sql.partners.clone();
        a.sort();
        b.sort();
        close
            && rust.account_id == sql.account_id
            && rust.account_name == sql.account_name
            && a == b
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::{Value, json};
        prop_oneof![
            Just(Value::Null),
            Just(json!("lost")),
            Just(json!("opportunity")),
            Just(json!("registration")),
            Just(json!("open")),
            (0i64..10_000).prop_map(|n| json!(n)),
            (0.0f64..10_000.0).prop_map(|x| json!((x * 100.0).round() / 100.0)),
            Just(json!("12.5")),
        ]
    }

    fn payloads() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        use serde_json::{Map, Value};
        let item = || {
            proptest::collection::vec(
                (
                    proptest::sample::select(vec!["type", "status", "amount", "other"]),
                    any_json(),
                ),
                0..4,
            )
            .prop_map(|fields| {
                Value::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            })
        };
        let evidence = prop_oneof![
            6 => proptest::collection::vec(item(), 0..5).prop_map(Value::Array),
            1 => item(),
            1 => any_json(),
        ];
        let partners = proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(vec!["P-1", "P-2", "P-3"])
                    .prop_map(|p| Value::String(p.into())),
                any_json(),
            ],
            0..4,
        )
        .prop_map(Value::Array);
        let payload = (
            proptest::option::of(evidence),
            proptest::option::of(partners),
            proptest::option::of(any_json()),
            proptest::option::of(prop_oneof![
                Just(Value::String("Acme 100% Corp".into())),
                any_json()
            ]),
        )
            .prop_map(|(evidence, partners, account_id, account_name)| {
                let mut m = Map::new();
                for (k, v) in [
                    ("evidence", evidence),
                    ("partner_ids", partners),
                    ("account_id", account_id),
                    ("account_name", account_name),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                Value::Object(m).to_string()
            });
        prop_oneof![8 => payload, 1 => Just("not json".to_string()), 1 => Just("[1, 2]".to_string())]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn the_columns_computed_in_rust_are_the_sqls(payload in payloads()) {
            let rust = Columns::of(&payload);
            let sql = columns_in_sql(&payload);
            proptest::prop_assume!(sql.is_some());
            let sql = sql.unwrap();
            proptest::prop_assert!(same_columns(&rust, &sql), "{payload}\nrust {rust:?}\nsql  {sql:?}");
        }
    }

    #[test]
    fn the_columns_of_a_findings_payload_are_its_risk_account_and_partners() {
        let p = payload(
            &["P1", "P2", "P1"],
            &[
                ("opportunity", "open", Some(100.0)),
                ("opportunity", "lost", Some(1000.0)),
                ("registration", "approved", Some(5000.0)),
            ],
        );
        let c = Columns::of(&p);
        assert_eq!(c.value_at_risk, Some(100.0));
        assert_eq!(c.account_id.as_deref(), Some("A-1"));
        assert_eq!(c.account_name.as_deref(), Some("Acme 100% Corp"));
        assert_eq!(c.partners, ["P1", "P2"]);
        assert!(same_columns(&c, &columns_in_sql(&p).unwrap()));
        // Registrations only: their amounts, the lost one left out.
        let r = payload(
            &[],
            &[
                ("registration", "approved", Some(300.0)),
                ("registration", "lost", Some(5.0)),
            ],
        );
        assert_eq!(Columns::of(&r).value_at_risk, Some(300.0));
        assert_eq!(Columns::of("not json"), Columns::default());
    }

    #[test]
    fn a_finding_seen_again_unchanged_leaves_its_console_columns_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("s.db")).unwrap();
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let first = payload(&["P1"], &[("opportunity", "open", Some(100.0))]);
        s.commit_cycle(
            now,
            &[seen("a", "direct_vs_partner", first.clone())],
            &[],
            &[],
            &[],
        )
        .unwrap();
        let columns = |s: &Sqlite| -> (Option<f64>, Vec<String>) {
            let conn = s.conn();
            let risk = conn
                .query_row(
                    "SELECT value_at_risk FROM findings WHERE key = 'a'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let mut partners = conn
                .prepare("SELECT partner_id FROM finding_partners WHERE key = 'a' ORDER BY 1")
                .unwrap();
            let partners = partners
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<Vec<String>, _>>()
                .unwrap();
            (risk, partners)
        };
        assert_eq!(columns(&s), (Some(100.0), vec!["P1".to_string()]));
        // Marks the derived columns: a trigger that ran again would overwrite them.
        s.conn()
            .execute_batch(
                "UPDATE findings SET value_at_risk = -1 WHERE key = 'a';
                 DELETE FROM finding_partners WHERE key = 'a';",
            )
            .unwrap();
        s.commit_cycle(now, &[seen("a", "direct_vs_partner", first)], &[], &[], &[])
            .unwrap();
        assert_eq!(
            columns(&s),
            (Some(-1.0), vec![]),
            "the same payload ran the trigger"
        );
        let changed = payload(&["P2"], &[("opportunity", "open", Some(250.0))]);
        s.commit_cycle(
            now,
            &[seen("a", "direct_vs_partner", changed)],
            &[],
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(columns(&s), (Some(250.0), vec!["P2".to_string()]));
    }

    #[test]
    fn the_open_list_sorts_by_value_at_risk_filters_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("s.db")).unwrap();
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        s.commit_cycle(
            now,
            &[
                // opportunities count (a lost one does not), registrations do not
                seen(
                    "a",
                    "direct_vs_partner",
                    payload(
                        &["P1"],
                        &[
                            ("opportunity", "open", Some(100.0)),
                            ("opportunity", "lost", Some(1000.0)),
                            ("registration", "approved", Some(5000.0)),
                        ],
                    ),
                ),
                // registrations only: their amounts count
                seen(
                    "b",
                    "partner_vs_partner",
                    payload(&["P1", "P2"], &[("registration", "approved", Some(300.0))]),
                ),
                seen("c", "partner_vs_partner", "not json".into()),
                seen("d", "direct_vs_partner", payload(&["P2"], &[])),
            ],
            &[],
            &[],
            &[],
        )
        .unwrap();
        let all = s
            .console_open_findings(&FindingFilter::default(), 0, 10)
            .unwrap();
        let keys: Vec<(&str, Option<f64>)> =
            all.rows.iter().map(|(f, v)| (f.key.as_str(), *v)).collect();
        assert_eq!(
            keys,
            [
                ("b", Some(300.0)),
                ("a", Some(100.0)),
                ("c", None),
                ("d", None)
            ]
        );
        assert_eq!(all.total, 4);
        let p2 = FindingFilter {
            partner_id: Some("P2".into()),
            ..Default::default()
        };
        let page = s.console_open_findings(&p2, 0, 10).unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(page.rows[0].0.key, "b");
        let kind = FindingFilter {
            kind: Some("direct_vs_partner".into()),
            account: Some("100%".into()),
            ..Default::default()
        };
        let page = s.console_open_findings(&kind, 0, 10).unwrap();
        assert_eq!(page.total, 2, "a and d are direct_vs_partner at Acme 100%");
        let page = s
            .console_open_findings(&FindingFilter::default(), 1, 2)
            .unwrap();
        assert_eq!(page.rows.len(), 2);
        assert_eq!(page.rows[0].0.key, "a");

        let by_kind = s.console_open_by_kind(&[]).unwrap();
        assert_eq!(by_kind[0].kind, "direct_vs_partner");
        assert_eq!((by_kind[0].open, by_kind[0].value_at_risk), (2, 100.0));
        let by_kind = s.console_open_by_kind(&["a".into()]).unwrap();
        assert_eq!((by_kind[0].open, by_kind[0].value_at_risk), (1, 0.0));
        let without_a = FindingFilter {
            without: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(s.console_open_findings(&without_a, 0, 10).unwrap().total, 3);
        let only_a = FindingFilter {
            within: Some(vec!["a".into(), "nope".into()]),
            ..Default::default()
        };
        assert_eq!(s.console_open_findings(&only_a, 0, 10).unwrap().total, 1);

        // A new payload moves the value and the partners; closing drops it.
        s.commit_cycle(
            now,
            &[seen(
                "a",
                "direct_vs_partner",
                payload(&["P3"], &[("opportunity", "won", Some(7.5))]),
            )],
            &["b".into()],
            &[],
            &[],
        )
        .unwrap();
        let p3 = FindingFilter {
            partner_id: Some("P3".into()),
            ..Default::default()
        };
        let page = s.console_open_findings(&p3, 0, 10).unwrap();
        assert_eq!(page.rows[0].1, Some(7.5));
        assert_eq!(s.console_open_findings(&p2, 0, 10).unwrap().total, 1);
        let timeline = s.console_timeline("b").unwrap();
        assert_eq!(
            timeline.last().map(|e| e.what.as_str()),
            Some("closed: resolved in the data")
        );
    }

    /// An account search of 3 characters or more reads the trigram index;
    /// a shorter one scans. The index holds the open findings only, and
    /// follows renames, closing and reopening (new findings reach it from
    /// the cycle's writer, step 13); a cycle that sees the same findings
    /// again rewrites none of it.
    #[test]
    fn the_account_search_reads_the_trigram_index_kept_by_the_triggers() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("s.db")).unwrap();
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let named = |key: &str, name: &str| {
            let mut p: serde_json::Value = serde_json::from_str(&payload(&["P1"], &[])).unwrap();
            p["account_name"] = name.into();
            seen(key, "direct_vs_partner", p.to_string())
        };
        s.commit_cycle(
            now,
            &[named("a", "Acme"), named("b", "Globex"), named("c", "x")],
            &[],
            &[],
            &[],
        )
        .unwrap();
        let plan = |search: &str| -> String {
            let (from, sql, args) = sqlite_filter(&FindingFilter {
                account: Some(search.into()),
                ..Default::default()
            });
            let conn = s.conn();
            let mut stmt = conn
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM {from} WHERE {sql}"
                ))
                .unwrap();
            stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .join("\n")
        };
        assert!(
            plan("cme").contains("finding_accounts_fts"),
            "{}",
            plan("cme")
        );
        assert!(
            !plan("cm").contains("finding_accounts_fts"),
            "{}",
            plan("cm")
        );
        assert!(plan("cm").contains("findings_open_risk"), "{}", plan("cm"));
        let indexed = || -> Vec<(String, String)> {
            let conn = s.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT a.key, a.account_name FROM finding_accounts a
                     WHERE a.id IN (SELECT rowid FROM finding_accounts_fts) ORDER BY a.key",
                )
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, n)| (k.to_string(), n.to_string()))
                .collect()
        };
        assert_eq!(
            indexed(),
            pairs(&[("a", "Acme"), ("b", "Globex"), ("c", "x")])
        );
        let ids = || -> Vec<i64> {
            let conn = s.conn();
            let mut stmt = conn
                .prepare("SELECT id FROM finding_accounts ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let before = ids();
        // The same findings again: nothing rewritten (same row ids).
        s.commit_cycle(
            now,
            &[named("a", "Acme"), named("b", "Globex"), named("c", "x")],
            &[],
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(ids(), before);
        // A rename, a close.
        s.commit_cycle(now, &[named("a", "Acme Renamed")], &["b".into()], &[], &[])
            .unwrap();
        assert_eq!(indexed(), pairs(&[("a", "Acme Renamed"), ("c", "x")]));
        let find = |q: &str| {
            let f = FindingFilter {
                account: Some(q.into()),
                ..Default::default()
            };
            let page = s.console_open_findings(&f, 0, 10).unwrap();
            page.rows
                .into_iter()
                .map(|(f, _)| f.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(find("RENAMED"), ["a"]);
        assert!(find("glob").is_empty(), "closed");
        // Reopened.
        s.commit_cycle(now, &[named("b", "Globex")], &[], &[], &[])
            .unwrap();
        assert_eq!(find("glob"), ["b"]);
        assert_eq!(find("A-1").len(), 3, "the account id, exactly");
        // The FTS index agrees with its content table.
        s.conn()
            .execute_batch("INSERT INTO finding_accounts_fts (finding_accounts_fts, rank) VALUES ('integrity-check', 1)")
            .unwrap();
    }

    #[test]
    fn a_payload_naming_a_partner_twice_is_saved_again_and_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("s.db")).unwrap();
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let twice = || {
            seen(
                "a",
                "partner_vs_partner",
                payload(
                    &["P1", "P1", "P2"],
                    &[("registration", "approved", Some(10.0))],
                ),
            )
        };
        for cycle in 0..3 {
            s.commit_cycle(now, &[twice()], &[], &[], &[])
                .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        }
        let p1 = FindingFilter {
            partner_id: Some("P1".into()),
            ..Default::default()
        };
        assert_eq!(s.console_open_findings(&p1, 0, 10).unwrap().total, 1);
    }

    /// A cycle of many new findings drops the findings' secondary indexes
    /// and builds them again. Afterwards the schema is the migrations'
    /// (the same SQL), the indexes agree with their tables, every table
    /// holds what the row-by-row path stores, and later cycles keep the
    /// indexes up as before.
    #[test]
    fn a_bulk_cycle_stores_what_row_by_row_stores_and_rebuilds_the_same_indexes() {
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let later = now + chrono::Duration::days(1);
        let finding = |i: usize| {
            let payload = serde_json::json!({
                "partner_ids": [format!("P{}", i % 7), format!("P{}", i % 5)],
                "account_id": format!("A-{}", i % 50),
                "account_name": format!("Acme {} Corp", i % 50),
                "evidence": [{"type": "opportunity", "status": "open", "amount": i as f64}],
            });
            let kind = if i.is_multiple_of(3) {
                "partner_vs_partner"
            } else {
                "direct_vs_partner"
            };
            seen(&format!("k{i:03}"), kind, payload.to_string())
        };
        let dir = tempfile::tempdir().unwrap();
        let bulk = Sqlite::open(&dir.path().join("bulk.db")).unwrap();
        let rows = Sqlite::open(&dir.path().join("rows.db")).unwrap();
        let cycles: [(chrono::DateTime<Utc>, Vec<FindingUpdate>, Vec<String>); 3] = [
            (now, (0..3).map(finding).collect(), vec![]),
            // 400 new, one of the three closed.
            (now, (0..403).map(finding).collect(), vec!["k001".into()]),
            // A day later: a few seen again, one new, one closed.
            (
                later,
                vec![finding(0), finding(2), finding(500)],
                vec!["k005".into()],
            ),
        ];
        for (at, seen, resolved) in &cycles {
            bulk.commit_cycle_with(*at, seen, resolved, &[], &[], 100)
                .unwrap();
            rows.commit_cycle_with(*at, seen, resolved, &[], &[], usize::MAX)
                .unwrap();
        }
        let dump = |s: &Sqlite, sql: &str| -> Vec<Vec<String>> {
            let conn = s.conn();
            let mut stmt = conn.prepare(sql).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect()
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        for sql in [
            "SELECT * FROM findings ORDER BY key",
            "SELECT * FROM finding_partners ORDER BY partner_id, key",
            "SELECT key, account_name FROM finding_accounts ORDER BY key",
            "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name",
            "PRAGMA integrity_check",
        ] {
            assert_eq!(dump(&bulk, sql), dump(&rows, sql), "{sql}");
        }
        assert_eq!(dump(&bulk, "PRAGMA integrity_check"), [["Text(\"ok\")"]]);
        assert_eq!(
            dump(&bulk, "SELECT count(*) FROM findings"),
            [["Integer(404)"]]
        );
        // The rebuild happened in one file only: its indexes were created
        // again, after every other schema entry.
        let last = |s: &Sqlite| {
            dump(
                s,
                "SELECT name FROM sqlite_schema ORDER BY rowid DESC LIMIT 4",
            )
            .concat()
        };
        assert_eq!(
            last(&bulk),
            [
                "Text(\"findings_open_risk\")",
                "Text(\"findings_open_kind\")",
                "Text(\"findings_open_account\")",
                "Text(\"finding_partners_key\")",
            ]
        );
        assert_ne!(last(&rows), last(&bulk));
        // The console reads the rebuilt indexes as it reads kept ones.
        for filter in [
            FindingFilter::default(),
            FindingFilter {
                partner_id: Some("P3".into()),
                ..Default::default()
            },
            FindingFilter {
                account: Some("acme 7".into()),
                ..Default::default()
            },
        ] {
            let keys = |s: &Sqlite| {
                let page = s.console_open_findings(&filter, 0, 1000).unwrap();
                (
                    page.total,
                    page.rows
                        .into_iter()
                        .map(|(f, _)| f.key)
                        .collect::<Vec<_>>(),
                )
            };
            assert_eq!(keys(&bulk), keys(&rows));
            assert!(keys(&bulk).0 > 0);
        }
    }
}
