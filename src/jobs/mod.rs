//! Jobs shared by every source: the `JobKind` trait the runner drives, the queue,
//! the one runner, the background workers, the process that runs a call made in a session,
//! the lock a run takes, its system_job_logs row, a run read page by page, and the
//! quarantine of items a target would not take.
//! Nothing here names a source.

pub mod functions;
pub mod kind;
pub mod lock;
pub mod log;
pub mod paged;
pub mod quarantine;
pub mod queue;
pub mod runner;
pub mod session;
pub mod wake;
pub mod worker;
