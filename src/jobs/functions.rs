//! SQL functions of the job runner.

use crate::pg_error::OrRaise;
use pgrx::prelude::*;

/// Works the job queue in this backend until it is empty (the same runner the background
/// workers use, one subtransaction per unit). For psql, tests, and servers without workers.
/// Returns how many steps ran.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn run_jobs() -> i32 {
    crate::plumbing::standby::require_primary("run_jobs").or_raise();
    super::runner::run_all_here().or_raise() as i32
}

/// Whether `name` is a source of this library (the `source` checks of sync_logs and
/// reconciliation_runs). Immutable for a given library: sources change only with it.
#[pg_extern(schema = "pullsync", immutable, strict, parallel_safe)]
pub fn is_source(name: &str) -> bool {
    super::registry::is_source(name)
}
