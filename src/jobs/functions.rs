//! SQL functions of the job runner.

use super::session::{self, Call};
use crate::error::Result;
use crate::pg_error::OrRaise;
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use pgrx::prelude::*;
use serde_json::{json, Value};

/// `run_jobs`: the queue worked until it is empty.
pub const RUN_JOBS: Call = Call {
    name: "run_jobs",
    run: run_all,
};

fn run_all(_: &Value, txn: Txn, cancel: Cancel) -> Result<Value> {
    super::runner::run_all(txn, cancel).map(|steps| json!(steps))
}

/// Works the job queue until it is empty, as the background workers do (a transaction
/// per step), in a background process of its own, and waits. For psql, tests, and
/// servers without workers. Returns how many steps ran.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn run_jobs() -> i32 {
    crate::plumbing::standby::require_primary("run_jobs").or_raise();
    let steps = session::run(&RUN_JOBS, json!({})).or_raise();
    steps.as_i64().unwrap_or(0) as i32
}

/// Whether `name` is a source of this library (the `source` checks of sync_logs and
/// reconciliation_runs). Immutable for a given library: sources change only with it.
#[pg_extern(schema = "pullsync", immutable, strict, parallel_safe)]
pub fn is_source(name: &str) -> bool {
    super::registry::is_source(name)
}
