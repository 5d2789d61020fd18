//! A fan-out run: the parent query lists the parents (as the owner, read-only), and each
//! parent's children are one listing with its own position and high-water mark
//! (`pullsync.rest_parent_state`). Up to `concurrency` parents have a request in flight at
//! once through the source's one client; each answer is written on this (the main) thread,
//! its rows and its parent's position committed together, so a parent that fails keeps
//! what it and every other parent committed. A parent with no state yet (one the query
//! lists for the first time) starts at its first page with `incremental.initial`.

use super::api::{self, Api};
use super::parents::{self, State};
use super::pull;
use super::store::{self, Stored};
use crate::error::Result;
use crate::jobs::kind::Outcome;
use crate::jobs::paged::Progress;
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use chrono::Utc;
use futures_util::stream::{FuturesUnordered, StreamExt};
use pullsync_core::http::FailureClass;
use pullsync_core::rest::config::RestConfig;
use pullsync_core::rest::fanout::{self, ForEach, Parent};
use pullsync_core::rest::paging::{self, PageRows, Position, RowMaker};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One parent's listing of children.
struct Child {
    /// What its state is kept under (`Parent::key`), and its values for `$parent.` paths.
    key: Value,
    values: Map<String, Value>,
    /// The source's configuration with the parent's values in its path and query.
    config: RestConfig,
    position: Position,
    /// The mark this parent's run sends, and the highest value it has written.
    since: Option<String>,
    run_high_water: Option<String>,
    /// Pages of it written by this run.
    pages: u32,
    /// The access token its request sends (an OAuth 2 source's), and whether the API's
    /// refusal of it had a new one asked for, once a page.
    token: Option<String>,
    renewed: bool,
}

impl Child {
    /// The parent's listing as its state says: an unfinished run resumes where it stopped
    /// with the mark it started with; else from the first page with its own mark (or
    /// `initial`).
    fn new(
        source: &Stored,
        parent: &Parent,
        state: Option<State>,
    ) -> std::result::Result<(Child, bool), String> {
        let config = fanout::child_config(&source.config, parent).map_err(|e| e.to_string())?;
        let state = state.unwrap_or_default();
        let initial = || {
            source
                .config
                .incremental
                .as_ref()
                .and_then(|i| i.initial.clone())
        };
        let resumed = state.run.is_some();
        let (position, since, run_high_water) = match state.run {
            Some(run) => (run.position, run.since, run.high_water),
            None => (Position::Start, state.high_water.or_else(initial), None),
        };
        let child = Child {
            key: parent.key(),
            values: parent.values(),
            config,
            position,
            since,
            run_high_water,
            pages: 0,
            token: None,
            renewed: false,
        };
        Ok((child, resumed))
    }
}

/// How the parents of a run fared.
#[derive(Default)]
struct Parents {
    listed: usize,
    done: usize,
    failed: usize,
    /// Stopped by a limit (max_pages, the run's budget) or never started for it: the next
    /// run resumes them.
    unfinished: usize,
    /// Rows of the parent query without a value for every placeholder.
    left_out: usize,
    /// The first failure or stop, with its parent.
    first_error: Option<String>,
    resumed: bool,
    /// Records left out for want of a complete key.
    keyless: usize,
}

impl Parents {
    fn note(&mut self, key: &Value, message: &str) {
        if self.first_error.is_none() {
            self.first_error = Some(format!("parent {key}: {message}"));
        }
    }

    /// The run's error: None when every parent listed was read to its end.
    fn error(&self) -> Option<String> {
        let first = self.first_error.as_deref()?;
        Some(format!(
            "{} of {} parents failed and {} did not finish; the first: {first}",
            self.failed, self.listed, self.unfinished
        ))
    }
}

/// What became of a parent's page.
enum Step {
    More,
    Done,
    Failed(String),
}

/// A child's page as read: its rows and where its next page is (None: it was the last),
/// or why its listing stops there.
/// A child's page as read.
enum Read {
    /// Its rows, and where its next page is (None: it was the last).
    Page(PageRows, Option<Position>),
    /// The API refused an OAuth 2 source's access token; the message says how.
    Refused(String),
    /// Why its listing stops here.
    Failed(String),
}

