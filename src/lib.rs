//! channel-sync: watches a channel program for conflicts and expiring
//! deal-registration protection, and scores partners.
//!
//! The pipeline: `connectors` (one folder per vendor: read, map, write; the
//! CSV files too) fill the `model` -> `engine` (pure rules, scorecards and the
//! review) -> `alerts` (what to tell, channel-neutral) -> `notify` (Slack,
//! Teams) and the scorecard write-back -> `store` (SQLite or PostgreSQL), run
//! by `cycle`, scheduled by `daemon`, served by `console`.
//!
//! The library's public surface is what `main`, the integration tests and
//! the workspace's two crates (`crates/synth`, `crates/fakes`) use; the rest
//! is `pub(crate)`, and `unreachable_pub` (denied in CI through clippy's
//! `-D warnings`) keeps it that way.

#![warn(unreachable_pub)]

pub(crate) mod alerts;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod console;
pub(crate) mod crash;
pub(crate) mod crypto;
pub(crate) mod csv_safe;
pub mod cycle;
pub mod daemon;
pub(crate) mod dataset;
pub(crate) mod decide_cmd;
pub mod decisions;
pub mod engine;
pub(crate) mod fast;
pub(crate) mod findings_cmd;
pub(crate) mod http;
pub(crate) mod id_index;
pub mod metrics;
pub mod model;
pub(crate) mod notify;
pub(crate) mod report;
pub(crate) mod review;
pub mod store;
pub mod sync;
pub mod values;
