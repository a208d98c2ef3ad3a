//! One integration-test binary (compiled and linked once).

mod clock;
mod console;
mod console_browser;
mod cycle;
mod daemon;
mod decisions;
mod deploy;
mod detect;
mod fake_hubspot;
mod fake_hubspot_tests;
mod fake_partnerstack;
mod fake_partnerstack_tests;
mod fake_salesforce;
mod fake_salesforce_tests;
mod findings;
mod first_hour;
mod helpers;
mod hubspot;
mod metrics;
mod partnerstack;
mod properties;
mod reliability;
mod repo;
mod review;
mod salesforce;
