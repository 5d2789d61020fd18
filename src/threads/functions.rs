//! SQL functions of the Threads source (thin glue over the pure modules and the store).

use crate::error::PullsyncError;
use crate::pg_error::{required, OrRaise};
use crate::pg_time;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::Uuid;
use pullsync_core::threads::accounts::NewAccount;

/// Creates or updates a Threads account of a workspace and stores its sealed primary
/// token, revoking the earlier primary. Returns the account id.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn threads_add_account(
    workspace_id: Option<Uuid>,
    threads_user_id: Option<String>,
    username: Option<String>,
    access_token: Option<String>,
    expires_at: Option<TimestampWithTimeZone>,
) -> Uuid {
    crate::plumbing::standby::require_primary("threads_add_account").or_raise();
    let workspace_id = required(workspace_id, "workspace_id");
    let account = NewAccount::validate(
        threads_user_id,
        username,
        access_token,
        expires_at.map(pg_time::to_chrono),
        chrono::Utc::now(),
    )
    .or_raise();
    let sealed = crate::secrets::Secrets::load()
        .or_raise()
        .seal(&account.access_token);
    store_account(workspace_id, &account, sealed).or_raise()
}

fn store_account(
    workspace_id: Uuid,
    account: &NewAccount,
    sealed: String,
) -> Result<Uuid, PullsyncError> {
    Spi::connect_mut(|client| {
        // A new account's id derives from its Threads user id, so the primary key keeps one
        // row per Threads user (docs/SCALING.md); an existing row keeps its id. Looked up
        // first: Citus takes no subquery in an INSERT.
        let found = client.select(
            "SELECT id FROM pullsync.workspace_threads_accounts WHERE threads_user_id = $1
              ORDER BY created_at LIMIT 1",
            None,
            &[account.threads_user_id.as_str().into()],
        )?;
        let existing: Option<Uuid> = if found.is_empty() {
            None
        } else {
            found.first().get_one()?
        };
        let inserted = client.update(
            "INSERT INTO pullsync.workspace_threads_accounts AS a (id, workspace_id, threads_user_id, username)
             VALUES (coalesce($4, md5('pullsync:threads-account:' || $2)::uuid), $1, $2, $3)
             ON CONFLICT (id) DO UPDATE
                SET username = EXCLUDED.username, is_active = true, updated_at = now()
                WHERE a.workspace_id = EXCLUDED.workspace_id
             RETURNING id",
            None,
            &[
                workspace_id.into(),
                account.threads_user_id.as_str().into(),
                account.username.as_str().into(),
                existing.into(),
            ],
        )?;
        // No row back: the id exists under another workspace (the upsert's WHERE refused).
        let account_id: Option<Uuid> = if inserted.is_empty() {
            None
        } else {
            inserted.first().get_one()?
        };
        let account_id = account_id.ok_or_else(|| PullsyncError::Conflict {
            message: format!(
                "Threads user {} is already connected to another workspace",
                account.threads_user_id
            ),
            hint: "Remove it from the other workspace first, or pass that workspace's id.".into(),
        })?;
        // Two statements, in this order, so the one-primary index never sees two primaries.
        client.update(
            "UPDATE pullsync.workspace_threads_tokens
                SET is_primary = false, revoked_at = now()
              WHERE workspace_threads_account_id = $1 AND is_primary",
            None,
            &[account_id.into()],
        )?;
        client.update(
            "INSERT INTO pullsync.workspace_threads_tokens
                    (workspace_threads_account_id, access_token_encrypted, expires_at)
             VALUES ($1, $2, $3)",
            None,
            &[
                account_id.into(),
                sealed.into(),
                pg_time::to_pg(account.expires_at).into(),
            ],
        )?;
        Ok(account_id)
    })
}

/// Syncs one account now and waits for it: posts, metrics (L1→L2→L3), account insights
/// (L1→L2→L3), and its sync_logs row, in a background process of its own, with no
/// transaction open while a request is under way. Returns a summary.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn threads_sync_account(account_id: Option<Uuid>) -> pgrx::JsonB {
    crate::plumbing::standby::require_primary("threads_sync_account").or_raise();
    let account_id = required(account_id, "account_id");
    let call = super::source::OfAccount {
        account_id: account_id.to_string(),
        window: None,
    };
    pgrx::JsonB(crate::jobs::session::run_with(&super::source::SYNC_NOW, &call).or_raise())
}

/// The pg_cron entry point: queues a run of every active account for the background
/// workers and returns `{"job_id": …}` at once, or `{"skipped": true}` when a run is
/// already queued or running or the `scheduled_sync` lock is held.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn threads_scheduled_sync() -> pgrx::JsonB {
    crate::plumbing::standby::require_primary("threads_scheduled_sync").or_raise();
    let mut answer = super::source::enqueue_run().or_raise();
    crate::jobs::wake::warn_without_workers(&mut answer).or_raise();
    pgrx::JsonB(answer)
}

/// Queues a refresh of the primary tokens that expire within `within` and are at least
/// 24 hours old, for the background workers (or `run_jobs()`); returns `{"job_id": …}` at
/// once. The job's result (`job_status`) lists refreshed, expired, invalid and failed
/// accounts, never a token.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn threads_refresh_tokens(
    within: default!(Option<pgrx::datum::Interval>, "'7 days'"),
) -> pgrx::JsonB {
    crate::plumbing::standby::require_primary("threads_refresh_tokens").or_raise();
    let within = required(within, "within");
    let secs = within.as_micros() as f64 / 1e6;
    if secs <= 0.0 {
        PullsyncError::invalid(
            "within must be a positive interval",
            "Pass the window of expiry to refresh, e.g. '7 days'.",
        )
        .raise_now();
    }
    let mut answer = super::source::enqueue_refresh(secs).or_raise();
    crate::jobs::wake::warn_without_workers(&mut answer).or_raise();
    pgrx::JsonB(answer)
}

/// Compares an account's stored posts with the API's listing of posts published in
/// [start, end) and writes the missing ones with their metrics, in a background process of
/// its own (no transaction open while the listing is fetched).
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn threads_reconcile(
    account_id: Option<Uuid>,
    start: Option<TimestampWithTimeZone>,
    end: Option<TimestampWithTimeZone>,
) -> pgrx::JsonB {
    crate::plumbing::standby::require_primary("threads_reconcile").or_raise();
    let account_id = required(account_id, "account_id");
    let call = super::source::OfAccount {
        account_id: account_id.to_string(),
        window: Some(crate::reconcile::runs::window_arguments(start, end)),
    };
    pgrx::JsonB(crate::jobs::session::run_with(&super::source::RECONCILE, &call).or_raise())
}
