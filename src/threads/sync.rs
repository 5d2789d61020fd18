//! The Threads sync flow: open tokens and plan (SPI), pull accounts concurrently (HTTP on
//! the runtime), write each account (SPI), one unit per account.

use super::store::{self, AccountRow, LogContext, WriteCounts};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::jobs::kind::Outcome;
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use crate::secrets::Secrets;
use chrono::{DateTime, Utc};
use pgrx::Uuid;
use pullsync_core::outcome::Status;
use pullsync_core::threads::api::ThreadsApi;
use pullsync_core::threads::plan::Tiers;
use pullsync_core::threads::pull::{pull_account, AccountPull, RateLimited, RATE_LIMITED};
use serde_json::{json, Value};

#[derive(Debug)]
pub struct AccountResult {
    pub account_id: Uuid,
    pub outcome: Status,
    pub counts: WriteCounts,
    pub steps: Vec<&'static str>,
    pub api_calls: u32,
    pub error: Option<String>,
    pub rate_limited: Option<RateLimited>,
}

impl AccountResult {
    pub fn to_json(&self) -> Value {
        let mut result = json!({
            "account_id": self.account_id.to_string(),
            "status": self.outcome.as_str(),
            "steps_completed": self.steps,
            "posts_new": self.counts.posts_new,
            "posts_updated": self.counts.posts_updated,
            "snapshots": self.counts.snapshots,
            "deltas": self.counts.deltas,
            "api_calls": self.api_calls,
            "error": self.error,
        });
        if let Some(scope) = self.rate_limited {
            result["reason"] = json!(RATE_LIMITED);
            result["rate_limit"] = json!(scope.as_str());
        }
        result
    }

    /// Rows written: new and changed posts and snapshots.
    pub fn items(&self) -> i64 {
        self.counts.posts_new + self.counts.posts_updated + self.counts.snapshots
    }

