//! The consumer end of the feed: pulls pages from a provider over the shared HTTP layer and
//! writes each page's rows together with its cursor checkpoint, so a crash resumes from
//! the last committed page. Pages are written as they arrive; nothing accumulates.

use super::provider::{load_source, metrics_source, FeedPage, Provider};
use super::store::{refresh_statistics, write_page};
use super::streams::{self, Stream};
use crate::error::{PullsyncError, Result};
use crate::jobs::kind::Outcome;
use crate::jobs::paged::{self, End, Fetched, Limit, Pages, Progress, Tail};
use crate::jobs::quarantine::Written;
use crate::plumbing::txn::Txn;
use crate::runtime::{Background, Cancel};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use pgrx::prelude::*;
use pullsync_core::feed::statistics::StatisticsRefresh;
use pullsync_core::http::{Failure, FailureClass};
use serde_json::{json, Map, Value};

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

/// What a pull's streams share.
struct Pull<'a> {
    consumer_id: &'a str,
    mode: &'a str,
    max_pages: Option<u32>,
    provider: Provider,
    /// Set when the provider refused a cursor as another identity's: from where changes
    /// were read again (None: from the start); reconciled once the streams are through.
    moved_since: Option<Option<DateTime<Utc>>>,
    /// Rows stored, per stream.
    totals: Map<String, Value>,
}

/// One stream of a pull, page by page.
struct StreamPages<'p, 'a> {
    pull: &'p mut Pull<'a>,
    def: &'static Stream,
    cursor: Option<String>,
    updated_after: Option<DateTime<Utc>>,
    /// Started over once already (the provider moved, or refused the position).
    restarted: bool,
    count: usize,
    statistics: StatisticsRefresh,
    /// The next page's request, started before this page is written.
    next_page: Option<(String, Background<std::result::Result<FeedPage, Failure>>)>,
    /// The cursor after the page being written.
    next: Option<String>,
}

impl<'p, 'a> StreamPages<'p, 'a> {
    /// A full pull starts over within its window; otherwise resume from the checkpoint
    /// (or, the first time, from the beginning).
    fn start(
        pull: &'p mut Pull<'a>,
        def: &'static Stream,
        started: DateTime<Utc>,
        txn: Txn,
    ) -> Result<Self> {
        let (cursor, updated_after) = match pull.mode {
            "full" => (None, Some(started - ChronoDuration::days(FULL_WINDOW_DAYS))),
            _ => txn.run(|| latest_checkpoint(pull.consumer_id, def.name))?,
        };
        Ok(StreamPages {
            pull,
            def,
            cursor,
            updated_after,
            restarted: false,
            count: 0,
            statistics: StatisticsRefresh::default(),
            next_page: None,
            next: None,
        })
    }

    fn query(&self, cursor: Option<&str>) -> String {
        let batch_size = self.pull.provider.source.batch_size;
        page_query(batch_size, cursor, self.updated_after)
    }

    /// The provider serves the next page while this process writes this one. If the
    /// write fails, the request is dropped (aborted) and the page fetched again later.
    fn prefetch(&mut self, progress: &Progress) {
        let Some(next) = &self.next else {
            return;
        };
        if self.pull.max_pages.is_none_or(|m| progress.pages + 1 < m) {
            let query = self.query(Some(next));
            let request = self.pull.provider.start_page(self.def.path, &query);
            self.next_page = Some((query, request));
        }
    }

    /// A page the provider refused: the stream starts over once when the provider moved
    /// or refused the position; any other failure ends the pull.
    fn failed(&mut self, failure: Failure, txn: Txn) -> Result<Fetched<FeedPage>> {
        match failure.class {
            FailureClass::Stale if !self.restarted => {
                // The provider was restored, recovered or promoted: positions after ours
                // may hold rows we never saw. Read every change since shortly before the
                // newest one held again (upserts make that harmless).
                self.restarted = true;
                self.cursor = None;
                // A full pull keeps its own window.
                if self.pull.mode != "full" {
                    self.updated_after =
                        txn.run(|| restart_point(self.pull.consumer_id, self.def))?;
                }
                self.pull.moved_since = Some(
                    match (self.pull.moved_since.flatten(), self.updated_after) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                );
                Ok(Fetched::Again)
            }
            FailureClass::BadPosition if !self.restarted => {
                // An expired or foreign checkpoint: start this stream over. Unfiltered, so
                // its checkpoints can be resumed from: everything again, upserts make that
                // harmless.
                self.restarted = true;
                self.cursor = None;
                self.updated_after = None;
                Ok(Fetched::Again)
            }
            _ => Ok(Fetched::Failed(failure.message)),
        }
    }

