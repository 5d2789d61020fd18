//! Writing what a feed source served: rows upserted set-based under their source, items
//! no schema accepts to `pullsync.feed_quarantine` (and their retry), and each page's
//! checkpoint with its rows.

use super::provider::{load_source, FeedPage};
use super::streams;
use crate::error::{PullsyncError, Result};
use crate::plumbing::txn::Txn;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

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

/// What became of a page's items.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub stored: usize,
    pub quarantined: usize,
}

/// Upserts items set-based; when that fails, item by item, each in a subtransaction, and
/// an item that still fails goes to `pullsync.feed_quarantine` with the reason. So one bad
/// item costs only itself.
pub fn upsert_or_quarantine(
    consumer_id: &str,
    stream: &str,
    items: Vec<Value>,
    page_cursor: Option<&str>,
) -> Result<Written> {
    let all = items.len();
    if Txn::Subtransaction
        .run(|| upsert_items(consumer_id, stream, &items))
        .is_ok()
    {
        return Ok(Written {
            stored: all,
            quarantined: 0,
        });
    }
    let mut written = Written::default();
    for item in &items {
        match Txn::Subtransaction
            .run(|| upsert_items(consumer_id, stream, std::slice::from_ref(item)))
        {
            Ok(_) => written.stored += 1,
            Err(e) => {
                quarantine(consumer_id, stream, item, &e.to_string(), page_cursor)?;
                written.quarantined += 1;
            }
        }
    }
    Ok(written)
}

fn quarantine(
    consumer_id: &str,
    stream: &str,
    item: &Value,
    reason: &str,
    page_cursor: Option<&str>,
) -> Result<()> {
    let item_id = item.get("id").map(|id| match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    Spi::run_with_args(
        "INSERT INTO pullsync.feed_quarantine (consumer_id, stream, item_id, reason, item, page_cursor)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            consumer_id.into(),
            stream.into(),
            item_id.into(),
            reason.into(),
            JsonB(item.clone()).into(),
            page_cursor.into(),
        ],
    )?;
    Ok(())
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
    let open: Vec<(i64, String, Value)> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT id, stream, item FROM pullsync.feed_quarantine
              WHERE consumer_id = $1 AND resolved_at IS NULL ORDER BY id",
            None,
            &[consumer_id.into()],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push((
                row.get(1)?.unwrap_or_default(),
                row.get(2)?.unwrap_or_default(),
                row.get::<JsonB>(3)?.map(|j| j.0).unwrap_or(Value::Null),
            ));
        }
        Ok::<_, PullsyncError>(out)
    })?;
    let mut stored: Vec<i64> = Vec::new();
    let (mut still, mut reasons): (Vec<i64>, Vec<String>) = (Vec::new(), Vec::new());
    for (id, stream, item) in &open {
        match Txn::Subtransaction
            .run(|| upsert_items(consumer_id, stream, std::slice::from_ref(item)))
        {
            Ok(_) => stored.push(*id),
            Err(e) => {
                still.push(*id);
                reasons.push(e.to_string());
            }
        }
    }
    Spi::run_with_args(
        "UPDATE pullsync.feed_quarantine SET resolved_at = now(), retried_at = now() WHERE id = ANY($1)",
        &[stored.clone().into()],
    )?;
    Spi::run_with_args(
        "UPDATE pullsync.feed_quarantine q SET reason = r.reason, retried_at = now()
           FROM unnest($1::bigint[], $2::text[]) AS r(id, reason) WHERE q.id = r.id",
        &[still.clone().into(), reasons.into()],
    )?;
    crate::monitor::record::check_alerts()?;
    Ok(json!({
        "consumer_id": consumer_id,
        "retried": open.len(),
        "stored": stored.len(),
        "still_quarantined": still.len(),
    }))
}
