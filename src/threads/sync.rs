//! The Threads sync flow: open tokens and plan (SPI), pull accounts concurrently (HTTP on
//! the runtime), write each account (SPI), one unit per account.

use super::api::ThreadsApi;
use super::pull::{pull_account, AccountPull, Outcome};
use super::store::{self, AccountRow, LogContext, WriteCounts};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::runtime;
use chrono::Utc;
use futures_util::future::join_all;
use pgrx::Uuid;
use serde_json::{json, Value};

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
    let http = config::http_client(config::http_settings())?;
    Ok(ThreadsApi::new(http, &config::threads_api_url()))
}

/// An account ready to pull: its row, opened token and what the store knows.
pub struct Ready {
    pub row: AccountRow,
    token: String,
    known: super::pull::KnownAccount,
}

/// Opens tokens and loads known posts (SPI). Accounts that cannot be pulled get their
/// sync_logs row and a failed result at once.
pub fn prepare(rows: &[AccountRow], log: &LogContext) -> Result<(Vec<Ready>, Vec<AccountResult>)> {
    let key = config::sealing_key()?;
    let mut ready = Vec::with_capacity(rows.len());
    let mut failed = Vec::new();
    for row in rows {
        let opened = key
            .open(&row.sealed_token)
            .map_err(|reason| PullsyncError::Unsealable {
                what: format!("token {} of account {}", row.token_id, row.id),
                reason,
            });
        match opened.and_then(|token| Ok((token, store::known_account(row.id)?))) {
            Ok((token, known)) => ready.push(Ready {
                row: row.clone(),
                token,
                known,
            }),
            Err(e) => {
                store::log_unpulled(row.id, "failed", &e.to_string(), log)?;
                failed.push(AccountResult::unpulled(row.id, &e));
            }
        }
    }
    Ok((ready, failed))
}

/// Pulls every ready account concurrently on the runtime; no Postgres call inside.
pub fn pull(ready: &[Ready], cancel: runtime::Cancel) -> Result<Vec<AccountPull>> {
    pull_beating(ready, cancel, || Ok(()))
}

/// `pull`, with `beat` called on the main thread between slices of the waiting (at a third
/// of `pullsync.unit_timeout`), so the units being pulled stay claimed.
pub fn pull_beating(
    ready: &[Ready],
    cancel: runtime::Cancel,
    beat: impl FnMut() -> Result<()>,
) -> Result<Vec<AccountPull>> {
    let api = threads_api()?;
    let tiers = config::tiers();
    let rate = config::THREADS_RATE_LIMIT.get();
    let now = Utc::now();
    let per_account = match config::ACCOUNT_CONCURRENCY.get() {
        0 => api.http.settings().concurrency,
        n => n as usize,
    };
    let every = std::time::Duration::from_secs((config::UNIT_TIMEOUT_S.get() / 3).max(1) as u64);
    runtime::block_on_beating(
        join_all(ready.iter().map(|r| {
            let api = &api;
            async move {
                let session = api.session(&r.token, rate);
                pull_account(
                    &session,
                    &r.row.threads_user_id,
                    &r.known,
                    tiers,
                    now,
                    per_account,
                )
                .await
            }
        })),
        cancel,
        every,
        beat,
    )
}

/// Writes one pulled account (SPI) and describes the result. A token Threads refused is
/// marked invalid: it is not used again until the account is authorised anew.
pub fn write(ready: &Ready, pull: &AccountPull, log: &LogContext) -> Result<AccountResult> {
    let heartbeat = i64::from(config::SNAPSHOT_HEARTBEAT_S.get());
    let counts = store::write_account(ready.row.id, pull, Utc::now(), heartbeat, log)?;
    if pull.outcome == Outcome::Skipped {
        store::invalidate_token(ready.row.token_id)?;
    }
    if !pull.notes.is_empty() {
        pgrx::log!(
            "pg_pullsync: Threads account {} answered what this version does not know (stored as is): {}",
            ready.row.id,
            pull.notes.join("; ")
        );
    }
    Ok(AccountResult {
        account_id: ready.row.id,
        outcome: pull.outcome,
        counts,
        steps: pull.steps_completed.iter().map(|s| s.name()).collect(),
        api_calls: pull.api_calls,
        error: pull.error.clone(),
    })
}

/// A write that failed: its sync_logs row and result.
pub fn write_failed(
    account_id: Uuid,
    error: &PullsyncError,
    log: &LogContext,
) -> Result<AccountResult> {
    let error = PullsyncError::Internal(format!("writing the account failed: {error}"));
    store::log_unpulled(account_id, "failed", &error.to_string(), log)?;
    Ok(AccountResult::unpulled(account_id, &error))
}

/// One account in the calling backend and transaction: open, pull, write.
fn sync_here(row: AccountRow, log: &LogContext) -> Result<AccountResult> {
    let (mut ready, mut failed) = prepare(&[row], log)?;
    let Some(r) = ready.pop() else {
        return failed.pop().ok_or_else(|| {
            PullsyncError::Internal("the account was neither opened nor failed".into())
        });
    };
    let pulled = pull(std::slice::from_ref(&r), runtime::Cancel::Backend)?
        .pop()
        .ok_or_else(|| PullsyncError::Internal("the pull returned no account".into()))?;
    write(&r, &pulled, log).or_else(|e| write_failed(r.row.id, &e, log))
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
    let result = sync_here(row, &log)?.to_json();
    let status = match result["status"].as_str() {
        Some("completed" | "skipped") => "completed",
        Some("partial") => "partial",
        _ => "failed",
    };
    let number = |key: &str| result[key].as_i64().unwrap_or(0);
    crate::monitor::record::record(&crate::monitor::record::Run {
        source: "threads",
        job_type: "threads_sync_account",
        job_log_id: None,
        status,
        items: number("posts_new") + number("posts_updated") + number("snapshots"),
        attempts: 1,
        errors: i64::from(status != "completed"),
        duration_ms: (Utc::now() - log.started_at).num_milliseconds(),
        // One account says little about the source's lag.
        pulls_data: false,
    })?;
    Ok(result)
}
