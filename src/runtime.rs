//! The tokio runtime that carries HTTP for a backend or worker, and waiting on it without
//! losing Postgres' cancel and terminate requests.

use crate::error::{PullsyncError, Result};
use pgrx::pg_sys;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// Built on first use in each process: never in _PG_init, whose process forks afterwards.
/// Current-thread: the futures run on the calling (main) thread, and Postgres is never
/// called from them.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime can be built")
    })
}

fn cancel_requested() -> bool {
    // SAFETY: plain reads of flags that Postgres' signal handlers set.
    unsafe { pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0 }
}

/// Runs `work` to completion unless the query is cancelled or the backend told to exit;
/// then the work is dropped (its requests abandoned) and Postgres handles the interrupt.
pub fn block_on<F: Future>(work: F) -> Result<F::Output> {
    let outcome = runtime().block_on(async {
        tokio::select! {
            out = work => Some(out),
            _ = async {
                while !cancel_requested() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            } => None,
        }
    });
    match outcome {
        Some(out) => Ok(out),
        None => {
            pg_sys::check_for_interrupts!();
            Err(PullsyncError::Internal("interrupted".into()))
        }
    }
}

/// Sleeps without blocking cancellation.
pub fn sleep(duration: Duration) -> Result<()> {
    block_on(tokio::time::sleep(duration))
}
