//! Calls made in a session (`rest_pull`, `feed_pull`, `threads_sync_account`) do their work
//! in a background process started for the call, as the workers do a queued job: a
//! transaction per page, never the caller's transaction held across a request. Other
//! sessions see each page as it commits; a cancel of the call (or its statement_timeout)
//! stops the process at the next page, what it committed stays and the next call resumes
//! there. The caller waits and returns the outcome, or raises the error the work ended with.
//!
//! The request (the call's name and arguments, the database, the caller's pg_pullsync
//! settings) and the answer travel in a dynamic shared memory segment the caller creates.
//! Each source declares its calls (`Call`) in its `SourceSpec`; `lib.rs` installs them.

use crate::error::{PullsyncError, Result, SqlState};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::PgTryBuilder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Room for the request, and again for the answer.
const HALF: usize = 256 * 1024;
/// Each half starts with the length of what it holds.
const LENGTH: usize = std::mem::size_of::<u32>();

const WORKER_TYPE: &str = "pg_pullsync session call";

/// A call made in a session whose work runs in a process of its own: its name (the SQL
/// function's), and the work, given the call's arguments, delimiting its own units of
/// work with `Txn` and stopping when `Cancel` says.
pub struct Call {
    pub name: &'static str,
    pub run: fn(&Value, Txn, Cancel) -> Result<Value>,
}

static CALLS: std::sync::OnceLock<Vec<&'static Call>> = std::sync::OnceLock::new();

/// The calls this library was built with, installed once by `_PG_init`.
pub fn install(calls: Vec<&'static Call>) {
    // _PG_init runs once per process; a second call would install the same list.
    let _ = CALLS.set(calls);
}

/// A call's arguments, as the caller gave them.
pub fn arguments<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T> {
    serde_json::from_value(value.clone())
        .map_err(|e| PullsyncError::Internal(format!("the call's arguments: {e}")))
}

/// `run` with typed arguments.
pub fn run_with<T: Serialize>(call: &Call, arguments: &T) -> Result<Value> {
    let arguments = serde_json::to_value(arguments)
        .map_err(|e| PullsyncError::Internal(format!("the call's arguments: {e}")))?;
    run(call, arguments)
}

fn call_named(name: &str) -> Option<&'static Call> {
    CALLS
        .get()
        .and_then(|calls| calls.iter().copied().find(|c| c.name == name))
}

#[derive(Serialize, Deserialize)]
struct Request {
    database: u32,
    /// The caller's pg_pullsync settings that a session may change, so the work runs with
    /// the settings the call was made with.
    settings: Vec<(String, String)>,
    call: String,
    arguments: Value,
}

#[derive(Serialize, Deserialize)]
enum Answer {
    Done(Value),
    Failed {
        sqlstate: SqlState,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
}

impl Answer {
    fn of(outcome: Result<Value>) -> Answer {
        match outcome {
            Ok(value) => Answer::Done(value),
            Err(error) => Answer::Failed {
                sqlstate: error.sqlstate(),
                detail: match &error {
                    PullsyncError::Postgres { detail, .. } => detail.clone(),
                    _ => None,
                },
                hint: error.hint(),
                message: error.to_string(),
            },
        }
    }

    fn into_result(self) -> Result<Value> {
        match self {
            Answer::Done(value) => Ok(value),
            Answer::Failed {
                sqlstate,
                message,
                detail,
                hint,
            } => Err(PullsyncError::Postgres {
                sqlstate,
                message,
                detail,
                hint,
            }),
        }
    }
}

/// A dynamic shared memory segment of two halves, request then answer.
struct Segment(*mut pg_sys::dsm_segment);

impl Segment {
    fn half(&self, answer: bool) -> *mut u8 {
        // SAFETY: the segment is attached and 2 * HALF bytes long.
        unsafe {
            (pg_sys::dsm_segment_address(self.0) as *mut u8).add(if answer { HALF } else { 0 })
        }
    }

