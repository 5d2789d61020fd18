//! Reconciliation: compare what a source has with what this database has, name the
//! missing and extra records, and re-pull the missing ones through the normal write path.

pub mod feed;
pub mod functions;
pub mod narrow;
pub mod runs;
pub mod threads;
