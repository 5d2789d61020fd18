//! SQL functions of the conversation feed (thin glue).

use super::serve;
use crate::error::PullsyncError;
use crate::pg_error::{required, OrRaise};
use crate::pg_time::to_chrono;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::JsonB;
use pullsync_core::feed::validate;

fn time(value: Option<TimestampWithTimeZone>, name: &'static str) -> chrono::DateTime<chrono::Utc> {
    to_chrono(required(value, name))
        .ok_or_else(|| {
            PullsyncError::invalid(format!("{name} must be finite"), "Pass a real timestamp.")
        })
        .or_raise()
}

/// Optional lower bound; -infinity or null means no bound.
fn bound(value: Option<TimestampWithTimeZone>) -> Option<chrono::DateTime<chrono::Utc>> {
    value.and_then(to_chrono)
}

/// A page of `stream` for the SQL functions below.
fn page(
    consumer_id: &str,
    stream: serve::Stream,
    cursor: Option<String>,
    lim: Option<i32>,
) -> JsonB {
    JsonB(serve::page(consumer_id, stream, cursor.as_deref(), required(lim, "lim")).or_raise())
}

/// One page of conversations for a consumer, in commit-safe order:
/// `{"items": [...], "next_cursor": …, "checkpoint": …}`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_conversations(
    consumer_id: Option<String>,
    updated_after: Option<TimestampWithTimeZone>,
    cursor: default!(Option<String>, "NULL"),
    lim: default!(Option<i32>, 500),
    user_id: default!(Option<String>, "NULL"),
) -> JsonB {
    let consumer_id = required(consumer_id, "consumer_id");
    let stream = serve::Stream::Conversations {
        updated_after: bound(updated_after),
        user_id: user_id.as_deref(),
    };
    page(&consumer_id, stream, cursor, lim)
}

/// One page of one conversation's messages.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_messages(
    consumer_id: Option<String>,
    conversation_id: Option<String>,
    cursor: default!(Option<String>, "NULL"),
    lim: default!(Option<i32>, 500),
) -> JsonB {
    let consumer_id = required(consumer_id, "consumer_id");
    let conversation_id = required(conversation_id, "conversation_id");
    let stream = serve::Stream::ConversationMessages {
        conversation_id: &conversation_id,
    };
    page(&consumer_id, stream, cursor, lim)
}

/// One page of all messages.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_all_messages(
    consumer_id: Option<String>,
    updated_after: Option<TimestampWithTimeZone>,
    cursor: default!(Option<String>, "NULL"),
    lim: default!(Option<i32>, 500),
) -> JsonB {
    let consumer_id = required(consumer_id, "consumer_id");
    let stream = serve::Stream::AllMessages {
        updated_after: bound(updated_after),
    };
    page(&consumer_id, stream, cursor, lim)
}

/// Counts in [start, end) for reconciliation.
#[pg_extern(schema = "pullsync", security_definer, stable, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_stats(start: Option<TimestampWithTimeZone>, end: Option<TimestampWithTimeZone>) -> JsonB {
    JsonB(serve::stats(time(start, "start"), time(end, "end")).or_raise())
}

/// Ids in [start, end), 1000 per page, for finding missing records.
#[pg_extern(schema = "pullsync", security_definer, stable, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_ids(
    kind: Option<String>,
    start: Option<TimestampWithTimeZone>,
    end: Option<TimestampWithTimeZone>,
    cursor: default!(Option<String>, "NULL"),
) -> JsonB {
    let kind = required(kind, "kind");
    JsonB(
        serve::ids(
            &kind,
            time(start, "start"),
            time(end, "end"),
            cursor.as_deref(),
        )
        .or_raise(),
    )
}

/// The rows with these ids (at most 500), for repairing a consumer.
#[pg_extern(schema = "pullsync", security_definer, stable, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_items(
    consumer_id: Option<String>,
    kind: Option<String>,
    ids: Option<Vec<Option<String>>>,
) -> JsonB {
    let ids: Vec<String> = required(ids, "ids")
        .into_iter()
        .map(|id| {
            id.ok_or(PullsyncError::NullArgument {
                name: "ids element",
            })
        })
        .collect::<Result<_, _>>()
        .or_raise();
    JsonB(
        serve::items(
            &required(consumer_id, "consumer_id"),
            &required(kind, "kind"),
            &ids,
        )
        .or_raise(),
    )
}

/// Lets a consumer pull this database's feed with `api_key` (sealed at once).
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_add_consumer(
    consumer_id: Option<String>,
    api_key: Option<String>,
    rate_limit_per_minute: default!(Option<i32>, 600),
) {
    crate::plumbing::standby::require_primary("feed_add_consumer").or_raise();
    serve::add_consumer(
        &required(consumer_id, "consumer_id"),
        &required(api_key, "api_key"),
        required(rate_limit_per_minute, "rate_limit_per_minute"),
    )
    .or_raise()
}

/// Defines a provider to pull from (the seed's SyncConfig).
#[allow(clippy::too_many_arguments)]
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_add_source(
    consumer_id: Option<String>,
    base_url: Option<String>,
    api_key: Option<String>,
    batch_size: default!(Option<i32>, 500),
    rate_limit: default!(Option<i32>, 5),
    timeout: default!(Option<Interval>, "'30 s'"),
    max_retries: default!(Option<i32>, 3),
    retry_delay: default!(Option<Interval>, "'5 s'"),
) {
    crate::plumbing::standby::require_primary("feed_add_source").or_raise();
    super::provider::add_source(
        &required(consumer_id, "consumer_id"),
        &required(base_url, "base_url"),
        &required(api_key, "api_key"),
        required(batch_size, "batch_size"),
        required(rate_limit, "rate_limit"),
        required(timeout, "timeout"),
        required(max_retries, "max_retries"),
        required(retry_delay, "retry_delay"),
    )
    .or_raise()
}