/// A child's next page, requested and its rows made on the background runtime; the work
/// holds the child until it answers.
fn fetch(api: &Arc<Api>, mut child: Child) -> runtime::Background<(Child, Read)> {
    child.token = api.access_token();
    let api = api.clone();
    runtime::spawn(async move {
        let answer = api
            .request(&child.config, &child.position, child.since.as_deref(), None)
            .await;
        if let Err(failure) = &answer {
            if api.has_oauth() && failure.class == FailureClass::Auth {
                let refused = Read::Refused(failure.message.clone());
                return (child, refused);
            }
        }
        let maker = RowMaker::for_parent(&child.config, &child.values);
        let read = match api::page_rows(&api, &child.config, &child.position, answer, maker) {
            Ok((rows, next)) => Read::Page(rows, next),
            Err(message) => Read::Failed(message),
        };
        (child, read)
    })
}

/// A run's children, parent after parent, `concurrency` of them in flight.
struct Fanout<'a> {
    source: &'a Stored,
    api: &'a Arc<Api>,
    table: String,
    clock: Instant,
    budget: Duration,
    progress: Progress,
    parents: Parents,
}

impl<'a> Fanout<'a> {
    /// Writes the page read for `child`.
    fn step(&mut self, child: &mut Child, read: Read, txn: Txn) -> Step {
        let (page, next) = match read {
            Read::Page(page, next) => (page, next),
            Read::Refused(message) | Read::Failed(message) => return Step::Failed(message),
        };
        let PageRows {
            rows,
            keyless,
            high_water,
            ..
        } = page;
        self.parents.keyless += keyless;
        child.run_high_water = paging::higher(child.run_high_water.take(), high_water);
        let written = txn.run(|| {
            parents::write_page(
                self.source,
                &self.table,
                &child.key,
                &rows,
                next.as_ref(),
                child.since.as_deref(),
                child.run_high_water.as_deref(),
            )
        });
        let written = match written {
            Ok(written) => written,
            Err(e) => return Step::Failed(pull::write_failed(self.api, &e)),
        };
        self.progress.pages += 1;
        self.progress.items += written.stored as i64;
        self.progress.quarantined += written.quarantined;
        child.pages += 1;
        child.renewed = false;
        match next {
            Some(next) => {
                child.position = next;
                Step::More
            }
            None => Step::Done,
        }
    }

    /// Why no further page may be asked for, if a limit says so.
    fn limit(&self, child: &Child) -> Option<String> {
        let max_pages = self.source.config.max_pages;
        if child.pages >= max_pages {
            return Some(format!(
                "stopped after config.max_pages ({max_pages}) pages; the next run resumes here"
            ));
        }
        self.over_budget()
    }

    fn over_budget(&self) -> Option<String> {
        (self.progress.pages > 0 && self.clock.elapsed() >= self.budget).then(|| {
            format!(
                "stopped after {} pages in pullsync.rest_run_budget ({} s); the next run resumes here",
                self.progress.pages,
                self.budget.as_secs()
            )
        })
    }

    /// A page the API refused for its access token: once a page, a good token again (the
    /// one another parent's refusal renewed already, or a new one) and None, the page to be
    /// asked again; else why the parent stops.
    fn renew(
        &self,
        child: &mut Child,
        refusal: String,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<Option<String>> {
        if child.renewed {
            return Ok(Some(refusal));
        }
        child.renewed = true;
        let renewed = self.api.renew(child.token.take(), txn, cancel)?;
        Ok(renewed.err().map(|failure| failure.message))
    }

    /// Reads every child to its end, its failure or a limit.
    fn read(&mut self, children: Vec<Child>, txn: Txn, cancel: Cancel) -> Result<()> {
        let api = self.api;
        let concurrency = self.source.config.concurrency.max(1);
        let mut waiting = children.into_iter();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < concurrency {
                if let Some(stop) = self.over_budget() {
                    let left = waiting.len();
                    if left > 0 {
                        self.parents.unfinished += left;
                        self.parents.first_error.get_or_insert(stop);
                        waiting = Vec::new().into_iter();
                    }
                    break;
                }
                match waiting.next() {
                    Some(child) => in_flight.push(fetch(api, child)),
                    None => break,
                }
            }
            // A cancel ends the run between pages too, not only in a wait for one.
            if cancel.requested() {
                return Err(crate::error::PullsyncError::Interrupted);
            }
            // The others' requests go on while one answer is written.
            let Some(joined) = runtime::block_on_until(in_flight.next(), cancel)? else {
                return Ok(());
            };
            let (mut child, read) = joined?;
            let read = match read {
                Read::Refused(refusal) => match self.renew(&mut child, refusal, txn, cancel)? {
                    None => {
                        in_flight.push(fetch(api, child));
                        continue;
                    }
                    Some(why) => Read::Failed(why),
                },
                read => read,
            };
            match self.step(&mut child, read, txn) {
                Step::More => match self.limit(&child) {
                    None => in_flight.push(fetch(api, child)),
                    Some(stop) => {
                        self.parents.unfinished += 1;
                        self.parents.note(&child.key, &stop);
                    }
                },
                Step::Done => self.parents.done += 1,
                Step::Failed(message) => {
                    self.parents.failed += 1;
                    self.parents.note(&child.key, &message);
                }
            }
        }
    }
}

