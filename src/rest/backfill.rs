//! A first run's backfill in date windows (`incremental.windows`): `since`..`until` in
//! slices, the pages of up to `concurrency` windows requested at once, each page written
//! with the state of every window (`rest_sources.run_position`), so a crash or a failed
//! window resumes only the windows not finished. The mark is set when all are done.

use super::api::{walk_answer, Api};
use super::pull::{finish, notes, write_failed};
use super::store::{self, Stored};
use crate::error::Result;
use crate::jobs::kind::Outcome;
use crate::jobs::paged::Progress;
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use chrono::Utc;
use pullsync_core::rest::incremental::{self, Backfill, Options};
use pullsync_core::rest::paging::{self, Position, RowMaker};
use serde_json::{json, Map};
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

/// Reads the open windows to their ends (or to the run's limits), a window that fails
/// left for the next run while the others go on.
pub fn run(
    source: &Stored,
    api: &Api,
    (mut state, resumed): (Backfill, bool),
    txn: Txn,
    cancel: Cancel,
) -> Result<Outcome> {
    let started = Utc::now();
    let clock = Instant::now();
    let budget = super::settings::run_budget();
    let config = &source.config;
    let options = config.incremental.as_ref().map(|i| &i.options);
    let windows = options.and_then(|o| o.windows.as_ref());
    let until_param = windows.map_or("until", |w| w.until_param.as_str());
    // A window's start takes the source's boundary: an exclusive API gets one step less.
    let bounds = Options {
        boundary: options.map(|o| o.boundary).unwrap_or_default(),
        ..Options::default()
    };
    let mut progress = Progress::default();
    let mut failures: Vec<String> = Vec::new();
    let mut failed = std::collections::BTreeSet::new();
    let mut keyless = 0;
    let table = match txn.run(|| store::check_target(&source.owner, config)) {
        Ok(table) => Some(table),
        Err(e) => {
            failures.push(write_failed(api, &e));
            None
        }
    };
    while let Some(table) = &table {
        if cancel.requested() {
            return Err(crate::error::PullsyncError::Interrupted);
        }
        if progress.pages >= config.max_pages || (progress.pages > 0 && clock.elapsed() >= budget) {
            failures.push(format!(
                "stopped after {} pages (config.max_pages or pullsync.rest_run_budget); the next run goes on with the windows not finished",
                progress.pages
            ));
            break;
        }
        let batch: Vec<usize> = state
            .open()
            .filter(|i| !failed.contains(i))
            .take(config.concurrency.max(1))
            .collect();
        if batch.is_empty() {
            break;
        }
        let mut requests = Vec::new();
        for &i in &batch {
            let w = &state.windows[i];
            let since =
                incremental::since_for(&w.since, &bounds).unwrap_or_else(|_| w.since.clone());
            requests.push((i, w.next.clone().unwrap_or(Position::Start), since));
        }
        // The windows' requests share one access token (an OAuth 2 source's).
        if let Err(failure) = api.authorize(txn, cancel)? {
            failures.push(failure.message);
            break;
        }
        let answers = runtime::block_on_until(
            futures_util::future::join_all(requests.iter().map(|(i, at, since)| {
                api.request(
                    config,
                    at,
                    Some(since),
                    Some((until_param, &state.windows[*i].until)),
                )
            })),
            cancel,
        )?;
        for ((i, at, _), fetched) in requests.into_iter().zip(answers) {
            let window = format!(
                "window {}..{}",
                state.windows[i].since, state.windows[i].until
            );
            let mut maker = RowMaker::new(config);
            let next = match walk_answer(api, config, &at, fetched, |r, of| maker.add(r, of)) {
                Ok(next) => next,
                Err(message) => {
                    failed.insert(i);
                    failures.push(format!("{window}: {message}"));
                    continue;
                }
            };
            let rows = maker.finish();
            let mut after = state.clone();
            after.windows[i].next = next;
            after.high_water = paging::higher(after.high_water.take(), rows.high_water);
            let mark = after.done().then(|| after.mark()).flatten();
            match txn.run(|| {
                store::write_backfill_page(source, table, &rows.rows, &after, mark.as_deref())
            }) {
                Ok(written) => {
                    state = after;
                    keyless += rows.keyless;
                    progress.pages += 1;
                    progress.items += written.stored as i64;
                    progress.quarantined += written.quarantined;
                }
                Err(e) => {
                    failed.insert(i);
                    failures.push(format!("{window}: {}", write_failed(api, &e)));
                }
            }
        }
    }
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
