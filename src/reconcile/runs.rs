//! `pullsync.reconciliation_runs`: one row per reconciliation of a source and window.

use crate::error::{PullsyncError, Result};
use crate::pg_error::{required, OrRaise};
use crate::pg_time::{to_chrono, to_pg};
use chrono::{DateTime, Utc};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;
use pullsync_core::outcome::Status;
use serde_json::{json, Value};

/// The outcome of one reconciliation, as recorded and returned.
pub struct Outcome {
    /// The source reconciled (`reconciliation_runs.source`).
    pub source: &'static str,
    /// What of it was reconciled, as the source names it (`reconciliation_runs.subject`).
    pub subject: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub source_counts: Value,
    pub target_counts: Value,
    /// Per stream: {"missing": [...], "extra": [...], "repaired": n}.
    pub streams: serde_json::Map<String, Value>,
    pub windows: Vec<Value>,
    pub repair: bool,
    pub repaired: i64,
    /// Missing records still absent after the repair (all of them without one).
    pub still_missing: i64,
    pub truncated: bool,
    pub error: Option<String>,
}

impl Outcome {
    /// A reconciliation of `subject` of `source` over [start, end) that found nothing yet.
    pub fn begin(
        source: &'static str,
        subject: String,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        repair: bool,
    ) -> Self {
        Outcome {
            source,
            subject,
            start,
            end,
            started_at: Utc::now(),
            source_counts: json!({}),
            target_counts: json!({}),
            streams: serde_json::Map::new(),
            windows: Vec::new(),
            repair,
            repaired: 0,
            still_missing: 0,
            truncated: false,
            error: None,
        }
    }

    fn ids(&self, side: &str) -> Vec<String> {
        self.streams
            .iter()
            .flat_map(|(stream, v)| {
                v[side]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(move |id| format!("{stream}:{id}"))
            })
            .collect()
    }

    pub fn status(&self) -> &'static str {
        let missing = self.ids("missing").len();
        let extra = self.ids("extra").len();
        if self.error.is_some() {
            "failed"
        } else if missing == 0 && extra == 0 && !self.truncated {
            "success"
        } else if self.repair
            && missing > 0
            && self.still_missing == 0
            && extra == 0
            && !self.truncated
        {
            "repaired"
        } else {
            "mismatch"
        }
    }

    /// Inserts the run row and the job's metrics (`metrics_source` / `job_type` as in
    /// `sync_metrics`); returns the run as JSON with its id.
    pub fn record(&self, metrics_source: &str, job_type: &str) -> Result<Value> {
        let failed = self.error.is_some();
        crate::monitor::record::record(&crate::monitor::record::Run {
            source: metrics_source,
            job_type,
            job_log_id: None,
            status: if failed {
                Status::Failed
            } else {
                Status::Completed
            },
            items: self.repaired,
            attempts: 1,
            errors: i64::from(failed),
            duration_ms: (Utc::now() - self.started_at).num_milliseconds(),
            pulls_data: false,
        })?;
        let missing = self.ids("missing");
        let extra = self.ids("extra");
        let status = self.status();
        let details = json!({ "streams": self.streams, "windows": self.windows, "truncated": self.truncated });
        // The source's own columns of the row (0.2.0's names of the subject) come back as
        // its SQL filled them, for the result.
        let (id, consumer_id, account_id) = Spi::get_three_with_args::<i64, String, String>(
            "INSERT INTO pullsync.reconciliation_runs
                    (source, subject, window_start, window_end, status,
                     source_counts, target_counts, discrepancies, missing_ids, extra_ids, repaired, details,
                     error, started_at)
             VALUES ($14, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             RETURNING id, consumer_id, workspace_threads_account_id::text",
            &[
                self.subject.clone().into(),
                to_pg(self.start).into(),
                to_pg(self.end).into(),
                status.into(),
                JsonB(self.source_counts.clone()).into(),
                JsonB(self.target_counts.clone()).into(),
                ((missing.len() + extra.len()) as i32).into(),
                missing.into(),
                extra.into(),
                (self.repaired as i32).into(),
                JsonB(details).into(),
                self.error.clone().into(),
                to_pg(self.started_at).into(),
                self.source.into(),
            ],
        )?;
        let id = id.ok_or_else(|| {
            PullsyncError::Internal("reconciliation run insert returned no id".into())
        })?;
        Ok(json!({
            "run_id": id,
            "subject": self.subject,
            "consumer_id": consumer_id,
            "account_id": account_id,
            "start": self.start.to_rfc3339(),
            "end": self.end.to_rfc3339(),
            "status": status,
            "source_counts": self.source_counts,
            "target_counts": self.target_counts,
            "streams": self.streams,
            "windows": self.windows,
            "repaired": self.repaired,
            "truncated": self.truncated,
            "error": self.error,
        }))
    }
}

/// Checks a window against `pullsync.reconcile_max_window`.
pub fn check_window(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<()> {
    if start > end {
        return Err(PullsyncError::invalid(
            format!("start ({start}) is after end ({end})"),
            "Pass a window with start <= end.",
        ));
    }
    let max = crate::config::reconcile_max_window_secs();
    if (end - start).num_seconds() > max {
        return Err(PullsyncError::invalid(
            format!(
                "the window is {} s wide, more than pullsync.reconcile_max_window ({max} s)",
                (end - start).num_seconds()
            ),
            "Reconcile a narrower window, or raise pullsync.reconcile_max_window.",
        ));
    }
    Ok(())
}

/// The window of a reconciliation call, checked; raises on a null, infinite or too wide
/// bound.
pub fn window_arguments(
    start: Option<TimestampWithTimeZone>,
    end: Option<TimestampWithTimeZone>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let finite = |value: Option<TimestampWithTimeZone>, name: &'static str| {
        to_chrono(required(value, name))
            .ok_or_else(|| {
                PullsyncError::invalid(format!("{name} must be finite"), "Pass a real timestamp.")
            })
            .or_raise()
    };
    let (start, end) = (finite(start, "start"), finite(end, "end"));
    check_window(start, end).or_raise();
    (start, end)
}
