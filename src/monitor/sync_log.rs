//! The `pullsync.sync_logs` row of a run that is one row: a feed pull, a REST run.

use crate::error::Result;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pullsync_core::outcome::Status;

/// What a run did.
pub struct RunLog<'a> {
    /// The source kind (`sync_logs.source`), e.g. 'feed' or 'rest'.
    pub source: &'a str,
    pub job_type: &'a str,
    /// The source's name (`sync_logs.consumer_id`).
    pub name: &'a str,
    pub status: Status,
    pub items: i64,
    pub calls: u32,
    pub error: Option<&'a str>,
    pub notes: &'a [String],
    pub started: DateTime<Utc>,
}

pub fn log_run(run: &RunLog) -> Result<()> {
    Spi::run_with_args(
        "INSERT INTO pullsync.sync_logs (job_type, source, consumer_id, status, items_new, api_calls, error, notes, started_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            run.job_type.into(),
            run.source.into(),
            run.name.into(),
            run.status.as_str().into(),
            (run.items.min(i64::from(i32::MAX)) as i32).into(),
            (run.calls as i32).into(),
            run.error.into(),
            run.notes.to_vec().into(),
            crate::pg_time::to_pg(run.started).into(),
        ],
    )?;
    Ok(())
}
