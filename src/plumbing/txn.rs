//! How a unit of work is delimited: in a transaction of its own (a background process's
//! step, a page) or in a subtransaction of the transaction under way (one account of a
//! batch, one item of a page). Either way a unit that fails rolls back alone, and a
//! Postgres ERROR inside it comes back as a typed error with its SQLSTATE instead of
//! escaping (in a background process, as FATAL).

use super::subxact::{self, caught_error};
use crate::error::Result;
use pgrx::pg_sys;
use pgrx::PgTryBuilder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Txn {
    /// A transaction per unit: committed when the work returns Ok, aborted on Err, ERROR
    /// or panic. Only outside any transaction (a background process's main loop).
    Transaction,
    /// A subtransaction per unit, inside the transaction under way.
    Subtransaction,
}

impl Txn {
    pub fn run<T>(self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        match self {
            Txn::Transaction => transaction(work),
            Txn::Subtransaction => subxact::run(work),
        }
    }
}

fn transaction<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    let work = std::panic::AssertUnwindSafe(work);
    // Start and commit are inside the guard too: an ERROR at commit (deferred constraint,
    // serialization failure) must abort, not escape as FATAL.
    let outcome = PgTryBuilder::new(move || {
        let work = work;
        // SAFETY: the background process's main thread, outside any transaction.
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
    .catch_others(|caught| Err(caught_error(&caught)))
    .execute();
    // SAFETY: aborts whatever transaction is still open; a no-op when none is.
    unsafe {
        if pg_sys::IsTransactionOrTransactionBlock() {
            pg_sys::AbortCurrentTransaction();
        }
    }
    outcome
}
