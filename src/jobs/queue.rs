//! The job queue (`pullsync.jobs`): a run is a parent row, its units (one per account)
//! are child rows that workers claim with FOR UPDATE SKIP LOCKED. All SPI, in the
//! caller's transaction.

use super::{lock, log};
use crate::config;
use crate::error::{PullsyncError, Result};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

pub const THREADS_RUN: &str = "threads_sync";
pub const THREADS_UNIT: &str = "threads_account";
pub const FEED_PULL: &str = "feed_pull";
pub const THREADS_REFRESH: &str = "threads_refresh_tokens";
const LOCK_NAME: &str = "scheduled_sync";

/// Queues a Threads run, or says why not: `{"job_id": …}` or `{"skipped": true, …}`.
pub fn enqueue_threads_run() -> Result<Value> {
    // Sessions calling at once: the advisory lock answers at once, without waiting.
    let free = Spi::get_one::<bool>(
        "SELECT pg_try_advisory_xact_lock(hashtext('pullsync.scheduled_sync'))",
    )?
    .unwrap_or(false);
    if !free {
        return Ok(json!({ "skipped": true, "reason": "another session is queueing a run" }));
    }
    abandon_stale_runs()?;
    let active = Spi::get_one_with_args::<i64>(
        "SELECT (SELECT id FROM pullsync.jobs WHERE parent_id IS NULL AND kind = $1 AND state IN ('queued', 'running')
                  ORDER BY id LIMIT 1)",
        &[THREADS_RUN.into()],
    )?;
    if let Some(job_id) = active {
        return Ok(
            json!({ "skipped": true, "job_id": job_id, "reason": "a run is already queued or running" }),
        );
    }
    if !lock::acquire(LOCK_NAME, config::LOCK_TTL_S.get())? {
        return Ok(json!({ "skipped": true, "reason": "the scheduled_sync lock is held" }));
    }
    let job_log_id = log::start("threads_scheduled_sync")?;
    let job_id = Spi::get_one_with_args::<i64>(
        "INSERT INTO pullsync.jobs (kind, job_log_id, phase) VALUES ($1, $2, 'queued') RETURNING id",
        &[THREADS_RUN.into(), job_log_id.into()],
    )?
    .ok_or_else(|| PullsyncError::Internal("job insert returned no id".into()))?;
    super::worker::wake_all()?;
    Ok(json!({ "job_id": job_id, "job_log_id": job_log_id }))
}

/// Queues a token refresh of primary tokens expiring within `within_secs`: `{"job_id": …}`,
/// or `{"skipped": true}` when one is already queued or running.
pub fn enqueue_token_refresh(within_secs: f64) -> Result<Value> {
    let active = Spi::get_one_with_args::<i64>(
        "SELECT (SELECT id FROM pullsync.jobs WHERE parent_id IS NULL AND kind = $1 AND state IN ('queued', 'running')
                  LIMIT 1)",
        &[THREADS_REFRESH.into()],
    )?;
    if let Some(job_id) = active {
        return Ok(
            json!({ "skipped": true, "job_id": job_id, "reason": "a token refresh is already queued or running" }),
        );
    }
    let job_id = Spi::get_one_with_args::<i64>(
        "INSERT INTO pullsync.jobs (kind, payload, phase) VALUES ($1, jsonb_build_object('within_secs', $2::float8), 'queued')
         RETURNING id",
        &[THREADS_REFRESH.into(), within_secs.into()],
    )?
    .ok_or_else(|| PullsyncError::Internal("job insert returned no id".into()))?;
    super::worker::wake_all()?;
    Ok(json!({ "job_id": job_id }))
}

/// Queues a feed pull: `{"job_id": …}`, or `{"skipped": true}` when one is already
/// queued or running for that consumer.
pub fn enqueue_feed_pull(consumer_id: &str, mode: &str) -> Result<Value> {
    let active = Spi::get_one_with_args::<i64>(
        "SELECT (SELECT id FROM pullsync.jobs WHERE parent_id IS NULL AND kind = $1 AND state IN ('queued', 'running')
                    AND payload->>'consumer_id' = $2 LIMIT 1)",
        &[FEED_PULL.into(), consumer_id.into()],
    )?;
    if let Some(job_id) = active {
        return Ok(
            json!({ "skipped": true, "job_id": job_id, "reason": "a pull of this source is already queued or running" }),
        );
    }
    let job_id = Spi::get_one_with_args::<i64>(
        "INSERT INTO pullsync.jobs (kind, payload, phase) VALUES ($1, jsonb_build_object('consumer_id', $2::text, 'mode', $3::text), 'queued')
         RETURNING id",
        &[FEED_PULL.into(), consumer_id.into(), mode.into()],
    )?
    .ok_or_else(|| PullsyncError::Internal("job insert returned no id".into()))?;
    super::worker::wake_all()?;
    Ok(json!({ "job_id": job_id }))
}

