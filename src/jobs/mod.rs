//! Jobs shared by every source: the queue, the one runner, the background workers, the
//! lock a run takes, its system_job_logs row, and the pg_cron schedule.

pub mod functions;
pub mod lock;
pub mod log;
pub mod queue;
pub mod runner;
pub mod worker;
