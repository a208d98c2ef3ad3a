//! One integration-test binary (compiled and linked once).

mod clock;
mod cycle;
mod daemon;
mod decisions;
mod deploy;
mod detect;
mod fake_hubspot_tests;
mod fake_partnerstack_tests;
mod fake_salesforce_tests;
mod findings;
mod first_hour;
mod helpers;
mod hubspot;
mod interactions;
mod metrics;
mod ops;
mod partnerstack;
mod pg;
mod properties;
mod reliability;
mod replicas;
mod repo;
mod review;
mod salesforce;
mod store_pg;
mod teams;
