//! Reconciling a Threads account: the API's listing of posts published in a window
//! against the stored posts; missing posts are written with their metrics through the
//! normal account write (posts, L1/L2/L3).

use super::store::{self, LogContext};
use super::sync;
use crate::error::{PullsyncError, Result};
use crate::pg_time::to_pg;
use crate::plumbing::txn::Txn;
use crate::reconcile::runs::Outcome;
use crate::runtime::{self, Cancel};
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use pgrx::prelude::*;
use pgrx::Uuid;
use pullsync_core::http::Failure;
use pullsync_core::threads::api::MetricsAnswer;
use pullsync_core::threads::plan::content_hash;
use pullsync_core::threads::pull::{AccountPull, PulledPost, Reading};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use threads_model::{Post, EARLIEST_POSTS_SINCE};

/// Everything the API lists for the account in [start, end), and the metrics of the posts
/// the store lacks.
struct Listing {
    posts: Vec<Post>,
    metrics: Vec<(String, Reading<6>)>,
    first_failure: Option<Failure>,
    api_calls: u32,
    /// Listed posts that could not be read: they exist.
    unreadable: HashSet<String>,
}

fn list(
    token: &str,
    user_id: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    stored: &HashSet<String>,
    cancel: Cancel,
) -> Result<std::result::Result<Listing, Failure>> {
    let api = sync::threads_api()?;
    let session = api.session(token, super::settings::rate_limit());
    // The API's window is whole seconds, both ends included, and starts no earlier than
    // its first accepted `since`; the exact bounds are applied here.
    let since = start.timestamp().max(EARLIEST_POSTS_SINCE);
    let until = (end.timestamp() + 1).min(Utc::now().timestamp());
    runtime::block_on_until(
        async {
            let mut posts = Vec::new();
            let mut seen = HashSet::new();
            let mut after: Option<String> = None;
            if since <= until {
                loop {
                    let page = match session
                        .posts_page_within(user_id, Some((since, until)), after.as_deref())
                        .await
                    {
                        Ok(page) => page,
                        Err(f) => return Err(f),
                    };
                    let next = page.next_after().map(str::to_string);
                    for post in page.data {
                        let inside = post.timestamp.is_some_and(|t| t >= start && t < end);
                        if inside && post.media_type.is_some() && seen.insert(post.id.clone()) {
                            posts.push(post);
                        }
                    }
                    match next {
                        Some(cursor) => after = Some(cursor),
                        None => break,
                    }
                }
            }
            let missing: Vec<&str> = posts
                .iter()
                .filter(|p| !stored.contains(&p.id))
                .map(|p| p.id.as_str())
                .collect();
            let concurrency = session.api.http.settings().concurrency.max(1);
            let fetched: Vec<(String, std::result::Result<Option<MetricsAnswer>, Failure>)> =
                stream::iter(missing)
                    .map(|id| {
                        let session = &session;
                        async move { (id.to_string(), session.post_metrics(id).await) }
                    })
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
            let mut metrics = Vec::new();
            let mut first_failure = None;
            for (id, result) in fetched {
                match result {
                    Ok(Some(answer)) => metrics.push((
                        id,
                        Reading {
                            values: answer.values,
                            fetched_at: answer.fetched_at,
                        },
                    )),
                    Ok(None) => {}
                    Err(f) => {
                        first_failure.get_or_insert(f);
                    }
                }
            }
            Ok(Listing {
                posts,
                metrics,
                first_failure,
                api_calls: session.calls.load(Ordering::Relaxed),
                unreadable: session.unreadable_posts().into_iter().collect(),
            })
        },
        cancel,
    )
}

fn stored_posts(account_id: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Vec<String>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT threads_post_id FROM pullsync.workspace_threads_posts
              WHERE workspace_threads_account_id = $1 AND published_at >= $2 AND published_at < $3",
            None,
            &[account_id.into(), to_pg(start).into(), to_pg(end).into()],
        )?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            ids.extend(row.get::<String>(1)?);
        }
        Ok(ids)
    })
}

/// What reconciling an account needs of the store before it lists: the account's row
/// with its token opened, and the posts stored in the window.
struct Known {
    row: store::AccountRow,
    token: String,
    stored: Vec<String>,
}

