//! The one job runner: background workers call it with real transactions, `run_jobs()`
//! in a backend with subtransactions. It claims work, pulls over HTTP outside any
//! transaction (in workers), and writes each account in its own (sub)transaction.

use super::queue::{self, Unit};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::runtime::Cancel;
use crate::threads::store::{self, LogContext};
use crate::threads::sync::{self, AccountResult, Ready};
use chrono::Utc;
use serde_json::json;

/// How the runner delimits a unit of work.
pub trait Txn {
    fn run<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T>;
}

/// Units inside the caller's transaction, each in a subtransaction.
pub struct Subtransactions;

impl Txn for Subtransactions {
    fn run<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        crate::subxact::run(work)
    }
}

fn log_context(unit: &Unit) -> LogContext<'static> {
    LogContext {
        job_log_id: unit.job_log_id,
        job_type: "threads_scheduled_sync",
        started_at: Utc::now(),
    }
}

/// One round: requeue abandoned units, plan a queued run, or claim and sync a batch of
/// units. Returns whether there was anything to do.
pub fn step(txn: &impl Txn, cancel: Cancel) -> Result<bool> {
    txn.run(queue::requeue_abandoned)?;
    if let Some(job) = txn.run(queue::claim_and_plan_run)? {
        if job.kind == queue::FEED_PULL {
            let consumer = job.payload["consumer_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mode = job.payload["mode"]
                .as_str()
                .unwrap_or("incremental")
                .to_string();
            let result = match crate::feed::pull::pull(&consumer, &mode, None, txn, cancel) {
                Ok(result) => result,
                Err(PullsyncError::Interrupted) => {
                    // Pages committed so far stay; the job goes back to the queue.
                    txn.run(|| queue::requeue_job(job.id))?;
                    return Err(PullsyncError::Interrupted);
                }
                Err(e) => {
                    json!({ "consumer_id": consumer, "status": "failed", "error": e.to_string() })
                }
            };
            txn.run(|| queue::finish_single(job.id, &result))?;
        } else if job.kind == queue::THREADS_REFRESH {
            let within = job.payload["within_secs"]
                .as_f64()
                .unwrap_or(7.0 * 86_400.0);
            let result = match crate::threads::refresh::refresh_tokens(within, txn, cancel) {
                Ok(result) => result,
                Err(PullsyncError::Interrupted) => {
                    // Tokens refreshed so far are committed; the rest wait for the next run.
                    txn.run(|| queue::requeue_job(job.id))?;
                    return Err(PullsyncError::Interrupted);
                }
                Err(e) => json!({ "status": "failed", "error": e.to_string() }),
            };
            txn.run(|| queue::finish_single(job.id, &result))?;
        }
        return Ok(true);
    }
    let batch = i64::from(config::BATCH_SIZE.get().max(1));
    let claimed: Vec<(Unit, Ready)> = txn.run(|| {
        let mut ready = Vec::new();
        for unit in queue::claim_units(batch)? {
            let log = log_context(&unit);
            let Some(row) = store::usable_account(unit.account_id)? else {
                if !store::account_exists(unit.account_id)? {
                    queue::complete_unit(&unit, &deleted_account(unit.account_id))?;
                    continue;
                }
                let error = "the account has no usable token any more";
                store::log_unpulled(unit.account_id, "skipped", error, &log)?;
                let result = json!({ "account_id": unit.account_id.to_string(), "status": "skipped", "error": error });
                queue::complete_unit(&unit, &result)?;
                continue;
            };
            let (mut prepared, failed) = sync::prepare(&[row], &log)?;
            match prepared.pop() {
                Some(r) => ready.push((unit, r)),
                None => {
                    for f in failed {
                        queue::complete_unit(&unit, &f.to_json())?;
                    }
                }
            }
        }
        Ok(ready)
    })?;
    if claimed.is_empty() {
        return Ok(false);
    }
    let (units, ready): (Vec<Unit>, Vec<Ready>) = claimed.into_iter().unzip();
    let ids: Vec<i64> = units.iter().map(|u| u.id).collect();
    let pulls = match sync::pull_beating(&ready, cancel, || txn.run(|| queue::heartbeat(&ids))) {
        Ok(pulls) => pulls,
        Err(e) => {
            txn.run(|| queue::release_units(&ids))?;
            return Err(e);
        }
    };
    for ((unit, r), pulled) in units.iter().zip(&ready).zip(pulls) {
        let log = log_context(unit);
        let written = txn.run(|| {
            // A claim that lost its unit (requeued after unit_timeout) writes nothing.
            if !queue::still_claimed(unit)? {
                return Ok(());
            }
            let result = sync::write(r, &pulled, &log)?;
            queue::complete_unit(unit, &result.to_json())
        });
        if let Err(e) = written {
            // The unit's writes rolled back; record the failure in a fresh unit of work.
            txn.run(|| {
                if !queue::still_claimed(unit)? {
                    return Ok(());
                }
                if !store::account_exists(r.row.id)? {
                    return queue::complete_unit(unit, &deleted_account(r.row.id));
                }
                let result: AccountResult = sync::write_failed(r.row.id, &e, &log)?;
                queue::complete_unit(unit, &result.to_json())
            })?;
        }
    }
    // The pause spreads a run's calls over time (the seed's 2 s between batches).
    let pause = std::time::Duration::from_millis(config::BATCH_DELAY_MS.get() as u64);
    if !pause.is_zero() {
        crate::runtime::sleep(pause, cancel)?;
    }
    Ok(true)
}

/// The result of a unit whose account was deleted while the run was under way: skipped,
/// with no sync_logs row (there is no account left to attach it to).
fn deleted_account(account_id: pgrx::Uuid) -> serde_json::Value {
    json!({
        "account_id": account_id.to_string(),
        "status": "skipped",
        "error": "the account was deleted while the run was under way",
    })
}

/// `run_jobs()`: works the queue in this backend until it is empty.
pub fn run_all_here() -> Result<u32> {
    let mut rounds = 0;
    while step(&Subtransactions, Cancel::Backend)? {
        rounds += 1;
        if rounds > 1_000_000 {
            return Err(PullsyncError::Internal("the queue did not drain".into()));
        }
    }
    Ok(rounds)
}
