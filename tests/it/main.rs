//! One integration-test binary (compiled and linked once).

mod cycle;
mod daemon;
mod detect;
mod fake_hubspot;
mod fake_hubspot_tests;
mod fake_partnerstack;
mod fake_partnerstack_tests;
mod fake_salesforce;
mod fake_salesforce_tests;
mod findings;
mod helpers;
mod hubspot;
mod partnerstack;
mod properties;
mod salesforce;
