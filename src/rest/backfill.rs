//! A first run's backfill in date windows (`incremental.windows`): `since`..`until` in
//! slices, the pages of up to `concurrency` windows requested at once, each page written
//! with the state of every window (`rest_sources.run_position`), so a crash or a failed
//! window resumes only the windows not finished. The mark is set when all are done.

use super::api::{page_rows, Api};
use super::pull::{finish, notes, write_failed};
use super::store::{self, Stored};
use crate::error::Result;
use crate::jobs::kind::Outcome;
use crate::jobs::paged::Progress;
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use chrono::Utc;
use pullsync_core::http::{self, Failure};
use pullsync_core::rest::incremental::{self, Backfill, Options};
use pullsync_core::rest::paging::{self, Position, RowMaker};
use serde_json::{json, Map};
use std::collections::BTreeSet;
use std::time::Instant;

/// The backfill this run does: one under way, or a new one when the source has windows
/// and no mark yet (noted before any request, so the windows stay those of this start).
pub fn pending(source: &Stored, txn: Txn) -> Result<Option<(Backfill, bool)>> {
    let windows = source
        .config
        .incremental
        .as_ref()
        .and_then(|i| i.options.windows.as_ref());
    // A backfill whose windows the configuration no longer has is over: the run is a
    // plain one, which starts afresh.
    let Some(windows) = windows else {
        return Ok(None);
    };
    if let Some(backfill) = &source.backfill {
        return Ok(Some((backfill.clone(), true)));
    }
    if source.high_water.is_some() || source.run.is_some() {
        return Ok(None);
    }
    let backfill = Backfill::slice(windows, Utc::now()).map_err(|e| {
        crate::error::PullsyncError::invalid(
            e,
            "Take larger windows (config.incremental.windows.size).",
        )
    })?;
    txn.run(|| store::begin_backfill(&source.name, &backfill, &windows.since))?;
    Ok(Some((backfill, false)))
}

/// A backfill under way: its windows' state, what it has done, and why windows stopped.
struct Backfilling<'a> {
    source: &'a Stored,
    api: &'a Api,
    state: Backfill,
    /// The target, quoted and qualified.
    table: String,
    /// A window's start takes the source's boundary: an exclusive API gets one step less.
    bounds: Options,
    until_param: &'a str,
    clock: Instant,
    budget: std::time::Duration,
    progress: Progress,
    failures: Vec<String>,
    /// Windows that failed this run: left for the next one.
    failed: BTreeSet<usize>,
    keyless: usize,
}

/// A window's next request: which window, from where, with what start.
struct Request {
    window: usize,
    at: Position,
    since: String,
}

