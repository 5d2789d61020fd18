//! `pullsync.cleanup()`: removes what is past its retention, in batches of short
//! statements on indexed conditions, so no table is locked beyond the rows it deletes.

use crate::config;
use crate::error::Result;
use crate::monitor::record::{self, Run};
use crate::pg_error::OrRaise;
use chrono::Utc;
use pgrx::prelude::*;
use pullsync_core::outcome::Status;
use serde_json::{json, Map, Value};

const BATCH: i64 = 5000;

/// What goes, table by table: (report key, table, condition on the row `t`). `$1` is the
/// log retention, `$2` the checkpoint retention, `$3` the snapshot retention (seconds).
const RULES: [(&str, &str, &str); 14] = [
    ("sync_logs", "pullsync.sync_logs", "t.started_at < now() - make_interval(secs => $1)"),
    ("sync_metrics", "pullsync.sync_metrics", "t.recorded_at < now() - make_interval(secs => $1)"),
    (
        "reconciliation_runs",
        "pullsync.reconciliation_runs",
        "t.started_at < now() - make_interval(secs => $1)",
    ),
    // Quarantined feed items and REST records once resolved; one still waiting stays
    // however old.
    (
        "feed_quarantine",
        "pullsync.feed_quarantine",
        "t.resolved_at IS NOT NULL AND t.resolved_at < now() - make_interval(secs => $1)",
    ),
    (
        "rest_quarantine",
        "pullsync.rest_quarantine",
        "t.resolved_at IS NOT NULL AND t.resolved_at < now() - make_interval(secs => $1)",
    ),
    (
        "alerts",
        "pullsync.alerts",
        "t.resolved_at IS NOT NULL AND t.resolved_at < now() - make_interval(secs => $1)",
    ),
    // Finished runs (their units go with them) and finished feed pulls.
    (
        "jobs",
        "pullsync.jobs",
        "t.parent_id IS NULL AND t.finished_at < now() - make_interval(secs => $1)",
    ),
    (
        "system_job_logs",
        "pullsync.system_job_logs",
        "t.status <> 'running' AND t.started_at < now() - make_interval(secs => $1)
         AND NOT EXISTS (SELECT 1 FROM pullsync.jobs j WHERE j.job_log_id = t.id AND j.finished_at IS NULL)",
    ),
    // Each stream's newest checkpoint per mode stays: it is where the next pull resumes.
    (
        "sync_checkpoints",
        "pullsync.sync_checkpoints",
        "t.created_at < now() - make_interval(secs => $2)
         AND t.id < (SELECT max(n.id) FROM pullsync.sync_checkpoints n
                      WHERE n.consumer_id = t.consumer_id AND n.stream = t.stream AND n.mode = t.mode)",
    ),
    // Each post's and account's newest snapshot stays: current values equal it.
    (
        "post_snapshots",
        "pullsync.workspace_threads_post_metrics",
        "$3 > 0 AND t.captured_at < now() - make_interval(secs => $3)
         AND t.captured_at < (SELECT max(n.captured_at) FROM pullsync.workspace_threads_post_metrics n
                               WHERE n.workspace_threads_account_id = t.workspace_threads_account_id
                                 AND n.workspace_threads_post_id = t.workspace_threads_post_id)",
    ),
    (
        "account_snapshots",
        "pullsync.workspace_threads_account_insights",
        "$3 > 0 AND t.captured_at < now() - make_interval(secs => $3)
         AND t.captured_at < (SELECT max(n.captured_at) FROM pullsync.workspace_threads_account_insights n
                               WHERE n.workspace_threads_account_id = t.workspace_threads_account_id)",
    ),
    (
        "link_click_snapshots",
        "pullsync.workspace_threads_account_link_clicks",
        "$3 > 0 AND t.captured_at < now() - make_interval(secs => $3)
         AND t.captured_at < (SELECT max(n.captured_at) FROM pullsync.workspace_threads_account_link_clicks n
                               WHERE n.workspace_threads_account_id = t.workspace_threads_account_id
                                 AND n.link_url = t.link_url)",
    ),
    // Each breakdown's newest demographics snapshot stays: the view shows it.
    (
        "demographics_snapshots",
        "pullsync.workspace_threads_follower_demographics",
        "$3 > 0 AND t.captured_at < now() - make_interval(secs => $3)
         AND t.snapshot_date < (SELECT max(n.snapshot_date) FROM pullsync.workspace_threads_follower_demographics n
                                 WHERE n.workspace_threads_account_id = t.workspace_threads_account_id
                                   AND n.breakdown = t.breakdown)",
    ),
    (
        "system_job_locks",
        "pullsync.system_job_locks",
        "t.expires_at < now() - make_interval(secs => $1)",
    ),
];

fn delete_batch(table: &str, condition: &str, args: [f64; 3]) -> Result<i64> {
    Ok(Spi::get_one_with_args::<i64>(
        &format!(
            "WITH gone AS (
                 DELETE FROM {table} WHERE ctid = ANY (ARRAY(
                     SELECT t.ctid FROM {table} t WHERE {condition} LIMIT {BATCH} FOR UPDATE SKIP LOCKED))
                 RETURNING 1)
             SELECT count(*) FROM gone"
        ),
        &[args[0].into(), args[1].into(), args[2].into()],
    )?
    .unwrap_or(0))
}

/// Deletes everything past retention; returns the rows removed per table.
pub fn remove_expired() -> Result<Value> {
    let started = Utc::now();
    let args = config::retention_secs();
    // Snapshot rows refuse deletion unless this transaction is the retention path.
    Spi::run("SELECT set_config('pullsync.allow_snapshot_delete', 'on', true)")?;
    let mut removed = Map::new();
    let mut total = 0;
    for (key, table, condition) in RULES {
        let mut n = 0;
        loop {
            let batch = delete_batch(table, condition, args)?;
            n += batch;
            if batch < BATCH {
                break;
            }
        }
        total += n;
        removed.insert(key.to_string(), json!(n));
    }
    Spi::run("SELECT set_config('pullsync.allow_snapshot_delete', 'off', true)")?;
    record::record(&Run {
        source: "maintenance",
        job_type: "cleanup",
        job_log_id: None,
        status: Status::Completed,
        items: total,
        attempts: 1,
        errors: 0,
        duration_ms: (Utc::now() - started).num_milliseconds(),
        pulls_data: false,
    })?;
    Ok(json!({ "removed": removed, "total": total }))
}

/// Removes logs, finished jobs, old checkpoints, resolved alerts and (with
/// `pullsync.snapshot_retention`) old snapshots; returns what it removed per table.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn cleanup() -> pgrx::JsonB {
    crate::plumbing::standby::require_primary("cleanup").or_raise();
    pgrx::JsonB(remove_expired().or_raise())
}
