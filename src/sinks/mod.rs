//! Sinks: where the cycle's results go (Slack alerts, scorecard write-back).

pub mod hubspot;
pub mod salesforce;
pub mod slack;
pub mod writeback;