/// Puts a claimed top-level job back in the queue (its worker is stopping).
pub fn requeue_job(job: i64) -> Result<()> {
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET state = 'queued', claimed_at = NULL, phase = 'queued' WHERE id = $1",
        &[job.into()],
    )?;
    Ok(())
}

/// Closes a job that has no units (a feed pull) with its result.
pub fn finish_single(job: i64, result: &Value) -> Result<()> {
    let state = match result["status"].as_str() {
        Some("completed") => "completed",
        Some("partial") => "partial",
        _ => "failed",
    };
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET state = $2, phase = 'done', finished_at = now(), result = $3 WHERE id = $1",
        &[job.into(), state.into(), JsonB(result.clone()).into()],
    )?;
    Ok(())
}

/// A run that made no progress for the lock TTL (no worker, or workers gone for good) is
/// failed, so it no longer blocks new runs. A run that keeps completing units lives on,
/// however long a large fleet takes.
fn abandon_stale_runs() -> Result<()> {
    Spi::run_with_args(
        "WITH stale AS (
             UPDATE pullsync.jobs SET state = 'failed', finished_at = now(), phase = 'abandoned',
                    errors = errors || jsonb_build_array('no progress within pullsync.lock_ttl')
              WHERE parent_id IS NULL AND kind = $1 AND state IN ('queued', 'running')
                AND coalesce(heartbeat_at, created_at) < now() - make_interval(secs => $2)
             RETURNING id, job_log_id),
         units AS (
             UPDATE pullsync.jobs SET state = 'cancelled', finished_at = now()
              WHERE parent_id IN (SELECT id FROM stale) AND state IN ('queued', 'running'))
         UPDATE pullsync.system_job_logs SET status = 'failed', finished_at = now(),
                error = 'abandoned: not finished within pullsync.lock_ttl'
          WHERE id IN (SELECT job_log_id FROM stale) AND status = 'running'",
        &[
            THREADS_RUN.into(),
            f64::from(config::LOCK_TTL_S.get()).into(),
        ],
    )?;
    Ok(())
}

/// Units whose worker is gone (crashed, killed) or silent past `pullsync.unit_timeout`
/// go back to the queue, and so do feed pulls whose worker is gone (their committed
/// pages stay; the pull resumes from its checkpoint). A unit that has had
/// `pullsync.unit_max_attempts` claims without a result is failed instead, so one account
/// that brings its worker down cannot hold up the run for ever.
pub fn requeue_abandoned() -> Result<()> {
    give_up_on_spent_units()?;
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET state = 'queued', claimed_at = NULL, phase = 'queued'
          WHERE parent_id IS NULL AND kind = $1 AND state = 'running'
            AND (worker_pid IS NULL OR worker_pid NOT IN (SELECT pid FROM pg_stat_activity))",
        &[FEED_PULL.into()],
    )?;
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET state = 'queued', claimed_at = NULL
          WHERE parent_id IS NOT NULL AND state = 'running'
            AND (heartbeat_at < now() - make_interval(secs => $1)
                 OR worker_pid IS NULL
                 OR worker_pid NOT IN (SELECT pid FROM pg_stat_activity))",
        &[f64::from(config::UNIT_TIMEOUT_S.get()).into()],
    )?;
    Ok(())
}

