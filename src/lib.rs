//! channel-sync: watches a channel program for conflicts and expiring
//! deal-registration protection, and scores partners.
//!
//! The pipeline: `sources` (pull from CRM/PRM/files into the `model`) ->
//! `engine` (pure rules and scorecards) -> `alerts` (what to tell, pure) ->
//! `sinks` (Slack, scorecard write-back) -> `store` (SQLite or PostgreSQL), run by `cycle`.

pub mod alerts;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod console;
pub(crate) mod crash;
pub mod crypto;
pub mod csv_safe;
pub mod cycle;
pub mod daemon;
pub mod dataset;
pub mod decide_cmd;
pub mod decisions;
pub mod engine;
pub mod fast;
pub mod findings_cmd;
pub mod http;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod report;
pub mod review;
pub mod store;
/// The store's old path, kept so code written against `state::` still builds.
pub use store as state;
pub mod sync;
pub mod values;
