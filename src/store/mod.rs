//! The cycle's memory, in one SQLite file (`state.path`): findings with their
//! first-seen, last-seen and resolved times, the alert outbox, the last value
//! written back per record and field, sync cursors, and run history.
//!
//! The schema is versioned with `PRAGMA user_version` and migrated forward at
//! open, every step in one write transaction (`BEGIN IMMEDIATE`), so two
//! processes opening a new file at once never both migrate it. WAL
//! journaling with `synchronous = FULL`: a committed transaction survives a
//! crash or power loss at any point.
//!
//! One writer at a time: a cycle holds [`lock::FileLock`] for its length.
//! Credentials an upstream rotated are stored sealed ([`crypto`]).

pub mod console;
pub(crate) mod copy;
pub(crate) use crate::crypto;
pub(crate) mod decisions;
pub mod leader;
pub mod lock;
pub(crate) mod pg;
mod select;

pub use select::{State, may_lead, target as select_target, writer_lock};

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::values::format_timestamp;

/// Schema steps, applied in order; `user_version` counts those applied.
/// Append only: never edit a step that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE findings (
        key          TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        severity     TEXT NOT NULL,
        -- what the last alert said: severity, parties, won opportunities (JSON)
        notified     TEXT NOT NULL,
        -- the finding as last seen (JSON), for resolution messages
        payload      TEXT NOT NULL,
        first_seen   TEXT NOT NULL,
        last_seen    TEXT NOT NULL,
        resolved_at  TEXT,
        notified_at  TEXT
    );
    CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at   TEXT NOT NULL,
        route        TEXT NOT NULL,
        finding_key  TEXT,
        reason       TEXT NOT NULL,
        body         TEXT NOT NULL,
        status       TEXT NOT NULL DEFAULT 'pending',
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT,
        sent_at      TEXT
    );
    CREATE INDEX outbox_pending ON outbox (status, id);
    CREATE TABLE written (
        sink         TEXT NOT NULL,
        record_id    TEXT NOT NULL,
        field        TEXT NOT NULL,
        value        TEXT NOT NULL,
        written_at   TEXT NOT NULL,
        PRIMARY KEY (sink, record_id, field)
    ) WITHOUT ROWID;
    CREATE TABLE cursors (
        source       TEXT PRIMARY KEY,
        value        TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE TABLE runs (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at   TEXT NOT NULL,
        finished_at  TEXT NOT NULL,
        outcome      TEXT NOT NULL,
        summary      TEXT NOT NULL
    );",
    // 2: the local mirror of records pulled from an API (kept between
    // cycles so a cycle reads only what changed), and credentials an
    // upstream rotated.
    "CREATE TABLE mirror (
        source       TEXT NOT NULL,
        object       TEXT NOT NULL,
        id           TEXT NOT NULL,
        modstamp     TEXT,
        -- the full sync that last saw the record (sweeps remove the rest)
        generation   INTEGER NOT NULL,
        -- the record's fields as the upstream sent them (JSON)
        data         TEXT NOT NULL,
        PRIMARY KEY (source, object, id)
    ) WITHOUT ROWID;
    CREATE TABLE credentials (
        name         TEXT PRIMARY KEY,
        -- a hash of the configured value this one replaced: a new configured
        -- value wins over a stored rotation of an older one
        configured   TEXT NOT NULL,
        value        TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );",
    // 3: how a finding closed: 'resolved' (the data changed) or 'aged_out'
    // (time moved it out of its window; closed quietly, never announced).
    "ALTER TABLE findings ADD COLUMN closed_as TEXT;
    UPDATE findings SET closed_as = 'resolved' WHERE resolved_at IS NOT NULL;",
    // 4: deliveries that may have reached the webhook without it confirming
    // (a timeout after sending): such a message is sent once more at most.
    "ALTER TABLE outbox ADD COLUMN unconfirmed INTEGER NOT NULL DEFAULT 0;",
    // 5 (issue 13, redesign): the notification channel a message goes to
    // ('slack' or 'teams'); the body is that channel's rendering. Rows
    // written before it were all Slack.
    "ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'slack';",
    // 6: decisions on findings (issue 15), an append-only audit trail: who
    // decided what about which finding, when and why. `outcome` is
    // partner_keeps / direct_keeps / split / not_a_conflict / snooze /
    // assign, or `reopened` (written by channel-sync when a decided finding
    // changed materially). `basis` holds the opportunity and partner ids the
    // finding had when decided (JSON), to tell a material change.
    "CREATE TABLE decisions (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        finding_key  TEXT NOT NULL,
        outcome      TEXT NOT NULL,
        decided_by   TEXT NOT NULL,
        note         TEXT,
        until        TEXT,
        assignee     TEXT,
        at           TEXT NOT NULL,
        basis        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX decisions_by_key ON decisions (finding_key, id);
    CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;",
    // 7: the console's columns and indexes (store/console.rs).
    console::MIGRATION,
    // 8: the console's partner triggers insert each partner once.
    console::MIGRATION_8,
    // 9: the console's account search: a trigram index of open findings'
    // account names.
    console::MIGRATION_9,
    // 10: the mirror keeps each object's field list once (a layout) and each
    // record's values only, by position (sync.rs). Rows from before
    // (`layout` NULL) hold JSON objects with field names until the full read
    // their cursor forces replaces them.
    MIRROR_LAYOUTS,
    // 11: the payload trigger of steps 7-8 runs only when a finding's
    // payload changed. Every cycle writes each finding it sees again (its
    // `last_seen`), payload included: without the `WHEN`, each of those
    // writes re-extracted the console's columns and rewrote the partner
    // rows, about 2 s a cycle at 60,000 findings (BENCHMARKS.md).
    console::MIGRATION_11,
    // 12: a new finding's console columns and partners come with its insert
    // (computed from the payload in Rust), not from a trigger re-reading it.
    console::MIGRATION_12,
    // 13: new findings reach the account search in one statement a cycle,
    // not one trigger a finding (FTS5 flushed at each statement).
    console::MIGRATION_13,
];