impl Backfilling<'_> {
    /// Whether the run's limits leave room for another batch (else why not).
    fn limited(&self) -> Option<String> {
        let config = &self.source.config;
        let pages = self.progress.pages;
        (pages >= config.max_pages || (pages > 0 && self.clock.elapsed() >= self.budget)).then(|| {
            format!(
                "stopped after {pages} pages (config.max_pages or pullsync.rest_run_budget); the next run goes on with the windows not finished"
            )
        })
    }

    /// The next page of up to `concurrency` open windows that have not failed.
    fn batch(&self) -> Vec<Request> {
        self.state
            .open()
            .filter(|i| !self.failed.contains(i))
            .take(self.source.config.concurrency.max(1))
            .map(|window| {
                let w = &self.state.windows[window];
                Request {
                    window,
                    at: w.next.clone().unwrap_or(Position::Start),
                    since: incremental::since_for(&w.since, &self.bounds)
                        .unwrap_or_else(|_| w.since.clone()),
                }
            })
            .collect()
    }

    /// The batch's pages, requested at once.
    fn fetch(
        &self,
        batch: &[Request],
        cancel: Cancel,
    ) -> Result<Vec<std::result::Result<http::Answer, Failure>>> {
        let config = &self.source.config;
        runtime::block_on_until(
            futures_util::future::join_all(batch.iter().map(|r| {
                let until = &self.state.windows[r.window].until;
                self.api.request(
                    config,
                    &r.at,
                    Some(&r.since),
                    Some((self.until_param, until)),
                )
            })),
            cancel,
        )
    }

    /// A window's page written with the state of every window (and the mark, once all are
    /// done); a window whose page cannot be read or written is left for the next run.
    fn write(
        &mut self,
        request: Request,
        fetched: std::result::Result<http::Answer, Failure>,
        txn: Txn,
    ) {
        let config = &self.source.config;
        let i = request.window;
        let window = format!(
            "window {}..{}",
            self.state.windows[i].since, self.state.windows[i].until
        );
        let maker = RowMaker::new(config);
        let (rows, next) = match page_rows(self.api, config, &request.at, fetched, maker) {
            Ok(read) => read,
            Err(message) => {
                self.failed.insert(i);
                self.failures.push(format!("{window}: {message}"));
                return;
            }
        };
        let mut after = self.state.clone();
        after.windows[i].next = next;
        after.high_water = paging::higher(after.high_water.take(), rows.high_water);
        let mark = after.done().then(|| after.mark()).flatten();
        let (source, table) = (self.source, &self.table);
        match txn
            .run(|| store::write_backfill_page(source, table, &rows.rows, &after, mark.as_deref()))
        {
            Ok(written) => {
                self.state = after;
                self.keyless += rows.keyless;
                self.progress.pages += 1;
                self.progress.items += written.stored as i64;
                self.progress.quarantined += written.quarantined;
            }
            Err(e) => {
                self.failed.insert(i);
                self.failures
                    .push(format!("{window}: {}", write_failed(self.api, &e)));
            }
        }
    }

    /// Batch after batch until every window is done, failed, or a limit is reached.
    fn read(&mut self, txn: Txn, cancel: Cancel) -> Result<()> {
        loop {
            if cancel.requested() {
                return Err(crate::error::PullsyncError::Interrupted);
            }
            if let Some(stop) = self.limited() {
                self.failures.push(stop);
                return Ok(());
            }
            let batch = self.batch();
            if batch.is_empty() {
                return Ok(());
            }
            // The windows' requests share one access token (an OAuth 2 source's).
            if let Err(failure) = self.api.authorize(txn, cancel)? {
                self.failures.push(failure.message);
                return Ok(());
            }
            let answers = self.fetch(&batch, cancel)?;
            for (request, fetched) in batch.into_iter().zip(answers) {
                self.write(request, fetched, txn);
            }
        }
    }
}

/// Reads the open windows to their ends (or to the run's limits), a window that fails
/// left for the next run while the others go on.
pub fn run(
    source: &Stored,
    api: &Api,
    (state, resumed): (Backfill, bool),
    txn: Txn,
    cancel: Cancel,
) -> Result<Outcome> {
    let started = Utc::now();
    let config = &source.config;
    let options = config.incremental.as_ref().map(|i| &i.options);
    let windows = options.and_then(|o| o.windows.as_ref());
    let mut run = Backfilling {
        source,
        api,
        state,
        table: String::new(),
        bounds: Options {
            boundary: options.map(|o| o.boundary).unwrap_or_default(),
            ..Options::default()
        },
        until_param: windows.map_or("until", |w| w.until_param.as_str()),
        clock: Instant::now(),
        budget: super::settings::run_budget(),
        progress: Progress::default(),
        failures: Vec::new(),
        failed: BTreeSet::new(),
        keyless: 0,
    };
    match txn.run(|| store::check_target(&source.owner, config)) {
        Ok(table) => {
            run.table = table;
            run.read(txn, cancel)?;
        }
        Err(e) => run.failures.push(write_failed(api, &e)),
    }
    let Backfilling {
        state,
        mut progress,
        failures,
        keyless,
        ..
    } = run;
    if !failures.is_empty() {
        progress.error = Some(failures.join("; "));
    }
    let notes = notes(resumed, progress.quarantined, keyless);
    let total = state.windows.len();
    let open = state.open().count();
    let mut result = Map::new();
    result.insert("name".into(), json!(source.name));
    result.insert("items".into(), json!(progress.items));
    result.insert("since".into(), json!(windows.map(|w| &w.since)));
    result.insert("resumed".into(), json!(resumed));
    result.insert("left_out".into(), json!(keyless));
    result.insert("reread".into(), json!(0));
    result.insert(
        "windows".into(),
        json!({ "total": total, "done": total - open, "open": open }),
    );
    finish(api, started, progress, &notes, result, txn)
}
