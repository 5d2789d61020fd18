//! Token refresh: primary tokens expiring within a window are refreshed when Threads allows
//! it (at least 24 h old, not yet expired) and sealed again; expired ones are reported.

use super::sync::threads_api;
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::pg_time::to_pg;
use crate::runtime;
use chrono::{Duration, Utc};
use futures_util::future::join_all;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::Uuid;
use serde_json::{json, Value};

struct Candidate {
    token_id: Uuid,
    account_id: Uuid,
    sealed: String,
    state: &'static str,
}

pub fn refresh_tokens(within: Interval) -> Result<Value> {
    let started = Utc::now();
    let candidates: Vec<Candidate> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT t.id, t.workspace_threads_account_id, t.access_token_encrypted,
                    CASE WHEN t.expires_at <= now() THEN 'expired'
                         WHEN t.issued_at > now() - interval '24 hours' THEN 'too_young'
                         ELSE 'due' END
               FROM pullsync.workspace_threads_tokens t
              WHERE t.is_primary AND t.revoked_at IS NULL AND t.expires_at < now() + $1
              ORDER BY t.expires_at",
            None,
            &[within.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            let state = match row.get::<String>(4)?.as_deref() {
                Some("expired") => "expired",
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
        Ok::<_, PullsyncError>(out)
    })?;

    let ids = |state: &str| -> Vec<String> {
        candidates
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.account_id.to_string())
            .collect()
    };
    let (expired, too_young) = (ids("expired"), ids("too_young"));
    let expired_tokens: Vec<Uuid> = candidates
        .iter()
        .filter(|c| c.state == "expired")
        .map(|c| c.token_id)
        .collect();
    if !expired_tokens.is_empty() {
        Spi::run_with_args(
            "UPDATE pullsync.workspace_threads_tokens SET expired_reported_at = coalesce(expired_reported_at, now())
              WHERE id = ANY($1)",
            &[expired_tokens.into()],
        )?;
    }

    let key = config::sealing_key()?;
    let mut failed = Vec::new();
    let mut due = Vec::new();
    for c in candidates.iter().filter(|c| c.state == "due") {
        match key.open(&c.sealed) {
            Ok(token) => due.push((c, token)),
            Err(reason) => failed.push(json!({
                "account_id": c.account_id.to_string(),
                "error": PullsyncError::Unsealable { what: format!("token {} of account {}", c.token_id, c.account_id), reason }.to_string(),
            })),
        }
    }
    let api = threads_api()?;
    let answers = runtime::block_on(join_all(due.iter().map(|(_, token)| {
        let api = &api;
        async move { api.session(token, 0.0).refresh().await }
    })))?;

    let mut refreshed = Vec::new();
    for ((c, _), answer) in due.iter().zip(answers) {
        match answer {
            Ok(fresh) => {
                let now = Utc::now();
                let expires_at = now + Duration::seconds(fresh.expires_in.max(1));
                Spi::run_with_args(
                    "UPDATE pullsync.workspace_threads_tokens SET is_primary = false, revoked_at = now(), refreshed_at = now()
                      WHERE id = $1",
                    &[c.token_id.into()],
                )?;
                Spi::run_with_args(
                    "INSERT INTO pullsync.workspace_threads_tokens
                            (workspace_threads_account_id, access_token_encrypted, issued_at, expires_at, refreshed_at)
                     VALUES ($1, $2, $3, $4, $3)",
                    &[
                        c.account_id.into(),
                        key.seal(&fresh.access_token).into(),
                        to_pg(now).into(),
                        to_pg(expires_at).into(),
                    ],
                )?;
                refreshed.push(c.account_id.to_string());
            }
            Err(failure) => failed
                .push(json!({ "account_id": c.account_id.to_string(), "error": failure.message })),
        }
    }
    let tried = (refreshed.len() + failed.len()) as i64;
    crate::monitor::record::record(&crate::monitor::record::Run {
        source: "threads",
        job_type: "token_refresh",
        job_log_id: None,
        status: crate::jobs::log::status(refreshed.len(), failed.len()),
        items: refreshed.len() as i64,
        attempts: tried,
        errors: failed.len() as i64,
        duration_ms: (Utc::now() - started).num_milliseconds(),
        pulls_data: false,
    })?;
    Ok(json!({
        "refreshed": refreshed,
        "expired": expired,
        "not_yet_refreshable": too_young,
        "failed": failed,
    }))
}
