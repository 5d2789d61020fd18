//! The one job runner: background workers call it with a transaction per unit of work,
//! `run_jobs()` in a backend with subtransactions. Each step requeues what was abandoned,
//! then claims a job (a job without units is run to its end; a run is split into units),
//! or else works units: claimed and prepared under SPI, pulled over HTTP outside any
//! transaction, written as they come back, a few units per transaction with a
//! subtransaction each.

use super::queue;
use super::registry;
use super::source::{Batches, Job, Outcome, Prepared, Source, Unit, Units};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use pullsync_core::outcome::Status;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::future::Future;

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

    /// Keeps up to `limit` units in flight: each pulled unit is written as soon as it is
    /// back (with the others back by then, in one transaction), and with no pause between
    /// batches (`pullsync.batch_delay` = 0) the window is topped up from the queue, so
    /// the HTTP waiting of some units overlaps the writing of others.
    fn work(&self, kind: &str, limit: i64, txn: Txn, cancel: Cancel) -> Result<bool> {
        let shared = self.shared()?;
        let start = |unit: Unit, ready: U::Ready| {
            let shared = &shared;
            async move {
                let pulled = self.pull(shared, &ready).await;
                (unit, ready, pulled)
            }
        };
        let top_up = config::batch_delay().is_zero();
        // Claiming stops after a few windows, so the step ends and the worker looks at
        // the queue's other jobs and abandoned units again.
        let mut claims_left = 8;
        let mut in_flight = FuturesUnordered::new();
        let mut ids: BTreeSet<i64> = BTreeSet::new();
        let mut claimed_any = false;
        let mut queue_empty = false;
        loop {
            let room = limit - in_flight.len() as i64;
            let wanted = in_flight.is_empty() || (top_up && room >= (limit / 2).max(1));
            if claims_left > 0 && !queue_empty && wanted {
                claims_left -= 1;
                let (claimed, ready) = txn.run(|| prepare(self, kind, room))?;
                claimed_any |= claimed;
                queue_empty = !claimed;
                for (unit, ready) in ready {
                    ids.insert(unit.id);
                    in_flight.push(start(unit, ready));
                }
            }
            if in_flight.is_empty() {
                return Ok(claimed_any);
            }
            let back = match pulled_back(&mut in_flight, &ids, txn, cancel) {
                Ok(back) => back,
                Err(e) => {
                    let ids: Vec<i64> = ids.into_iter().collect();
                    txn.run(|| queue::release_units(&ids))?;
                    return Err(e);
                }
            };
            for (unit, _, _) in &back {
                ids.remove(&unit.id);
            }
            write(self, back, txn)?;
            if !top_up && in_flight.is_empty() {
                return Ok(claimed_any);
            }
        }
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

/// Waits, outside any transaction, for at least one unit in flight to come back, and
/// takes every other one back by then; the claims are kept alive with a heartbeat at a
/// third of `pullsync.unit_timeout`.
fn pulled_back<F: Future>(
    in_flight: &mut FuturesUnordered<F>,
    ids: &BTreeSet<i64>,
    txn: Txn,
    cancel: Cancel,
) -> Result<Vec<F::Output>> {
    let every = (config::unit_timeout() / 3).max(std::time::Duration::from_secs(1));
    let ids: Vec<i64> = ids.iter().copied().collect();
    let first = runtime::block_on_beating(in_flight.next(), cancel, every, || {
        txn.run(|| queue::heartbeat(&ids))
    })?;
    let mut back: Vec<F::Output> = first.into_iter().collect();
    // Polled inside the runtime: the pulls' sockets and timers belong to it.
    runtime::block_on_until(
        async {
            while let Some(Some(more)) = in_flight.next().now_or_never() {
                back.push(more);
            }
        },
        cancel,
    )?;
    Ok(back)
}

/// Writes units that came back in one transaction, each in a subtransaction of its own:
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
