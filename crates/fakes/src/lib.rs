//! Stateful in-process fakes of the vendor APIs channel-sync talks to, for
//! its integration tests, the examples that run them standalone and the
//! connector benchmarks. Each serves on a port-0 listener; none is shipped.

pub mod hubspot;
pub mod load;
pub mod partnerstack;
pub mod salesforce;
mod shared;
