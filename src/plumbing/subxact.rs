//! A unit of work that fails alone: an internal subtransaction, rolled back on any ERROR or
//! panic, so one account's failure never aborts the others in the same call.

use crate::error::{PullsyncError, Result, SqlState};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;

pub(super) fn run<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    // SAFETY: the same save/begin/release-or-rollback/restore sequence PL/pgSQL uses for
    // exception blocks, all on the main thread.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        // The work pallocs in a context of its own, deleted after it: a long call (a feed
        // pull of many pages) must not keep every page's query parameters until it returns.
        // Results are Rust values and never point into it.
        let scratch = pg_sys::AllocSetContextCreateExtended(
            context,
            c"pg_pullsync unit of work".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        pg_sys::MemoryContextSwitchTo(scratch);
        let work = std::panic::AssertUnwindSafe(work);
        let outcome: std::result::Result<Result<T>, Box<CaughtError>> =
            PgTryBuilder::new(move || {
                // Bind the whole wrapper so the closure captures it, not its field.
                let work = work;
                Ok((work.0)())
            })
            .catch_others(|caught| Err(Box::new(caught)))
            .execute();
        match &outcome {
            Ok(Ok(_)) => pg_sys::ReleaseCurrentSubTransaction(),
            _ => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::MemoryContextDelete(scratch);
        pg_sys::CurrentResourceOwner = owner;
        match outcome {
            Ok(result) => result,
            // A cancel or statement timeout ends the whole call, as in PL/pgSQL.
            Err(caught) if is_cancel(&caught) => caught.rethrow(),
            Err(caught) => Err(caught_error(&caught)),
        }
    }
}

fn is_cancel(caught: &CaughtError) -> bool {
    match caught {
        CaughtError::PostgresError(e) | CaughtError::ErrorReport(e) => {
            e.sql_error_code() == pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED
        }
        CaughtError::RustPanic { .. } => false,
    }
}

/// A caught ERROR as a typed error that keeps its SQLSTATE, message, detail and hint.
pub(super) fn caught_error(caught: &CaughtError) -> PullsyncError {
    match caught {
        CaughtError::PostgresError(e) | CaughtError::ErrorReport(e) => PullsyncError::Postgres {
            sqlstate: SqlState::from_packed(e.sql_error_code() as i32),
            message: e.message().to_string(),
            detail: e.detail().map(str::to_string),
            hint: e.hint().map(str::to_string),
        },
        CaughtError::RustPanic { ereport, .. } => {
            PullsyncError::Internal(format!("panic: {}", ereport.message()))
        }
    }
}
