//! [`State`]: the store a cycle works on, one of two backends, chosen by the
//! settings (`state.url` set: PostgreSQL; otherwise the SQLite file at
//! `state.path`).
//!
//! An enum of backends, not a trait object: the store's methods are
//! synchronous on both backends, some take generic callbacks
//! (`mirror_scan`), and every caller names this one concrete type, so the
//! call sites stay as they were.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::console::{FindingFilter, FindingPage, KindCount, LastRun, TimelineEvent};
use super::decisions::{DecisionRow, FindingBrief, NewDecisionRow, SentRow};
use super::leader::{PgLeader, PgLock};
use super::lock::{FileLock, WriterLock};
use super::pg::{Pg, Target};
use super::{
    CredentialError, FindingUpdate, MirrorRow, NewMessage, OutboxRow, Sqlite, StateError,
    StoredFinding, crypto,
};
use crate::config::StateSettings;

/// The state store.
pub struct State {
    backend: Backend,
}

enum Backend {
    Sqlite(Sqlite),
    Postgres(Box<Pg>, Arc<PgLeader>),
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*),
            Backend::Postgres(p, _) => p.$method($($arg),*),
        }
    };
}

/// Where the state lives, from the settings.
pub fn target(settings: &StateSettings) -> Result<Option<Target>, StateError> {
    match &settings.url {
        Some(url) => Target::new(
            url,
            settings.password.as_ref().map(|p| p.expose()),
            settings.ca_file.as_deref(),
        )
        .map(Some),
        None => Ok(None),
    }
}

/// The one-writer lock of the configured state: the file lock beside the
/// SQLite file, or the leadership of the PostgreSQL database.
pub fn writer_lock(
    settings: &StateSettings,
) -> Result<Box<dyn WriterLock + Send + Sync>, StateError> {
    Ok(match target(settings)? {
        Some(t) => Box::new(PgLock(PgLeader::shared(&t))),
        None => Box::new(FileLock::for_state(&settings.path)),
    })
}

/// Leader election, before a daemon's cycle: `None` when the state is a
/// SQLite file (one process; the file lock is enough), otherwise whether
/// this replica leads now (taking the lead when it is free).
pub fn may_lead(settings: &StateSettings) -> Option<bool> {
    match target(settings) {
        Ok(Some(t)) => Some(PgLeader::shared(&t).check()),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "The state settings are not usable.");
            Some(false)
        }
    }
}