    /// The stream read to its end: its count stands in the totals, even at none.
    fn listed(self) {
        self.pull
            .totals
            .insert(self.def.name.to_string(), json!(self.count));
    }
}

impl Pages for StreamPages<'_, '_> {
    type Page = FeedPage;

    fn limit(&self, progress: &Progress) -> Limit {
        match self.pull.max_pages {
            Some(m) if progress.pages >= m => Limit::Enough,
            _ => Limit::Go,
        }
    }

    fn fetch(
        &mut self,
        progress: &Progress,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<Fetched<FeedPage>> {
        let query = self.query(self.cursor.as_deref());
        let request = match self.next_page.take() {
            Some((started, request)) if started == query => request,
            _ => self.pull.provider.start_page(self.def.path, &query),
        };
        let page = match request.wait(cancel)? {
            Ok(page) => page,
            Err(failure) => return self.failed(failure, txn),
        };
        self.next = page.next_cursor.clone();
        self.prefetch(progress);
        Ok(Fetched::Page(page))
    }

    fn write(&mut self, page: FeedPage) -> Result<Written> {
        // A filtered read resumes with its filter until its end, whose checkpoint the
        // provider hands out in the unfiltered order.
        let (consumer_id, mode) = (self.pull.consumer_id, self.pull.mode);
        let resume_filter = if self.next.is_some() || mode == "full" {
            self.updated_after
        } else {
            None
        };
        write_page(consumer_id, self.def.name, mode, page, resume_filter)
    }

    fn write_failed(&self, error: &PullsyncError) -> String {
        format!("writing a page of {} failed: {error}", self.def.name)
    }

    fn committed(&mut self, written: Written, txn: Txn) -> Result<bool> {
        self.count += written.stored;
        if self.statistics.due(self.count) {
            txn.run(|| refresh_statistics(self.def.table))?;
        }
        self.pull
            .totals
            .insert(self.def.name.to_string(), json!(self.count));
        // Later pages continue from the cursor, with the same filter.
        self.cursor = self.next.take();
        Ok(self.cursor.is_some())
    }
}

/// What the log says of a provider that moved.
const MOVED: &str =
    "the provider's identity changed (restored, recovered or promoted): recent changes read again";

/// Rows the moved provider holds but did not serve again (changed before the overlap)
/// were created before it too: reconciliation over the widest window it allows finds
/// them, and those the provider lost, and repairs what is missing. Only after a pull that
/// completed; the note says which.
fn reconcile_moved(
    consumer_id: &str,
    completed: bool,
    txn: Txn,
    cancel: Cancel,
) -> Result<(Option<Value>, String)> {
    if !completed {
        let note = format!(
            "{MOVED}; not reconciled, as the pull did not complete: run pullsync.sync_reconcile"
        );
        return Ok((None, note));
    }
    let now = Utc::now();
    let widest = ChronoDuration::seconds(crate::config::reconcile_max_window_secs());
    let reconciliation =
        super::reconcile::reconcile(consumer_id, (now - widest, now), true, txn, cancel)?;
    Ok((Some(reconciliation), format!("{MOVED}, then reconciled")))
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
    let mut pull = Pull {
        consumer_id,
        mode,
        max_pages,
        provider,
        moved_since: None,
        totals: Map::new(),
    };
    let mut progress = Progress::default();
    for def in streams::ALL {
        let mut pages = StreamPages::start(&mut pull, def, started, txn)?;
        if paged::read(&mut pages, &mut progress, txn, cancel)? != End::Listed {
            break;
        }
        pages.listed();
    }
    let (reconciliation, notes) = match pull.moved_since {
        Some(_) => {
            let (reconciliation, note) =
                reconcile_moved(consumer_id, progress.error.is_none(), txn, cancel)?;
            (reconciliation, vec![note])
        }
        None => (None, Vec::new()),
    };
    let mut result = Map::new();
    result.insert("consumer_id".into(), json!(consumer_id));
    result.insert("mode".into(), json!(mode));
    result.insert("items".into(), Value::Object(pull.totals));
    result.insert("provider_moved".into(), json!(pull.moved_since.is_some()));
    result.insert("reconciliation".into(), json!(reconciliation));
    let (job_type, metrics_source) = (format!("feed_{mode}"), metrics_source(consumer_id));
    let tail = Tail {
        source: "feed",
        job_type: &job_type,
        subject: consumer_id,
        metrics_source: &metrics_source,
        started,
        calls: pull.provider.calls(),
        kept: progress.items > 0,
        notes: &notes,
        result,
    };
    paged::finish(tail, progress, txn)
}
