//! The static background workers: each connects to `pullsync.database`, owns one tokio
//! runtime for HTTP, and works the job queue with one short transaction per step.

use super::runner;
use super::wake::WORKER_TYPE;
use crate::error::PullsyncError;
use crate::plumbing::bgworker::{self, SchemaWatch};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use pgrx::prelude::*;
use std::time::Duration;

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
            && match runner::step(Txn::Transaction, Cancel) {
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
