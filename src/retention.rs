//! `pullsync.cleanup()`: removes what is past its retention, in batches of short
//! statements on indexed conditions, so no table is locked beyond the rows it deletes.

use crate::config;
use crate::error::Result;
use crate::monitor::record::{self, Run};
use crate::pg_error::OrRaise;
use crate::registry::{self, Retention};
use chrono::Utc;
use pgrx::prelude::*;
use pullsync_core::outcome::Status;
use serde_json::{json, Map, Value};

const BATCH: i64 = 5000;

/// What goes of the general tables; each source adds its own (`SourceSpec::retention`).
const RULES: &[Retention] = &[
    Retention {
        key: "sync_logs",
        table: "pullsync.sync_logs",
        condition: "t.started_at < now() - make_interval(secs => $1)",
    },
    Retention {
        key: "sync_metrics",
        table: "pullsync.sync_metrics",
        condition: "t.recorded_at < now() - make_interval(secs => $1)",
    },
    Retention {
        key: "reconciliation_runs",
        table: "pullsync.reconciliation_runs",
        condition: "t.started_at < now() - make_interval(secs => $1)",
    },
    Retention {
        key: "alerts",
        table: "pullsync.alerts",
        condition: "t.resolved_at IS NOT NULL AND t.resolved_at < now() - make_interval(secs => $1)",
    },
    // Finished runs (their units go with them) and finished single jobs.
    Retention {
        key: "jobs",
        table: "pullsync.jobs",
        condition: "t.parent_id IS NULL AND t.finished_at < now() - make_interval(secs => $1)",
    },
    Retention {
        key: "system_job_logs",
        table: "pullsync.system_job_logs",
        condition: "t.status <> 'running' AND t.started_at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT 1 FROM pullsync.jobs j WHERE j.job_log_id = t.id AND j.finished_at IS NULL)",
    },
    Retention {
        key: "system_job_locks",
        table: "pullsync.system_job_locks",
        condition: "t.expires_at < now() - make_interval(secs => $1)",
    },
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
    let rules = RULES
        .iter()
        .chain(registry::all().iter().flat_map(|s| s.retention.iter()));
    for rule in rules {
        let mut n = 0;
        loop {
            let batch = delete_batch(rule.table, rule.condition, args)?;
            n += batch;
            if batch < BATCH {
                break;
            }
        }
        total += n;
        removed.insert(rule.key.to_string(), json!(n));
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
