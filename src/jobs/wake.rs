//! Finding the workers: waking them when a job is queued, and saying so when there are
//! none to pick it up.

use crate::error::Result;
use pgrx::prelude::*;
use pgrx::PgXactCallbackEvent;

/// `backend_type` of the workers in pg_stat_activity.
pub const WORKER_TYPE: &str = "pg_pullsync worker";

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
