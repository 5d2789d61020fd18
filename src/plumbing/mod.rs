//! Postgres plumbing that everything else uses and that knows nothing of jobs or sources:
//! units of work in transactions or subtransactions, background processes (registration,
//! signals, the main loop's chores, the wait for the right schema), statements planned once
//! per process, the search_path they run with, helper threads that never take Postgres'
//! signals, and the refusal to write on a standby.

pub mod bgworker;
pub mod compat;
pub mod prepared;
pub mod search_path;
pub mod signals;
pub mod standby;
mod subxact;
pub mod txn;
