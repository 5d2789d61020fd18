//! The Threads source as the job runner sees it: a scheduled run of one unit per account
//! with a usable token, and the token refresh, a job without units.

use super::store::{self, LogContext};
use super::sync::{self, AccountResult, Ready, Shared};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::jobs::kind::{Job, JobKind, Outcome, Prepared, RunTotals, Unit, Units};
use crate::jobs::session::{self, Call};
use crate::jobs::{lock, log, queue};
use crate::monitor::record::{self, Run};
use crate::plumbing::txn::Txn;
use crate::registry::{Retention, Schedule, Sealed, SourceSpec};
use crate::runtime::Cancel;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pgrx::Uuid;
use pullsync_core::outcome::Status;
use pullsync_core::threads::pull::{AccountPull, RateLimited, RATE_LIMITED};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

const RUN: &str = "threads_sync";
const REFRESH: &str = "threads_refresh_tokens";

/// The lock a scheduled run holds from its queueing to its end.
const LOCK_NAME: &str = "scheduled_sync";
const JOB_TYPE: &str = "threads_scheduled_sync";

/// The scheduled sync of every account.
pub struct ThreadsSync;

/// The refresh of primary tokens that expire soon.
pub struct TokenRefresh;

/// Of a table of one row per capture (`t`): past `pullsync.snapshot_retention`, and not
/// the newest of its series, which the current values equal.
macro_rules! older_snapshot {
    ($table:literal, $series:literal) => {
        concat!(
            "$3 > 0 AND t.captured_at < now() - make_interval(secs => $3) AND t.captured_at < (SELECT max(n.captured_at) FROM ",
            $table,
            " n WHERE ",
            $series,
            ")"
        )
    };
}

/// The Threads source, as general code sees it.
pub static SPEC: SourceSpec = SourceSpec {
    name: "threads",
    job_kinds: &[&ThreadsSync, &TokenRefresh],
    calls: &[SYNC_NOW, RECONCILE],
    define_settings: super::settings::define,
    start_workers: || {},
    retention: &[
        Retention {
            key: "post_snapshots",
            table: "pullsync.workspace_threads_post_metrics",
            condition: older_snapshot!(
                "pullsync.workspace_threads_post_metrics",
                "n.workspace_threads_account_id = t.workspace_threads_account_id AND n.workspace_threads_post_id = t.workspace_threads_post_id"
            ),
        },
        Retention {
            key: "account_snapshots",
            table: "pullsync.workspace_threads_account_insights",
            condition: older_snapshot!(
                "pullsync.workspace_threads_account_insights",
                "n.workspace_threads_account_id = t.workspace_threads_account_id"
            ),
        },
        Retention {
            key: "link_click_snapshots",
            table: "pullsync.workspace_threads_account_link_clicks",
            condition: older_snapshot!(
                "pullsync.workspace_threads_account_link_clicks",
                "n.workspace_threads_account_id = t.workspace_threads_account_id AND n.link_url = t.link_url"
            ),
        },
        // One snapshot a day: each breakdown's newest day stays, as the view shows it.
        Retention {
            key: "demographics_snapshots",
            table: "pullsync.workspace_threads_follower_demographics",
            condition: "$3 > 0 AND t.captured_at < now() - make_interval(secs => $3)
                        AND t.snapshot_date < (SELECT max(n.snapshot_date) FROM pullsync.workspace_threads_follower_demographics n
                                                WHERE n.workspace_threads_account_id = t.workspace_threads_account_id
                                                  AND n.breakdown = t.breakdown)",
        },
    ],
    sealed: &[Sealed {
        table: "pullsync.workspace_threads_tokens",
        column: "access_token_encrypted",
        what: "token",
    }],
    state_view: "pullsync.threads_source_state",
    schedules: &[
        Schedule {
            jobname: "pullsync-threads-sync",
            schedule: "0,15,30,45 * * * *",
            command: "SELECT pullsync.threads_scheduled_sync()",
        },
        Schedule {
            jobname: "pullsync-token-refresh",
            schedule: "17 3 * * *",
            command: "SELECT pullsync.threads_refresh_tokens('7 days')",
        },
        // The safety net of the listing: the last 30 days of every account with a usable
        // token, missing posts written, vanished ones marked deleted.
        Schedule {
            jobname: "pullsync-threads-reconcile",
            schedule: "23 4 * * *",
            command: "SELECT pullsync.threads_reconcile(a.id, now() - interval '30 days', now()) \
                      FROM pullsync.workspace_threads_accounts a WHERE a.is_active AND EXISTS (\
                      SELECT 1 FROM pullsync.workspace_threads_tokens t WHERE t.workspace_threads_account_id = a.id \
                      AND t.is_primary AND t.revoked_at IS NULL AND t.invalidated_at IS NULL AND t.expires_at > now())",
        },
    ],
};

