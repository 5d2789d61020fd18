//! The job queue (`pullsync.jobs`): a job is a top-level row; a run's units are child rows
//! that workers claim with FOR UPDATE SKIP LOCKED. All SPI, in the caller's transaction.
//! Which source a job belongs to is its kind (`registry`); nothing here names one.

use super::kind::{Job, Outcome, RunTotals, Unit};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::plumbing::prepared;
use crate::registry;
use pgrx::prelude::*;
use pgrx::JsonB;
use pullsync_core::outcome::Status;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Queues a job of `kind`, or says why not: `{"job_id": …}`, or `{"skipped": true,
/// "job_id": …, "reason": busy}` when a job of that kind whose payload contains `same` is
/// already queued or running.
pub fn enqueue(
    kind: &str,
    payload: Value,
    same: Value,
    job_log_id: Option<i64>,
    busy: &str,
) -> Result<Value> {
    if let Some(job_id) = active_job(kind, same)? {
        return Ok(json!({ "skipped": true, "job_id": job_id, "reason": busy }));
    }
    let job_id = Spi::get_one_with_args::<i64>(
        "INSERT INTO pullsync.jobs (kind, payload, job_log_id, phase) VALUES ($1, $2, $3, 'queued') RETURNING id",
        &[kind.into(), JsonB(payload).into(), job_log_id.into()],
    )?
    .ok_or_else(|| PullsyncError::Internal("job insert returned no id".into()))?;
    super::wake::wake_all()?;
    Ok(json!({ "job_id": job_id }))
}

/// The oldest job of `kind` queued or running whose payload contains `same`.
pub fn active_job(kind: &str, same: Value) -> Result<Option<i64>> {
    Ok(Spi::get_one_with_args::<i64>(
        "SELECT (SELECT id FROM pullsync.jobs WHERE parent_id IS NULL AND kind = $1 AND state IN ('queued', 'running')
                    AND payload @> $2 ORDER BY id LIMIT 1)",
        &[kind.into(), JsonB(same).into()],
    )?)
}

/// A run of `kind` that made no progress for the lock TTL (no worker, or workers gone for
/// good) is failed, so it no longer blocks new runs. A run that keeps completing units
/// lives on, however long a large fleet takes.
pub fn abandon_stale_runs(kind: &str) -> Result<()> {
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
        &[kind.into(), f64::from(config::lock_ttl_secs()).into()],
    )?;
    Ok(())
}

/// Puts a claimed top-level job back in the queue (its worker is stopping).
pub fn requeue_job(job: i64) -> Result<()> {
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET state = 'queued', claimed_at = NULL, phase = 'queued' WHERE id = $1",
        &[job.into()],
    )?;
    Ok(())
}

/// Closes a job that has no units with its outcome.
pub fn finish_single(job: i64, outcome: &Outcome) -> Result<()> {
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET state = $2, phase = 'done', finished_at = now(), result = $3 WHERE id = $1",
        &[
            job.into(),
            outcome.status.as_job_state().as_str().into(),
            JsonB(outcome.result.clone()).into(),
        ],
    )?;
    Ok(())
}

/// Units whose worker is gone (crashed, killed) or silent past `pullsync.unit_timeout`
/// go back to the queue, and so do jobs without units whose worker is gone (what they
/// committed stays; a feed pull resumes from its checkpoint). A unit that has had
/// `pullsync.unit_max_attempts` claims without a result is failed instead, so one unit
/// that brings its worker down cannot hold up the run for ever.
pub fn requeue_abandoned() -> Result<()> {
    give_up_on_spent_units()?;
    Spi::run(
        "UPDATE pullsync.jobs SET state = 'queued', claimed_at = NULL, phase = 'queued'
          WHERE parent_id IS NULL AND state = 'running' AND phase = 'pulling'
            AND (worker_pid IS NULL OR worker_pid NOT IN (SELECT pid FROM pg_stat_activity))",
    )?;
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET state = 'queued', claimed_at = NULL
          WHERE parent_id IS NOT NULL AND state = 'running'
            AND (heartbeat_at < now() - make_interval(secs => $1)
                 OR worker_pid IS NULL
                 OR worker_pid NOT IN (SELECT pid FROM pg_stat_activity))",
        &[f64::from(config::unit_timeout_secs()).into()],
    )?;
    Ok(())
}

