//! Writing what a feed source served: rows upserted set-based under their source, items
//! no schema accepts to `pullsync.feed_quarantine` (and their retry), and each page's
//! checkpoint with its rows.

use super::provider::{load_source, FeedPage};
use super::streams;
use crate::error::{PullsyncError, Result};
use crate::jobs::quarantine::{store_or_quarantine, Attempt, Table, Written};
use crate::plumbing::txn::Txn;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use serde_json::Value;

/// Upserts rows of a stream pulled from `consumer_id` (their `feed_source`); an older
/// version never overwrites a newer one. Borrowed and sent as JSON text, so a page retried
/// item by item is never copied.
pub fn upsert_items(consumer_id: &str, stream: &str, items: &[Value]) -> Result<usize> {
    let n = items.len();
    if n > 0 {
        let sql = streams::named(stream)?.upsert;
        let json = serde_json::to_string(items)
            .map_err(|e| PullsyncError::Internal(format!("feed items as JSON: {e}")))?;
        Spi::run_with_args(sql, &[json.into(), consumer_id.into()])?;
    }
    Ok(n)
}

/// Brings the planner's statistics of a stream's table up to date. A first pull writes
/// pages faster than autovacuum looks at the table (a minute apart at best); without this
/// it planned its lookups for an empty table and read every stored row once per page.
pub fn refresh_statistics(table: &str) -> Result<()> {
    Spi::run(&format!("ANALYZE {table}"))?;
    Ok(())
}

/// Where a feed source's items no schema accepts are kept.
const QUARANTINE: Table = Table {
    name: "pullsync.feed_quarantine",
    source: "consumer_id",
    item: "item",
    context: &["stream", "item_id", "page_cursor"],
};

/// Upserts `items` in a subtransaction: an error is the items' fault.
fn attempt(consumer_id: &str, stream: &str, items: &[Value]) -> Attempt {
    Ok(Txn::Subtransaction
        .run(|| upsert_items(consumer_id, stream, items))
        .map(drop))
}

/// Upserts items set-based; when that fails, item by item, and an item that still fails
/// goes to `pullsync.feed_quarantine` with the reason.
pub fn upsert_or_quarantine(
    consumer_id: &str,
    stream: &str,
    items: Vec<Value>,
    page_cursor: Option<&str>,
) -> Result<Written> {
    store_or_quarantine(
        items.len(),
        || attempt(consumer_id, stream, &items),
        &items,
        |item| attempt(consumer_id, stream, std::slice::from_ref(*item)),
        |item, reason| {
            let item_id = item.get("id").map(|id| match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let context = [Some(stream), item_id.as_deref(), page_cursor];
            QUARANTINE.put(consumer_id, (*item).clone(), reason, &context)
        },
    )
}

/// Upserts a page's rows (bad ones to quarantine) and records its checkpoint with the
/// updated_after filter to resume it with, in the caller's transaction.
pub fn write_page(
    consumer_id: &str,
    stream: &str,
    mode: &str,
    page: FeedPage,
    resume_filter: Option<DateTime<Utc>>,
) -> Result<Written> {
    let written = upsert_or_quarantine(
        consumer_id,
        stream,
        page.items,
        Some(page.checkpoint.as_str()),
    )?;
    Spi::run_with_args(
        "INSERT INTO pullsync.sync_checkpoints (consumer_id, stream, mode, cursor, items, window_start)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            consumer_id.into(),
            stream.into(),
            mode.into(),
            page.checkpoint.into(),
            (written.stored as i32).into(),
            resume_filter.map(crate::pg_time::to_pg).into(),
        ],
    )?;
    Ok(written)
}

/// `feed_retry_quarantined`: re-applies a source's quarantined items, oldest first; those
/// that now store are resolved, the others keep their (new) reason.
pub fn retry_quarantined(consumer_id: &str) -> Result<Value> {
    load_source(consumer_id)?;
    QUARANTINE.retry(consumer_id, ("consumer_id", consumer_id), |held| {
        let stream = held.context[0].as_deref().unwrap_or_default();
        attempt(consumer_id, stream, std::slice::from_ref(&held.item))
    })
}