/// Queues a run, or says why not: `{"job_id": …}` or `{"skipped": true, …}`.
pub fn enqueue_run() -> Result<Value> {
    // Sessions calling at once: the advisory lock answers at once, without waiting.
    let free = Spi::get_one::<bool>(
        "SELECT pg_try_advisory_xact_lock(hashtext('pullsync.scheduled_sync'))",
    )?
    .unwrap_or(false);
    if !free {
        return Ok(json!({ "skipped": true, "reason": "another session is queueing a run" }));
    }
    queue::abandon_stale_runs(RUN)?;
    if let Some(job_id) = queue::active_job(RUN, json!({}))? {
        return Ok(
            json!({ "skipped": true, "job_id": job_id, "reason": "a run is already queued or running" }),
        );
    }
    if !lock::acquire(LOCK_NAME, config::lock_ttl_secs())? {
        return Ok(json!({ "skipped": true, "reason": "the scheduled_sync lock is held" }));
    }
    let job_log_id = log::start(JOB_TYPE)?;
    let mut answer = queue::enqueue(
        RUN,
        json!({}),
        json!({}),
        Some(job_log_id),
        "a run is already queued or running",
    )?;
    answer["job_log_id"] = json!(job_log_id);
    Ok(answer)
}

/// Queues a token refresh of primary tokens expiring within `within_secs`.
pub fn enqueue_refresh(within_secs: f64) -> Result<Value> {
    queue::enqueue(
        REFRESH,
        json!({ "within_secs": within_secs }),
        json!({}),
        None,
        "a token refresh is already queued or running",
    )
}

fn log_context(unit: &Unit) -> LogContext<'static> {
    LogContext {
        job_log_id: unit.job_log_id,
        job_type: JOB_TYPE,
        started_at: Utc::now(),
    }
}

fn account_of(unit: &Unit) -> Result<Uuid> {
    account_in(&unit.payload)
        .ok_or_else(|| PullsyncError::Internal(format!("unit {} names no account", unit.id)))
}

/// The account a payload names (`account_id`).
fn account_in(payload: &Value) -> Option<Uuid> {
    payload["account_id"]
        .as_str()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map(|id| Uuid::from_bytes(*id.as_bytes()))
}

fn outcome(result: &AccountResult) -> Outcome {
    Outcome {
        status: result.outcome,
        api_calls: i64::from(result.api_calls),
        items: result.items(),
        error: result.error.clone(),
        result: result.to_json(),
    }
}

/// A unit whose account was deleted while the run was under way: skipped, with no
/// sync_logs row (there is no account left to attach it to).
fn deleted_account(account_id: Uuid) -> Outcome {
    skipped(
        account_id,
        "the account was deleted while the run was under way",
    )
}

/// Whether an account of run `run` already met the application's rate limit: the run's
/// remaining accounts then wait for the next run without a request (another worker's
/// pulls stop on its own hold; this covers the units claimed after it).
fn application_limited(run: i64) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pullsync.jobs
                         WHERE parent_id = $1 AND state = 'completed' AND result->>'rate_limit' = $2)",
        &[run.into(), RateLimited::Application.as_str().into()],
    )?
    .unwrap_or(false))
}

/// An account deferred to the next run without a request.
fn deferred(account_id: Uuid) -> Outcome {
    let error = format!(
        "{RATE_LIMITED} (application limit): deferred without a request, as an earlier account of this run met the application's rate limit"
    );
    let mut outcome = skipped(account_id, &error);
    outcome.result["reason"] = json!(RATE_LIMITED);
    outcome.result["rate_limit"] = json!(RateLimited::Application.as_str());
    outcome
}

fn skipped(account_id: Uuid, error: &str) -> Outcome {
    Outcome {
        status: Status::Skipped,
        api_calls: 0,
        items: 0,
        error: Some(error.to_string()),
        result: json!({ "account_id": account_id.to_string(), "status": "skipped", "error": error }),
    }
}

impl JobKind for ThreadsSync {
    fn kind(&self) -> &'static str {
        RUN
    }

    fn units(&self) -> Option<&dyn crate::jobs::kind::Batches> {
        Some(self)
    }
}

impl Units for ThreadsSync {
    type Ready = Ready;
    type Pulled = AccountPull;
    type Shared = Shared;