    fn write(&self, answer: bool, bytes: &[u8]) -> Result<()> {
        if bytes.len() > HALF - LENGTH {
            return Err(PullsyncError::Internal(format!(
                "{} of {} bytes does not fit the {HALF} bytes kept for it",
                if answer { "the answer" } else { "the request" },
                bytes.len()
            )));
        }
        let at = self.half(answer);
        // SAFETY: within this half of the attached segment; only one process writes a half.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at.add(LENGTH), bytes.len());
            std::ptr::write_unaligned(at as *mut u32, bytes.len() as u32);
        }
        Ok(())
    }

    fn read(&self, answer: bool) -> Vec<u8> {
        let at = self.half(answer);
        // SAFETY: within this half of the attached segment; its length was written after
        // its bytes, and a length never exceeds the half.
        unsafe {
            let len = (std::ptr::read_unaligned(at as *const u32) as usize).min(HALF - LENGTH);
            std::slice::from_raw_parts(at.add(LENGTH), len).to_vec()
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: detaches the mapping this process attached (or created).
        unsafe { pg_sys::dsm_detach(self.0) }
    }
}

/// Refuses a call while `pullsync.max_session_calls` of them run: one role's sessions must
/// not take every background worker slot of the server. (Two calls starting at the same
/// moment may both pass; the cap is a bound on what many sessions can hold, not a lock.)
fn refuse_beyond_the_cap(kind: &str) -> Result<()> {
    let running = crate::plumbing::prepared::read_one::<i64>(
        "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'pg_pullsync session call'",
        &[],
    )?
    .unwrap_or(0);
    let cap = crate::config::max_session_calls();
    if running < cap {
        return Ok(());
    }
    Err(PullsyncError::Postgres {
        sqlstate: SqlState::INSUFFICIENT_RESOURCES,
        message: format!(
            "{kind} is refused: {running} calls made in sessions run already, pullsync.max_session_calls allows {cap}"
        ),
        detail: None,
        hint: Some(
            "Retry when one has finished, queue the work for pg_pullsync's workers instead (the source's enqueue or scheduled function), or raise pullsync.max_session_calls."
                .into(),
        ),
    })
}

/// The caller's pg_pullsync settings that a session may set.
fn session_settings() -> Result<Vec<(String, String)>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT name, setting FROM pg_catalog.pg_settings
              WHERE name LIKE 'pullsync.%' AND context IN ('user', 'superuser')",
            None,
            &[],
        )?;
        let mut settings = Vec::new();
        for row in rows {
            if let (Some(name), Some(value)) = (row.get::<String>(1)?, row.get::<String>(2)?) {
                settings.push((name, value));
            }
        }
        Ok(settings)
    })
}

/// Runs `call` with `arguments` in a background process started for it and waits; returns
/// what the call's work returned, or raises the error it ended with.
pub fn run(call: &Call, arguments: Value) -> Result<Value> {
    let kind = call.name;
    let request = Request {
        // SAFETY: a plain read of this backend's database.
        database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        settings: session_settings()?,
        call: kind.to_string(),
        arguments,
    };
    let bytes = serde_json::to_vec(&request)
        .map_err(|e| PullsyncError::Internal(format!("the request: {e}")))?;
    refuse_beyond_the_cap(kind)?;
    // SAFETY: creates a segment owned by the current resource owner: detached with the
    // transaction when the call fails, kept alive by the process while it is attached.
    let segment = Segment(unsafe { pg_sys::dsm_create(2 * HALF, 0) });
    segment.write(false, &bytes)?;
    segment.write(true, &[])?;
    // SAFETY: a plain read of the segment's handle.
    let handle = unsafe { pg_sys::dsm_segment_handle(segment.0) };
    let builder = BackgroundWorkerBuilder::new(WORKER_TYPE)
        .set_type(WORKER_TYPE)
        .set_library("pg_pullsync")
        .set_function("pullsync_session_main")
        .enable_spi_access()
        .set_restart_time(None)
        .set_argument(Some(pg_sys::Datum::from(handle)))
        // SAFETY: a plain read of this backend's pid.
        .set_notify_pid(unsafe { pg_sys::MyProcPid });
    let mut worker: pg_sys::BackgroundWorker = (&builder).into();
    let mut started: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
    // SAFETY: registers the worker described above; Postgres sets the handle on success.
    if !unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut started) } {
        return Err(PullsyncError::Postgres {
            sqlstate: SqlState::INSUFFICIENT_RESOURCES,
            message: format!(
                "no background worker slot is free for {kind}: every one of max_worker_processes is taken"
            ),
            detail: Some(
                "A call made in a session runs in a background process of its own while it lasts."
                    .into(),
            ),
            hint: Some(
                "Raise max_worker_processes, or queue the work for pg_pullsync's workers instead (the source's enqueue or scheduled function)."
                    .into(),
            ),
        });
    }
    // A cancel of the call (or its statement_timeout, or the session's end) stops the
    // process too: it ends at its next page, leaving what it committed.
    let status = PgTryBuilder::new(|| {
        // SAFETY: waits on the handle registered above; interrupts are checked meanwhile.
        unsafe { pg_sys::WaitForBackgroundWorkerShutdown(started) }
    })
    .catch_others(|caught| {
        // SAFETY: asks the postmaster to stop the worker registered above.
        unsafe { pg_sys::TerminateBackgroundWorker(started) };
        caught.rethrow()
    })
    .execute();
    if status == pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED {
        return Err(PullsyncError::Internal(
            "the server stopped while the call was under way".into(),
        ));
    }
    let answer = segment.read(true);
    if answer.is_empty() {
        return Err(PullsyncError::Internal(format!(
            "the background process running {kind} ended without an answer; the server log says why"
        )));
    }
    serde_json::from_slice::<Answer>(&answer)
        .map_err(|e| PullsyncError::Internal(format!("the answer of {kind}: {e}")))?
        .into_result()
}

