//! The one job runner: background workers call it with a transaction per unit of work,
//! `run_jobs()` in a backend with subtransactions. Each step requeues what was abandoned,
//! then claims a job (a job without units is run to its end; a run is split into units),
//! or else claims a batch of units: prepared under SPI, pulled over HTTP outside any
//! transaction on the background runtime (the next batch's while this one is written),
//! written in one transaction with a subtransaction each.

use super::kind::{Batches, Job, JobKind, Outcome, Prepared, Unit, Units};
use super::queue;
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::plumbing::bgworker;
use crate::plumbing::txn::Txn;
use crate::registry;
use crate::runtime::{self, Background, Cancel};
use futures_util::future::join_all;
use pullsync_core::outcome::Status;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// One round. Returns whether there was anything to do.
pub fn step(txn: Txn, cancel: Cancel) -> Result<bool> {
    txn.run(queue::requeue_abandoned)?;
    if let Some(job) = txn.run(queue::claim_and_plan_run)? {
        match registry::job_kind(&job.kind) {
            Some(source) if source.units().is_none() => run_single(source, &job, txn, cancel)?,
            // Planning sorted the whole fleet: give back what the sort left free.
            _ => bgworker::release_free_memory(),
        }
        return Ok(true);
    }
    let limit = i64::from(config::batch_size());
    for source in registry::job_kinds() {
        if let Some(batches) = source.units() {
            if batches.work(source.kind(), limit, txn, cancel)? {
                // The pause spreads a run's calls over time (the seed's 2 s between batches).
                let pause = config::batch_delay();
                if !pause.is_zero() {
                    runtime::sleep(pause, cancel)?;
                }
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A job without units, to its end. Stopped by the worker's stop, it goes back to the
/// queue; what it committed stays.
fn run_single(source: &dyn JobKind, job: &Job, txn: Txn, cancel: Cancel) -> Result<()> {
    let outcome = match source.run(job, txn, cancel) {
        Ok(outcome) => outcome,
        Err(PullsyncError::Interrupted) => {
            txn.run(|| queue::requeue_job(job.id))?;
            return Err(PullsyncError::Interrupted);
        }
        Err(e) => failed(&job.payload, &e),
    };
    txn.run(|| queue::finish_single(job.id, &outcome))
}

/// The outcome of work that failed as a whole: what it was asked, and why it failed.
fn failed(payload: &Value, error: &PullsyncError) -> Outcome {
    let mut result = payload.clone();
    if !result.is_object() {
        result = json!({});
    }
    result["status"] = json!(Status::Failed.as_str());
    result["error"] = json!(error.to_string());
    Outcome {
        status: Status::Failed,
        api_calls: 0,
        items: 0,
        error: Some(error.to_string()),
        result,
    }
}

impl<U: Units> Batches for U {
    fn units_query(&self) -> &'static str {
        Units::units_query(self)
    }

    fn unit_kind(&self) -> &'static str {
        Units::unit_kind(self)
    }

    fn phase(&self) -> &'static str {
        Units::phase(self)
    }

    /// Claims a batch of up to `limit` units and pulls them concurrently on the background
    /// runtime, then writes them all in one transaction (a subtransaction each, one count
    /// on their run). Batches overlap: the next one is claimed, prepared and its pulls
    /// started while this one's pulls run, and they go on while this one is written; the
    /// batches share one client, so `pullsync.http_concurrency` bounds them together. It
    /// stops taking batches when the run has none left for it, when a job waits, when the
    /// worker is told to stop, or when `pullsync.batch_delay` asks for a pause.
    fn work(&self, kind: &str, limit: i64, txn: Txn, cancel: Cancel) -> Result<bool> {
        let mut shared = None;
        let (claimed, mut current) = txn.run(|| start(self, &mut shared, kind, limit))?;
        while let Some(batch) = current.take() {
            let next = if take_another(txn, cancel)? {
                let started = txn.run(|| start(self, &mut shared, kind, limit));
                released_on_error(started, &batch.ids, txn)?.1
            } else {
                None
            };
            let written = batch
                .wait(txn, cancel)
                .and_then(|back| write(self, back, txn));
            released_on_error(written, next.as_ref().map_or(&[], |n| &n.ids), txn)?;
            current = next;
        }
        // The stretch is over (the run has nothing left for this worker): give back what
        // its batches and the run's closing left free, so the worker's memory does not
        // grow with the length of a run.
        bgworker::release_free_memory();
        Ok(claimed)
    }

    fn finish(&self, job: &Job, totals: &super::kind::RunTotals) -> Result<Value> {
        Units::finish(self, job, totals)
    }
}

/// A claimed batch whose pulls run on the background runtime.
struct InFlight<U: Units> {
    ready: Vec<(Unit, Arc<U::Ready>)>,
    ids: Vec<i64>,
    pulls: Background<Vec<U::Pulled>>,
}

type Pulled<U> = Vec<(Unit, Arc<<U as Units>::Ready>, <U as Units>::Pulled)>;

/// Claims units, prepares them (units with nothing to pull are completed at once) and
/// starts the pulls of the rest, making what they share on first use. Returns whether it
/// claimed any, and what it started.
fn start<U: Units>(
    source: &U,
    shared: &mut Option<Arc<U::Shared>>,
    kind: &str,
    limit: i64,
) -> Result<(bool, Option<InFlight<U>>)> {
    let units = queue::claim_units(kind, limit)?;
    let claimed = !units.is_empty();
    let mut ready = Vec::with_capacity(units.len());
    for unit in units {
        match source.prepare(&unit)? {
            Prepared::Ready(r) => ready.push((unit, Arc::new(r))),
            Prepared::Done(outcome) => queue::complete_unit(&unit, &outcome)?,
        }
    }
    if ready.is_empty() {
        return Ok((claimed, None));
    }
    let shared = match shared {
        Some(shared) => Arc::clone(shared),
        None => Arc::clone(shared.insert(Arc::new(source.shared()?))),
    };
    let pulls = join_all(
        ready
            .iter()
            .map(|(_, r)| U::pull(Arc::clone(&shared), Arc::clone(r))),
    );
    let ids = ready.iter().map(|(u, _)| u.id).collect();
    Ok((
        claimed,
        Some(InFlight {
            ready,
            ids,
            pulls: runtime::spawn(pulls),
        }),
    ))
}

impl<U: Units> InFlight<U> {
    /// Waits for the batch's pulls, keeping its claims alive with a heartbeat at a third
    /// of `pullsync.unit_timeout`. Stopped, it gives its units back to the queue.
    fn wait(self, txn: Txn, cancel: Cancel) -> Result<Pulled<U>> {
        let every = (config::unit_timeout() / 3).max(Duration::from_secs(1));
        let ids = self.ids;
        let pulls = self
            .pulls
            .wait_beating(cancel, every, || txn.run(|| queue::heartbeat(&ids)));
        let pulls = released_on_error(pulls, &ids, txn)?;
        Ok(self
            .ready
            .into_iter()
            .zip(pulls)
            .map(|((unit, ready), pulled)| (unit, ready, pulled))
            .collect())
    }
}

/// Another batch only when nothing asks the worker to do something else first.
fn take_another(txn: Txn, cancel: Cancel) -> Result<bool> {
    Ok(config::batch_delay().is_zero() && !cancel.requested() && !txn.run(queue::job_waiting)?)
}

/// `result`, with the claimed units `ids` back in the queue when it is an error.
fn released_on_error<T>(result: Result<T>, ids: &[i64], txn: Txn) -> Result<T> {
    if result.is_err() {
        txn.run(|| queue::release_units(ids))?;
    }
    result
}

/// Writes a pulled batch in one transaction, each unit in a subtransaction of its own:
/// a write that fails rolls back alone and its failure is recorded instead. A claim that
/// lost its unit (requeued after unit_timeout) writes nothing.
fn write<U: Units>(source: &U, back: Pulled<U>, txn: Txn) -> Result<()> {
    txn.run(|| {
        let mut completed = queue::Completed::default();
        for (unit, ready, pulled) in back {
            let written = Txn::Subtransaction.run(|| {
                if queue::still_claimed(&unit)? {
                    let outcome = source.write(&unit, &ready, pulled)?;
                    queue::record_unit(&unit, &outcome, &mut completed)?;
                }
                Ok(())
            });
            if let Err(error) = written {
                Txn::Subtransaction.run(|| {
                    if queue::still_claimed(&unit)? {
                        let outcome = source.write_failed(&unit, &ready, &error)?;
                        queue::record_unit(&unit, &outcome, &mut completed)?;
                    }
                    Ok(())
                })?;
            }
        }
        queue::count_completed(completed)
    })
}

/// `run_jobs()`: works the queue until it is empty; returns how many steps ran.
pub fn run_all(txn: Txn, cancel: Cancel) -> Result<u32> {
    let mut rounds = 0;
    while step(txn, cancel)? {
        rounds += 1;
        if rounds > 1_000_000 {
            return Err(PullsyncError::Internal("the queue did not drain".into()));
        }
    }
    Ok(rounds)
}
