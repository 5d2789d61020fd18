//! The consumer end of the feed: pulls pages from a provider over the shared HTTP layer and
//! writes each page's rows together with its cursor checkpoint, so a crash resumes from
//! the last committed page. Pages are written as they arrive; nothing accumulates.

use super::provider::{load_source, FeedPage, Provider};
use super::store::{refresh_statistics, write_page};
use super::streams::{self, Stream};
use crate::error::Result;
use crate::jobs::kind::Outcome;
use crate::monitor::sync_log::{finish_paged_run, RunLog};
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Background, Cancel};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use pgrx::prelude::*;
use pullsync_core::feed::statistics::StatisticsRefresh;
use pullsync_core::http::{Failure, FailureClass};
use pullsync_core::outcome::Status;
use serde_json::{json, Value};
use std::time::Duration;

/// A full pull reaches this far back.
const FULL_WINDOW_DAYS: i64 = 90;
/// After the provider moved, changes are read again from this long before the newest
/// `updated_at` held: longer than any provider transaction and any clock skew.
const RESTART_OVERLAP_HOURS: i64 = 24;

/// Where an incremental pull resumes: the newest checkpoint of an incremental pull, with
/// the updated_after filter its page was read with (set while re-reading after the
/// provider moved). A full pull's positions belong to its own window and are not resumed.
fn latest_checkpoint(
    consumer_id: &str,
    stream: &str,
) -> Result<(Option<String>, Option<DateTime<Utc>>)> {
    let row = Spi::connect(|client| {
        let rows = client.select(
            "SELECT cursor, window_start FROM pullsync.sync_checkpoints WHERE consumer_id = $1 AND stream = $2
                AND mode IN ('incremental', 'catch_up')
              ORDER BY id DESC LIMIT 1",
            Some(1),
            &[consumer_id.into(), stream.into()],
        )?;
        if rows.is_empty() {
            return Ok((None, None));
        }
        rows.first()
            .get_two::<String, pgrx::datum::TimestampWithTimeZone>()
    })?;
    Ok((row.0, row.1.and_then(crate::pg_time::to_chrono)))
}

/// Where a stream is read again from after the provider moved: the newest `updated_at`
/// held from this source, less the overlap; None (from the start) when none is held.
fn restart_point(consumer_id: &str, stream: &Stream) -> Result<Option<DateTime<Utc>>> {
    let table = stream.table;
    let newest = Spi::connect(|client| {
        client
            .select(
                &format!("SELECT max(updated_at) FROM {table} WHERE feed_source = $1"),
                Some(1),
                &[consumer_id.into()],
            )?
            .first()
            .get_one::<pgrx::datum::TimestampWithTimeZone>()
    })?;
    Ok(newest
        .and_then(crate::pg_time::to_chrono)
        .map(|t| t - ChronoDuration::hours(RESTART_OVERLAP_HOURS)))
}

fn page_query(
    batch_size: i32,
    cursor: Option<&str>,
    updated_after: Option<DateTime<Utc>>,
) -> String {
    let mut query = format!("limit={batch_size}");
    if let Some(c) = cursor {
        query.push_str("&cursor=");
        query.push_str(&pullsync_core::http::urlencode(c));
    }
    if let Some(t) = updated_after {
        query.push_str(&format!("&updated_after={}", t.timestamp_micros()));
    }
    query
}