fn give_up_on_spent_units() -> Result<()> {
    let finished = Spi::get_one_with_args::<Vec<i64>>(
        "WITH spent AS (
             UPDATE pullsync.jobs u SET state = 'failed', finished_at = now(),
                    result = u.payload || jsonb_build_object(
                        'status', 'failed', 'api_calls', 0, 'items', 0,
                        'error', format('gave up after %s attempts that ended without a result (the worker stopped, crashed or went silent past pullsync.unit_timeout)', u.attempts))
              WHERE u.parent_id IS NOT NULL AND u.attempts >= $2
                AND (u.state = 'queued'
                     OR (u.state = 'running'
                         AND (u.heartbeat_at < now() - make_interval(secs => $1)
                              OR u.worker_pid IS NULL
                              OR u.worker_pid NOT IN (SELECT pid FROM pg_stat_activity))))
             RETURNING u.parent_id, u.payload, u.result),
         counted AS (
             UPDATE pullsync.jobs r SET units_done = r.units_done + c.n, heartbeat_at = now(),
                    errors = r.errors || c.errors
               FROM (SELECT parent_id, count(*)::int AS n,
                            jsonb_agg(payload || jsonb_build_object('error', result->'error')) AS errors
                       FROM spent GROUP BY parent_id) c
              WHERE r.id = c.parent_id AND r.state = 'running'
             RETURNING r.id, r.units_done >= r.units_total AS last)
         SELECT coalesce(array_agg(id) FILTER (WHERE last), '{}') FROM counted",
        &[
            f64::from(config::unit_timeout_secs()).into(),
            config::unit_max_attempts().into(),
        ],
    )?
    .unwrap_or_default();
    for run in finished {
        finish_run(run)?;
    }
    Ok(())
}

/// Keeps claimed units (and their run) alive while they are pulled.
pub fn heartbeat(units: &[i64]) -> Result<()> {
    prepared::run(
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

/// Whether a top-level job waits to be claimed: a worker going from batch to batch of a
/// run stops taking more so that it, or another worker, can claim it.
pub fn job_waiting() -> Result<bool> {
    Ok(prepared::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pullsync.jobs WHERE parent_id IS NULL AND state = 'queued')",
        &[],
    )?
    .unwrap_or(false))
}

/// Claims a queued job. A run of units is split into its units in the same transaction; a
/// job of a kind no source of this library runs is failed at once.
///
/// Kinds share the workers: the queued job whose kind holds the fewest running jobs goes
/// first (the oldest among equals), so a pile of one kind's jobs (one tenant's REST
/// sources, say) cannot keep another kind's run waiting behind all of it; a job's own
/// wall-clock budget bounds how long a worker it holds stays away.
pub fn claim_and_plan_run() -> Result<Option<Job>> {
    // The scalar subquery gives one row even when nothing was claimed.
    let claimed = Spi::get_one::<JsonB>(
        "WITH claimed AS (
             UPDATE pullsync.jobs SET state = 'running', worker_pid = pg_backend_pid(), claimed_at = now(),
                    heartbeat_at = now(), phase = 'planning'
              WHERE id = (SELECT q.id FROM pullsync.jobs q WHERE q.parent_id IS NULL AND q.state = 'queued'
                           ORDER BY (SELECT count(*) FROM pullsync.jobs r
                                      WHERE r.parent_id IS NULL AND r.state = 'running' AND r.kind = q.kind),
                                    q.id
                           FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING id, kind, payload, job_log_id)
         SELECT (SELECT jsonb_build_object('id', id, 'kind', kind, 'payload', payload, 'job_log_id', job_log_id)
                   FROM claimed)",
    )?;
    let Some(JsonB(claimed)) = claimed else {
        return Ok(None);
    };
    let job = Job {
        id: claimed["id"].as_i64().unwrap_or_default(),
        kind: claimed["kind"].as_str().unwrap_or_default().to_string(),
        payload: claimed["payload"].clone(),
        job_log_id: claimed["job_log_id"].as_i64(),
    };
    let Some(source) = registry::job_kind(&job.kind) else {
        let error = format!(
            "no source of this pg_pullsync library runs jobs of kind {}",
            job.kind
        );
        finish_single(
            job.id,
            &Outcome {
                status: Status::Failed,
                api_calls: 0,
                items: 0,
                result: json!({ "status": "failed", "error": error }),
                error: Some(error),
            },
        )?;
        return Ok(Some(job));
    };
    let Some(units) = source.units() else {
        Spi::run_with_args(
            "UPDATE pullsync.jobs SET phase = 'pulling' WHERE id = $1",
            &[job.id.into()],
        )?;
        return Ok(Some(job));
    };
    let planned = with_fleet_settings(|| {
        Spi::connect_mut(|client| {
            let inserted = client.update(
                &format!(
                    "INSERT INTO pullsync.jobs (parent_id, kind, payload)
                     SELECT $1, $2, u.payload FROM ({}) AS u(payload)",
                    units.units_query()
                ),
                None,
                &[job.id.into(), units.unit_kind().into()],
            )?;
            Ok(inserted.len())
        })
    })?;
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET units_total = $2, phase = $3 WHERE id = $1",
        &[
            job.id.into(),
            i32::try_from(planned).unwrap_or(i32::MAX).into(),
            units.phase().into(),
        ],
    )?;
    if planned == 0 {
        finish_run(job.id)?;
    } else {
        // Every worker, not only this one, should start on the units.
        super::wake::wake_all()?;
    }
    Ok(Some(job))
}