impl State {
    /// Opens (creating if needed) and migrates the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<State, StateError> {
        Ok(State::sqlite(Sqlite::open(path)?))
    }

    /// An in-memory copy of the SQLite file at `path`, for a dry run.
    pub fn scratch_copy(path: &Path) -> Result<State, StateError> {
        Ok(State::sqlite(Sqlite::scratch_copy(path)?))
    }

    /// The SQLite file at `path`, read-only (`None`: no file yet).
    pub fn open_read_only(path: &Path) -> Result<Option<State>, StateError> {
        Ok(Sqlite::open_read_only(path)?.map(State::sqlite))
    }

    fn sqlite(s: Sqlite) -> State {
        State {
            backend: Backend::Sqlite(s),
        }
    }

    fn postgres(pg: Pg, target: &Target) -> State {
        State {
            backend: Backend::Postgres(Box::new(pg), PgLeader::shared(target)),
        }
    }

    /// Opens (and migrates) the configured state.
    pub fn connect(settings: &StateSettings) -> Result<State, StateError> {
        match target(settings)? {
            Some(t) => Ok(State::postgres(Pg::open(&t)?, &t)),
            None => State::open(&settings.path),
        }
    }

    /// The configured state for reading only (`None`: no SQLite file yet).
    /// On PostgreSQL: a transaction that is rolled back, never committed.
    pub fn connect_read_only(settings: &StateSettings) -> Result<Option<State>, StateError> {
        match target(settings)? {
            Some(t) => Ok(Some(State::postgres(Pg::scratch(&t)?, &t))),
            None => State::open_read_only(&settings.path),
        }
    }

    /// The configured state for a dry run that may write (an API source's
    /// mirror): an in-memory copy of the SQLite file, or on PostgreSQL one
    /// transaction that is rolled back. The stored state stays as it was.
    pub fn connect_scratch(settings: &StateSettings) -> Result<State, StateError> {
        match target(settings)? {
            Some(t) => Ok(State::postgres(Pg::scratch(&t)?, &t)),
            None => State::scratch_copy(&settings.path),
        }
    }

    /// Where the state is (a file path, or the database URL without
    /// password).
    pub fn label(&self) -> String {
        match &self.backend {
            Backend::Sqlite(s) => s.label().to_string(),
            Backend::Postgres(p, _) => p.label().to_string(),
        }
    }

    /// Whether the connection is gone (PostgreSQL: the server closed it, a
    /// failover, a restart), so a long-lived holder opens a new one. Never
    /// on SQLite.
    pub fn is_closed(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(_) => false,
            Backend::Postgres(p, _) => p.is_closed(),
        }
    }

    /// Before each send: whether this process may still send. Always on
    /// SQLite (the file lock lasts as long as the process); on PostgreSQL,
    /// the leader lock's session still answers.
    pub fn still_leading(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(_) => true,
            Backend::Postgres(_, leader) => leader.confirm(),
        }
    }

    pub fn version(&self) -> Result<i64, StateError> {
        dispatch!(self.version())
    }

    pub fn findings(&self) -> Result<Vec<StoredFinding>, StateError> {
        dispatch!(self.findings())
    }

    /// Records what this cycle saw and decided, in one transaction.
    pub fn commit_cycle(
        &self,
        now: DateTime<Utc>,
        seen: &[FindingUpdate],
        resolved: &[String],
        aged_out: &[String],
        messages: &[NewMessage],
    ) -> Result<(), StateError> {
        dispatch!(self.commit_cycle(now, seen, resolved, aged_out, messages))
    }

    pub fn pending(&self) -> Result<Vec<OutboxRow>, StateError> {
        dispatch!(self.pending())
    }

    pub fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StateError> {
        dispatch!(self.mark_sent(id, now))
    }

    pub fn mark_failed(&self, id: i64, error: &str, park: bool) -> Result<(), StateError> {
        dispatch!(self.mark_failed(id, error, park))
    }

    pub fn mark_unconfirmed(&self, id: i64, error: &str, park: bool) -> Result<(), StateError> {
        dispatch!(self.mark_unconfirmed(id, error, park))
    }

    pub fn written(
        &self,
        sink: &str,
    ) -> Result<crate::fast::FastMap<(String, String), String>, StateError> {
        dispatch!(self.written(sink))
    }

    pub fn record_written(
        &self,
        sink: &str,
        values: &[(String, String, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        dispatch!(self.record_written(sink, values, now))
    }

    pub fn forget_written(&self, sink: &str) -> Result<(), StateError> {
        dispatch!(self.forget_written(sink))
    }

    pub fn mirror_apply(
        &self,
        source: &str,
        object: &str,
        generation: i64,
        layout: i64,
        upserts: &[MirrorRow],
        deletes: &[String],
    ) -> Result<(), StateError> {
        dispatch!(self.mirror_apply(source, object, generation, layout, upserts, deletes))
    }

    /// The layout of an object's rows with these fields (a JSON array of
    /// names), made when new.
    pub fn mirror_layout(
        &self,
        source: &str,
        object: &str,
        fields: &str,
    ) -> Result<i64, StateError> {
        dispatch!(self.mirror_layout(source, object, fields))
    }

    pub fn mirror_layouts(
        &self,
        source: &str,
        object: &str,
    ) -> Result<Vec<(i64, String)>, StateError> {
        dispatch!(self.mirror_layouts(source, object))
    }

    pub fn mirror_generation(&self, source: &str, object: &str) -> Result<Option<i64>, StateError> {
        dispatch!(self.mirror_generation(source, object))
    }

    pub fn mirror_sweep(
        &self,
        source: &str,
        object: &str,
        generation: i64,
        layout: i64,
    ) -> Result<usize, StateError> {
        dispatch!(self.mirror_sweep(source, object, generation, layout))
    }

    pub fn mirror_scan(
        &self,
        source: &str,
        object: &str,
        each: impl FnMut(&str, Option<i64>, &str),
    ) -> Result<(), StateError> {
        dispatch!(self.mirror_scan(source, object, each))
    }

    pub fn mirror_count(&self, source: &str, object: &str) -> Result<u64, StateError> {
        dispatch!(self.mirror_count(source, object))
    }

    /// A credential an upstream rotated (see [`Sqlite::credential`]).
    pub fn credential(
        &self,
        name: &str,
        configured: &str,
        key: &crypto::CredentialKey,
    ) -> Result<Option<String>, CredentialError> {
        match &self.backend {
            Backend::Sqlite(s) => s.credential(name, configured, key),
            Backend::Postgres(p, _) => p
                .credential_row(name, configured)?
                .map(|stored| {
                    super::unseal(name, stored, key, |clear| {
                        self.set_credential(name, configured, clear, key, Utc::now())
                    })
                })
                .transpose(),
        }
    }

    pub fn set_credential(
        &self,
        name: &str,
        configured: &str,
        value: &str,
        key: &crypto::CredentialKey,
        now: DateTime<Utc>,
    ) -> Result<(), CredentialError> {
        match &self.backend {
            Backend::Sqlite(s) => s.set_credential(name, configured, value, key, now),
            Backend::Postgres(p, _) => {
                let sealed = key.seal(name, value)?;
                Ok(p.set_credential_row(name, configured, &sealed, now)?)
            }
        }
    }

    pub fn cursor(&self, source: &str) -> Result<Option<String>, StateError> {
        dispatch!(self.cursor(source))
    }

    pub fn set_cursor(
        &self,
        source: &str,
        value: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        dispatch!(self.set_cursor(source, value, now))
    }

    pub fn record_run(
        &self,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        outcome: &str,
        summary: &str,
    ) -> Result<(), StateError> {
        dispatch!(self.record_run(started, finished, outcome, summary))
    }

    pub fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StateError> {
        dispatch!(self.outbox_counts())
    }

    /// The finding a decision would name, if the state knows it.
    pub fn finding_brief(&self, key: &str) -> Result<Option<FindingBrief>, StateError> {
        dispatch!(self.finding_brief(key))
    }

    /// Appends rows to the decisions trail, in one transaction; their ids.
    pub fn append_decisions(
        &self,
        rows: &[NewDecisionRow],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StateError> {
        dispatch!(self.append_decisions(rows, now))
    }

    /// The decisions trail of one finding, oldest first.
    pub fn decisions_of(&self, key: &str) -> Result<Vec<DecisionRow>, StateError> {
        dispatch!(self.decisions_of(key))
    }

    /// The whole decisions trail, oldest first.
    pub fn all_decisions(&self) -> Result<Vec<DecisionRow>, StateError> {
        dispatch!(self.all_decisions())
    }

    /// The findings already escalated (an `escalation` message in the outbox).
    pub fn escalated_keys(&self) -> Result<std::collections::HashSet<String>, StateError> {
        dispatch!(self.escalated_keys())
    }

    /// The messages about a finding, oldest first.
    pub fn messages_about(&self, key: &str) -> Result<Vec<SentRow>, StateError> {
        dispatch!(self.messages_about(key))
    }

    /// Open findings by kind, leaving out `without`, with their value at risk.
    pub fn console_open_by_kind(&self, without: &[String]) -> Result<Vec<KindCount>, StateError> {
        dispatch!(self.console_open_by_kind(without))
    }

    /// One page of the open findings matching `filter`, highest value at
    /// risk first, and how many match in all.
    pub fn console_open_findings(
        &self,
        filter: &FindingFilter,
        offset: u64,
        limit: u64,
    ) -> Result<FindingPage, StateError> {
        dispatch!(self.console_open_findings(filter, offset, limit))
    }

    /// One finding (open or closed) by key, with its value at risk.
    pub fn console_finding(
        &self,
        key: &str,
    ) -> Result<Option<(StoredFinding, Option<f64>)>, StateError> {
        dispatch!(self.console_finding(key))
    }

    /// A finding's life, oldest first.
    pub fn console_timeline(&self, key: &str) -> Result<Vec<TimelineEvent>, StateError> {
        dispatch!(self.console_timeline(key))
    }

    /// The last cycle run recorded, if any.
    pub fn console_last_run(&self) -> Result<Option<LastRun>, StateError> {
        dispatch!(self.console_last_run())
    }
}
