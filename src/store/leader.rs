//! One leader among replicas that share a PostgreSQL state.
//!
//! The leader holds a session-level advisory lock (`pg_try_advisory_lock`)
//! on a connection of its own, kept for as long as it leads: never pooled,
//! never unlocked on another connection. The lock ends with that session,
//! however the process ends (a SIGKILL closes the socket; a vanished node is
//! noticed through TCP keepalives and `tcp_user_timeout`). Leadership is
//! checked before each cycle ([`PgLeader::check`], which also takes it when
//! free) and before each send ([`PgLeader::confirm`], a round trip on the
//! lock's own connection): a replica whose session ended stops sending at
//! the next message boundary.
//!
//! It fits the [`WriterLock`] seam: a cycle "acquires" the lock by being (or
//! becoming) the leader, and the guard keeps nothing, because leadership
//! outlives a cycle; it ends when the process (or its session) does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use postgres::Client;

use super::lock::{LockError, LockGuard, WriterLock};
use super::pg::{Target, off_runtime};

/// The advisory lock key (bigint) of the leadership.
pub const LEADER_KEY: i64 = 7_213_590_002;

/// The leadership of one database, as this process sees it.
pub struct PgLeader {
    target: Target,
    held: Mutex<Option<Client>>,
    leading: AtomicBool,
}

impl std::fmt::Debug for PgLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLeader")
            .field("target", &self.target)
            .field("leading", &self.leading())
            .finish()
    }
}

impl PgLeader {
    pub fn new(target: Target) -> PgLeader {
        PgLeader {
            target,
            held: Mutex::new(None),
            leading: AtomicBool::new(false),
        }
    }

    /// This process's leadership of the database at `target` (one per
    /// database, shared by the daemon's ticks and the cycle's sends).
    pub fn shared(target: &Target) -> Arc<PgLeader> {
        static LEADERS: OnceLock<Mutex<HashMap<String, Arc<PgLeader>>>> = OnceLock::new();
        let mut leaders = LEADERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        leaders
            .entry(target.label().to_string())
            .or_insert_with(|| Arc::new(PgLeader::new(target.clone())))
            .clone()
    }

    /// Whether this process led at the last check (no round trip).
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Confirms the leadership this process holds: its lock session still
    /// answers. Never takes the lock. On a dead session, steps down.
    pub fn confirm(&self) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let alive = match held.as_mut() {
            None => false,
            Some(client) => {
                off_runtime(|| !client.is_closed() && client.simple_query("SELECT 1").is_ok())
            }
        };
        if let Some(client) = held.take_if(|_| !alive) {
            off_runtime(move || drop(client));
            tracing::warn!(state = %self.target.label(), "Lost the leader lock (its database session ended): stopping at the next message.");
        }
        self.leading.store(alive, Ordering::SeqCst);
        alive
    }

    /// Confirms the leadership, or takes it when no one holds it. Returns
    /// whether this process leads now.
    pub fn check(&self) -> bool {
        if self.confirm() {
            return true;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let taken = off_runtime(|| -> Result<Option<Client>, String> {
            let mut client = self.target.connect().map_err(|e| e.to_string())?;
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_KEY])
                .map_err(|e| e.to_string())?
                .get(0);
            match got {
                true => Ok(Some(client)),
                false => {
                    drop(client);
                    Ok(None)
                }
            }
        });
        let leads = match taken {
            Ok(Some(client)) => {
                *held = Some(client);
                tracing::info!(state = %self.target.label(), "This replica now leads (holds the leader lock).");
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(state = %self.target.label(), error = %e, "Could not check the leader lock.");
                false
            }
        };
        self.leading.store(leads, Ordering::SeqCst);
        leads
    }

    /// Lets the leadership go (closes the lock's session).
    pub fn step_down(&self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = held.take() {
            off_runtime(move || drop(client));
        }
        self.leading.store(false, Ordering::SeqCst);
    }

    /// Who holds the leader lock, as its connection names itself.
    pub fn holder(&self) -> String {
        let found = off_runtime(|| -> Result<Option<String>, String> {
            let mut client = self.target.connect().map_err(|e| e.to_string())?;
            let row = client
                .query_opt(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)",
                    &[&LEADER_KEY],
                )
                .map_err(|e| e.to_string())?;
            Ok(row.map(|r| r.get(0)))
        });
        match found {
            Ok(Some(name)) if !name.is_empty() => name,
            Ok(_) => "holder unknown".into(),
            Err(e) => format!("holder unknown: {e}"),
        }
    }
}

/// The PostgreSQL backend's writer lock: the leadership.
#[derive(Debug, Clone)]
pub struct PgLock(pub Arc<PgLeader>);

impl WriterLock for PgLock {
    fn acquire(&self, wait: Duration, stop: &AtomicBool) -> Result<LockGuard, LockError> {
        let started = Instant::now();
        loop {
            if self.0.check() {
                return Ok(LockGuard::new(()));
            }
            let state = self.0.target.label().to_string();
            if stop.load(Ordering::SeqCst) {
                return Err(LockError::Stopped {
                    state,
                    holder: self.0.holder(),
                });
            }
            if started.elapsed() >= wait {
                return Err(LockError::Busy {
                    state,
                    holder: self.0.holder(),
                    waited_secs: wait.as_secs(),
                });
            }
            std::thread::sleep(
                Duration::from_millis(250).min(wait.saturating_sub(started.elapsed())),
            );
        }
    }
}
