//! Postgres plumbing that everything else uses and that knows nothing of jobs or sources:
//! units of work in transactions or subtransactions, background processes (registration,
//! signals, the main loop's chores, the wait for the right schema), statements planned once
//! per process, and helper threads that never take Postgres' signals.

pub mod bgworker;
pub mod compat;
pub mod prepared;
pub mod signals;
mod subxact;
pub mod txn;
