//! One integration-test binary (compiled and linked once).

mod cycle;
mod daemon;
mod detect;
mod helpers;
mod properties;
