//! A run of a REST source: the listing read page by page over the shared HTTP layer (no
//! transaction open across a request), each page's rows and the run's position committed
//! together, so a crash or cancel resumes after the last page written. An incremental
//! source sends the high-water mark committed by its last complete run.

use super::api::{page_rows, walk_answer, Api};
use super::prefetch::{self, Ahead, Read};
use super::store::{self, Stored};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::jobs::kind::Outcome;
use crate::jobs::paged::{self, Fetched, Limit, Pages, Progress, Tail};
use crate::jobs::quarantine::Written;
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use chrono::{DateTime, Utc};
use pullsync_core::rest::incremental;
use pullsync_core::rest::paging::{self, PageRows, Position, Rows, Seen};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads the page at `position`, hands each record (a slice of the body: a page is never
/// one tree) to `each` with the page's number of records, and says where the next page is
/// (noted in `seen`: a position read already stops the run); the inner error says
/// (without the secret) why the run stops there.
fn read_page(
    api: &Api,
    position: &Position,
    seen: &mut Seen,
    since: Option<&str>,
    txn: Txn,
    cancel: Cancel,
    each: impl FnMut(&RawValue, usize),
) -> Result<std::result::Result<Option<Position>, String>> {
    let fetched = api.authorized_page(position, since, txn, cancel)?;
    let config = api.config();
    let next = walk_answer(api, config, position, fetched, each).and_then(|next| match &next {
        Some(at) => seen
            .note(at)
            .map(|()| next)
            .map_err(|e| api.redacted(&e.to_string())),
        None => Ok(None),
    });
    Ok(next)
}

/// A REST source's name in sync_metrics and alerts.
pub fn metrics_source(name: &str) -> String {
    format!("rest:{name}")
}

/// A run's listing, page by page.
struct Listing<'a> {
    source: &'a Stored,
    api: &'a Api,
    /// The pages requested ahead of the writes.
    ahead: Ahead,
    /// The target, quoted and qualified.
    table: String,
    clock: Instant,
    budget: Duration,
    position: Position,
    /// The positions this run has read.
    seen: Seen,
    /// The mark the run sends.
    since: Option<String>,
    /// The highest incremental value written so far.
    run_high_water: Option<String>,
    /// Records left out for want of a complete primary key.
    keyless: usize,
    /// Records at or below the stored mark (read again by the lookback or the boundary).
    reread: usize,
    /// Where the page being written leads (None: it is the last).
    next: Option<Position>,
}

