//! The Threads sync flow: open tokens and plan (SPI), pull accounts concurrently (HTTP on
//! the runtime), write each account (SPI), one unit per account.

use super::api::ThreadsApi;
use super::pull::{pull_account, AccountPull, Outcome};
use super::store::{self, AccountRow, LogContext, WriteCounts};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::http::HttpClient;
use crate::{runtime, subxact};
use chrono::Utc;
use futures_util::future::join_all;
use pgrx::Uuid;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug)]
pub struct AccountResult {
    pub account_id: Uuid,
    pub outcome: Outcome,
    pub counts: WriteCounts,
    pub steps: Vec<&'static str>,
    pub api_calls: u32,
    pub error: Option<String>,
}

impl AccountResult {
    pub fn to_json(&self) -> Value {
        json!({
            "account_id": self.account_id.to_string(),
            "status": self.outcome.as_str(),
            "steps_completed": self.steps,
            "posts_new": self.counts.posts_new,
            "posts_updated": self.counts.posts_updated,
            "snapshots": self.counts.snapshots,
            "deltas": self.counts.deltas,
            "api_calls": self.api_calls,
            "error": self.error,
        })
    }

    fn unpulled(account_id: Uuid, error: &PullsyncError) -> Self {
        AccountResult {
            account_id,
            outcome: Outcome::Failed,
            counts: WriteCounts::default(),
            steps: Vec::new(),
            api_calls: 0,
            error: Some(error.to_string()),
        }
    }
}

pub fn threads_api() -> Result<ThreadsApi> {
    let http =
        HttpClient::new(config::http_settings()).map_err(|e| PullsyncError::Internal(e.message))?;
    Ok(ThreadsApi::new(http, &config::threads_api_url()))
}

/// Syncs `rows` in batches of `pullsync.batch_size`: the accounts of a batch are pulled
/// concurrently, then written one by one. With `isolate`, each write is a subtransaction,
/// so an ERROR in one account leaves the others written.
pub fn sync_accounts(
    rows: &[AccountRow],
    log: &LogContext,
    isolate: bool,
) -> Result<Vec<AccountResult>> {
    let api = threads_api()?;
    let key = config::sealing_key()?;
    let tiers = config::tiers();
    let heartbeat = i64::from(config::SNAPSHOT_HEARTBEAT_S.get());
    let rate = config::THREADS_RATE_LIMIT.get();
    let batch_size = config::BATCH_SIZE.get().max(1) as usize;
    let batch_delay = Duration::from_millis(config::BATCH_DELAY_MS.get() as u64);
    let mut results = Vec::with_capacity(rows.len());

    for (batch_no, batch) in rows.chunks(batch_size).enumerate() {
        if batch_no > 0 && !batch_delay.is_zero() {
            runtime::sleep(batch_delay)?;
        }
        let mut ready = Vec::with_capacity(batch.len());
        for row in batch {
            let opened = key
                .open(&row.sealed_token)
                .map_err(|reason| PullsyncError::Unsealable {
                    what: format!("token {} of account {}", row.token_id, row.id),
                    reason,
                });
            match opened.and_then(|token| Ok((token, store::known_posts(row.id)?))) {
                Ok((token, known)) => ready.push((row, token, known)),
                Err(e) => {
                    store::log_unpulled(row.id, "failed", &e.to_string(), log)?;
                    results.push(AccountResult::unpulled(row.id, &e));
                }
            }
        }
        let now = Utc::now();
        let pulls: Vec<AccountPull> =
            runtime::block_on(join_all(ready.iter().map(|(row, token, known)| {
                let api = &api;
                async move {
                    let session = api.session(token, rate);
                    pull_account(&session, &row.threads_user_id, known, tiers, now).await
                }
            })))?;
        for ((row, _, _), pull) in ready.iter().zip(pulls) {
            let write = || store::write_account(row.id, &pull, Utc::now(), heartbeat, log);
            let written = if isolate {
                subxact::run(write)
            } else {
                write()
            };
            results.push(match written {
                Ok(counts) => AccountResult {
                    account_id: row.id,
                    outcome: pull.outcome,
                    counts,
                    steps: pull.steps_completed.iter().map(|s| s.name()).collect(),
                    api_calls: pull.api_calls,
                    error: pull.error.clone(),
                },
                Err(e) => {
                    let error = PullsyncError::Internal(format!("writing the account failed: {e}"));
                    store::log_unpulled(row.id, "failed", &error.to_string(), log)?;
                    AccountResult::unpulled(row.id, &error)
                }
            });
        }
    }
    Ok(results)
}

/// `threads_sync_account`: one account, synchronously, in the caller's transaction.
pub fn sync_one(account_id: Uuid) -> Result<Value> {
    if !store::account_exists(account_id)? {
        return Err(PullsyncError::NotFound {
            message: format!("Threads account {account_id} does not exist"),
            hint: "Pass an id from pullsync.workspace_threads_accounts (threads_add_account returns it).".into(),
        });
    }
    let log = LogContext {
        job_log_id: None,
        job_type: "threads_sync_account",
        started_at: Utc::now(),
    };
    let Some(row) = store::usable_account(account_id)? else {
        let error =
            "the account has no primary, unrevoked, unexpired token; refresh it or add a new one";
        store::log_unpulled(account_id, "skipped", error, &log)?;
        return Ok(
            json!({ "account_id": account_id.to_string(), "status": "skipped", "error": error }),
        );
    };
    let results = sync_accounts(&[row], &log, false)?;
    Ok(results
        .first()
        .map(AccountResult::to_json)
        .unwrap_or(Value::Null))
}

const LOCK_NAME: &str = "scheduled_sync";

/// `threads_scheduled_sync`: every active account, under the `scheduled_sync` lock.
pub fn scheduled() -> Result<Value> {
    // Sessions running this call at once: the advisory lock answers at once, without
    // waiting for the other transaction.
    let free = pgrx::Spi::get_one::<bool>(
        "SELECT pg_try_advisory_xact_lock(hashtext('pullsync.scheduled_sync'))",
    )?
    .unwrap_or(false);
    if !free || !crate::jobs::lock::acquire(LOCK_NAME, config::LOCK_TTL_S.get())? {
        return Ok(json!({ "skipped": true, "reason": "another scheduled sync holds the lock" }));
    }
    let started = std::time::Instant::now();
    let job_log_id = crate::jobs::log::start("threads_scheduled_sync")?;
    let rows = store::active_accounts()?;
    let log = LogContext {
        job_log_id: Some(job_log_id),
        job_type: "threads_scheduled_sync",
        started_at: Utc::now(),
    };
    let results = sync_accounts(&rows, &log, true)?;
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let (success, skipped) = (count(Outcome::Completed), count(Outcome::Skipped));
    let errors = results.len() - success - skipped;
    let status = crate::jobs::log::status(success, errors);
    let metadata = json!({
        "total_accounts": rows.len(),
        "success_count": success,
        "error_count": errors,
        "skipped_count": skipped,
        "api_calls": results.iter().map(|r| u64::from(r.api_calls)).sum::<u64>(),
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    crate::jobs::log::finish(job_log_id, status, metadata.clone(), None)?;
    crate::jobs::lock::release(LOCK_NAME)?;
    let mut summary = json!({ "job_log_id": job_log_id, "status": status });
    if let (Value::Object(s), Value::Object(m)) = (&mut summary, metadata) {
        s.extend(m);
    }
    Ok(summary)
}
