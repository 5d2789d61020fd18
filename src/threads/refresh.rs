//! Token refresh, a queued job: primary tokens expiring within a window are refreshed when
//! Threads allows it (at least 24 h old, not yet expired), each sealed and committed in its
//! own transaction as soon as its answer arrives, with no transaction open across HTTP:
//! Threads retires a token once it has issued the next, so a refreshed token must never be
//! lost to a later failure. Expired and refused tokens are reported.

use super::sync::threads_api;
use crate::error::{PullsyncError, Result};
use crate::jobs::kind::Outcome;
use crate::pg_time::to_pg;
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use crate::secrets::Secrets;
use chrono::{Duration, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};
use pgrx::prelude::*;
use pgrx::Uuid;
use pullsync_core::outcome::Status;
use serde_json::json;

struct Candidate {
    token_id: Uuid,
    account_id: Uuid,
    sealed: String,
    state: &'static str,
}

fn candidates(within_secs: f64) -> Result<Vec<Candidate>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT t.id, t.workspace_threads_account_id, t.access_token_encrypted,
                    CASE WHEN t.expires_at <= now() THEN 'expired'
                         WHEN t.invalidated_at IS NOT NULL THEN 'invalid'
                         WHEN t.issued_at > now() - interval '24 hours' THEN 'too_young'
                         ELSE 'due' END
               FROM pullsync.workspace_threads_tokens t
              WHERE t.is_primary AND t.revoked_at IS NULL
                AND t.expires_at < now() + make_interval(secs => $1)
              ORDER BY t.expires_at",
            None,
            &[within_secs.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            let state = match row.get::<String>(4)?.as_deref() {
                Some("expired") => "expired",
                Some("invalid") => "invalid",
                Some("too_young") => "too_young",
                _ => "due",
            };
            out.push(Candidate {
                token_id: row
                    .get(1)?
                    .ok_or_else(|| PullsyncError::Internal("token without id".into()))?,
                account_id: row
                    .get(2)?
                    .ok_or_else(|| PullsyncError::Internal("token without account".into()))?,
                sealed: row.get(3)?.unwrap_or_default(),
                state,
            });
        }
        Ok(out)
    })
}

/// Replaces the refreshed token by its successor, unless the account got another primary
/// token meanwhile (then Threads' answer is for a token no longer in use).
fn store_refreshed(c: &Candidate, sealed: String, expires_in: i64) -> Result<bool> {
    let now = Utc::now();
    let expires_at = now + Duration::seconds(expires_in);
    let replaced = Spi::get_one_with_args::<bool>(
        "WITH old AS (
             UPDATE pullsync.workspace_threads_tokens
                SET is_primary = false, revoked_at = now(), refreshed_at = now()
              WHERE id = $1 AND is_primary RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM old)",
        &[c.token_id.into()],
    )?
    .unwrap_or(false);
    if replaced {
        Spi::run_with_args(
            "INSERT INTO pullsync.workspace_threads_tokens
                    (workspace_threads_account_id, access_token_encrypted, issued_at, expires_at, refreshed_at)
             VALUES ($1, $2, $3, $4, $3)",
            &[
                c.account_id.into(),
                sealed.into(),
                to_pg(now).into(),
                to_pg(expires_at).into(),
            ],
        )?;
    }
    Ok(replaced)
}

pub fn refresh_tokens(within_secs: f64, txn: Txn, cancel: Cancel) -> Result<Outcome> {
    let started = Utc::now();
    let candidates = txn.run(|| {
        let found = candidates(within_secs)?;
        let expired: Vec<Uuid> = found
            .iter()
            .filter(|c| c.state == "expired")
            .map(|c| c.token_id)
            .collect();
        if !expired.is_empty() {
            Spi::run_with_args(
                "UPDATE pullsync.workspace_threads_tokens SET expired_reported_at = coalesce(expired_reported_at, now())
                  WHERE id = ANY($1)",
                &[expired.into()],
            )?;
        }
        Ok(found)
    })?;
    let ids = |state: &str| -> Vec<String> {
        candidates
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.account_id.to_string())
            .collect()
    };
    let (expired, invalid, too_young) = (ids("expired"), ids("invalid"), ids("too_young"));

    let secrets = Secrets::load()?;
    let mut failed = Vec::new();
    let mut due = Vec::new();
    for c in candidates.iter().filter(|c| c.state == "due") {
        let what = || format!("token {} of account {}", c.token_id, c.account_id);
        match secrets.open(&c.sealed, what) {
            Ok(token) => due.push((c, token)),
            Err(e) => failed.push(json!({
                "account_id": c.account_id.to_string(),
                "error": e.to_string(),
            })),
        }
    }
    let api = threads_api()?;
    let mut answers: FuturesUnordered<_> = due
        .iter()
        .map(|(c, token)| {
            let api = &api;
            async move { (*c, api.session(token, 0.0).refresh().await) }
        })
        .collect();

    let mut refreshed = Vec::new();
    while let Some((c, answer)) = runtime::block_on_until(answers.next(), cancel)? {
        let account = c.account_id.to_string();
        let outcome = answer.map_err(|f| f.message).and_then(|fresh| {
            txn.run(|| store_refreshed(c, secrets.seal(&fresh.access_token), fresh.expires_in))
                .map_err(|e| format!("the refreshed token could not be stored: {e}"))
        });
        match outcome {
            Ok(true) => refreshed.push(account),
            Ok(false) => failed.push(json!({
                "account_id": account,
                "error": "the account got another token while this one was refreshed; kept that one",
            })),
            Err(error) => failed.push(json!({ "account_id": account, "error": error })),
        }
    }
    let tried = (refreshed.len() + failed.len()) as i64;
    let status = Status::of(refreshed.len(), failed.len());
    txn.run(|| {
        crate::monitor::record::record(&crate::monitor::record::Run {
            source: "threads",
            job_type: "token_refresh",
            job_log_id: None,
            status,
            items: refreshed.len() as i64,
            attempts: tried,
            errors: failed.len() as i64,
            duration_ms: (Utc::now() - started).num_milliseconds(),
            pulls_data: false,
        })
    })?;
    Ok(Outcome {
        status,
        api_calls: tried,
        items: refreshed.len() as i64,
        error: None,
        result: json!({
            "status": status.as_str(),
            "refreshed": refreshed,
            "expired": expired,
            "invalid": invalid,
            "not_yet_refreshable": too_young,
            "failed": failed,
        }),
    })
}
