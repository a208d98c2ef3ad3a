//! One writer at a time: a cycle holds the state's lock for its whole length,
//! so two cycles never plan from the same stored findings or send each
//! other's outbox rows.
//!
//! The SQLite backend's lock is an OS file lock (`flock` through `fs4`) on
//! `<state.path>.lock`, which the OS releases when the holder exits, however
//! it exits (a SIGKILL leaves no stale lock). The holder writes its pid, host
//! and start time into the file, for the message a waiting run prints.
//! Another backend (PostgreSQL) supplies its own [`WriterLock`] (an advisory
//! lock) behind the same seam.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::values::format_timestamp;

/// Who holds the lock, as the holder recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on host {} since {}",
            self.pid, self.host, self.since
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the state {state} is in use by another channel-sync ({holder}); waited {waited_secs}s (state.lock_wait) and gave up: nothing was done. Let that run finish (or stop it), then run again"
    )]
    Busy {
        state: String,
        holder: String,
        waited_secs: u64,
    },
    #[error("stopped while waiting for the state {state} (in use by {holder}): nothing was done")]
    Stopped { state: String, holder: String },
    #[error("cannot lock the state {state} ({lock}): {source}")]
    Io {
        state: String,
        lock: String,
        #[source]
        source: std::io::Error,
    },
}

/// The seam: the right to write to a state, held until the guard drops.
pub trait WriterLock {
    /// Takes the lock, waiting up to `wait` for another holder to let go,
    /// or until `stop` is set (a shutdown).
    fn acquire(&self, wait: Duration, stop: &AtomicBool) -> Result<LockGuard, LockError>;
}

/// Holds a [`WriterLock`] until dropped.
pub struct LockGuard {
    _held: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

impl LockGuard {
    pub fn new(held: impl Send + Sync + 'static) -> LockGuard {
        LockGuard {
            _held: Box::new(held),
        }
    }
}

/// The SQLite backend's lock: `flock` on a file beside the state file.
#[derive(Debug, Clone)]
pub struct FileLock {
    state: PathBuf,
    lock: PathBuf,
}

impl FileLock {
    pub fn for_state(state: &Path) -> FileLock {
        let mut lock = state.as_os_str().to_owned();
        lock.push(".lock");
        FileLock {
            state: state.to_path_buf(),
            lock: PathBuf::from(lock),
        }
    }

    pub fn path(&self) -> &Path {
        &self.lock
    }

    fn io(&self, source: std::io::Error) -> LockError {
        LockError::Io {
            state: self.state.display().to_string(),
            lock: self.lock.display().to_string(),
            source,
        }
    }

    /// The holder the lock file names. A holder writes its name just after
    /// taking the lock, so a run that finds the lock taken a moment earlier
    /// may read an empty file: it looks again for up to half a second.
    fn holder(&self) -> String {
        for _ in 0..25 {
            let mut text = String::new();
            let read =
                std::fs::File::open(&self.lock).and_then(|mut f| f.read_to_string(&mut text));
            if let Some(h) = read
                .ok()
                .and_then(|_| serde_json::from_str::<Holder>(&text).ok())
            {
                return h.to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        "holder unknown".into()
    }
}

/// Held: the open, locked file (closing it releases the lock).
struct HeldFile(std::fs::File);

impl Drop for HeldFile {
    fn drop(&mut self) {
        // Clear the holder before letting go; the close releases the lock.
        let _ = self.0.set_len(0);
        let _ = fs4::FileExt::unlock(&self.0);
    }
}

impl WriterLock for FileLock {
    fn acquire(&self, wait: Duration, stop: &AtomicBool) -> Result<LockGuard, LockError> {
        if let Some(dir) = self.lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)
            .map_err(|e| self.io(e))?;
        let started = Instant::now();
        let mut told = false;
        loop {
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => break,
                Err(fs4::TryLockError::WouldBlock) => {
                    if stop.load(Ordering::SeqCst) {
                        return Err(LockError::Stopped {
                            state: self.state.display().to_string(),
                            holder: self.holder(),
                        });
                    }
                    if started.elapsed() >= wait {
                        return Err(LockError::Busy {
                            state: self.state.display().to_string(),
                            holder: self.holder(),
                            waited_secs: wait.as_secs(),
                        });
                    }
                    if !told {
                        told = true;
                        let holder = self.holder();
                        tracing::warn!(%holder, wait_secs = wait.as_secs(), "The state is in use by another channel-sync; waiting for it.");
                        eprintln!(
                            "channel-sync: the state is in use by another channel-sync ({holder}); waiting up to {}s",
                            wait.as_secs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(fs4::TryLockError::Error(e)) => return Err(self.io(e)),
            }
        }
        let holder = Holder {
            pid: std::process::id(),
            host: hostname(),
            since: format_timestamp(&Utc::now()),
        };
        let mut file = file;
        let text = serde_json::to_string(&holder).unwrap_or_default();
        // Only a courtesy for the message above: a failure is not fatal.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.flush());
        Ok(LockGuard::new(HeldFile(file)))
    }
}

/// This machine's name (the pod's, in Kubernetes).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::for_state(&dir.path().join("sub/state.db"));
        let held = lock
            .acquire(Duration::ZERO, &AtomicBool::new(false))
            .unwrap();
        let started = Instant::now();
        let e = lock
            .acquire(Duration::from_millis(300), &AtomicBool::new(false))
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
        let text = e.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("since 20"),
            "{text}"
        );
        drop(held);
        let again = lock.acquire(Duration::ZERO, &AtomicBool::new(false));
        assert!(again.is_ok(), "released on drop");
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::for_state(&dir.path().join("state.db"));
        let held = lock
            .acquire(Duration::ZERO, &AtomicBool::new(false))
            .unwrap();
        let other = lock.clone();
        let waiter = std::thread::spawn(move || {
            other
                .acquire(Duration::from_secs(10), &AtomicBool::new(false))
                .is_ok()
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
        assert!(waiter.join().unwrap());
    }
}