/// Pulls every stream of a source to its end (or for at most `max_pages` pages): each page
/// in its own unit of work.
pub fn pull(
    consumer_id: &str,
    mode: &str,
    max_pages: Option<u32>,
    txn: Txn,
    cancel: Cancel,
) -> Result<Outcome> {
    pullsync_core::feed::validate::mode(mode)?;
    let started = Utc::now();
    let provider = Provider::new(txn.run(|| load_source(consumer_id))?, cancel)?;
    let batch_size = provider.source.batch_size;
    let mut totals = serde_json::Map::new();
    let mut pages = 0u32;
    let mut quarantined = 0usize;
    let mut error: Option<String> = None;
    let mut notes: Vec<String> = Vec::new();
    // Set when the provider refused a cursor as another identity's: from where changes
    // were read again (None: from the start); reconciled once the streams are through.
    let mut moved_since: Option<Option<DateTime<Utc>>> = None;

    'streams: for def in streams::ALL {
        let (stream, path) = (def.name, def.path);
        // A full pull starts over within its window; otherwise resume from the checkpoint
        // (or, the first time, from the beginning).
        let (mut cursor, mut updated_after) = match mode {
            "full" => (None, Some(started - ChronoDuration::days(FULL_WINDOW_DAYS))),
            _ => txn.run(|| latest_checkpoint(consumer_id, stream))?,
        };
        let mut restarted = false;
        let mut throttled = 0;
        let mut count = 0usize;
        let mut statistics = StatisticsRefresh::default();
        // The next page's request, started before this page is written.
        let mut next_page: Option<(String, Background<std::result::Result<FeedPage, Failure>>)> =
            None;
        loop {
            if max_pages.is_some_and(|m| pages >= m) {
                break 'streams;
            }
            let query = page_query(batch_size, cursor.as_deref(), updated_after);
            let fetched = match next_page.take() {
                Some((started, request)) if started == query => request.wait(cancel)?,
                _ => provider.get::<FeedPage>(path, &query)?,
            };
            let page = match fetched {
                Ok(page) => page,
                Err(f) if f.class == FailureClass::Stale && !restarted => {
                    // The provider was restored, recovered or promoted: positions after
                    // ours may hold rows we never saw. Read every change since shortly
                    // before the newest one held again (upserts make that harmless).
                    restarted = true;
                    cursor = None;
                    // A full pull keeps its own window.
                    if mode != "full" {
                        updated_after = txn.run(|| restart_point(consumer_id, def))?;
                    }
                    moved_since = Some(match (moved_since.flatten(), updated_after) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    });
                    continue;
                }
                Err(f) if f.class == FailureClass::BadPosition && !restarted => {
                    // An expired or foreign checkpoint: start this stream over.
                    // Unfiltered, so its checkpoints can be resumed from: everything again,
                    // upserts make that harmless.
                    restarted = true;
                    cursor = None;
                    updated_after = None;
                    continue;
                }
                Err(Failure {
                    class: FailureClass::Throttled,
                    retry_after,
                    ..
                }) if throttled < 3 => {
                    throttled += 1;
                    // Honour Retry-After (capped).
                    let wait = retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(30));
                    runtime::sleep(wait, cancel)?;
                    continue;
                }
                Err(f) => {
                    error = Some(f.message);
                    break 'streams;
                }
            };
            let next = page.next_cursor.clone();
            // The provider serves the next page while this process writes this one. If the
            // write fails, the request is dropped (aborted) and the page fetched again later.
            if let Some(next) = &next {
                if max_pages.is_none_or(|m| pages + 1 < m) {
                    let query = page_query(batch_size, Some(next), updated_after);
                    next_page = Some((query.clone(), provider.start(path, &query)));
                }
            }
            // A filtered read resumes with its filter until its end, whose checkpoint the
            // provider hands out in the unfiltered order.
            let resume_filter = if next.is_some() || mode == "full" {
                updated_after
            } else {
                None
            };
            match txn.run(|| write_page(consumer_id, stream, mode, page, resume_filter)) {
                Ok(written) => {
                    count += written.stored;
                    quarantined += written.quarantined;
                    if statistics.due(count) {
                        txn.run(|| refresh_statistics(def.table))?;
                    }
                }
                // Logged with the run below; the page is fetched again on the next pull.
                Err(e) => {
                    error = Some(format!("writing a page of {stream} failed: {e}"));
                    break 'streams;
                }
            }
            totals.insert(stream.to_string(), json!(count));
            pages += 1;
            match next {
                // Later pages continue from the cursor, with the same filter.
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        totals.insert(stream.to_string(), json!(count));
    }
    let items: i64 = totals.values().filter_map(Value::as_i64).sum();
    let status = match (&error, items) {
        (None, _) => Status::Completed,
        (Some(_), 0) => Status::Failed,
        (Some(_), _) => Status::Partial,
    };
    // Rows the moved provider holds but did not serve again (changed before the overlap)
    // were created before it too: reconciliation over the widest window it allows finds
    // them, and those the provider lost, and repairs what is missing.
    let reconciliation = match moved_since {
        Some(_) if error.is_none() => {
            let now = Utc::now();
            let widest = ChronoDuration::seconds(crate::config::reconcile_max_window_secs());
            Some(super::reconcile::reconcile(
                consumer_id,
                (now - widest, now),
                true,
                txn,
                cancel,
            )?)
        }
        _ => None,
    };
    if moved_since.is_some() {
        notes.push(match &reconciliation {
            Some(_) => "the provider's identity changed (restored, recovered or promoted): recent changes read again, then reconciled".into(),
            None => "the provider's identity changed (restored, recovered or promoted): recent changes read again; not reconciled, as the pull did not complete: run pullsync.sync_reconcile".into(),
        });
    }
    let api_calls = provider.calls();
    let job_type = format!("feed_{mode}");
    txn.run(|| {
        finish_paged_run(
            &RunLog {
                source: "feed",
                job_type: &job_type,
                subject: consumer_id,
                status,
                items,
                calls: api_calls,
                error: error.as_deref(),
                notes: &notes,
                started,
            },
            &super::provider::metrics_source(consumer_id),
            pages,
        )
    })?;
    let result = json!({
        "consumer_id": consumer_id,
        "mode": mode,
        "status": status.as_str(),
        "pages": pages,
        "items": totals,
        "quarantined": quarantined,
        "api_calls": api_calls,
        "error": error,
        "provider_moved": moved_since.is_some(),
        "reconciliation": reconciliation,
    });
    Ok(Outcome {
        status,
        api_calls: i64::from(api_calls),
        items,
        error,
        result,
    })
}