/// `keys` as a JSON array, bound as one parameter and read back with
/// `json_each`: one statement for a whole cycle's rows.
fn json_array<'a>(keys: impl Iterator<Item = &'a str>) -> rusqlite::Result<String> {
    serde_json::to_string(&keys.collect::<Vec<_>>())
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Step 10 (the same in store/pg.rs).
pub(crate) const MIRROR_LAYOUTS: &str = "ALTER TABLE mirror ADD COLUMN layout INTEGER;
    CREATE TABLE mirror_layouts (
        source       TEXT NOT NULL,
        object       TEXT NOT NULL,
        layout       INTEGER NOT NULL,
        -- the field names, a JSON array: a row's values are in this order
        fields       TEXT NOT NULL,
        PRIMARY KEY (source, object, layout)
    );";

/// SQLite's page cache, in KiB (a negative `cache_size`): 64 MiB where
/// SQLite's default is 2 MiB. A first cycle at 1M opportunities stores
/// 60,000 findings whose four indexes did not fit the default, and its
/// upserts kept evicting and re-reading their pages (BENCHMARKS.md).
const CACHE_SIZE: i64 = -65_536;

/// The page size of a new state file, in bytes: 16 KiB where SQLite's
/// default is 4 KiB. The mirror is a `WITHOUT ROWID` table of 200-300 byte
/// rows, and a first sync appends a million of them: with larger pages its
/// B-tree is a level shallower and splits a quarter as often (BENCHMARKS.md).
const PAGE_SIZE: i64 = 16_384;

/// From how many new findings a cycle (when they also outnumber the
/// findings already stored) drops the secondary indexes of `findings` and
/// `finding_partners`, inserts, and builds them again: one sort an index
/// instead of an insert at a random place for each row. A first cycle at 1M
/// opportunities stores about 58,000 findings; its inserts took 1.1 s with
/// the indexes kept up and 0.45 s without, and rebuilding the four indexes
/// 0.2 s (BENCHMARKS.md). A cycle of a few new findings keeps them up.
const BULK_FINDINGS: usize = 5_000;

/// Drops the secondary indexes of the findings' tables (not the primary
/// keys') and returns the SQL that creates them again, as the schema holds
/// it, so that what is rebuilt is what the migrations made. Inside the
/// cycle's transaction: a failure before the rebuild rolls the drop back.
fn drop_secondary_indexes(tx: &rusqlite::Transaction) -> rusqlite::Result<Vec<String>> {
    let indexes: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT name, sql FROM sqlite_schema
             WHERE type = 'index' AND tbl_name IN ('findings', 'finding_partners') AND sql IS NOT NULL
             ORDER BY name",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    for (name, _) in &indexes {
        tx.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    Ok(indexes.into_iter().map(|(_, sql)| sql).collect())
}

/// One record for the mirror: id and its values, a JSON array in the order
/// of its layout's fields (`row` in sync.rs). The record's modification
/// stamp moves the cursor but is not stored: nothing reads it back, and at a
/// million records its text was about 30 MiB of the mirror. (The `modstamp`
/// column stays for files written before; a rewritten row clears it.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRow {
    pub id: String,
    pub data: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "state {path} has schema version {found}, newer than this program knows ({known}); upgrade channel-sync"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("state database {url}: {}", with_causes(source))]
    Postgres {
        url: String,
        #[source]
        source: ::postgres::Error,
    },
    #[error("state database {url}: {message}")]
    Config { url: String, message: String },
}

/// A driver error with its causes (`error performing TLS handshake: invalid
/// peer certificate: UnknownIssuer`): the top line alone rarely says why.
fn with_causes(e: &::postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Why a stored credential could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

/// What the state remembers of a finding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinding {
    pub key: String,
    pub kind: String,
    pub severity: String,
    pub notified: String,
    pub payload: String,
    pub first_seen: String,
    pub resolved_at: Option<String>,
    pub notified_at: Option<String>,
    /// `resolved` or `aged_out` once closed.
    pub closed_as: Option<String>,
}

/// A message waiting in (or delivered from) the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub route: String,
    /// The channel (`slack`, `teams`) the body was rendered for.
    pub channel: String,
    pub finding_key: Option<String>,
    pub reason: String,
    pub body: String,
    pub attempts: i64,
    /// Earlier attempts that may have been delivered (timed out after
    /// sending).
    pub unconfirmed: i64,
}

/// A new outbox message.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub route: String,
    /// The channel (`slack`, `teams`) the body was rendered for.
    pub channel: String,
    pub finding_key: Option<String>,
    pub reason: String,
    pub body: String,
}

/// A finding to insert or update, and whether its alert state changes.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingUpdate {
    pub key: String,
    pub kind: String,
    pub severity: String,
    pub payload: String,
    /// `Some` when an alert goes out for it now: the new `notified` facts.
    pub notified: Option<String>,
}

/// The state file holds mirrored CRM records and may hold a rotated refresh
/// token: only its owner may read it.
fn restrict_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "Could not restrict the state file to its owner.");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The SQLite store. The connection sits behind a mutex so a cycle's future
/// can move between threads; each call holds it only for its own statements.
pub struct Sqlite {
    conn: std::sync::Mutex<Connection>,
    path: String,
}

