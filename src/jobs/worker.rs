//! The static background workers: each connects to `pullsync.database`, owns one tokio
//! runtime for HTTP, and works the job queue with one short transaction per step.

use super::runner;
use crate::error::{PullsyncError, Result};
use crate::plumbing::bgworker::{self, SchemaWatch};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use pgrx::prelude::*;
use pgrx::PgXactCallbackEvent;
use std::time::Duration;

/// `backend_type` of the workers in pg_stat_activity.
pub const WORKER_TYPE: &str = "pg_pullsync worker";
/// How long an idle worker sleeps when nothing wakes it.
const IDLE_WAIT: Duration = Duration::from_secs(5);

pub fn register(count: i32) {
    for n in 0..count {
        bgworker::register(
            &format!("pg_pullsync worker {n}"),
            WORKER_TYPE,
            "pullsync_worker_main",
        );
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pullsync_worker_main(_arg: pg_sys::Datum) {
    let database = bgworker::start();
    log!("{}: started in database \"{database}\"", bgworker::name());
    let mut schema = SchemaWatch::default();
    while !bgworker::stopping() {
        bgworker::chores();
        let installed = schema.ready(&database);
        let busy = installed
            && match runner::step(Txn::Transaction, Cancel::Worker) {
                Ok(busy) => busy,
                Err(PullsyncError::Interrupted) => break,
                Err(e) => {
                    warning!("{}: {e}", bgworker::name());
                    false
                }
            };
        if !busy {
            // Without this version's schema there is nothing to do until an update.
            bgworker::wait(if installed { IDLE_WAIT } else { IDLE_WAIT * 6 });
        }
    }
    log!("{}: stopping", bgworker::name());
    bgworker::exit_for_restart();
}

/// Wakes every worker when the current transaction commits, so a queued job starts at
/// once instead of after the idle wait.
pub fn wake_all() -> Result<()> {
    let pids: Vec<i32> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = $1",
            None,
            &[WORKER_TYPE.into()],
        )?;
        let mut pids = Vec::new();
        for row in rows {
            if let Some(pid) = row.get::<i32>(1)? {
                pids.push(pid);
            }
        }
        Ok::<_, pgrx::spi::SpiError>(pids)
    })?;
    if !pids.is_empty() {
        pgrx::register_xact_callback(PgXactCallbackEvent::Commit, move || {
            for pid in pids {
                // SAFETY: BackendPidGetProc returns null for a pid that is gone.
                unsafe {
                    let proc = pg_sys::BackendPidGetProc(pid);
                    if !proc.is_null() {
                        pg_sys::SetLatch(&mut (*proc).procLatch);
                    }
                }
            }
        });
    }
    Ok(())
}

/// Adds a warning to a queued job's answer when no worker runs in this database to pick
/// it up.
pub fn warn_without_workers(answer: &mut serde_json::Value) -> Result<()> {
    let queued = answer.get("job_id").is_some() && answer.get("skipped").is_none();
    let running = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = $1 AND datname = current_database())",
        &[WORKER_TYPE.into()],
    )?
    .unwrap_or(false);
    if queued && !running {
        answer["warning"] = serde_json::json!(
            "no pg_pullsync worker runs in this database: preload pg_pullsync with pullsync.database set to it, or run SELECT pullsync.run_jobs()"
        );
    }
    Ok(())
}
