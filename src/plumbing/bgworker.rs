//! What every pg_pullsync background process shares: registration, signals, the chores
//! of each turn of its main loop, waiting on its latch, and the wait for the schema this
//! library was built for.

use super::txn::Txn;
use crate::config;
use crate::error::Result;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use pullsync_core::schema_version::SchemaState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// After a background process exits (always with code 1), the postmaster starts it again
/// after this long, unless the server is shutting down.
const RESTART_AFTER: Duration = Duration::from_secs(5);

static STOPPING: AtomicBool = AtomicBool::new(false);

/// How often a process on a standby looks whether the server was promoted.
const PROMOTION_CHECK: Duration = Duration::from_secs(1);

/// Registers a static background process `name` running `function` of this library,
/// shown as `backend_type` in pg_stat_activity. It starts once a hot standby takes
/// connections (and waits there in `start` until promotion), so that the log says why it
/// idles and it works within a second of promotion.
pub fn register(name: &str, backend_type: &str, function: &str) {
    BackgroundWorkerBuilder::new(name)
        .set_type(backend_type)
        .set_library("pg_pullsync")
        .set_function(function)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(RESTART_AFTER))
        .load();
}

/// The first step of every background process: take SIGHUP and SIGTERM, connect to
/// `pullsync.database`, pin search_path, and on a standby wait for promotion. Returns the
/// database name.
pub fn start() -> String {
    map_large_allocations();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = config::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    super::search_path::restrict_for_session();
    without_jit();
    wait_for_promotion();
    database
}

/// On a standby: does nothing (no transaction, no write, no port) until the server is
/// promoted, saying so once on each side. Told to stop meanwhile, the process exits.
fn wait_for_promotion() {
    if !super::standby::in_recovery() {
        return;
    }
    log!(
        "{}: this server is a standby (in recovery); idle, writing nothing, until it is promoted",
        name()
    );
    while super::standby::in_recovery() {
        chores();
        // Replaying a DROP DATABASE on the standby asks its sessions to end this way.
        pg_sys::check_for_interrupts!();
        if stopping() {
            exit_for_restart();
        }
        wait(PROMOTION_CHECK);
    }
    log!("{}: the server was promoted; starting work", name());
}

/// Turns JIT compilation off for this process's session. Its statements are small and run
/// in milliseconds, but one over a grown table can cross `jit_above_cost`, and compiling it
/// loads LLVM into the process: 15 MB more at the end of a long pull, for nothing.
pub fn without_jit() {
    // SAFETY: jit is a boolean setting without a check that needs a transaction; the
    // value is a constant.
    unsafe {
        pg_sys::SetConfigOption(
            c"jit".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    }
}

/// Allocations from this size up get pages of their own, returned to the system when freed.
const LARGE_ALLOCATION: i32 = 1 << 20;

/// Feed pages and pulled batches take megabytes apiece. By default glibc raises its mapping
/// threshold to the size of the first such buffer freed, and later ones come from heaps it
/// seldom gives back, so a long-lived process kept the peak of every page it had built. A
/// fixed threshold maps each large buffer on its own and unmaps it when it is freed.
fn map_large_allocations() {
    // SAFETY: mallopt changes only this process's allocator settings, before any thread
    // of ours starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_ALLOCATION);
    }
}

/// Gives the allocator's free memory back to the system. glibc keeps the free chunks that
/// planning a run (a sort of the whole fleet), a batch's answers and a run's closing leave,
/// so without this a worker's memory grew with the fleet and the length of a run.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns free pages of this process's heaps to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This process's name, for its log lines.
pub fn name() -> &'static str {
    BackgroundWorker::get_name()
}

/// Whether this process was told to stop (SIGTERM or postmaster death). Sticky: pgrx's
/// own flag resets when read.
pub fn stopping() -> bool {
    if BackgroundWorker::sigterm_received() {
        STOPPING.store(true, Ordering::SeqCst);
    }
    STOPPING.load(Ordering::SeqCst)
}

/// Processes pending procsignal barriers (from the main thread only). Background
/// processes call it in every wait, since they do not pass through Postgres' own
/// CHECK_FOR_INTERRUPTS there (DROP DATABASE waits for them).
pub fn absorb_barriers() {
    // SAFETY: a read of a flag Postgres' signal handler sets, then the function Postgres
    // itself calls for it.
    unsafe {
        if pg_sys::ProcSignalBarrierPending != 0 {
            pg_sys::ProcessProcSignalBarrier();
        }
    }
}

/// What each turn of a main loop does first: absorb barriers, and reload the
/// configuration when SIGHUP asked for it. Returns whether it reloaded.
pub fn chores() -> bool {
    absorb_barriers();
    if !BackgroundWorker::sighup_received() {
        return false;
    }
    // SAFETY: the documented way for a background process to reload its configuration.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    true
}

/// Sleeps on the latch for at most `timeout` (a wake-up, SIGHUP or SIGTERM ends it
/// early); postmaster death counts as being told to stop.
pub fn wait(timeout: Duration) {
    if !BackgroundWorker::wait_latch(Some(timeout)) {
        STOPPING.store(true, Ordering::SeqCst);
    }
}

/// Ends the process; the postmaster starts it again after `RESTART_AFTER` unless the
/// server is shutting down.
pub fn exit_for_restart() -> ! {
    super::compat::exit_process(1)
}

/// The state of this database's pg_pullsync schema. A read through `select`, which
/// (unlike `Spi::get_one`) assigns no transaction id: an idle loop must not burn xids.
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
    checked_at: Option<Instant>,
}

impl SchemaWatch {
    /// Whether this version's SQL may run now. A failed check keeps the last state and
    /// says why.
    pub fn ready(&mut self, database: &str) -> bool {
        let state = match Txn::Transaction.run(schema_state) {
            Ok(state) => state,
            Err(e) => {
                warning!(
                    "{}: cannot read the installed pg_pullsync version: {e}",
                    name()
                );
                return self.last == Some(SchemaState::Current);
            }
        };
        if self.last.as_ref() != Some(&state) {
            if let Some(line) = state.wait_message(name(), database) {
                log!("{line}");
            }
        }
        let ready = state == SchemaState::Current;
        self.last = Some(state);
        self.checked_at = Some(Instant::now());
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