impl Sqlite {
    /// Opens (creating if needed) and migrates the state file.
    pub fn open(path: &Path) -> Result<Sqlite, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing folder is created; a failure shows up in open below.
            let _ = std::fs::create_dir_all(dir);
        }
        let label = path.display().to_string();
        let err = |source| StateError::Sqlite {
            path: label.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        restrict_to_owner(path);
        // First, so that switching a new file to WAL waits for another
        // process doing the same instead of failing "database is locked".
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        // A new file's page size (an existing file keeps its own, and this
        // does nothing). PAGE_SIZE says why.
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(err)?;
        // Two connections switching a new file to WAL at once can deadlock
        // on its locks, and SQLite then answers one of them "busy" without
        // waiting: that one tries again shortly.
        let mut tries = 0;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if tries < 100
                        && matches!(
                            e.code,
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        ) =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(err)?,
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.pragma_update(None, "cache_size", CACHE_SIZE)
            .map_err(err)?;
        // Statement journals (each upsert inside a cycle's transaction
        // keeps one) in memory rather than in a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(err)?;
        let state = Sqlite {
            conn: std::sync::Mutex::new(conn),
            path: label,
        };
        state.migrate()?;
        Ok(state)
    }

    /// An in-memory copy of the state file (or a new empty state when there
    /// is none), for `--dry-run`: a sync may run against it as usual and
    /// nothing reaches the file.
    pub fn scratch_copy(path: &Path) -> Result<Sqlite, StateError> {
        let label = format!("{} (in-memory copy)", path.display());
        let err = |source| StateError::Sqlite {
            path: label.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(err)?;
        if let Some(existing) = Sqlite::open_read_only(path)? {
            let from = existing.conn();
            rusqlite::backup::Backup::new(&from, &mut conn)
                .and_then(|b| b.run_to_completion(1024, std::time::Duration::ZERO, None))
                .map_err(err)?;
        }
        let state = Sqlite {
            conn: std::sync::Mutex::new(conn),
            path: label,
        };
        state.migrate()?;
        Ok(state)
    }

    /// Opens an existing state file read-only, for `--dry-run`; `None` when
    /// there is none yet (an empty state). Never writes to the file.
    pub fn open_read_only(path: &Path) -> Result<Option<Sqlite>, StateError> {
        if !path.is_file() {
            return Ok(None);
        }
        let label = path.display().to_string();
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StateError::Sqlite {
            path: label.clone(),
            source,
        })?;
        let state = Sqlite {
            conn: std::sync::Mutex::new(conn),
            path: label,
        };
        let version = state.version()?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StateError::TooNew {
                path: state.path,
                found: version,
                known: MIGRATIONS.len() as i64,
            });
        }
        if version < MIGRATIONS.len() as i64 {
            // An older schema: a real run would migrate it first. A dry run
            // migrates an in-memory copy instead, so it sees what the real
            // run would see (the file stays as it is).
            let mut conn = Connection::open_in_memory().map_err(|e| state.err(e))?;
            {
                let from = state.conn();
                rusqlite::backup::Backup::new(&from, &mut conn)
                    .and_then(|b| b.run_to_completion(1024, std::time::Duration::ZERO, None))
                    .map_err(|e| state.err(e))?;
            }
            let copy = Sqlite {
                conn: std::sync::Mutex::new(conn),
                path: format!("{} (in-memory copy)", state.path),
            };
            copy.migrate()?;
            return Ok(Some(copy));
        }
        Ok(Some(state))
    }

    pub(crate) fn label(&self) -> &str {
        &self.path
    }

    /// The connection (a panic elsewhere cannot leave it half-used: every
    /// change is a transaction, so a poisoned lock is simply taken over).
    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `work` in one transaction: all of it is stored, or none of it.
    fn in_transaction(
        &self,
        work: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        work(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn version(&self) -> Result<i64, StateError> {
        self.conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Brings the schema up to date. The version is read again inside one
    /// write transaction (`BEGIN IMMEDIATE`, which waits for any other
    /// writer), and every missing step runs in it: of two processes opening
    /// a new file together, one migrates and the other finds it done.
    fn migrate(&self) -> Result<(), StateError> {
        let known = MIGRATIONS.len() as i64;
        let too_new = |found| StateError::TooNew {
            path: self.path.clone(),
            found,
            known,
        };
        let version = self.version()?;
        if version > known {
            return Err(too_new(version));
        }
        if version == known {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version > known {
            return Err(too_new(version));
        }
        for step in MIGRATIONS.iter().skip(version as usize) {
            tx.execute_batch(step).map_err(|e| self.err(e))?;
        }
        tx.pragma_update(None, "user_version", known)
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        if version < known {
            tracing::info!(from = version, to = known, "State schema migrated.");
        }
        Ok(())
    }

    /// Every finding the state remembers, resolved ones included.
    pub fn findings(&self) -> Result<Vec<StoredFinding>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT key, kind, severity, notified, payload, first_seen, resolved_at, notified_at, closed_as
                 FROM findings",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredFinding {
                    key: r.get(0)?,
                    kind: r.get(1)?,
                    severity: r.get(2)?,
                    notified: r.get(3)?,
                    payload: r.get(4)?,
                    first_seen: r.get(5)?,
                    resolved_at: r.get(6)?,
                    closed_as: r.get(8)?,
                    notified_at: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Records what this cycle saw and decided, in one transaction: the
    /// findings seen, the findings resolved or aged out, and the messages to
    /// send. Either all of it is stored or none of it.
    pub fn commit_cycle(
        &self,
        now: DateTime<Utc>,
        seen: &[FindingUpdate],
        resolved: &[String],
        aged_out: &[String],
        messages: &[NewMessage],
    ) -> Result<(), StateError> {
        self.commit_cycle_with(now, seen, resolved, aged_out, messages, BULK_FINDINGS)
    }

    /// [`Self::commit_cycle`], with the number of new findings from which
    /// their table's indexes are rebuilt rather than kept up (a test sets
    /// it to compare both ways).
    fn commit_cycle_with(
        &self,
        now: DateTime<Utc>,
        seen: &[FindingUpdate],
        resolved: &[String],
        aged_out: &[String],
        messages: &[NewMessage],
        bulk_from: usize,
    ) -> Result<(), StateError> {
        let now = format_timestamp(&now);
        self.in_transaction(|tx| {
            // A new finding's console columns and partner rows go in with it
            // (schema step 12); a finding seen before keeps its own, and a
            // changed payload is re-read by the update trigger (step 11).
            let known: crate::fast::FastSet<String> = {
                let mut keys = tx.prepare("SELECT key FROM findings")?;
                keys.query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            let columns: Vec<Option<console::Columns>> = {
                use rayon::prelude::*;
                seen.par_iter()
                    .map(|f| (!known.contains(&f.key)).then(|| console::Columns::of(&f.payload)))
                    .collect()
            };
            let new_count = columns.iter().filter(|c| c.is_some()).count();
            let rebuilt = if new_count >= bulk_from && new_count > known.len() {
                drop_secondary_indexes(tx)?
            } else {
                Vec::new()
            };
            let mut upsert = tx.prepare(
                "INSERT INTO findings (key, kind, severity, notified, payload, first_seen, last_seen, resolved_at, notified_at,
                                       value_at_risk, account_id, account_name)
                 VALUES (?1, ?2, ?3, COALESCE(?4, '{}'), ?5, ?6, ?6, NULL, CASE WHEN ?4 IS NULL THEN NULL ELSE ?6 END,
                         ?7, ?8, ?9)
                 ON CONFLICT (key) DO UPDATE SET
                    severity = excluded.severity,
                    payload = excluded.payload,
                    last_seen = excluded.last_seen,
                    resolved_at = NULL,
                    closed_as = NULL,
                    notified = COALESCE(?4, findings.notified),
                    notified_at = CASE WHEN ?4 IS NULL THEN findings.notified_at ELSE excluded.last_seen END
                 WHERE findings.severity IS NOT excluded.severity
                    OR findings.payload IS NOT excluded.payload
                    OR findings.resolved_at IS NOT NULL
                    OR findings.closed_as IS NOT NULL
                    OR ?4 IS NOT NULL",
            )?;
            let mut partner = tx.prepare(
                "INSERT OR IGNORE INTO finding_partners (partner_id, key) VALUES (?1, ?2)",
            )?;
            let none = console::Columns::default();
            let mut new_keys = Vec::new();
            for (f, c) in seen.iter().zip(&columns) {
                if c.is_some() {
                    new_keys.push(f.key.as_str());
                }
                let c = c.as_ref().unwrap_or(&none);
                upsert.execute(params![
                    f.key,
                    f.kind,
                    f.severity,
                    f.notified,
                    f.payload,
                    now,
                    c.value_at_risk,
                    c.account_id,
                    c.account_name
                ])?;
                for p in &c.partners {
                    partner.execute(params![p, f.key])?;
                }
            }
            // A finding seen again unchanged is not rewritten above (its
            // row, its index entries, its triggers): only its `last_seen`
            // moves, for all of them in one statement, which touches no index.
            // A new one was inserted with it.
            let again = seen
                .iter()
                .zip(&columns)
                .filter(|(_, c)| c.is_none())
                .map(|(f, _)| f.key.as_str());
            tx.execute(
                "UPDATE findings SET last_seen = ?1
                 WHERE key IN (SELECT value FROM json_each(?2)) AND last_seen IS NOT ?1",
                params![now, json_array(again)?],
            )?;
            if !new_keys.is_empty() {
                tx.execute(
                    console::INDEX_NEW_ACCOUNTS,
                    params![json_array(new_keys.iter().copied())?],
                )?;
            }
            let mut close = tx.prepare(
                "UPDATE findings SET resolved_at = ?2, closed_as = ?3 WHERE key = ?1 AND resolved_at IS NULL",
            )?;
            for key in resolved {
                close.execute(params![key, now, "resolved"])?;
            }
            for key in aged_out {
                close.execute(params![key, now, "aged_out"])?;
            }
            let mut insert = tx.prepare(
                "INSERT INTO outbox (created_at, route, finding_key, reason, body, channel) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for m in messages {
                insert.execute(params![now, m.route, m.finding_key, m.reason, m.body, m.channel])?;
            }
            for sql in &rebuilt {
                tx.execute_batch(sql)?;
            }
            Ok(())
        })
    }

    /// Messages not yet delivered, oldest first.
    pub fn pending(&self) -> Result<Vec<OutboxRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, route, finding_key, reason, body, attempts, unconfirmed, channel FROM outbox
                 WHERE status = 'pending' ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(OutboxRow {
                id: r.get(0)?,
                route: r.get(1)?,
                finding_key: r.get(2)?,
                reason: r.get(3)?,
                body: r.get(4)?,
                attempts: r.get(5)?,
                unconfirmed: r.get(6)?,
                channel: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| self.err(e))
    }

    pub fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?2, last_error = NULL WHERE id = ?1",
                params![id, format_timestamp(&now)],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// A failed attempt: stays pending (retried next cycle) or is parked.
    pub fn mark_failed(&self, id: i64, error: &str, park: bool) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2,
                    status = CASE WHEN ?3 THEN 'parked' ELSE status END
                 WHERE id = ?1",
                params![id, error, park],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// An attempt that may have been delivered (the webhook took the request
    /// and did not answer in time): counted, and kept pending for one more
    /// attempt in a later cycle, or parked when `park` (it may have arrived
    /// twice already).
    pub fn mark_unconfirmed(&self, id: i64, error: &str, park: bool) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, unconfirmed = unconfirmed + 1,
                    last_error = ?2, status = CASE WHEN ?3 THEN 'parked' ELSE status END
                 WHERE id = ?1",
                params![id, error, park],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The last value successfully written per (record, field) of a sink.
    pub fn written(
        &self,
        sink: &str,
    ) -> Result<crate::fast::FastMap<(String, String), String>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT record_id, field, value FROM written WHERE sink = ?1")
            .map_err(|e| self.err(e))?;
        stmt.query_map([sink], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(|e| self.err(e))
    }

    /// Remembers values a sink confirmed, in one transaction.
    pub fn record_written(
        &self,
        sink: &str,
        values: &[(String, String, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let now = format_timestamp(&now);
        self.in_transaction(|tx| {
            let mut stmt = tx.prepare(
                "INSERT INTO written (sink, record_id, field, value, written_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sink, record_id, field) DO UPDATE SET value = excluded.value, written_at = excluded.written_at",
            )?;
            for (record, field, value) in values {
                stmt.execute(params![sink, record, field, value, now])?;
            }
            Ok(())
        })
    }

    /// Forgets what a sink was written (its target was emptied or replaced).
    pub fn forget_written(&self, sink: &str) -> Result<(), StateError> {
        self.conn()
            .execute("DELETE FROM written WHERE sink = ?1", [sink])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Stores a page of pulled records and removes deleted ones, in one
    /// transaction. `generation` marks the records as seen by that sync;
    /// `layout` names the fields their values are in.
    pub fn mirror_apply(
        &self,
        source: &str,
        object: &str,
        generation: i64,
        layout: i64,
        upserts: &[MirrorRow],
        deletes: &[String],
    ) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO mirror (source, object, id, generation, layout, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (source, object, id) DO UPDATE SET
                   modstamp = NULL, generation = excluded.generation,
                   layout = excluded.layout, data = excluded.data",
            )?;
            for r in upserts {
                upsert.execute(params![source, object, r.id, generation, layout, r.data])?;
            }
            let mut delete = tx.prepare_cached(
                "DELETE FROM mirror WHERE source = ?1 AND object = ?2 AND id = ?3",
            )?;
            for id in deletes {
                delete.execute(params![source, object, id])?;
            }
            Ok(())
        })
    }

    /// The layout (number) of an object's rows with these fields (a JSON
    /// array of names): the known one, or a new one.
    pub fn mirror_layout(
        &self,
        source: &str,
        object: &str,
        fields: &str,
    ) -> Result<i64, StateError> {
        let mut layout = 0;
        self.in_transaction(|tx| {
            let known: Option<i64> = tx
                .query_row(
                    "SELECT layout FROM mirror_layouts WHERE source = ?1 AND object = ?2 AND fields = ?3",
                    params![source, object, fields],
                    |r| r.get(0),
                )
                .optional()?;
            layout = match known {
                Some(l) => l,
                None => {
                    let next: i64 = tx.query_row(
                        "SELECT coalesce(max(layout), 0) + 1 FROM mirror_layouts
                         WHERE source = ?1 AND object = ?2",
                        params![source, object],
                        |r| r.get(0),
                    )?;
                    tx.execute(
                        "INSERT INTO mirror_layouts (source, object, layout, fields) VALUES (?1, ?2, ?3, ?4)",
                        params![source, object, next, fields],
                    )?;
                    next
                }
            };
            Ok(())
        })?;
        Ok(layout)
    }

    /// An object's layouts: (number, field names as a JSON array).
    pub fn mirror_layouts(
        &self,
        source: &str,
        object: &str,
    ) -> Result<Vec<(i64, String)>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT layout, fields FROM mirror_layouts WHERE source = ?1 AND object = ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![source, object], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The newest generation among an object's mirrored records.
    pub fn mirror_generation(&self, source: &str, object: &str) -> Result<Option<i64>, StateError> {
        self.conn()
            .query_row(
                "SELECT max(generation) FROM mirror WHERE source = ?1 AND object = ?2",
                params![source, object],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// After a full sync: removes the records it did not see, and every
    /// layout but the one it stored them in (no record is left in another).
    /// Returns how many records went.
    pub fn mirror_sweep(
        &self,
        source: &str,
        object: &str,
        generation: i64,
        layout: i64,
    ) -> Result<usize, StateError> {
        let mut swept = 0;
        self.in_transaction(|tx| {
            swept = tx.execute(
                "DELETE FROM mirror WHERE source = ?1 AND object = ?2 AND generation < ?3",
                params![source, object, generation],
            )?;
            tx.execute(
                "DELETE FROM mirror_layouts WHERE source = ?1 AND object = ?2 AND layout <> ?3",
                params![source, object, layout],
            )?;
            Ok(())
        })?;
        Ok(swept)
    }

    /// Calls `each` with (id, layout, data) for every mirrored record of an
    /// object, in id order (`layout` is None for a row from before layouts).
    pub fn mirror_scan(
        &self,
        source: &str,
        object: &str,
        mut each: impl FnMut(&str, Option<i64>, &str),
    ) -> Result<(), StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, layout, data FROM mirror WHERE source = ?1 AND object = ?2 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![source, object])
            .map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let id = row.get_ref(0).and_then(|v| Ok(v.as_str()?));
            let layout = row.get::<_, Option<i64>>(1);
            let data = row.get_ref(2).and_then(|v| Ok(v.as_str()?));
            match (id, layout, data) {
                (Ok(id), Ok(layout), Ok(data)) => each(id, layout, data),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    return Err(self.err(e));
                }
            }
        }
        Ok(())
    }

    pub fn mirror_count(&self, source: &str, object: &str) -> Result<u64, StateError> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM mirror WHERE source = ?1 AND object = ?2",
                params![source, object],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// A credential an upstream rotated, if it replaced the configured value
    /// whose hash is `configured` (a newly configured value wins), opened
    /// with `key`. A value an older version stored in clear is read, and
    /// sealed in its place.
    pub fn credential(
        &self,
        name: &str,
        configured: &str,
        key: &crypto::CredentialKey,
    ) -> Result<Option<String>, CredentialError> {
        let stored: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM credentials WHERE name = ?1 AND configured = ?2",
                params![name, configured],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        stored
            .map(|stored| {
                unseal(name, stored, key, |clear| {
                    self.set_credential(name, configured, clear, key, Utc::now())
                })
            })
            .transpose()
    }

    /// Stores a credential sealed with `key`, in its own committed
    /// transaction (durable when this returns).
    pub fn set_credential(
        &self,
        name: &str,
        configured: &str,
        value: &str,
        key: &crypto::CredentialKey,
        now: DateTime<Utc>,
    ) -> Result<(), CredentialError> {
        let sealed = key.seal(name, value)?;
        self.conn()
            .execute(
                "INSERT INTO credentials (name, configured, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET configured = excluded.configured,
                   value = excluded.value, updated_at = excluded.updated_at",
                params![name, configured, sealed, format_timestamp(&now)],
            )
            .map(drop)
            .map_err(|e| self.err(e).into())
    }

    pub fn cursor(&self, source: &str) -> Result<Option<String>, StateError> {
        self.conn()
            .query_row(
                "SELECT value FROM cursors WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_cursor(
        &self,
        source: &str,
        value: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT INTO cursors (source, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![source, value, format_timestamp(&now)],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Appends one run to the history.
    pub fn record_run(
        &self,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        outcome: &str,
        summary: &str,
    ) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT INTO runs (started_at, finished_at, outcome, summary) VALUES (?1, ?2, ?3, ?4)",
                params![
                    format_timestamp(&started),
                    format_timestamp(&finished),
                    outcome,
                    summary
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Counts of outbox messages by status (for summaries and tests).
    pub fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))
    }
}

/// A stored credential's value: opened with `key` when sealed. One an older
/// version stored in clear is sealed in its place by `reseal` first, for
/// either backend.
pub(super) fn unseal(
    name: &str,
    stored: String,
    key: &crypto::CredentialKey,
    reseal: impl FnOnce(&str) -> Result<(), CredentialError>,
) -> Result<String, CredentialError> {
    if crypto::is_sealed(&stored) {
        return Ok(key.open(name, &stored)?);
    }
    reseal(&stored)?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::Sqlite as State;
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
    }

    fn update(key: &str, notified: Option<&str>) -> FindingUpdate {
        FindingUpdate {
            key: key.into(),
            kind: "direct_vs_partner".into(),
            severity: "warning".into(),
            payload: "{}".into(),
            notified: notified.map(Into::into),
        }
    }

    /// A new state file gets 16 KiB pages; a file made before keeps the
    /// size it has (SQLite cannot change it in WAL mode).
    #[test]
    fn a_new_file_has_large_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |s: &State| -> i64 {
            s.conn()
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .unwrap()
        };
        let new = State::open(&dir.path().join("new.db")).unwrap();
        assert_eq!(page_size(&new), PAGE_SIZE);
        let old_path = dir.path().join("old.db");
        {
            let c = Connection::open(&old_path).unwrap();
            c.pragma_update(None, "page_size", 4096).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.execute_batch("CREATE TABLE before_us (x)").unwrap();
        }
        let old = State::open(&old_path).unwrap();
        assert_eq!(page_size(&old), 4096);
        assert_eq!(old.version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_new_file_is_migrated_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        let s = State::open(&path).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
        let msg = NewMessage {
            route: "default".into(),
            channel: "slack".into(),
            finding_key: Some("k".into()),
            reason: "new".into(),
            body: "{}".into(),
        };
        s.commit_cycle(now(), &[update("k", Some("{\"a\":1}"))], &[], &[], &[msg])
            .unwrap();
        drop(s);
        let s = State::open(&path).unwrap();
        let f = s.findings().unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].notified, "{\"a\":1}");
        assert_eq!(f[0].notified_at.as_deref(), Some("2026-11-26T00:00:00Z"));
        assert_eq!(s.pending().unwrap().len(), 1);
    }

    /// A cycle that sees a finding again unchanged moves only its
    /// `last_seen`; a changed payload or severity, a reopening or an alert
    /// rewrites the row (and its index entries and triggers).
    #[test]
    fn a_finding_seen_again_unchanged_moves_only_its_last_seen() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).unwrap();
        let keys = ["same", "payload", "severity", "alerted", "reopened"];
        let first: Vec<FindingUpdate> = keys.iter().map(|k| update(k, None)).collect();
        s.commit_cycle(now(), &first, &[], &[], &[]).unwrap();
        s.commit_cycle(now(), &[], &["reopened".into()], &[], &[])
            .unwrap();
        s.conn()
            .execute_batch(
                "CREATE TEMP TABLE rewritten (key TEXT);
                 CREATE TEMP TRIGGER count_rewrites AFTER UPDATE OF payload, severity, notified, resolved_at ON findings
                 BEGIN INSERT INTO rewritten VALUES (NEW.key); END;",
            )
            .unwrap();
        let later = now() + chrono::Duration::hours(6);
        let mut again: Vec<FindingUpdate> = keys.iter().map(|k| update(k, None)).collect();
        again[1].payload = "{\"a\":2}".into();
        again[2].severity = "critical".into();
        again[3].notified = Some("{\"b\":1}".into());
        s.commit_cycle(later, &again, &[], &[], &[]).unwrap();
        let rewritten: Vec<String> = {
            let conn = s.conn();
            let mut stmt = conn
                .prepare("SELECT key FROM rewritten ORDER BY key")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(rewritten, ["alerted", "payload", "reopened", "severity"]);
        let seen: Vec<(String, String, String)> = {
            let conn = s.conn();
            let mut stmt = conn
                .prepare("SELECT key, first_seen, last_seen FROM findings ORDER BY key")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(seen.len(), keys.len());
        for (key, first_seen, last_seen) in seen {
            assert_eq!(first_seen, "2026-11-26T00:00:00Z", "{key}");
            assert_eq!(last_seen, "2026-11-26T06:00:00Z", "{key}");
        }
        let f = s.findings().unwrap();
        let by = |k: &str| f.iter().find(|x| x.key == k).unwrap();
        assert_eq!(by("payload").payload, "{\"a\":2}");
        assert_eq!(by("severity").severity, "critical");
        assert_eq!(by("alerted").notified, "{\"b\":1}");
        assert!(by("reopened").resolved_at.is_none());
    }

    #[test]
    fn seeing_a_finding_again_without_an_alert_keeps_what_was_notified() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).unwrap();
        s.commit_cycle(now(), &[update("k", Some("first"))], &[], &[], &[])
            .unwrap();
        s.commit_cycle(now(), &[], &["k".into()], &[], &[]).unwrap();
        assert!(s.findings().unwrap()[0].resolved_at.is_some());
        s.commit_cycle(now(), &[update("k", None)], &[], &[], &[])
            .unwrap();
        let f = &s.findings().unwrap()[0];
        assert_eq!(f.notified, "first");
        assert_eq!(f.resolved_at, None, "seen again: open again");
    }

    #[test]
    fn outbox_rows_move_from_pending_to_sent_or_parked() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).unwrap();
        let msg = |k: &str| NewMessage {
            route: "default".into(),
            channel: "slack".into(),
            finding_key: Some(k.into()),
            reason: "new".into(),
            body: "{}".into(),
        };
        s.commit_cycle(now(), &[], &[], &[], &[msg("a"), msg("b"), msg("c")])
            .unwrap();
        let p = s.pending().unwrap();
        s.mark_sent(p[0].id, now()).unwrap();
        s.mark_failed(p[1].id, "500", false).unwrap();
        s.mark_failed(p[2].id, "invalid_payload", true).unwrap();
        let left = s.pending().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].id, left[0].attempts), (p[1].id, 1));
        assert_eq!(
            s.outbox_counts().unwrap(),
            [
                ("parked".to_string(), 1),
                ("pending".to_string(), 1),
                ("sent".to_string(), 1)
            ]
        );
    }

    #[test]
    fn written_values_and_cursors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).unwrap();
        let v = |r: &str, f: &str, x: &str| (r.to_string(), f.to_string(), x.to_string());
        s.record_written(
            "files",
            &[v("P-1", "reps", "7"), v("P-1", "rate", "0.5")],
            now(),
        )
        .unwrap();
        s.record_written("files", &[v("P-1", "reps", "8")], now())
            .unwrap();
        let w = s.written("files").unwrap();
        assert_eq!(w[&("P-1".to_string(), "reps".to_string())], "8");
        assert_eq!(w.len(), 2);
        s.forget_written("files").unwrap();
        assert!(s.written("files").unwrap().is_empty());
        assert_eq!(s.cursor("sf").unwrap(), None);
        s.set_cursor("sf", "2026-11-01T00:00:00Z", now()).unwrap();
        assert_eq!(
            s.cursor("sf").unwrap().as_deref(),
            Some("2026-11-01T00:00:00Z")
        );
    }

    fn row(id: &str, data: &str) -> MirrorRow {
        MirrorRow {
            id: id.into(),
            data: data.into(),
        }
    }

    fn scan(s: &State, object: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        s.mirror_scan("sf", object, |id, layout, data| {
            assert_eq!(layout, Some(1));
            out.push((id.into(), data.into()))
        })
        .unwrap();
        out
    }

    #[test]
    fn the_mirror_upserts_deletes_and_sweeps_by_generation() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).unwrap();
        s.mirror_apply(
            "sf",
            "Opp",
            1,
            1,
            &[row("b", "1"), row("a", "1"), row("c", "1")],
            &[],
        )
        .unwrap();
        s.mirror_apply("sf", "Acc", 1, 1, &[row("a", "acc")], &[])
            .unwrap();
        // An incremental page: one changed, one deleted.
        s.mirror_apply("sf", "Opp", 1, 1, &[row("a", "2")], &["c".into()])
            .unwrap();
        assert_eq!(
            scan(&s, "Opp"),
            [("a".into(), "2".into()), ("b".into(), "1".into())]
        );
        // A full sync that sees only b: a goes, other objects stay.
        s.mirror_apply("sf", "Opp", 2, 1, &[row("b", "3")], &[])
            .unwrap();
        assert_eq!(s.mirror_sweep("sf", "Opp", 2, 1).unwrap(), 1);
        assert_eq!(scan(&s, "Opp"), [("b".into(), "3".into())]);
        assert_eq!(s.mirror_count("sf", "Acc").unwrap(), 1);
    }

    #[test]
    fn layouts_are_numbered_per_object_and_a_sweep_keeps_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).unwrap();
        let a = s.mirror_layout("sf", "Opp", r#"["Name"]"#).unwrap();
        assert_eq!(a, 1);
        assert_eq!(
            s.mirror_layout("sf", "Opp", r#"["Name"]"#).unwrap(),
            a,
            "known: the same"
        );
        let b = s
            .mirror_layout("sf", "Opp", r#"["Name","Amount"]"#)
            .unwrap();
        assert_eq!(b, 2);
        assert_eq!(
            s.mirror_layout("sf", "Acc", r#"["Name"]"#).unwrap(),
            1,
            "per object"
        );
        s.mirror_apply("sf", "Opp", 1, a, &[row("a", r#"["x"]"#)], &[])
            .unwrap();
        s.mirror_apply("sf", "Opp", 2, b, &[row("b", r#"["y",1]"#)], &[])
            .unwrap();
        let mut seen = Vec::new();
        s.mirror_scan("sf", "Opp", |id, layout, _| {
            seen.push((id.to_string(), layout))
        })
        .unwrap();
        assert_eq!(
            seen,
            [("a".to_string(), Some(a)), ("b".to_string(), Some(b))]
        );
        assert_eq!(s.mirror_sweep("sf", "Opp", 2, b).unwrap(), 1);
        assert_eq!(
            s.mirror_layouts("sf", "Opp").unwrap(),
            [(b, r#"["Name","Amount"]"#.to_string())]
        );
        assert_eq!(
            s.mirror_layouts("sf", "Acc").unwrap().len(),
            1,
            "other objects keep theirs"
        );
        // A layout seen again after its sweep gets a new number.
        assert_eq!(s.mirror_layout("sf", "Opp", r#"["Name"]"#).unwrap(), 3);
    }

    /// A file at version 8 with a mirror row in the old form (JSON with
    /// field names): the migration keeps it, marked as from before layouts.
    #[test]
    fn an_old_mirror_row_is_kept_without_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let c = Connection::open(&path).unwrap();
            for step in &MIGRATIONS[..8] {
                c.execute_batch(step).unwrap();
            }
            c.execute(
                "INSERT INTO mirror (source, object, id, modstamp, generation, data)
                 VALUES ('salesforce', 'Opportunity', '006A', NULL, 1, '{\"Name\":\"Big\"}')",
                [],
            )
            .unwrap();
            c.pragma_update(None, "user_version", 8).unwrap();
        }
        let s = State::open(&path).unwrap();
        let mut rows = Vec::new();
        s.mirror_scan("salesforce", "Opportunity", |id, layout, data| {
            rows.push((id.to_string(), layout, data.to_string()))
        })
        .unwrap();
        assert_eq!(
            rows,
            [("006A".to_string(), None, r#"{"Name":"Big"}"#.to_string())]
        );
    }

    /// The mirror keeps no modification stamp: a new row has none, and a
    /// row an older version wrote with one loses it when rewritten.
    #[test]
    fn the_mirror_stores_no_modification_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = State::open(&path).unwrap();
        let row = |id: &str| MirrorRow {
            id: id.into(),
            data: "[1]".into(),
        };
        s.mirror_apply("sf", "Opp", 1, 1, &[row("a")], &[]).unwrap();
        let c = Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO mirror (source, object, id, modstamp, generation, layout, data)
             VALUES ('sf', 'Opp', 'old', '2026-11-01T00:00:00.000+0000', 1, 1, '[2]')",
            [],
        )
        .unwrap();
        let stamped = || -> Vec<String> {
            let mut q = c
                .prepare("SELECT id FROM mirror WHERE modstamp IS NOT NULL ORDER BY id")
                .unwrap();
            q.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(stamped(), ["old"]);
        s.mirror_apply("sf", "Opp", 2, 1, &[row("a"), row("old")], &[])
            .unwrap();
        assert!(stamped().is_empty());
        assert_eq!(s.mirror_count("sf", "Opp").unwrap(), 2);
    }

    #[test]
    fn a_rotated_credential_applies_only_to_the_value_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).unwrap();
        let key = crypto::CredentialKey::derive("secret").unwrap();
        assert_eq!(s.credential("rt", "h1", &key).unwrap(), None);
        s.set_credential("rt", "h1", "rotated-2", &key, now())
            .unwrap();
        assert_eq!(
            s.credential("rt", "h1", &key).unwrap().as_deref(),
            Some("rotated-2")
        );
        assert_eq!(
            s.credential("rt", "h2", &key).unwrap(),
            None,
            "a new configured value wins"
        );
    }

    #[test]
    fn a_credential_is_sealed_at_rest_and_a_wrong_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = State::open(&path).unwrap();
        let key = crypto::CredentialKey::derive("secret").unwrap();
        s.set_credential("rt", "h1", "rotated-2", &key, now())
            .unwrap();
        let raw: String = s
            .conn()
            .query_row("SELECT value FROM credentials", [], |r| r.get(0))
            .unwrap();
        assert!(
            raw.starts_with("cs1:") && !raw.contains("rotated-2"),
            "{raw}"
        );
        let wrong = crypto::CredentialKey::derive("other").unwrap();
        assert!(matches!(
            s.credential("rt", "h1", &wrong),
            Err(CredentialError::Crypto(crypto::CryptoError::WrongKey))
        ));
        // A value an older version stored in clear is read, then sealed.
        s.conn()
            .execute("UPDATE credentials SET value = 'legacy-3'", [])
            .unwrap();
        assert_eq!(
            s.credential("rt", "h1", &key).unwrap().as_deref(),
            Some("legacy-3")
        );
        let raw: String = s
            .conn()
            .query_row("SELECT value FROM credentials", [], |r| r.get(0))
            .unwrap();
        assert!(raw.starts_with("cs1:"), "{raw}");
    }

    #[test]
    fn many_processes_opening_a_new_file_together_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    State::open(&path).map(drop).map_err(|e| e.to_string())
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), Ok(()));
        }
        let s = State::open(&path).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_scratch_copy_changes_nothing_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = State::open(&path).unwrap();
        s.mirror_apply("sf", "Opp", 1, 1, &[row("a", "1")], &[])
            .unwrap();
        drop(s);
        let before = std::fs::read(&path).unwrap();
        let copy = State::scratch_copy(&path).unwrap();
        assert_eq!(scan(&copy, "Opp"), [("a".into(), "1".into())]);
        copy.mirror_apply("sf", "Opp", 2, 1, &[row("b", "1")], &[])
            .unwrap();
        assert_eq!(copy.mirror_count("sf", "Opp").unwrap(), 2);
        drop(copy);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let fresh = State::scratch_copy(&dir.path().join("none.db")).unwrap();
        assert_eq!(fresh.mirror_count("sf", "Opp").unwrap(), 0);
        assert!(!dir.path().join("none.db").exists());
    }

    #[cfg(unix)]
    #[test]
    fn only_the_owner_may_read_the_state_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(State::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(State::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            State::open(&path),
            Err(StateError::TooNew { found: 99, .. })
        ));
    }

    /// A file at schema version 1 (before the mirror), holding a finding,
    /// a pending message, a written value, a cursor and a run.
    fn version_1_file(path: &Path) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.execute_batch(
            "INSERT INTO findings VALUES ('k1', 'direct_vs_partner', 'warning', '{\"a\":1}', '{}', '2026-11-01T00:00:00Z', '2026-11-02T00:00:00Z', NULL, '2026-11-01T00:00:00Z');
             INSERT INTO outbox (created_at, route, finding_key, reason, body) VALUES ('2026-11-02T00:00:00Z', 'default', 'k1', 'new', '{\"text\":\"hi\"}');
             INSERT INTO written VALUES ('files', 'P-1', 'reps', '7', '2026-11-02T00:00:00Z');
             INSERT INTO cursors VALUES ('salesforce/Account', '{}', '2026-11-02T00:00:00Z');
             INSERT INTO runs (started_at, finished_at, outcome, summary) VALUES ('2026-11-02T00:00:00Z', '2026-11-02T00:00:01Z', 'ok', '{}');",
        )
        .unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
    }

    fn file_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    fn assert_version_1_rows(s: &State) {
        let f = s.findings().unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].key.as_str(), f[0].notified.as_str()),
            ("k1", "{\"a\":1}")
        );
        let pending = s.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].body, "{\"text\":\"hi\"}");
        let written = s.written("files").unwrap();
        assert_eq!(
            written.get(&("P-1".to_string(), "reps".to_string())),
            Some(&"7".to_string())
        );
        assert_eq!(
            s.cursor("salesforce/Account").unwrap().as_deref(),
            Some("{}")
        );
    }

    #[test]
    fn a_version_1_file_is_upgraded_with_its_rows_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        version_1_file(&path);
        let s = State::open(&path).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
        assert_version_1_rows(&s);
        // The new tables work.
        let row = MirrorRow {
            id: "a".into(),
            data: "{}".into(),
        };
        s.mirror_apply("sf", "Account", 1, 1, &[row], &[]).unwrap();
        assert_eq!(s.mirror_count("sf", "Account").unwrap(), 1);
        let key = crypto::CredentialKey::from_hex(&"ab".repeat(32)).unwrap();
        s.set_credential("t", "h", "v", &key, now()).unwrap();
        drop(s);
        assert_eq!(file_version(&path), MIGRATIONS.len() as i64);
        assert_version_1_rows(&State::open(&path).unwrap());
    }

    #[test]
    fn a_dry_run_sees_an_older_file_migrated_and_leaves_it_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        version_1_file(&path);
        let before = std::fs::read(&path).unwrap();
        let s = State::open_read_only(&path).unwrap().expect("the rows");
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
        assert_version_1_rows(&s);
        // The copy takes a sync like the real file would.
        s.mirror_apply("sf", "Account", 1, 1, &[], &["x".into()])
            .unwrap();
        drop(s);
        let copy = State::scratch_copy(&path).unwrap();
        assert_version_1_rows(&copy);
        drop(copy);
        assert_eq!(file_version(&path), 1);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file is untouched"
        );
    }
}
