//! The one job runner: background workers call it with a transaction per unit of work,
//! `run_jobs()` in a backend with subtransactions. Each step requeues what was abandoned,
//! then claims a job (a job without units is run to its end; a run is split into units),
//! or else claims a batch of units: prepared under SPI, pulled over HTTP outside any
//! transaction, written in one transaction with a subtransaction each.

use super::queue;
use super::registry;
use super::source::{Batches, Job, Outcome, Prepared, Source, Unit, Units};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use futures_util::future::join_all;
use pullsync_core::outcome::Status;
use serde_json::{json, Value};

/// One round. Returns whether there was anything to do.
pub fn step(txn: Txn, cancel: Cancel) -> Result<bool> {
    txn.run(queue::requeue_abandoned)?;
    if let Some(job) = txn.run(queue::claim_and_plan_run)? {
        if let Some(source) = registry::by_kind(&job.kind).filter(|s| s.units().is_none()) {
            run_single(source, &job, txn, cancel)?;
        }
        return Ok(true);
    }
    let limit = i64::from(config::batch_size());
    for source in registry::all() {
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
fn run_single(source: &dyn Source, job: &Job, txn: Txn, cancel: Cancel) -> Result<()> {
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

    /// Claims a batch of up to `limit` units, pulls them concurrently, then writes them
    /// all in one transaction (a subtransaction each, one count on their run).
    fn work(&self, kind: &str, limit: i64, txn: Txn, cancel: Cancel) -> Result<bool> {
        let (claimed, ready) = txn.run(|| prepare(self, kind, limit))?;
        if ready.is_empty() {
            return Ok(claimed);
        }
        let ids: Vec<i64> = ready.iter().map(|(u, _)| u.id).collect();
        let pulls = match pull(self, &ready, &ids, txn, cancel) {
            Ok(pulls) => pulls,
            Err(e) => {
                txn.run(|| queue::release_units(&ids))?;
                return Err(e);
            }
        };
        let back = ready
            .into_iter()
            .zip(pulls)
            .map(|((unit, ready), pulled)| (unit, ready, pulled))
            .collect();
        write(self, back, txn)?;
        Ok(true)
    }

    fn finish(&self, job: &Job, totals: &super::source::RunTotals) -> Result<Value> {
        Units::finish(self, job, totals)
    }
}

type Claimed<R> = (bool, Vec<(Unit, R)>);

/// Claims units and prepares them, in one unit of work; units with nothing to pull are
/// completed at once.
fn prepare<U: Units>(source: &U, kind: &str, limit: i64) -> Result<Claimed<U::Ready>> {
    let units = queue::claim_units(kind, limit)?;
    let claimed = !units.is_empty();
    let mut ready = Vec::with_capacity(units.len());
    for unit in units {
        match source.prepare(&unit)? {
            Prepared::Ready(r) => ready.push((unit, r)),
            Prepared::Done(outcome) => queue::complete_unit(&unit, &outcome)?,
        }
    }
    Ok((claimed, ready))
}

/// Pulls the batch concurrently, outside any transaction, keeping its claims alive with
/// a heartbeat at a third of `pullsync.unit_timeout`.
fn pull<U: Units>(
    source: &U,
    ready: &[(Unit, U::Ready)],
    ids: &[i64],
    txn: Txn,
    cancel: Cancel,
) -> Result<Vec<U::Pulled>> {
    let shared = source.shared()?;
    let every = config::unit_timeout() / 3;
    runtime::block_on_beating(
        join_all(ready.iter().map(|(_, r)| source.pull(&shared, r))),
        cancel,
        every.max(std::time::Duration::from_secs(1)),
        || txn.run(|| queue::heartbeat(ids)),
    )
}

/// Writes a pulled batch in one transaction, each unit in a subtransaction of its own:
/// a write that fails rolls back alone and its failure is recorded instead. A claim that
/// lost its unit (requeued after unit_timeout) writes nothing.
fn write<U: Units>(source: &U, back: Vec<(Unit, U::Ready, U::Pulled)>, txn: Txn) -> Result<()> {
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

/// `run_jobs()`: works the queue in this backend until it is empty.
pub fn run_all_here() -> Result<u32> {
    let mut rounds = 0;
    while step(Txn::Subtransaction, Cancel::Backend)? {
        rounds += 1;
        if rounds > 1_000_000 {
            return Err(PullsyncError::Internal("the queue did not drain".into()));
        }
    }
    Ok(rounds)
}
