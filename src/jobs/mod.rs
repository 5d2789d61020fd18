//! Jobs shared by every source: the lock a run takes, and its system_job_logs row.

pub mod lock;
pub mod log;
