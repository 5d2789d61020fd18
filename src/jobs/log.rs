//! `system_job_logs`: one row per job run, from running to completed / partial / failed.

use crate::error::{PullsyncError, Result};
use pgrx::prelude::*;
use pgrx::JsonB;
use pullsync_core::outcome::Status;

pub fn start(job_type: &str) -> Result<i64> {
    Spi::get_one_with_args::<i64>(
        "INSERT INTO pullsync.system_job_logs (job_type, status) VALUES ($1, 'running') RETURNING id",
        &[job_type.into()],
    )?
    .ok_or_else(|| PullsyncError::Internal("job log insert returned no id".into()))
}

pub fn finish(
    id: i64,
    status: Status,
    metadata: serde_json::Value,
    error: Option<String>,
) -> Result<()> {
    Spi::run_with_args(
        "UPDATE pullsync.system_job_logs SET status = $2, metadata = $3, error = $4, finished_at = now() WHERE id = $1",
        &[id.into(), status.as_str().into(), JsonB(metadata).into(), error.into()],
    )?;
    Ok(())
}
