//! A unit of work that fails alone: an internal subtransaction, rolled back on any ERROR or
//! panic, so one account's failure never aborts the others in the same call.

use crate::error::{PullsyncError, Result};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;

pub fn run<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    // SAFETY: the same save/begin/release-or-rollback/restore sequence PL/pgSQL uses for
    // exception blocks, all on the main thread.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let work = std::panic::AssertUnwindSafe(work);
        let result = PgTryBuilder::new(move || {
            // Bind the whole wrapper so the closure captures it, not its field.
            let work = work;
            (work.0)()
        })
        .catch_others(|caught| Err(PullsyncError::Internal(caught_message(&caught))))
        .execute();
        match result {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}

fn caught_message(caught: &CaughtError) -> String {
    match caught {
        CaughtError::PostgresError(e) | CaughtError::ErrorReport(e) => e.message().to_string(),
        CaughtError::RustPanic { ereport, .. } => format!("panic: {}", ereport.message()),
    }
}
