//! The static background workers: each connects to `pullsync.database`, owns one tokio
//! runtime for HTTP, and works the job queue with one short transaction per step.

use super::runner::{self, Txn};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::runtime::Cancel;
use crate::schema_version::SchemaState;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::{PgTryBuilder, PgXactCallbackEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `backend_type` of the workers in pg_stat_activity.
pub const WORKER_TYPE: &str = "pg_pullsync worker";
/// How long an idle worker sleeps when nothing wakes it.
const IDLE_WAIT: Duration = Duration::from_secs(5);

static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether this worker was told to stop (SIGTERM or postmaster death). Sticky: pgrx's
/// own flag resets when read.
pub fn stopping() -> bool {
    if BackgroundWorker::sigterm_received() {
        STOPPING.store(true, Ordering::SeqCst);
    }
    STOPPING.load(Ordering::SeqCst)
}

/// Processes pending procsignal barriers (from the main thread only). Workers call it in
/// every wait, since they do not pass through Postgres' own CHECK_FOR_INTERRUPTS.
pub fn absorb_barriers() {
    // SAFETY: a read of a flag Postgres' signal handler sets, then the function Postgres
    // itself calls for it.
    unsafe {
        if pg_sys::ProcSignalBarrierPending != 0 {
            pg_sys::ProcessProcSignalBarrier();
        }
    }
}

pub fn register(count: i32) {
    for n in 0..count {
        BackgroundWorkerBuilder::new(&format!("pg_pullsync worker {n}"))
            .set_type(WORKER_TYPE)
            .set_library("pg_pullsync")
            .set_function("pullsync_worker_main")
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(5)))
            .load();
    }
}

/// A real transaction per unit of work: committed when the work returns Ok, aborted on
/// Err, ERROR or panic, so nothing escapes to become FATAL.
pub struct Transactions;

impl Txn for Transactions {
    fn run<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let work = std::panic::AssertUnwindSafe(work);
        // Start and commit are inside the guard too: an ERROR at commit (deferred
        // constraint, serialization failure) must abort, not escape as FATAL.
        let outcome = PgTryBuilder::new(move || {
            let work = work;
            // SAFETY: the worker's main thread, outside any transaction.
            unsafe {
                pg_sys::SetCurrentStatementStartTimestamp();
                pg_sys::StartTransactionCommand();
                pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            }
            let result = (work.0)();
            if result.is_ok() {
                // SAFETY: ends the transaction started above.
                unsafe {
                    pg_sys::PopActiveSnapshot();
                    pg_sys::CommitTransactionCommand();
                }
            }
            result
        })
        .catch_others(|caught| {
            Err(PullsyncError::Internal(crate::subxact::caught_message(
                &caught,
            )))
        })
        .execute();
        // SAFETY: aborts whatever transaction is still open; a no-op when none is.
        unsafe {
            if pg_sys::IsTransactionOrTransactionBlock() {
                pg_sys::AbortCurrentTransaction();
            }
        }
        outcome
    }
}

/// The state of this database's pg_pullsync schema. A read through `select`, which
/// (unlike `Spi::get_one`) assigns no transaction id: the idle loop must not burn xids.
fn schema_state() -> Result<SchemaState> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_pullsync'",
            Some(1),
            &[],
        )?;
        let installed = if rows.is_empty() {
            None
        } else {
            rows.first().get_one::<String>()?
        };
        Ok(SchemaState::of(installed.as_deref()))
    })
}

/// The schema's state, logged whenever it changes into one the process waits in.
#[derive(Default)]
pub struct SchemaWatch {
    last: Option<SchemaState>,
    checked_at: Option<std::time::Instant>,
}

impl SchemaWatch {
    /// Whether this version's SQL may run now. A failed check keeps the last state and
    /// says why.
    pub fn ready(&mut self, database: &str) -> bool {
        let state = match Transactions.run(schema_state) {
            Ok(state) => state,
            Err(e) => {
                warning!(
                    "{}: cannot read the installed pg_pullsync version: {e}",
                    BackgroundWorker::get_name()
                );
                return self.last == Some(SchemaState::Current);
            }
        };
        if self.last.as_ref() != Some(&state) {
            if let Some(line) = state.wait_message(BackgroundWorker::get_name(), database) {
                log!("{line}");
            }
        }
        let ready = state == SchemaState::Current;
        self.last = Some(state);
        self.checked_at = Some(std::time::Instant::now());
        ready
    }

    /// Like `ready`, reading the catalog at most once per `interval` (the feed server asks
    /// for every request).
    pub fn ready_within(&mut self, database: &str, interval: Duration) -> bool {
        match (&self.last, self.checked_at) {
            (Some(state), Some(at)) if at.elapsed() < interval => *state == SchemaState::Current,
            _ => self.ready(database),
        }
    }
}

/// What every pg_pullsync background process does first: take SIGHUP and SIGTERM, and
/// connect to `pullsync.database`. Returns the database name.
pub fn start_background_process() -> String {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = config::DATABASE
        .get()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    database
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pullsync_worker_main(_arg: pg_sys::Datum) {
    let database = start_background_process();
    log!(
        "{}: started in database \"{database}\"",
        BackgroundWorker::get_name()
    );

    let mut schema = SchemaWatch::default();
    while !stopping() {
        absorb_barriers();
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a worker to reload its configuration.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let installed = schema.ready(&database);
        let busy = installed
            && match runner::step(&Transactions, Cancel::Worker) {
                Ok(busy) => busy,
                Err(PullsyncError::Interrupted) => break,
                Err(e) => {
                    warning!("{}: {e}", BackgroundWorker::get_name());
                    false
                }
            };
        if !busy {
            let wait = if installed { IDLE_WAIT } else { IDLE_WAIT * 6 };
            if !BackgroundWorker::wait_latch(Some(wait)) {
                STOPPING.store(true, Ordering::SeqCst);
            }
        }
    }
    log!("{}: stopping", BackgroundWorker::get_name());
    // Exit code 1: the postmaster starts the worker again after its restart time, unless
    // the server is shutting down.
    crate::pg_compat::exit_process(1);
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

/// Whether any worker is running (for a hint when nothing will pick a job up).
pub fn any_running() -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = $1 AND datname = current_database())",
        &[WORKER_TYPE.into()],
    )?
    .unwrap_or(false))
}