/// The children of every parent the query lists, from where each stands.
fn children(
    source: &Stored,
    listed: Vec<Parent>,
    mut states: HashMap<String, State>,
    parents: &mut Parents,
) -> Vec<Child> {
    let mut children = Vec::new();
    for parent in listed {
        let key = parent.key();
        match Child::new(source, &parent, states.remove(&key.to_string())) {
            Ok((child, resumed)) => {
                parents.resumed |= resumed;
                children.push(child);
            }
            Err(message) => {
                parents.failed += 1;
                parents.note(&key, &message);
            }
        }
    }
    children
}

/// Runs a fan-out source: every parent the query lists, each from where it stands.
pub fn pull(source: &Stored, for_each: &ForEach, txn: Txn, cancel: Cancel) -> Result<Outcome> {
    let started = Utc::now();
    let api = Arc::new(Api::new(source)?);
    let mut run = Fanout {
        source,
        api: &api,
        table: String::new(),
        clock: Instant::now(),
        budget: super::settings::run_budget(),
        progress: Progress::default(),
        parents: Parents::default(),
    };
    // The target, checked against the owner's rights once for the run (every write still
    // runs as the owner); then the parents as the query lists them now, as the owner.
    match txn.run(|| store::check_target(&source.owner, &source.config)) {
        Err(e) => run.progress.error = Some(pull::write_failed(&api, &e)),
        Ok(table) => {
            run.table = table;
            let listed = txn.run(|| {
                let (parents, left_out) = parents::list(&source.owner, for_each)?;
                Ok((parents, left_out, parents::states(&source.name)?))
            });
            match listed {
                Err(e) => {
                    run.progress.error = Some(format!(
                        "listing the parents failed: {}",
                        api.redacted(&e.to_string())
                    ))
                }
                Ok((listed, left_out, states)) => {
                    run.parents.listed = listed.len();
                    run.parents.left_out = left_out;
                    let children = children(source, listed, states, &mut run.parents);
                    // The parents' requests share one access token (an OAuth 2 source's).
                    match api.authorize(txn, cancel)? {
                        Ok(()) => {
                            run.read(children, txn, cancel)?;
                            run.progress.error = run.parents.error();
                        }
                        Err(failure) => run.progress.error = Some(failure.message),
                    }
                }
            }
        }
    }
    let Fanout {
        progress, parents, ..
    } = run;
    let mut notes = pull::notes(parents.resumed, progress.quarantined, parents.keyless);
    notes.push(format!(
        "parents: {} listed, {} done, {} failed, {} unfinished, {} left out",
        parents.listed, parents.done, parents.failed, parents.unfinished, parents.left_out
    ));
    let name = source.name.as_str();
    let mut result = Map::new();
    result.insert("name".into(), json!(name));
    result.insert("items".into(), json!(progress.items));
    result.insert("since".into(), Value::Null);
    result.insert("resumed".into(), json!(parents.resumed));
    result.insert("left_out".into(), json!(parents.keyless));
    result.insert(
        "parents".into(),
        json!({
            "listed": parents.listed,
            "done": parents.done,
            "failed": parents.failed,
            "unfinished": parents.unfinished,
            "left_out": parents.left_out,
        }),
    );
    pull::finish(&api, started, progress, &notes, result, txn)
}
