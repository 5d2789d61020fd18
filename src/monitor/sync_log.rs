//! The end of a run that is one row of `pullsync.sync_logs`, page by page (a feed pull, a
//! REST run): its log row and its metrics.

use super::record::{self, Run};
use crate::error::Result;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pullsync_core::outcome::Status;

/// What a run did.
pub struct RunLog<'a> {
    /// The source kind (`sync_logs.source`), e.g. 'feed' or 'rest'.
    pub source: &'a str,
    pub job_type: &'a str,
    /// What the run was about, as the source names it (`sync_logs.subject`).
    pub subject: &'a str,
    pub status: Status,
    pub items: i64,
    pub calls: u32,
    pub error: Option<&'a str>,
    pub notes: &'a [String],
    pub started: DateTime<Utc>,
}

fn log_run(run: &RunLog) -> Result<()> {
    Spi::run_with_args(
        "INSERT INTO pullsync.sync_logs (job_type, source, subject, status, items_new, api_calls, error, notes, started_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            run.job_type.into(),
            run.source.into(),
            run.subject.into(),
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

/// Logs a paged run and records its metrics, under `metrics_source`: the pages are the
/// work tried, one more when it failed.
pub fn finish_paged_run(run: &RunLog, metrics_source: &str, pages: u32) -> Result<()> {
    log_run(run)?;
    let failed = i64::from(run.error.is_some());
    record::record(&Run {
        source: metrics_source,
        job_type: run.job_type,
        job_log_id: None,
        status: run.status,
        items: run.items,
        attempts: i64::from(pages) + failed,
        errors: failed,
        duration_ms: (Utc::now() - run.started).num_milliseconds(),
        pulls_data: true,
    })
}
