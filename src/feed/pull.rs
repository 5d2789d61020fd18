//! The consumer end of the feed: pulls pages from a provider over the shared HTTP layer and
//! writes each page's rows together with its cursor checkpoint, so a crash resumes from
//! the last committed page. Pages are written as they arrive; nothing accumulates.

use super::streams::{self, Stream};
use crate::error::{PullsyncError, Result};
use crate::jobs::source::Outcome;
use crate::monitor::record::{self, Run};
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Background, Cancel};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use pgrx::prelude::*;
use pgrx::JsonB;
use pullsync_core::http::{
    Failure, FailureClass, HttpClient, HttpSettings, RateLimiter, RetryPolicy,
};
use pullsync_core::outcome::Status;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A configured source (the seed's SyncConfig), its key opened.
pub struct Source {
    pub consumer_id: String,
    pub base_url: String,
    api_key: String,
    pub batch_size: i32,
    pub rate_limit: i32,
    pub timeout: Duration,
    pub max_retries: i32,
    pub retry_delay: Duration,
}

/// What a provider page carries.
#[derive(Debug, Deserialize)]
pub struct FeedPage {
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
    pub checkpoint: String,
}

/// A full pull reaches this far back.
const FULL_WINDOW_DAYS: i64 = 90;
/// After the provider moved, changes are read again from this long before the newest
/// `updated_at` held: longer than any provider transaction and any clock skew.
const RESTART_OVERLAP_HOURS: i64 = 24;

pub fn load_source(consumer_id: &str) -> Result<Source> {
    let row = Spi::connect(|client| {
        let rows = client.select(
            "SELECT base_url, api_key_encrypted, batch_size, rate_limit,
                    (extract(epoch FROM timeout) * 1000)::bigint, max_retries,
                    (extract(epoch FROM retry_delay) * 1000)::bigint
               FROM pullsync.feed_sources WHERE consumer_id = $1",
            Some(1),
            &[consumer_id.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, PullsyncError>(None);
        }
        let r = rows.first();
        Ok(Some((
            r.get::<String>(1)?.unwrap_or_default(),
            r.get::<String>(2)?.unwrap_or_default(),
            r.get::<i32>(3)?.unwrap_or(500),
            r.get::<i32>(4)?.unwrap_or(5),
            r.get::<i64>(5)?.unwrap_or(30_000),
            r.get::<i32>(6)?.unwrap_or(3),
            r.get::<i64>(7)?.unwrap_or(5_000),
        )))
    })?;
    let Some((base_url, sealed, batch_size, rate_limit, timeout_ms, max_retries, retry_ms)) = row
    else {
        return Err(PullsyncError::NotFound {
            message: format!("feed source {consumer_id} does not exist"),
            hint: "Add it with pullsync.feed_add_source(consumer_id, base_url, api_key).".into(),
        });
    };
    let api_key =
        crate::secrets::open(&sealed, || format!("API key of feed source {consumer_id}"))?;
    Ok(Source {
        consumer_id: consumer_id.to_string(),
        base_url,
        api_key,
        batch_size,
        rate_limit,
        timeout: Duration::from_millis(timeout_ms.max(1) as u64),
        max_retries,
        retry_delay: Duration::from_millis(retry_ms.max(0) as u64),
    })
}

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

/// The provider's JSON errors → the HTTP layer's classes.
fn classify_feed(status: u16, body: &[u8]) -> (FailureClass, String) {
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .map(|v| v["error"].clone())
        .unwrap_or(Value::Null);
    let message = error["message"]
        .as_str()
        .unwrap_or("no error message")
        .to_string();
    let class = match (status, error["code"].as_str()) {
        (401 | 403, _) => FailureClass::Auth,
        (409, Some("cursor_from_other_provider")) => FailureClass::Stale,
        (400, Some("invalid_cursor")) => FailureClass::BadPosition,
        (429, _) => FailureClass::Throttled,
        (500..=599, _) => FailureClass::Transient,
        _ => FailureClass::Refused,
    };
    (class, message)
}

/// A source's provider over the shared HTTP layer: its timeouts, retries and rate.
/// Requests run on the background runtime, so one can be under way while this process
/// writes.
pub struct Provider {
    pub source: Source,
    http: Arc<HttpClient>,
    limiter: Arc<RateLimiter>,
    calls: Arc<AtomicU32>,
    cancel: Cancel,
}

impl Provider {
    pub fn new(source: Source, cancel: Cancel) -> Result<Self> {
        let http = crate::config::http_client(HttpSettings {
            timeout: source.timeout,
            retry: RetryPolicy {
                max_retries: source.max_retries.max(0) as u32,
                base_delay: source.retry_delay,
                max_delay: source.retry_delay.max(Duration::from_secs(1)) * 8,
            },
            concurrency: 1,
            ca_file: crate::config::http_ca_file(),
            max_response_bytes: crate::config::http_max_response_bytes(),
        })?;
        let limiter = RateLimiter::new(f64::from(source.rate_limit), 1);
        Ok(Provider {
            source,
            http: Arc::new(http),
            limiter: Arc::new(limiter),
            calls: Arc::new(AtomicU32::new(0)),
            cancel,
        })
    }

    /// GET `path` with `query` (already encoded, without consumer_id). The outer error is
    /// an interrupt; the inner one the request's failure.
    pub fn get<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: &str,
    ) -> Result<std::result::Result<T, Failure>> {
        self.start(path, query).wait(self.cancel)
    }

    /// Starts the GET of `get` and returns at once; `wait` on the result.
    pub fn start<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: &str,
    ) -> Background<std::result::Result<T, Failure>> {
        let url = format!(
            "{}{path}?consumer_id={}{}{query}",
            self.source.base_url,
            self.source.consumer_id,
            if query.is_empty() { "" } else { "&" }
        );
        let key = self.source.api_key.clone();
        let (http, limiter, calls) = (self.http.clone(), self.limiter.clone(), self.calls.clone());
        runtime::spawn(async move {
            http.get_json::<T>(&url, Some(&key), Some(&limiter), classify_feed, &calls)
                .await
        })
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }
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

/// What a pull did, for its row in sync_logs.
struct RunLog<'a> {
    consumer_id: &'a str,
    mode: &'a str,
    status: Status,
    items: i64,
    calls: u32,
    error: Option<&'a str>,
    notes: &'a [String],
    started: DateTime<Utc>,
}

