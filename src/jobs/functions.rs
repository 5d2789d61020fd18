//! SQL functions of the job runner.

use super::session::{self, Call};
use crate::error::Result;
use crate::pg_error::OrRaise;
use crate::plumbing::txn::Txn;
use crate::registry::Schedule;
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
    crate::registry::is_source(name)
}

/// The default pg_cron jobs of the general code; each source adds its own.
const GENERAL_SCHEDULES: &[Schedule] = &[
    Schedule {
        jobname: "pullsync-alerts",
        schedule: "*/5 * * * *",
        command: "SELECT pullsync.check_alerts()",
    },
    Schedule {
        jobname: "pullsync-cleanup",
        schedule: "0 3 * * 0",
        command: "SELECT pullsync.cleanup()",
    },
];

/// Every default pg_cron job, the sources' first: what `schedule_defaults()` schedules.
#[pg_extern(schema = "pullsync", stable, parallel_safe)]
fn default_schedules() -> TableIterator<
    'static,
    (
        name!(jobname, String),
        name!(schedule, String),
        name!(command, String),
    ),
> {
    let sources = crate::registry::all()
        .iter()
        .flat_map(|s| s.schedules.iter());
    TableIterator::new(
        sources
            .chain(GENERAL_SCHEDULES.iter())
            .map(|s| {
                (
                    s.jobname.to_string(),
                    s.schedule.to_string(),
                    s.command.to_string(),
                )
            })
            .collect::<Vec<_>>(),
    )
}