fn known(account_id: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Known> {
    if !store::account_exists(account_id)? {
        return Err(PullsyncError::NotFound {
            message: format!("Threads account {account_id} does not exist"),
            hint: "Pass an id from pullsync.workspace_threads_accounts.".into(),
        });
    }
    let Some(row) = store::usable_account(account_id)? else {
        return Err(PullsyncError::invalid(
            format!("Threads account {account_id} has no usable token"),
            "Refresh its token or add a new one with pullsync.threads_add_account().",
        ));
    };
    let token = crate::secrets::open(&row.sealed_token, || {
        format!("token {} of account {account_id}", row.token_id)
    })?;
    let stored = stored_posts(account_id, start, end)?;
    Ok(Known { row, token, stored })
}

/// Reconciles one account over [start, end) and re-fetches the posts the store lacks:
/// what the store knows in one unit of work, the listing with none open, the repair and
/// the run's row in another.
pub fn reconcile(
    account_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    txn: Txn,
    cancel: Cancel,
) -> Result<serde_json::Value> {
    let started_at = Utc::now();
    let Known { row, token, stored } = txn.run(|| known(account_id, start, end))?;
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    let mut out = Outcome::begin("threads", account_id.to_string(), (start, end), true);
    out.started_at = started_at;
    out.target_counts = json!({ "posts": stored.len() });
    let listing = list(
        &token,
        &row.threads_user_id,
        (start, end),
        &stored_set,
        cancel,
    )?;
    txn.run(|| {
        match listing {
            Err(f) => out.error = Some(f.message),
            Ok(listing) => repair(
                account_id,
                listing,
                &stored,
                &stored_set,
                started_at,
                &mut out,
            )?,
        }
        out.record("threads", "threads_reconcile")
    })
}

/// Writes the listed posts the store lacks (with their metrics) and marks deleted the
/// stored ones Threads no longer lists; fills in the run's findings.
fn repair(
    account_id: Uuid,
    listing: Listing,
    stored: &[String],
    stored_set: &HashSet<String>,
    started_at: DateTime<Utc>,
    out: &mut Outcome,
) -> Result<()> {
    let api_calls = listing.api_calls;
    out.source_counts = json!({ "posts": listing.posts.len() });
    let listed: Vec<String> = listing.posts.iter().map(|p| p.id.clone()).collect();
    let (missing, extra) = pullsync_core::reconcile::narrow::diff(&listed, stored);
    let to_write: Vec<PulledPost> = listing
        .posts
        .into_iter()
        .filter(|p| !stored_set.contains(&p.id))
        .map(|post| PulledPost {
            content_hash: content_hash(&post),
            post,
        })
        .collect();
    // Stored posts Threads no longer lists in the window are gone from it; one it listed
    // but that could not be read is not.
    let gone: Vec<String> = extra
        .iter()
        .filter(|id| !listing.unreadable.contains(*id))
        .cloned()
        .collect();
    let marked_deleted = gone.len();
    if !to_write.is_empty() || !gone.is_empty() {
        let checked = listing.metrics.iter().map(|(id, _)| id.clone()).collect();
        let pull = AccountPull {
            posts: to_write,
            metrics: listing.metrics,
            metrics_checked: checked,
            deleted: gone,
            api_calls,
            ..AccountPull::default()
        };
        let log = LogContext {
            job_log_id: None,
            job_type: "threads_reconcile",
            started_at,
        };
        let heartbeat = super::settings::snapshot_heartbeat_secs();
        let counts = store::write_account(account_id, &pull, Utc::now(), heartbeat, &log)?;
        out.repaired = counts.posts_new;
    }
    out.still_missing = missing.len() as i64 - out.repaired;
    // Posts written without their metrics get them from the next sync.
    let metrics_error = listing.first_failure.map(|f| f.message);
    out.streams.insert(
        "posts".into(),
        json!({ "missing": missing, "extra": extra, "marked_deleted": marked_deleted, "repaired": out.repaired, "metrics_error": metrics_error }),
    );
    Ok(())
}
