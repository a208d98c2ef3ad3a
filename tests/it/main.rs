//! One integration-test binary (compiled and linked once).

mod detect;
mod helpers;
mod properties;