/// The most `work_mem` the statements over a whole run may use: planning it (a sort of the
/// whole fleet joined with its tokens) and closing it (totals over all its units, the
/// sources' metrics). With the default 4 MB a backend's own memory rose by 11 MB while it
/// planned 100,000 accounts (2 MB at 256 kB, in the same 0.8 s), so a worker's memory grew
/// with the fleet up to that size. Beyond it sorts and joins spill to disk.
const FLEET_WORK_MEM_KB: i64 = 256;

/// Runs `statements` over a whole run with `work_mem` at most `FLEET_WORK_MEM_KB` and
/// without JIT, then with both as they were. At 100,000 accounts their cost passes
/// `jit_above_cost`: compiling them loaded LLVM into the worker (about 10 MB for a
/// moment) and took longer than the statements, which run once per run. The settings are
/// local to the transaction, so an error in between loses them with the transaction.
pub(crate) fn with_fleet_settings<T>(statements: impl FnOnce() -> Result<T>) -> Result<T> {
    let (work_mem, jit) = Spi::get_two::<String, String>(
        "SELECT current_setting('work_mem'), current_setting('jit')",
    )?;
    let (Some(work_mem), Some(jit)) = (work_mem, jit) else {
        return Err(PullsyncError::Internal(
            "work_mem or jit has no value".into(),
        ));
    };
    Spi::run_with_args(
        "SELECT set_config('work_mem',
                least(pg_size_bytes(current_setting('work_mem')) / 1024, $1)::text || 'kB', true),
                set_config('jit', 'off', true)",
        &[FLEET_WORK_MEM_KB.into()],
    )?;
    let done = statements()?;
    Spi::run_with_args(
        "SELECT set_config('work_mem', $1, true), set_config('jit', $2, true)",
        &[work_mem.into(), jit.into()],
    )?;
    Ok(done)
}

/// At most `limit`, and no more than a worker's share of what the runs of `kind` have left
/// less the units it holds already (a batch still being pulled), so a fleet smaller than
/// a batch per worker is split between the workers instead of taken whole by the first.
fn fair_share(kind: &str, limit: i64) -> Result<i64> {
    Ok(Spi::get_one_with_args::<i64>(
        "SELECT least($1, ceil(sum(r.units_total - r.units_done)::numeric / $3)
                          - sum((SELECT count(*) FROM pullsync.jobs u
                                  WHERE u.parent_id = r.id AND u.state = 'running'
                                    AND u.worker_pid = pg_backend_pid())))::bigint
           FROM pullsync.jobs r WHERE r.parent_id IS NULL AND r.kind = $2 AND r.state = 'running'",
        &[limit.into(), kind.into(), config::workers().max(1).into()],
    )?
    .unwrap_or(limit)
    .max(0))
}

