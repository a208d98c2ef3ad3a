//! The clock the daemon and its endpoints read.

use chrono::{DateTime, Utc};

/// The daemon's clock: the real one, or one pinned to a start time that then
/// advances in real time (`run --now`, for demos and for tests that must not
/// depend on today's date).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset: chrono::Duration,
}

impl Clock {
    /// A clock that reads `start` now and advances from there.
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        Clock {
            offset: start - Utc::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}
