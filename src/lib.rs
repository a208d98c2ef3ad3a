//! channel-sync: watches a channel program for conflicts and expiring
//! deal-registration protection, and scores partners.
//!
//! The pipeline: `sources` (pull from CRM/PRM/files into the `model`) ->
//! `engine` (pure rules and scorecards) -> `report`.

pub mod cli;
pub mod config;
pub mod engine;
pub mod fast;
pub mod model;
pub mod report;
pub mod sources;
pub mod synth;
pub mod values;
