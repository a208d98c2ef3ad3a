//! Sources: where the data comes from, mapped into the domain model.

pub mod files;