fn give_up_on_spent_units() -> Result<()> {
    let finished = Spi::get_one_with_args::<Vec<i64>>(
        "WITH spent AS (
             UPDATE pullsync.jobs u SET state = 'failed', finished_at = now(),
                    result = jsonb_build_object(
                        'account_id', u.payload->>'account_id', 'status', 'failed', 'api_calls', 0,
                        'posts_new', 0, 'posts_updated', 0, 'snapshots', 0,
                        'error', format('gave up after %s attempts that ended without a result (the worker stopped, crashed or went silent past pullsync.unit_timeout)', u.attempts))
              WHERE u.parent_id IS NOT NULL AND u.attempts >= $2
                AND (u.state = 'queued'
                     OR (u.state = 'running'
                         AND (u.heartbeat_at < now() - make_interval(secs => $1)
                              OR u.worker_pid IS NULL
                              OR u.worker_pid NOT IN (SELECT pid FROM pg_stat_activity))))
             RETURNING u.parent_id, u.result),
         counted AS (
             UPDATE pullsync.jobs r SET units_done = r.units_done + c.n, heartbeat_at = now(),
                    errors = r.errors || c.errors
               FROM (SELECT parent_id, count(*)::int AS n,
                            jsonb_agg(jsonb_build_object('account_id', result->'account_id', 'error', result->'error')) AS errors
                       FROM spent GROUP BY parent_id) c
              WHERE r.id = c.parent_id AND r.state = 'running'
             RETURNING r.id, r.units_done >= r.units_total AS last)
         SELECT coalesce(array_agg(id) FILTER (WHERE last), '{}') FROM counted",
        &[
            f64::from(config::UNIT_TIMEOUT_S.get()).into(),
            config::UNIT_MAX_ATTEMPTS.get().into(),
        ],
    )?
    .unwrap_or_default();
    for run in finished {
        finish_run(run)?;
    }
    Ok(())
}

/// Keeps claimed units (and their run) alive while their accounts are pulled.
pub fn heartbeat(units: &[i64]) -> Result<()> {
    Spi::run_with_args(
        "WITH mine AS (
             UPDATE pullsync.jobs SET heartbeat_at = now()
              WHERE id = ANY($1) AND state = 'running' AND worker_pid = pg_backend_pid()
             RETURNING parent_id)
         UPDATE pullsync.jobs SET heartbeat_at = now()
          WHERE id IN (SELECT parent_id FROM mine) AND state = 'running'",
        &[units.to_vec().into()],
    )?;
    Ok(())
}

/// A claimed top-level job.
pub struct Claimed {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
}

/// Claims a queued job; a Threads run is split into units in the same transaction.
pub fn claim_and_plan_run() -> Result<Option<Claimed>> {
    // The scalar subquery gives one row even when nothing was claimed.
    let claimed = Spi::get_one::<JsonB>(
        "WITH claimed AS (
             UPDATE pullsync.jobs SET state = 'running', worker_pid = pg_backend_pid(), claimed_at = now(),
                    heartbeat_at = now(), phase = 'planning'
              WHERE id = (SELECT id FROM pullsync.jobs WHERE parent_id IS NULL AND state = 'queued'
                           ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING id, kind, payload)
         SELECT (SELECT jsonb_build_object('id', id, 'kind', kind, 'payload', payload) FROM claimed)",
    )?;
    let Some(JsonB(claimed)) = claimed else {
        return Ok(None);
    };
    let job = Claimed {
        id: claimed["id"].as_i64().unwrap_or_default(),
        kind: claimed["kind"].as_str().unwrap_or_default().to_string(),
        payload: claimed["payload"].clone(),
    };
    if job.kind != THREADS_RUN {
        Spi::run_with_args(
            "UPDATE pullsync.jobs SET phase = 'pulling' WHERE id = $1",
            &[job.id.into()],
        )?;
        return Ok(Some(job));
    }
    let run = job.id;
    let units = Spi::get_one_with_args::<i64>(
        "WITH units AS (
             INSERT INTO pullsync.jobs (parent_id, kind, payload)
             SELECT $1, $2, jsonb_build_object('account_id', a.id)
               FROM pullsync.workspace_threads_accounts a
              WHERE a.is_active AND EXISTS (
                    SELECT 1 FROM pullsync.workspace_threads_tokens t
                     WHERE t.workspace_threads_account_id = a.id AND t.is_primary
                       AND t.revoked_at IS NULL AND t.invalidated_at IS NULL AND t.expires_at > now())
              -- Least recently synced first: a fleet that needs more than one interval is
              -- covered in turn, not from the same end every time.
              ORDER BY greatest(a.last_posts_sync_at, a.last_metrics_sync_at, a.last_insights_sync_at) NULLS FIRST, a.id
             RETURNING 1)
         SELECT count(*) FROM units",
        &[run.into(), THREADS_UNIT.into()],
    )?
    .unwrap_or(0);
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET units_total = $2, phase = 'syncing accounts' WHERE id = $1",
        &[run.into(), (units as i32).into()],
    )?;
    if units == 0 {
        finish_run(run)?;
    } else {
        // Every worker, not only this one, should start on the units.
        super::worker::wake_all()?;
    }
    Ok(Some(job))
}

