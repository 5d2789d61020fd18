//! Reconciling a feed source: the provider's counts (`/stats`) against this database's,
//! narrowed by bisection, ids listed (`/ids`) where they differ, missing rows re-pulled
//! (`/items`) through the feed's upsert.

use super::provider::{load_source, Provider};
use super::serve::MAX_ITEM_IDS;
use super::store::upsert_items;
use super::streams;
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::pg_time::to_pg;
use crate::plumbing::txn::Txn;
use crate::reconcile::runs::Outcome;
use crate::runtime::Cancel;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pullsync_core::http::urlencode;
use pullsync_core::reconcile::narrow::{self, Window};
use serde::Deserialize;
use serde_json::{json, Value};

/// A differing window with at most this many rows is listed rather than halved (the
/// provider's id page size).
const LEAF_ROWS: i64 = 1000;
const MAX_PROBES: usize = 2000;

#[derive(Deserialize)]
struct Stats {
    conversations: i64,
    messages: i64,
}

#[derive(Deserialize)]
struct IdPage {
    ids: Vec<String>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Items {
    items: Vec<Value>,
    /// Set when the provider stopped early; a 0.1.0 provider never does.
    #[serde(default)]
    more: bool,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m).unwrap_or_default()
}

fn refused(what: &str, f: pullsync_core::http::Failure) -> PullsyncError {
    PullsyncError::Internal(format!("{what}: {}", f.message))
}

fn source_counts(p: &Provider, w: Window) -> Result<[i64; 2]> {
    let stats: Stats = p
        .get("/stats", &format!("start={}&end={}", w.start, w.end))?
        .map_err(|f| refused("counting on the provider", f))?;
    Ok([stats.conversations, stats.messages])
}

fn target_counts(consumer_id: &str, w: Window) -> Result<[i64; 2]> {
    let mut counts = [0; 2];
    for (i, stream) in streams::ALL.iter().enumerate() {
        let (table, column) = (stream.table, stream.counted_by);
        counts[i] = Spi::connect(|client| {
            client
                .select(
                    &format!("SELECT count(*) FROM {table} WHERE feed_source = $3 AND {column} >= $1 AND {column} < $2"),
                    Some(1),
                    &[to_pg(time(w.start)).into(), to_pg(time(w.end)).into(), consumer_id.into()],
                )?
                .first()
                .get_one::<i64>()
        })?
        .unwrap_or(0);
    }
    Ok(counts)
}

fn source_ids(p: &Provider, stream: &str, w: Window) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = format!("kind={stream}&start={}&end={}", w.start, w.end);
        if let Some(c) = &cursor {
            query.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let page: IdPage = p
            .get("/ids", &query)?
            .map_err(|f| refused("listing ids on the provider", f))?;
        ids.extend(page.ids);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(ids),
        }
    }
}

fn target_ids(consumer_id: &str, table: &str, column: &str, w: Window) -> Result<Vec<String>> {
    Spi::connect(|client| {
        let rows = client.select(
            &format!("SELECT id FROM {table} WHERE feed_source = $3 AND {column} >= $1 AND {column} < $2"),
            None,
            &[to_pg(time(w.start)).into(), to_pg(time(w.end)).into(), consumer_id.into()],
        )?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            ids.extend(row.get::<String>(1)?);
        }
        Ok(ids)
    })
}

/// Re-pulls `ids` of a stream and upserts them; returns how many rows came back.
fn repair(p: &Provider, stream: &str, ids: &[String], txn: Txn) -> Result<i64> {
    let mut wanted = ids.to_vec();
    // The provider answers in byte order of id and may stop early (its page byte budget):
    // what is left is asked for again.
    wanted.sort_unstable();
    wanted.dedup();
    let mut written = 0;
    let mut rest: &[String] = &wanted;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MAX_ITEM_IDS)];
        let list =
            serde_json::to_string(chunk).map_err(|e| PullsyncError::Internal(e.to_string()))?;
        let items: Items = p
            .get("/items", &format!("kind={stream}&ids={}", urlencode(&list)))?
            .map_err(|f| refused("fetching missing rows from the provider", f))?;
        written += txn.run(|| upsert_items(&p.source.consumer_id, stream, &items.items))? as i64;
        let last = items.items.last().and_then(|i| i["id"].as_str());
        // Past the last item returned, and at least one id further, so an answer out of
        // order cannot keep this asking forever.
        let done = match last {
            Some(last) if items.more => rest.partition_point(|id| id.as_str() <= last).max(1),
            _ => chunk.len(),
        };
        rest = &rest[done..];
    }
    Ok(written)
}