/// Claims up to `limit` units of runs of `kind` that have not been tried (fewer when that
/// is more than this worker's share); a unit whose earlier claim ended without a result is
/// claimed alone, so a unit that brings its worker down cannot use up the attempts of the
/// units batched with it.
pub fn claim_units(kind: &str, limit: i64) -> Result<Vec<Unit>> {
    let limit = fair_share(kind, limit)?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    Spi::connect_mut(|client| {
        let rows = client.update(
            "WITH runs AS (
                  SELECT id FROM pullsync.jobs WHERE parent_id IS NULL AND kind = $2 AND state = 'running'),
              -- A unit out of attempts is not claimed: the next requeue gives up on it.
              -- Both per run, so a limit stops an index scan of jobs_queued_units_idx; a retry
              -- in no order, or the scan would follow the primary key past every unit.
              retry AS (
                  SELECT f.id FROM runs, LATERAL (
                      SELECT id FROM pullsync.jobs WHERE parent_id = runs.id AND state = 'queued'
                         AND attempts > 0 AND attempts < $3
                       FOR UPDATE SKIP LOCKED LIMIT 1) f
                   LIMIT 1),
              fresh AS (
                  SELECT f.id FROM runs, LATERAL (
                      SELECT id FROM pullsync.jobs WHERE parent_id = runs.id AND state = 'queued' AND attempts = 0
                       ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1) f
                   WHERE NOT EXISTS (SELECT 1 FROM retry)
                   LIMIT $1)
             UPDATE pullsync.jobs u SET state = 'running', worker_pid = pg_backend_pid(), claimed_at = now(),
                    heartbeat_at = now(), attempts = u.attempts + 1
               FROM pullsync.jobs r
              WHERE u.id IN (SELECT id FROM retry UNION ALL SELECT id FROM fresh)
                AND r.id = u.parent_id
             RETURNING u.id, u.parent_id, u.payload, r.job_log_id, u.attempts",
            None,
            &[limit.into(), kind.into(), config::unit_max_attempts().into()],
        )?;
        let mut units = Vec::with_capacity(rows.len());
        for row in rows {
            units.push(Unit {
                id: row.get(1)?.unwrap_or_default(),
                run_id: row.get(2)?.unwrap_or_default(),
                payload: row.get::<JsonB>(3)?.map(|j| j.0).unwrap_or(Value::Null),
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
    Ok(prepared::get_one::<bool>(
        "WITH mine AS (SELECT 1 FROM pullsync.jobs WHERE id = $1 AND state = 'running'
                          AND worker_pid = pg_backend_pid() AND attempts = $2 FOR UPDATE)
         SELECT EXISTS (SELECT 1 FROM mine)",
        &[unit.id.into(), unit.claim.into()],
    )?
    .unwrap_or(false))
}

/// The unit's recorded result: the source's, with the fields every run sums.
fn unit_result(outcome: &Outcome) -> Value {
    let mut result = match &outcome.result {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    result.insert("status".into(), json!(outcome.status.as_str()));
    result.insert("api_calls".into(), json!(outcome.api_calls));
    result.insert("items".into(), json!(outcome.items));
    result.insert("error".into(), json!(outcome.error));
    Value::Object(result)
}

/// Units recorded in one transaction, per run: how many, and the errors of those that
/// failed. Counted on their runs once, by `count_completed`, so a worker takes its run's
/// row lock once per batch of units rather than once per unit.
#[derive(Debug, Default)]
pub struct Completed(BTreeMap<i64, (i32, Vec<Value>)>);

/// Records a unit's outcome in `completed`. A claim that lost the unit (requeued,
/// reclaimed, cancelled) changes nothing.
pub fn record_unit(unit: &Unit, outcome: &Outcome, completed: &mut Completed) -> Result<()> {
    let held = prepared::get_one::<bool>(
        "WITH unit AS (
             UPDATE pullsync.jobs SET state = $3, finished_at = now(), result = $4
              WHERE id = $1 AND state = 'running' AND worker_pid = pg_backend_pid() AND attempts = $2
             RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM unit)",
        &[
            unit.id.into(),
            unit.claim.into(),
            outcome.status.as_job_state().as_str().into(),
            JsonB(unit_result(outcome)).into(),
        ],
    )?
    .unwrap_or(false);
    if held {
        let (done, errors) = completed.0.entry(unit.run_id).or_default();
        *done += 1;
        if let Some(e) = &outcome.error {
            let mut entry = unit.payload.clone();
            if let Value::Object(map) = &mut entry {
                map.insert("error".into(), json!(e));
            }
            errors.push(entry);
        }
    }
    Ok(())
}

/// Counts recorded units on their runs; a run whose last unit is among them is finished.
/// The run row's lock serialises the counts of workers completing units of one run.
pub fn count_completed(completed: Completed) -> Result<()> {
    for (run, (done, errors)) in completed.0 {
        let last = prepared::get_one::<bool>(
            "WITH run AS (
                 UPDATE pullsync.jobs r SET units_done = r.units_done + $2, heartbeat_at = now(),
                        errors = r.errors || $3
                  WHERE r.id = $1 AND r.state = 'running'
                 RETURNING r.units_done >= r.units_total AS last)
             SELECT coalesce((SELECT last FROM run), false)",
            &[run.into(), done.into(), JsonB(Value::Array(errors)).into()],
        )?
        .unwrap_or(false);
        if last {
            finish_run(run)?;
        }
    }
    Ok(())
}

/// Records one unit's outcome and counts it on its run at once.
pub fn complete_unit(unit: &Unit, outcome: &Outcome) -> Result<()> {
    let mut completed = Completed::default();
    record_unit(unit, outcome, &mut completed)?;
    count_completed(completed)
}

fn run_totals(run: i64) -> Result<RunTotals> {
    let counts = Spi::get_one_with_args::<JsonB>(
        "SELECT jsonb_build_object(
                  'units', count(*),
                  'succeeded', count(*) FILTER (WHERE result->>'status' = 'completed'),
                  'skipped', count(*) FILTER (WHERE result->>'status' = 'skipped'),
                  'rate_limited', count(*) FILTER (WHERE result->>'status' = 'skipped' AND result->>'reason' = 'rate_limited'),
                  'failed', count(*) FILTER (WHERE coalesce(result->>'status', 'failed') NOT IN ('completed', 'skipped')),
                  'api_calls', coalesce(sum((result->>'api_calls')::bigint), 0),
                  'items', coalesce(sum((result->>'items')::bigint), 0),
                  'duration_ms', (extract(epoch FROM clock_timestamp() - (SELECT created_at FROM pullsync.jobs WHERE id = $1)) * 1000)::bigint,
                  'worker_pids', coalesce(jsonb_agg(DISTINCT worker_pid) FILTER (WHERE worker_pid IS NOT NULL), '[]'))
           FROM pullsync.jobs WHERE parent_id = $1",
        &[run.into()],
    )?
    .map(|j| j.0)
    .unwrap_or_else(|| json!({}));
    let number = |key: &str| counts[key].as_i64().unwrap_or(0);
    Ok(RunTotals {
        units: number("units"),
        succeeded: number("succeeded"),
        skipped: number("skipped"),
        rate_limited: number("rate_limited"),
        failed: number("failed"),
        api_calls: number("api_calls"),
        items: number("items"),
        duration_ms: number("duration_ms"),
        worker_pids: counts["worker_pids"].clone(),
    })
}

/// Closes a run: its status from the units, the source's closing (metrics, locks), the
/// job log. Only the transaction that moves the run out of 'running' closes it.
fn finish_run(run: i64) -> Result<()> {
    with_fleet_settings(|| close_run(run))
}

fn close_run(run: i64) -> Result<()> {
    let totals = run_totals(run)?;
    let status = totals.status();
    let job = Spi::get_one_with_args::<JsonB>(
        "WITH closed AS (
             UPDATE pullsync.jobs SET state = $2, phase = 'done', finished_at = now()
              WHERE id = $1 AND state = 'running' RETURNING id, kind, payload, job_log_id)
         SELECT (SELECT jsonb_build_object('id', id, 'kind', kind, 'payload', payload, 'job_log_id', job_log_id)
                   FROM closed)",
        &[run.into(), status.as_str().into()],
    )?;
    let Some(JsonB(job)) = job else {
        return Ok(());
    };
    let job = Job {
        id: run,
        kind: job["kind"].as_str().unwrap_or_default().to_string(),
        payload: job["payload"].clone(),
        job_log_id: job["job_log_id"].as_i64(),
    };
    let batches = registry::job_kind(&job.kind)
        .and_then(|s| s.units())
        .ok_or_else(|| {
            PullsyncError::Internal(format!("run {run} of kind {} has no source", job.kind))
        })?;
    let metadata = batches.finish(&job, &totals)?;
    let mut result = metadata.clone();
    result["status"] = json!(status.as_str());
    result["job_id"] = json!(run);
    result["job_log_id"] = json!(job.job_log_id);
    Spi::run_with_args(
        "UPDATE pullsync.jobs SET result = $2 WHERE id = $1",
        &[run.into(), JsonB(result).into()],
    )?;
    if let Some(id) = job.job_log_id {
        super::log::finish(id, status, metadata, None)?;
    }
    Ok(())
}