fn log_run(run: &RunLog) -> Result<()> {
    Spi::run_with_args(
        "INSERT INTO pullsync.sync_logs (job_type, source, consumer_id, status, steps_completed, items_new, api_calls, error, notes, started_at)
         VALUES ($1, 'feed', $2, $3, '{}', $4, $5, $6, $7, $8)",
        &[
            format!("feed_{}", run.mode).into(),
            run.consumer_id.into(),
            run.status.as_str().into(),
            (run.items.min(i64::from(i32::MAX)) as i32).into(),
            (run.calls as i32).into(),
            run.error.into(),
            run.notes.to_vec().into(),
            crate::pg_time::to_pg(run.started).into(),
        ],
    )?;
    Ok(())
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
                    // Honour Retry-After (capped); the timer is created inside the runtime.
                    let wait = retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(30));
                    runtime::block_on_until(async move { tokio::time::sleep(wait).await }, cancel)?;
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
            Some(txn.run(|| {
                super::reconcile::reconcile(consumer_id, now - widest, now, true, cancel)
            })?)
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
    txn.run(|| {
        log_run(&RunLog {
            consumer_id,
            mode,
            status,
            items,
            calls: api_calls,
            error: error.as_deref(),
            notes: &notes,
            started,
        })?;
        let failed = i64::from(error.is_some());
        record::record(&Run {
            source: &record::feed_source(consumer_id),
            job_type: &format!("feed_{mode}"),
            job_log_id: None,
            status,
            items,
            attempts: i64::from(pages) + failed,
            errors: failed,
            duration_ms: (Utc::now() - started).num_milliseconds(),
            pulls_data: true,
        })
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

/// Creates or updates a source to pull from.
#[allow(clippy::too_many_arguments)]
pub fn add_source(
    consumer_id: &str,
    base_url: &str,
    api_key: &str,
    batch_size: i32,
    rate_limit: i32,
    timeout: pgrx::datum::Interval,
    max_retries: i32,
    retry_delay: pgrx::datum::Interval,
) -> Result<()> {
    pullsync_core::feed::validate::consumer_id(consumer_id)?;
    let base_url = pullsync_core::feed::validate::base_url(base_url)?;
    pullsync_core::feed::validate::api_key(api_key)?;
    let bounds = [
        (batch_size, 1, super::serve::MAX_PAGE, "batch_size"),
        (rate_limit, 1, 10_000, "rate_limit"),
        (max_retries, 0, 20, "max_retries"),
    ];
    for (value, low, high, name) in bounds {
        if !(low..=high).contains(&value) {
            return Err(PullsyncError::invalid(
                format!("{name} must be between {low} and {high}, not {value}"),
                format!("Pass {name} within {low}..{high}."),
            ));
        }
    }
    let sealed = crate::config::sealing_key()?.seal(api_key);
    let ok = Spi::get_one_with_args::<bool>(
        "SELECT $1::interval > '0' AND $1::interval <= '10 min' AND $2::interval >= '0' AND $2::interval <= '10 min'",
        &[timeout.into(), retry_delay.into()],
    )?
    .unwrap_or(false);
    if !ok {
        return Err(PullsyncError::invalid(
            "timeout must be in (0, 10 min] and retry_delay in [0, 10 min]",
            "Pass intervals such as '30 s' and '5 s'.",
        ));
    }
    Spi::run_with_args(
        "INSERT INTO pullsync.feed_sources (consumer_id, base_url, api_key_encrypted, batch_size, rate_limit, timeout, max_retries, retry_delay)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (consumer_id) DO UPDATE SET base_url = EXCLUDED.base_url, api_key_encrypted = EXCLUDED.api_key_encrypted,
                batch_size = EXCLUDED.batch_size, rate_limit = EXCLUDED.rate_limit, timeout = EXCLUDED.timeout,
                max_retries = EXCLUDED.max_retries, retry_delay = EXCLUDED.retry_delay, is_active = true, updated_at = now()",
        &[
            consumer_id.into(),
            base_url.into(),
            sealed.into(),
            batch_size.into(),
            rate_limit.into(),
            timeout.into(),
            max_retries.into(),
            retry_delay.into(),
        ],
    )?;
    Ok(())
}