fn present(consumer_id: &str, table: &str, ids: &[String]) -> Result<i64> {
    Ok(Spi::connect(|client| {
        client
            .select(
                &format!("SELECT count(*) FROM {table} WHERE feed_source = $2 AND id = ANY($1)"),
                Some(1),
                &[ids.to_vec().into(), consumer_id.into()],
            )?
            .first()
            .get_one::<i64>()
    })?
    .unwrap_or(0))
}

fn counts_json(c: [i64; 2]) -> Value {
    json!({ "conversations": c[0], "messages": c[1] })
}

/// What one reconciliation found, filled in as far as it got.
fn compare(p: &Provider, out: &mut Outcome, window: Window, txn: Txn) -> Result<()> {
    let max_ids = config::reconcile_max_ids();
    let consumer = p.source.consumer_id.as_str();
    let narrowed = narrow::narrow(window, LEAF_ROWS, MAX_PROBES, |w| {
        Ok::<_, PullsyncError>((
            source_counts(p, w)?,
            txn.run(|| target_counts(consumer, w))?,
        ))
    })?;
    out.source_counts = counts_json(narrowed.whole.0);
    out.target_counts = counts_json(narrowed.whole.1);
    let mut listed = 0usize;
    for (i, def) in streams::ALL.iter().enumerate() {
        let (stream, table, column) = (def.name, def.table, def.counted_by);
        let mut missing = Vec::new();
        let mut extra = Vec::new();
        for w in &narrowed.leaves[i] {
            out.windows.push(json!({ "stream": stream, "start": time(w.start).to_rfc3339(), "end": time(w.end).to_rfc3339() }));
            let (m, e) = narrow::diff(
                &source_ids(p, stream, *w)?,
                &txn.run(|| target_ids(consumer, table, column, *w))?,
            );
            missing.extend(m);
            extra.extend(e);
        }
        let room = max_ids.saturating_sub(listed);
        if missing.len() + extra.len() > room {
            out.truncated = true;
            missing.truncate(room);
            extra.truncate(room - missing.len());
        }
        listed += missing.len() + extra.len();
        let mut repaired = 0;
        if out.repair && !missing.is_empty() {
            repaired = repair(p, stream, &missing, txn)?;
            out.repaired += repaired;
            out.still_missing +=
                missing.len() as i64 - txn.run(|| present(consumer, table, &missing))?;
        } else {
            out.still_missing += missing.len() as i64;
        }
        out.streams.insert(
            stream.to_string(),
            json!({ "missing": missing, "extra": extra, "repaired": repaired }),
        );
    }
    Ok(())
}

/// Reconciles one feed source over [start, end); records the run and its metrics.
/// Failures of the provider are a `failed` run, not an ERROR. Every read and write of this
/// database is a unit of work of its own (`txn`), none open while the provider answers.
pub fn reconcile(
    consumer_id: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    repair: bool,
    txn: Txn,
    cancel: Cancel,
) -> Result<Value> {
    let provider = Provider::new(txn.run(|| load_source(consumer_id))?, cancel)?;
    let mut out = Outcome::begin("feed", consumer_id.to_string(), (start, end), repair);
    let window = Window {
        start: micros(start),
        end: micros(end),
    };
    match compare(&provider, &mut out, window, txn) {
        Ok(()) => {}
        Err(PullsyncError::Interrupted) => return Err(PullsyncError::Interrupted),
        Err(e) => out.error = Some(e.to_string()),
    }
    txn.run(|| out.record(&super::provider::metrics_source(consumer_id), "reconcile"))
}

/// The active feed sources, for reconciling all of them.
pub fn active_sources() -> Result<Vec<String>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT consumer_id FROM pullsync.feed_sources WHERE is_active ORDER BY consumer_id",
            None,
            &[],
        )?;
        let mut ids = Vec::new();
        for row in rows {
            ids.extend(row.get::<String>(1)?);
        }
        Ok(ids)
    })
}