/// A claimed unit: the account to sync and where its logs belong.
#[derive(Debug, Clone)]
pub struct Unit {
    pub id: i64,
    /// The claim: `attempts` after this claim. A unit requeued and claimed again by
    /// another worker has a higher one, and this claim can no longer complete it.
    pub claim: i32,
    pub run_id: i64,
    pub account_id: pgrx::Uuid,
    pub job_log_id: Option<i64>,
}

/// Claims up to `limit` units that have not been tried; a unit whose earlier claim ended
/// without a result is claimed alone, so an account that brings its worker down cannot
/// use up the attempts of the accounts batched with it.
pub fn claim_units(limit: i64) -> Result<Vec<Unit>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "WITH retry AS (
                  SELECT id FROM pullsync.jobs WHERE parent_id IS NOT NULL AND state = 'queued' AND attempts > 0
                   ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1),
              fresh AS (
                  SELECT id FROM pullsync.jobs WHERE parent_id IS NOT NULL AND state = 'queued' AND attempts = 0
                     AND NOT EXISTS (SELECT 1 FROM retry)
                   ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1)
             UPDATE pullsync.jobs u SET state = 'running', worker_pid = pg_backend_pid(), claimed_at = now(),
                    heartbeat_at = now(), attempts = u.attempts + 1
               FROM pullsync.jobs r
              WHERE u.id IN (SELECT id FROM retry UNION ALL SELECT id FROM fresh)
                AND r.id = u.parent_id
             RETURNING u.id, u.parent_id, (u.payload->>'account_id')::uuid, r.job_log_id, u.attempts",
            None,
            &[limit.into()],
        )?;
        let mut units = Vec::with_capacity(rows.len());
        for row in rows {
            units.push(Unit {
                id: row.get(1)?.unwrap_or_default(),
                run_id: row.get(2)?.unwrap_or_default(),
                account_id: row
                    .get(3)?
                    .ok_or_else(|| PullsyncError::Internal("unit without account".into()))?,
                job_log_id: row.get(4)?,
                claim: row.get(5)?.unwrap_or_default(),
            });
        }
        Ok(units)
    })
}

/// Gives claimed, unfinished units back (a worker stopping mid-run).
pub fn release_units(ids: &[i64]) -> Result<()> {
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET state = 'queued', claimed_at = NULL WHERE id = ANY($1) AND state = 'running'",
        &[ids.to_vec().into()],
    )?;
    Ok(())
}

/// Whether this claim still owns the unit; locks the unit row until the transaction ends,
/// so a requeue cannot slip in between this check and the unit's completion.
pub fn still_claimed(unit: &Unit) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "WITH mine AS (SELECT 1 FROM pullsync.jobs WHERE id = $1 AND state = 'running'
                          AND worker_pid = pg_backend_pid() AND attempts = $2 FOR UPDATE)
         SELECT EXISTS (SELECT 1 FROM mine)",
        &[unit.id.into(), unit.claim.into()],
    )?
    .unwrap_or(false))
}