/// The process of one call: attach the segment, connect to the caller's database with
/// its settings, run the job, write the answer.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pullsync_session_main(argument: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // SAFETY: attaches the caller's segment; NULL when the caller is gone already.
    let attached = unsafe { pg_sys::dsm_attach(argument.value() as pg_sys::dsm_handle) };
    if attached.is_null() {
        log!("{WORKER_TYPE}: the caller is gone; nothing to do");
        return;
    }
    let segment = Segment(attached);
    let request = match serde_json::from_slice::<Request>(&segment.read(false)) {
        Ok(request) => request,
        Err(e) => {
            let answer = Answer::of(Err(PullsyncError::Internal(format!("the request: {e}"))));
            let _ = segment.write(true, &serde_json::to_vec(&answer).unwrap_or_default());
            return;
        }
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(pg_sys::Oid::from_u32(request.database)),
        None,
    );
    crate::plumbing::search_path::restrict_for_session();
    crate::plumbing::bgworker::without_jit();
    let outcome = Txn::Transaction
        .run(|| apply(&request.settings))
        .and_then(|()| work(&request));
    let bytes = serde_json::to_vec(&Answer::of(outcome)).unwrap_or_default();
    if let Err(e) = segment.write(true, &bytes) {
        let answer = Answer::of(Err(e));
        let _ = segment.write(true, &serde_json::to_vec(&answer).unwrap_or_default());
    }
}

fn apply(settings: &[(String, String)]) -> Result<()> {
    for (name, value) in settings {
        Spi::run_with_args(
            "SELECT pg_catalog.set_config($1, $2, false)",
            &[name.as_str().into(), value.as_str().into()],
        )?;
    }
    Ok(())
}

fn work(request: &Request) -> Result<Value> {
    let call = call_named(&request.call).ok_or_else(|| {
        PullsyncError::Internal(format!("this library has no call named {}", request.call))
    })?;
    (call.run)(&request.arguments, Txn::Transaction, Cancel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_the_sqlstate_message_and_hint() {
        let failed = Answer::of(Err(PullsyncError::NotFound {
            message: "no REST source named x".into(),
            hint: "Add it first.".into(),
        }));
        let back: Answer = serde_json::from_slice(&serde_json::to_vec(&failed).unwrap()).unwrap();
        match back.into_result() {
            Err(PullsyncError::Postgres {
                sqlstate,
                message,
                hint,
                ..
            }) => {
                assert_eq!(sqlstate, SqlState::UNDEFINED_OBJECT);
                assert_eq!(message, "no REST source named x");
                assert_eq!(hint.as_deref(), Some("Add it first."));
            }
            other => panic!("{other:?}"),
        }
    }
}
