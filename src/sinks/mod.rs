//! Sinks: where the cycle's results go (Slack alerts, scorecard write-back).

pub mod salesforce;
pub mod slack;
pub mod writeback;