    /// An account Meta asked to wait until `until`: deferred without a request.
    fn deferred(account_id: Uuid, until: DateTime<Utc>) -> Self {
        AccountResult {
            account_id,
            outcome: Status::Skipped,
            counts: WriteCounts::default(),
            steps: Vec::new(),
            api_calls: 0,
            error: Some(format!(
                "{RATE_LIMITED}: deferred without a request, as Threads asked to wait until {}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            rate_limited: Some(RateLimited::User),
        }
    }

    fn unpulled(account_id: Uuid, error: &PullsyncError) -> Self {
        AccountResult {
            account_id,
            outcome: Status::Failed,
            counts: WriteCounts::default(),
            steps: Vec::new(),
            api_calls: 0,
            error: Some(error.to_string()),
            rate_limited: None,
        }
    }
}

pub fn threads_api() -> Result<ThreadsApi> {
    let http = config::http_client(config::HttpOverrides::default())?;
    let url = super::settings::api_url();
    config::check_destination(&url)?;
    Ok(ThreadsApi::new(http, &url))
}

/// An account ready to pull: its row, opened token, what the store knows, and the time
/// its posts' refresh is planned for.
pub struct Ready {
    pub row: AccountRow,
    token: String,
    known: pullsync_core::threads::pull::KnownAccount,
    now: DateTime<Utc>,
}

/// Opens tokens and loads known posts (SPI). Accounts that cannot be pulled, or that
/// Threads asked to wait, get their sync_logs row and their result at once.
pub fn prepare(rows: &[AccountRow], log: &LogContext) -> Result<(Vec<Ready>, Vec<AccountResult>)> {
    let secrets = Secrets::load()?;
    let breakdowns = super::settings::demographics();
    let mut ready = Vec::with_capacity(rows.len());
    let mut failed = Vec::new();
    for row in rows {
        if let Some(until) = row.rate_limited_until {
            let deferred = AccountResult::deferred(row.id, until);
            let error = deferred.error.as_deref().unwrap_or_default();
            store::log_unpulled(row.id, Status::Skipped, error, log)?;
            failed.push(deferred);
            continue;
        }
        let opened = secrets.open(&row.sealed_token, || {
            format!("token {} of account {}", row.token_id, row.id)
        });
        match opened.and_then(|token| Ok((token, store::known_account(row.id, &breakdowns)?))) {
            Ok((token, known)) => ready.push(Ready {
                row: row.clone(),
                token,
                known,
                now: Utc::now(),
            }),
            Err(e) => {
                store::log_unpulled(row.id, Status::Failed, &e.to_string(), log)?;
                failed.push(AccountResult::unpulled(row.id, &e));
            }
        }
    }
    Ok((ready, failed))
}

/// What the pulls of a worker's consecutive batches share: one client (its concurrency
/// bound holds for them together, its connections are kept from batch to batch), the
/// settings read once.
pub struct Shared {
    api: ThreadsApi,
    tiers: Tiers,
    rate: f64,
    per_account: usize,
}

pub fn shared() -> Result<Shared> {
    let api = threads_api()?;
    let per_account = match config::account_concurrency() {
        0 => api.http.settings().concurrency,
        n => n,
    };
    Ok(Shared {
        api,
        tiers: super::settings::tiers(),
        rate: super::settings::rate_limit(),
        per_account,
    })
}

/// Pulls one ready account; no Postgres call inside.
pub async fn pull(shared: &Shared, ready: &Ready) -> AccountPull {
    let session = shared.api.session(&ready.token, shared.rate);
    pull_account(
        &session,
        &ready.row.threads_user_id,
        &ready.known,
        shared.tiers,
        ready.now,
        shared.per_account,
    )
    .await
}

/// Writes one pulled account (SPI) and describes the result. A token Threads refused is
/// marked invalid: it is not used again until the account is authorised anew.
pub fn write(ready: &Ready, pull: &AccountPull, log: &LogContext) -> Result<AccountResult> {
    let heartbeat = super::settings::snapshot_heartbeat_secs();
    let counts = store::write_account(ready.row.id, pull, Utc::now(), heartbeat, log)?;
    // Skipped for its token, not for a rate limit (which the next run retries).
    if pull.outcome == Status::Skipped && pull.rate_limited.is_none() {
        store::invalidate_token(ready.row.token_id)?;
    }
    if !pull.notes.is_empty() {
        pgrx::log!(
            "pg_pullsync: Threads account {} answered what this version does not know or could not read (stored as is, repaired or skipped): {}",
            ready.row.id,
            pull.notes.join("; ")
        );
    }
    if let (Some(scope), Some(error)) = (pull.rate_limited, &pull.error) {
        pgrx::log!(
            "pg_pullsync: Threads account {} deferred to the next run ({} rate limit): {error}",
            ready.row.id,
            scope.as_str()
        );
    }
    Ok(AccountResult {
        account_id: ready.row.id,
        outcome: pull.outcome,
        counts,
        steps: pull.steps_completed.iter().map(|s| s.name()).collect(),
        api_calls: pull.api_calls,
        error: pull.error.clone(),
        rate_limited: pull.rate_limited,
    })
}

/// A write that failed: its sync_logs row and result.
pub fn write_failed(
    account_id: Uuid,
    error: &PullsyncError,
    log: &LogContext,
) -> Result<AccountResult> {
    let error = PullsyncError::Internal(format!("writing the account failed: {error}"));
    store::log_unpulled(account_id, Status::Failed, &error.to_string(), log)?;
    Ok(AccountResult::unpulled(account_id, &error))
}

/// One account as `sync_one` found it.
enum Opened {
    /// No usable token: nothing to pull or record beyond its sync_logs row.
    WithoutToken(Outcome),
    /// Done without a request (its token would not open, or Threads asked it to wait).
    Settled(AccountResult),
    Ready(Box<Ready>),
}

/// `threads_sync_account`'s work, as a job without units: open the token and plan (one
/// transaction), pull over HTTP (none open), write the account with its sync_logs row and
/// the source's metrics (another).
pub fn sync_one(account_id: Uuid, txn: Txn, cancel: Cancel) -> Result<Outcome> {
    let log = LogContext {
        job_log_id: None,
        job_type: "threads_sync_account",
        started_at: Utc::now(),
    };
    let opened = txn.run(|| {
        if !store::account_exists(account_id)? {
            return Err(PullsyncError::NotFound {
                message: format!("Threads account {account_id} does not exist"),
                hint: "Pass an id from pullsync.workspace_threads_accounts (threads_add_account returns it).".into(),
            });
        }
        let Some(row) = store::usable_account(account_id)? else {
            let error =
                "the account has no primary, unrevoked, unexpired token; refresh it or add a new one";
            store::log_unpulled(account_id, Status::Skipped, error, &log)?;
            return Ok(Opened::WithoutToken(Outcome {
                status: Status::Skipped,
                api_calls: 0,
                items: 0,
                error: Some(error.to_string()),
                result: json!({ "account_id": account_id.to_string(), "status": "skipped", "error": error }),
            }));
        };
        let (mut ready, mut failed) = prepare(&[row], &log)?;
        match (ready.pop(), failed.pop()) {
            (Some(ready), _) => Ok(Opened::Ready(Box::new(ready))),
            (None, Some(failed)) => Ok(Opened::Settled(failed)),
            (None, None) => Err(PullsyncError::Internal(
                "the account was neither opened nor failed".into(),
            )),
        }
    })?;
    let ready = match opened {
        Opened::WithoutToken(skipped) => return Ok(skipped),
        Opened::Settled(result) => return txn.run(|| finish(result, &log)),
        Opened::Ready(ready) => ready,
    };
    let shared = shared()?;
    let pulled = runtime::block_on_until(pull(&shared, &ready), cancel)?;
    txn.run(|| {
        let result =
            write(&ready, &pulled, &log).or_else(|e| write_failed(ready.row.id, &e, &log))?;
        finish(result, &log)
    })
}

/// Records one account's sync in the source's metrics and describes it.
fn finish(result: AccountResult, log: &LogContext) -> Result<Outcome> {
    // A rate-limited account is no error, and not done either.
    let status = match result.rate_limited {
        Some(_) => Status::Partial,
        None => result.outcome.as_job_state(),
    };
    crate::monitor::record::record(&crate::monitor::record::Run {
        source: "threads",
        job_type: "threads_sync_account",
        job_log_id: None,
        status,
        items: result.items(),
        attempts: 1,
        errors: i64::from(!matches!(status, Status::Completed) && result.rate_limited.is_none()),
        duration_ms: (Utc::now() - log.started_at).num_milliseconds(),
        // One account says little about the source's lag.
        pulls_data: false,
    })?;
    Ok(Outcome {
        status: result.outcome,
        api_calls: i64::from(result.api_calls),
        items: result.items(),
        error: result.error.clone(),
        result: result.to_json(),
    })
}
