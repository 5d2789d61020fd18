//! The SQL boundary: typed errors become Postgres ERRORs with their SQLSTATE and hint.

use crate::error::{PullsyncError, SqlState};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// pgrx's name for a SQLSTATE (the other way: `SqlState::from_packed(code as i32)`). pgrx
/// names the SQLSTATEs of PostgreSQL 12 and a few since: any other, e.g. one a user's
/// RAISE chose, has no name, and pgrx makes it XX000 (when it catches an ERROR too).
fn pg_code(state: SqlState) -> PgSqlErrorCode {
    PgSqlErrorCode::from(state.packed())
}

/// Raises `error` as a Postgres ERROR; never returns.
pub fn raise(error: PullsyncError) -> ! {
    let mut report = ErrorReport::new(pg_code(error.sqlstate()), error.to_string(), "pg_pullsync");
    if let Some(hint) = error.hint() {
        report = report.set_hint(hint);
    }
    if let PullsyncError::Postgres {
        detail: Some(detail),
        ..
    } = &error
    {
        report = report.set_detail(detail.clone());
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// A SQL argument that must not be null, or the ERROR (22004) that says so.
pub fn required<T>(value: Option<T>, name: &'static str) -> T {
    value.ok_or(PullsyncError::NullArgument { name }).or_raise()
}

pub trait OrRaise<T> {
    /// The value, or a Postgres ERROR built from the typed error.
    fn or_raise(self) -> T;
}

impl<T, E: Into<PullsyncError>> OrRaise<T> for Result<T, E> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e.into()))
    }
}

impl PullsyncError {
    /// Raises this error as a Postgres ERROR.
    pub fn raise_now(self) -> ! {
        raise(self)
    }
}

impl From<pgrx::spi::SpiError> for PullsyncError {
    fn from(e: pgrx::spi::SpiError) -> Self {
        PullsyncError::Internal(format!("SPI: {e}"))
    }
}