/// Records a unit's result and counts it on its run; the last unit finishes the run.
/// A claim that lost the unit (requeued, reclaimed, cancelled) changes nothing.
pub fn complete_unit(unit: &Unit, result: &Value) -> Result<()> {
    let status = result["status"].as_str().unwrap_or("failed");
    let state = match status {
        "completed" | "skipped" => "completed",
        "partial" => "partial",
        _ => "failed",
    };
    let error = result["error"]
        .as_str()
        .map(|e| json!({ "account_id": result["account_id"], "error": e }));
    // One statement: the unit changes only if this claim holds it, and only then is it
    // counted; the run row's lock serialises the count across workers.
    let finished_run = Spi::get_one_with_args::<bool>(
        "WITH unit AS (
             UPDATE pullsync.jobs SET state = $3, finished_at = now(), result = $4
              WHERE id = $1 AND state = 'running' AND worker_pid = pg_backend_pid() AND attempts = $2
             RETURNING parent_id),
         run AS (
             UPDATE pullsync.jobs r SET units_done = r.units_done + 1, heartbeat_at = now(),
                    errors = CASE WHEN $5::jsonb IS NULL THEN r.errors ELSE r.errors || jsonb_build_array($5::jsonb) END
               FROM unit WHERE r.id = unit.parent_id AND r.state = 'running'
             RETURNING r.units_done >= r.units_total AS last)
         SELECT coalesce((SELECT last FROM run), false)",
        &[
            unit.id.into(),
            unit.claim.into(),
            state.into(),
            JsonB(result.clone()).into(),
            error.map(JsonB).into(),
        ],
    )?
    .unwrap_or(false);
    if finished_run {
        finish_run(unit.run_id)?;
    }
    Ok(())
}

/// Closes a run: its status from the units, the job log, the lock.
fn finish_run(run: i64) -> Result<()> {
    let counts = Spi::get_one_with_args::<JsonB>(
        "SELECT jsonb_build_object(
                  'total_accounts', count(*),
                  'success_count', count(*) FILTER (WHERE result->>'status' = 'completed'),
                  'skipped_count', count(*) FILTER (WHERE result->>'status' = 'skipped'),
                  'error_count', count(*) FILTER (WHERE coalesce(result->>'status', 'failed') NOT IN ('completed', 'skipped')),
                  'api_calls', coalesce(sum((result->>'api_calls')::bigint), 0),
                  'items', coalesce(sum((result->>'posts_new')::bigint + (result->>'posts_updated')::bigint
                                        + (result->>'snapshots')::bigint), 0),
                  'duration_ms', (extract(epoch FROM clock_timestamp() - (SELECT created_at FROM pullsync.jobs WHERE id = $1)) * 1000)::bigint,
                  'worker_pids', coalesce(jsonb_agg(DISTINCT worker_pid) FILTER (WHERE worker_pid IS NOT NULL), '[]'))
           FROM pullsync.jobs WHERE parent_id = $1",
        &[run.into()],
    )?
    .map(|j| j.0)
    .unwrap_or_else(|| json!({}));
    let success = counts["success_count"].as_u64().unwrap_or(0) as usize;
    let errors = counts["error_count"].as_u64().unwrap_or(0) as usize;
    let total = counts["total_accounts"].as_u64().unwrap_or(0) as usize;
    // A run in which no account succeeded (every token refused, say) is a failure, even
    // when nothing counted as an error.
    let status = if total > 0 && success == 0 {
        "failed"
    } else {
        log::status(success, errors)
    };
    let job_log_id = Spi::get_one_with_args::<i64>(
        "SELECT (SELECT job_log_id FROM pullsync.jobs WHERE id = $1)",
        &[run.into()],
    )?;
    let mut result = counts.clone();
    result["status"] = json!(status);
    result["job_id"] = json!(run);
    result["job_log_id"] = json!(job_log_id);
    // Only the transaction that moves the run out of 'running' closes it.
    let closed = Spi::get_one_with_args::<bool>(
        "WITH closed AS (
             UPDATE pullsync.jobs SET state = $2, phase = 'done', finished_at = now(), result = $3
              WHERE id = $1 AND state = 'running' RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM closed)",
        &[run.into(), status.into(), JsonB(result).into()],
    )?
    .unwrap_or(false);
    if !closed {
        return Ok(());
    }
    let number = |key: &str| counts[key].as_i64().unwrap_or(0);
    crate::monitor::record::record(&crate::monitor::record::Run {
        source: "threads",
        job_type: "threads_scheduled_sync",
        job_log_id,
        status,
        items: number("items"),
        attempts: number("total_accounts"),
        errors: number("error_count"),
        duration_ms: number("duration_ms"),
        // A run with no account to pull says nothing about the source's lag.
        pulls_data: number("total_accounts") > 0,
    })?;
    if let Some(id) = job_log_id {
        log::finish(id, status, counts, None)?;
    }
    Spi::run_with_args(
        "DELETE FROM pullsync.system_job_locks WHERE name = $1",
        &[LOCK_NAME.into()],
    )?;
    Ok(())
}
