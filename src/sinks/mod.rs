//! Sinks: where the cycle's results go (Slack alerts, scorecard write-back).

pub mod slack;
pub mod writeback;