impl Pages for Listing<'_> {
    type Page = Rows;

    fn limit(&self, progress: &Progress) -> Limit {
        let (pages, max_pages) = (progress.pages, self.source.config.max_pages);
        if pages >= max_pages {
            return Limit::Stop(format!(
                "stopped after config.max_pages ({max_pages}) pages; the next run resumes here"
            ));
        }
        if pages > 0 && self.clock.elapsed() >= self.budget {
            return Limit::Stop(format!(
                "stopped after {pages} pages in pullsync.rest_run_budget ({} s); the next run resumes here",
                self.budget.as_secs()
            ));
        }
        Limit::Go
    }

    fn fetch(&mut self, progress: &Progress, txn: Txn, cancel: Cancel) -> Result<Fetched<Rows>> {
        // An OAuth 2 source reads page by page: a refused token is renewed (with a
        // transaction) before the page is asked for again.
        let read = match self.api.has_oauth() {
            true => self.read_now(txn, cancel)?,
            false => self.ahead.take(&self.position, cancel)?,
        };
        let Read { rows, next } = match read {
            Ok(read) => read,
            Err(message) => return Ok(Fetched::Failed(message)),
        };
        if let Some(at) = &next {
            if let Err(e) = self.seen.note(at) {
                self.ahead.stop();
                return Ok(Fetched::Failed(self.api.redacted(&e.to_string())));
            }
        }
        // The pages after this one are requested while it is written.
        if !self.api.has_oauth() {
            self.ahead.after(next.as_ref(), self.room(progress));
        }
        self.next = next;
        let PageRows {
            rows,
            keyless,
            high_water,
            reread,
        } = rows;
        self.keyless += keyless;
        self.reread += reread;
        self.run_high_water = paging::higher(self.run_high_water.take(), high_water);
        Ok(Fetched::Page(rows))
    }

    fn write(&mut self, rows: Rows) -> Result<Written> {
        // A lookback reads below the mark: the mark it leaves is never lower than the one
        // it started from.
        let high_water =
            paging::higher(self.source.high_water.clone(), self.run_high_water.clone());
        store::write_page(
            self.source,
            &self.table,
            &rows,
            self.next.as_ref(),
            high_water.as_deref(),
        )
    }

    fn write_failed(&self, error: &PullsyncError) -> String {
        write_failed(self.api, error)
    }

    fn committed(&mut self, _: Written, _: Txn) -> Result<bool> {
        match self.next.take() {
            Some(next) => {
                self.position = next;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl Listing<'_> {
    /// How many pages the run's limits leave after the one being read: as many may be
    /// requested ahead.
    fn room(&self, progress: &Progress) -> usize {
        if self.clock.elapsed() >= self.budget {
            return 0;
        }
        let max_pages = self.source.config.max_pages;
        max_pages.saturating_sub(progress.pages + 1) as usize
    }

    /// The page at the run's position, read now on this thread (its token had first).
    fn read_now(&self, txn: Txn, cancel: Cancel) -> Result<prefetch::Outcome> {
        let since = self.since.as_deref();
        let fetched = self
            .api
            .authorized_page(&self.position, since, txn, cancel)?;
        let maker = self.ahead.row_maker();
        let read = page_rows(self.api, self.api.config(), &self.position, fetched, maker);
        Ok(read.map(|(rows, next)| Read { rows, next }))
    }
}

pub(super) fn write_failed(api: &Api, error: &PullsyncError) -> String {
    format!(
        "writing a page failed: {}",
        api.redacted(&error.to_string())
    )
}

/// Where the run starts: an unfinished run resumes where it stopped, with the mark it was
/// started with; a fresh one notes its start and the mark it sends.
fn start(source: &Stored, txn: Txn) -> Result<(Position, Option<String>, Option<String>)> {
    if let Some(run) = &source.run {
        return Ok((
            run.position.clone(),
            run.since.clone(),
            run.high_water.clone(),
        ));
    }
    let config = &source.config;
    let since = match (&source.high_water, &config.incremental) {
        (Some(mark), Some(inc)) => {
            Some(incremental::since_for(mark, &inc.options).map_err(|e| {
                PullsyncError::invalid(
                    e,
                    "Change config.incremental (docs/REST.md, \"Incremental runs\").",
                )
            })?)
        }
        (mark, inc) => mark
            .clone()
            .or_else(|| inc.as_ref().and_then(|i| i.initial.clone())),
    };
    txn.run(|| store::begin_run(&source.name, since.as_deref()))?;
    Ok((Position::Start, since, None))
}

/// What a run's log says besides its error.
pub(super) fn notes(resumed: bool, quarantined: usize, keyless: usize) -> Vec<String> {
    let mut notes = Vec::new();
    if resumed {
        notes.push("resumed an unfinished run after its last committed page".to_string());
    }
    if quarantined > 0 {
        notes.push(format!(
            "{quarantined} records the target would not take are in pullsync.rest_quarantine"
        ));
    }
    if keyless > 0 {
        notes.push(format!(
            "{keyless} records without a complete primary key were left out"
        ));
    }
    notes
}

/// Runs `source` to the end of its listing (or to its first failure), each page in its own
/// unit of work.
pub fn pull(source: &Stored, api: &Arc<Api>, txn: Txn, cancel: Cancel) -> Result<Outcome> {
    let started = Utc::now();
    let clock = Instant::now();
    let name = source.name.as_str();
    let (position, since, run_high_water) = start(source, txn)?;
    let mut listing = Listing {
        source,
        api,
        ahead: Ahead::new(api.clone(), since.clone(), source.high_water.clone()),
        table: String::new(),
        clock,
        budget: super::settings::run_budget(),
        seen: Seen::new(name, &position),
        position,
        since,
        run_high_water,
        keyless: 0,
        reread: 0,
        next: None,
    };
    let mut progress = Progress::default();
    // The target, checked against the owner's rights once for the run; every write still
    // runs as the owner, so a right revoked meanwhile stops it as well.
    match txn.run(|| store::check_target(&source.owner, &source.config)) {
        Ok(table) => {
            listing.table = table;
            let read = paged::read(&mut listing, &mut progress, txn, cancel);
            listing.ahead.stop();
            read?;
        }
        Err(e) => progress.error = Some(write_failed(api, &e)),
    }
    let resumed = source.run.is_some();
    let notes = notes(resumed, progress.quarantined, listing.keyless);
    let mut result = Map::new();
    result.insert("name".into(), json!(name));
    result.insert("items".into(), json!(progress.items));
    result.insert("since".into(), json!(listing.since));
    result.insert("resumed".into(), json!(resumed));
    result.insert("left_out".into(), json!(listing.keyless));
    result.insert("reread".into(), json!(listing.reread));
    finish(api, started, progress, &notes, result, txn)
}

/// A run's tail, the same for a listing, a backfill and a fan-out: the pages a `skip` rule
/// left out added to its answer, then its status, `sync_logs` row, metrics and outcome.
pub(super) fn finish(
    api: &Api,
    started: DateTime<Utc>,
    progress: Progress,
    notes: &[String],
    mut result: Map<String, Value>,
    txn: Txn,
) -> Result<Outcome> {
    let name = api.source().name.as_str();
    result.insert("skipped".into(), json!(api.skipped.load(Ordering::Relaxed)));
    let tail = Tail {
        source: "rest",
        job_type: "rest_pull",
        subject: name,
        metrics_source: &metrics_source(name),
        started,
        calls: api.calls(),
        kept: progress.pages > 0,
        notes,
        result,
    };
    paged::finish(tail, progress, txn)
}

/// `rest_reconcile`: lists the source again (from `since`, sent as the incremental
/// parameter, or all of it) and names the keys the target lacks.
pub fn reconcile(name: &str, since: Option<&str>, txn: Txn, cancel: Cancel) -> Result<Value> {
    let source = txn.run(|| store::load(name))?;
    if source.config.for_each.is_some() {
        return Err(PullsyncError::invalid(
            format!("REST source {name} lists its children per parent (for_each): rest_reconcile does not list it"),
            "Compare such a source's rows with the API yourself, or pull it again.",
        ));
    }
    let api = Api::new(&source)?;
    let config = &source.config;
    let mut out = crate::reconcile::runs::Outcome::begin(
        "rest",
        name.to_string(),
        (Utc::now(), Utc::now()),
        false,
    );
    out.windows.push(json!({ "since": since }));
    let mut listed: std::collections::BTreeSet<Vec<Option<String>>> = Default::default();
    let mut position = Position::Start;
    // Only a listing read to its last page may mark keys as deleted.
    let mut complete = false;
    let mut seen = Seen::new(name, &position);
    for _ in 0..config.max_pages {
        let read = read_page(&api, &position, &mut seen, since, txn, cancel, |raw, _| {
            let Ok(record) = serde_json::from_str::<Value>(raw.get()) else {
                return;
            };
            let key: Vec<Option<String>> = config
                .primary_key
                .iter()
                .map(|k| {
                    k.get(&record)
                        .and_then(pullsync_core::rest::path::scalar_text)
                })
                .collect();
            if key.iter().all(Option::is_some) {
                listed.insert(key);
            }
        })?;
        let next = match read {
            Ok(next) => next,
            Err(message) => {
                out.error = Some(message);
                break;
            }
        };
        match next {
            Some(next) => position = next,
            None => {
                complete = true;
                break;
            }
        }
    }
    let deletes = match (&config.deletes, since, complete) {
        (Some(d), None, true) => {
            let keys = json!(listed.iter().collect::<Vec<_>>());
            Some(txn.run(|| store::mark_deletes(&source, &d.column, &keys))?)
        }
        _ => None,
    };
    let stored: std::collections::BTreeSet<Vec<Option<String>>> = txn
        .run(|| store::stored_keys(&source))?
        .into_iter()
        .collect();
    let max_ids = config::reconcile_max_ids();
    let missing: Vec<String> = listed
        .difference(&stored)
        .map(|k| k.iter().flatten().cloned().collect::<Vec<_>>().join(","))
        .collect();
    out.truncated = missing.len() > max_ids;
    out.still_missing = missing.len() as i64;
    out.source_counts = json!({ "records": listed.len() });
    out.target_counts = json!({ "rows": stored.len() });
    let mut records = json!({ "missing": missing.iter().take(max_ids).collect::<Vec<_>>(), "extra": [], "rest_source": name });
    let (marked, unmarked) = deletes.unzip();
    if config.deletes.is_some() {
        records["marked_deleted"] = json!(marked.unwrap_or(0));
        records["unmarked_deleted"] = json!(unmarked.unwrap_or(0));
    }
    out.streams.insert("records".into(), records);
    let mut answer = txn.run(|| out.record(&metrics_source(name), "rest_reconcile"))?;
    if config.deletes.is_some() {
        // null: this listing marks nothing (a `since`, or not read to its end).
        answer["marked_deleted"] = json!(marked);
        answer["unmarked_deleted"] = json!(unmarked);
    }
    Ok(answer)
}