/// Pulls a source now and waits for the pull: it runs in a background process of its own,
/// every page committed with its checkpoint as it comes (other sessions see it; a cancel
/// keeps what was committed and the next pull resumes there). `max_pages` stops early
/// (the next incremental pull resumes from the last checkpoint).
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_pull(
    consumer_id: Option<String>,
    mode: default!(Option<String>, "'incremental'"),
    max_pages: default!(Option<i32>, "NULL"),
) -> JsonB {
    crate::plumbing::standby::require_primary("feed_pull").or_raise();
    let consumer_id = required(consumer_id, "consumer_id");
    let mode = required(mode, "mode");
    let max_pages = match max_pages {
        Some(m) if m < 1 => PullsyncError::invalid(
            "max_pages must be at least 1",
            "Pass a positive number or null.",
        )
        .raise_now(),
        m => m.map(|m| m as u32),
    };
    validate::mode(&mode).or_raise();
    let call = super::source::PullArguments {
        consumer_id,
        mode,
        max_pages,
    };
    JsonB(crate::jobs::session::run_with(&super::source::PULL_NOW, &call).or_raise())
}

/// Queues a pull for the background workers; returns `{"job_id": …}`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_enqueue(
    consumer_id: Option<String>,
    mode: default!(Option<String>, "'incremental'"),
) -> JsonB {
    crate::plumbing::standby::require_primary("feed_enqueue").or_raise();
    let consumer_id = required(consumer_id, "consumer_id");
    let mode = required(mode, "mode");
    validate::mode(&mode).or_raise();
    super::provider::load_source(&consumer_id).or_raise();
    JsonB(super::source::enqueue(&consumer_id, &mode).or_raise())
}

/// Queues a pull of every active source (pg_cron calls this); returns
/// `{"queued": [{"consumer_id", "job_id" | "skipped"}…]}`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_scheduled_sync(mode: default!(Option<String>, "'incremental'")) -> JsonB {
    crate::plumbing::standby::require_primary("feed_scheduled_sync").or_raise();
    let mode = required(mode, "mode");
    validate::mode(&mode).or_raise();
    let queued: Vec<serde_json::Value> = super::reconcile::active_sources()
        .or_raise()
        .into_iter()
        .map(|consumer_id| {
            let mut job = super::source::enqueue(&consumer_id, &mode).or_raise();
            job["consumer_id"] = serde_json::json!(consumer_id);
            job
        })
        .collect();
    JsonB(serde_json::json!({ "mode": mode, "queued": queued }))
}

/// Re-applies the source's quarantined feed items (after the cause is fixed: a schema
/// change, a provider's correction); returns `{retried, stored, still_quarantined}`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_retry_quarantined(consumer_id: Option<String>) -> JsonB {
    crate::plumbing::standby::require_primary("feed_retry_quarantined").or_raise();
    let consumer_id = required(consumer_id, "consumer_id");
    JsonB(super::store::retry_quarantined(&consumer_id).or_raise())
}

/// Starts a new feed epoch: every cursor handed out before is refused (55000, HTTP 409)
/// and its consumer re-reads recent changes and reconciles. For after a file-level
/// restore of the cluster; dumps, point-in-time recovery and promotion are noticed alone.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn feed_new_epoch(reason: default!(Option<String>, "NULL")) -> i64 {
    crate::plumbing::standby::require_primary("feed_new_epoch").or_raise();
    Spi::get_one_with_args::<i64>(
        "UPDATE pullsync.feed_epoch SET epoch = epoch + 1, changed_at = now(), reason = $1 RETURNING epoch",
        &[reason.into()],
    )
    .map_err(PullsyncError::from)
    .and_then(|epoch| epoch.ok_or_else(|| PullsyncError::Internal("pullsync.feed_epoch has no row".into())))
    .or_raise()
}

/// Compares a feed source's counts with this database's over [start, end), lists the
/// missing and extra ids where they differ and, with `repair`, re-pulls the missing rows.
/// `consumer_id` null: every active feed source. Returns `{"status", "runs": […]}`. Runs in
/// a background process of its own, as `feed_pull`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sync_reconcile(
    start: Option<TimestampWithTimeZone>,
    end: Option<TimestampWithTimeZone>,
    consumer_id: default!(Option<String>, "NULL"),
    repair: default!(Option<bool>, false),
) -> JsonB {
    crate::plumbing::standby::require_primary("sync_reconcile").or_raise();
    let (start, end) = crate::reconcile::runs::window_arguments(start, end);
    let repair = required(repair, "repair");
    let consumers = match consumer_id {
        Some(id) => vec![id],
        None => {
            let all = super::reconcile::active_sources().or_raise();
            if all.is_empty() {
                PullsyncError::NotFound {
                    message: "there is no active feed source to reconcile".into(),
                    hint: "Add one with pullsync.feed_add_source(consumer_id, base_url, api_key)."
                        .into(),
                }
                .raise_now()
            }
            all
        }
    };
    let call = super::source::ReconcileArguments {
        consumer_ids: consumers,
        window: (start, end),
        repair,
    };
    JsonB(crate::jobs::session::run_with(&super::source::RECONCILE, &call).or_raise())
}
