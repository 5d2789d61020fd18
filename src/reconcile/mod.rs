//! Reconciliation shared by the sources: a run's outcome and its `reconciliation_runs`
//! row, window checks, and the window argument of the SQL functions. Each source
//! reconciles in its own folder (`threads/reconcile.rs`, `feed/reconcile.rs`).

pub mod runs;