    fn units_query(&self) -> &'static str {
        "SELECT jsonb_build_object('account_id', a.id)
           FROM pullsync.workspace_threads_accounts a
          WHERE a.is_active AND EXISTS (
                SELECT 1 FROM pullsync.workspace_threads_tokens t
                 WHERE t.workspace_threads_account_id = a.id AND t.is_primary
                   AND t.revoked_at IS NULL AND t.invalidated_at IS NULL AND t.expires_at > now())
          -- Least recently synced first: a fleet that needs more than one interval is
          -- covered in turn, not from the same end every time.
          ORDER BY greatest(a.last_posts_sync_at, a.last_metrics_sync_at, a.last_insights_sync_at) NULLS FIRST, a.id"
    }

    fn unit_kind(&self) -> &'static str {
        "threads_account"
    }

    fn phase(&self) -> &'static str {
        "syncing accounts"
    }

    fn prepare(&self, unit: &Unit) -> Result<Prepared<Ready>> {
        let account_id = account_of(unit)?;
        let log = log_context(unit);
        let Some(row) = store::usable_account(account_id)? else {
            if !store::account_exists(account_id)? {
                return Ok(Prepared::Done(deleted_account(account_id)));
            }
            let error = "the account has no usable token any more";
            store::log_unpulled(account_id, Status::Skipped, error, &log)?;
            return Ok(Prepared::Done(skipped(account_id, error)));
        };
        if application_limited(unit.run_id)? {
            let outcome = deferred(account_id);
            let error = outcome.error.as_deref().unwrap_or_default();
            store::log_unpulled(account_id, Status::Skipped, error, &log)?;
            return Ok(Prepared::Done(outcome));
        }
        let (mut ready, mut failed) = sync::prepare(&[row], &log)?;
        match (ready.pop(), failed.pop()) {
            (Some(r), _) => Ok(Prepared::Ready(r)),
            (None, Some(f)) => Ok(Prepared::Done(outcome(&f))),
            (None, None) => Err(PullsyncError::Internal(
                "the account was neither opened nor failed".into(),
            )),
        }
    }

    fn shared(&self) -> Result<Shared> {
        sync::shared()
    }

    async fn pull(shared: Arc<Shared>, ready: Arc<Ready>) -> AccountPull {
        sync::pull(&shared, &ready).await
    }

    fn write(&self, unit: &Unit, ready: &Ready, pulled: AccountPull) -> Result<Outcome> {
        Ok(outcome(&sync::write(ready, &pulled, &log_context(unit))?))
    }

    fn write_failed(&self, unit: &Unit, ready: &Ready, error: &PullsyncError) -> Result<Outcome> {
        if !store::account_exists(ready.row.id)? {
            return Ok(deleted_account(ready.row.id));
        }
        Ok(outcome(&sync::write_failed(
            ready.row.id,
            error,
            &log_context(unit),
        )?))
    }

    fn finish(&self, job: &Job, totals: &RunTotals) -> Result<Value> {
        let status = totals.status();
        record::record(&Run {
            source: "threads",
            job_type: JOB_TYPE,
            job_log_id: job.job_log_id,
            status,
            items: totals.items,
            attempts: totals.units,
            errors: totals.failed,
            duration_ms: totals.duration_ms,
            // A run with no account to pull, or whose every account waited for a rate
            // limit, says nothing about the source's lag.
            pulls_data: totals.units > totals.rate_limited,
        })?;
        Spi::run_with_args(
            "DELETE FROM pullsync.system_job_locks WHERE name = $1",
            &[LOCK_NAME.into()],
        )?;
        Ok(json!({
            "total_accounts": totals.units,
            "success_count": totals.succeeded,
            "skipped_count": totals.skipped,
            "rate_limited_count": totals.rate_limited,
            "error_count": totals.failed,
            "api_calls": totals.api_calls,
            "items": totals.items,
            "duration_ms": totals.duration_ms,
            "worker_pids": totals.worker_pids,
        }))
    }
}

/// A queued token refresh.
#[derive(Deserialize)]
struct QueuedRefresh {
    within_secs: f64,
}

impl JobKind for TokenRefresh {
    fn kind(&self) -> &'static str {
        REFRESH
    }

    fn run(&self, job: &Job, txn: Txn, cancel: Cancel) -> Result<Outcome> {
        let refresh: QueuedRefresh = job.payload()?;
        super::refresh::refresh_tokens(refresh.within_secs, txn, cancel)
    }
}

/// `threads_sync_account(account_id)` and `threads_reconcile(account_id, start, end)`.
#[derive(Serialize, Deserialize)]
pub struct OfAccount {
    pub account_id: String,
    #[serde(default)]
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl OfAccount {
    fn account(&self) -> Result<Uuid> {
        account_in(&json!({ "account_id": self.account_id }))
            .ok_or_else(|| PullsyncError::Internal("the call names no account".into()))
    }
}

/// `threads_sync_account`: one account, now.
pub const SYNC_NOW: Call = Call {
    name: "threads_sync_account",
    run: sync_now,
};

/// `threads_reconcile`: an account's listing over a window against the stored posts.
pub const RECONCILE: Call = Call {
    name: "threads_reconcile",
    run: reconcile_now,
};

fn sync_now(arguments: &Value, txn: Txn, cancel: Cancel) -> Result<Value> {
    let call: OfAccount = session::arguments(arguments)?;
    sync::sync_one(call.account()?, txn, cancel).map(|outcome| outcome.result)
}

fn reconcile_now(arguments: &Value, txn: Txn, cancel: Cancel) -> Result<Value> {
    let call: OfAccount = session::arguments(arguments)?;
    let (start, end) = call
        .window
        .ok_or_else(|| PullsyncError::Internal("the call names no window".into()))?;
    super::reconcile::reconcile(call.account()?, start, end, txn, cancel)
}
