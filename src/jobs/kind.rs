//! What a kind of job is to the job runner. The queue and the runner drive every kind
//! through this trait and never name one; each source lists its kinds in its `SourceSpec`.
//!
//! A job is either a run of units (Threads: one unit per account, claimed by
//! any worker, each written in its own transaction) or a single piece of work that the
//! source does in one call of `run` (a feed pull, the token refresh).

use crate::error::{PullsyncError, Result};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use pullsync_core::outcome::Status;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// A claimed top-level job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    pub job_log_id: Option<i64>,
}

impl Job {
    /// The payload as the kind's own type.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            PullsyncError::Internal(format!(
                "job {} of kind {}: its payload: {e}",
                self.id, self.kind
            ))
        })
    }
}

/// A claimed unit of a run.
#[derive(Debug, Clone)]
pub struct Unit {
    pub id: i64,
    /// The claim: `attempts` after this claim. A unit requeued and claimed again by
    /// another worker has a higher one, and this claim can no longer complete it.
    pub claim: i32,
    pub run_id: i64,
    /// What the source's `units_query` gave this unit.
    pub payload: Value,
    pub job_log_id: Option<i64>,
}

/// What became of one unit, or of a job without units.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// Requests made and rows written, summed over a run's units.
    pub api_calls: i64,
    pub items: i64,
    pub error: Option<String>,
    /// The result as recorded in `pullsync.jobs.result` (and returned by SQL functions).
    pub result: Value,
}

/// A unit after `prepare`: ready to pull, or already done (nothing to pull).
pub enum Prepared<R> {
    Ready(R),
    Done(Outcome),
}

/// A run's units, counted when its last unit is done.
#[derive(Debug, Clone, Default)]
pub struct RunTotals {
    pub units: i64,
    pub succeeded: i64,
    pub skipped: i64,
    /// Skipped units that wait for an API's rate limit (among `skipped`).
    pub rate_limited: i64,
    pub failed: i64,
    pub api_calls: i64,
    pub items: i64,
    pub duration_ms: i64,
    /// The workers that worked its units.
    pub worker_pids: Value,
}

impl RunTotals {
    /// A run in which no unit succeeded is a failure, even when none counted as an error
    /// (every account's token refused, say). Units deferred by a rate limit are no
    /// failure, but the run is not done either: partial.
    pub fn status(&self) -> Status {
        if self.units > 0 && self.succeeded == 0 && self.rate_limited == 0 {
            return Status::Failed;
        }
        match Status::of(
            (self.succeeded + self.rate_limited) as usize,
            self.failed as usize,
        ) {
            Status::Completed if self.rate_limited > 0 => Status::Partial,
            status => status,
        }
    }
}

/// A kind of job, and how it runs. A job is either done by `run` in one go, or, when
/// `units` says so, a run of units the runner works in batches.
pub trait JobKind: Sync {
    /// `pullsync.jobs.kind` of these jobs.
    fn kind(&self) -> &'static str;

    /// A job without units, from start to end: the source delimits its own units of work
    /// with `txn` and stops early when `cancel` asks. `Err(Interrupted)` puts the job back
    /// in the queue with what it committed so far kept.
    fn run(&self, job: &Job, txn: Txn, cancel: Cancel) -> Result<Outcome> {
        let _ = (txn, cancel);
        Err(PullsyncError::Internal(format!(
            "job {} of kind {} is a run of units",
            job.id, job.kind
        )))
    }

    /// For a kind whose jobs are runs of units: itself, as the runner drives it.
    fn units(&self) -> Option<&dyn Batches> {
        None
    }
}

/// A kind of job that is a run of units: how a run is planned, the four steps of each
/// batch, and how a run closes. Every method runs on the main thread; only the future
/// `pull` returns runs on the background HTTP runtime.
pub trait Units: Sync {
    /// A prepared unit, ready to pull.
    type Ready: Send + Sync + 'static;
    /// What one unit's pull brought back.
    type Pulled: Send + 'static;
    /// What a batch's pulls share (an HTTP client, settings read once).
    type Shared: Send + Sync + 'static;

    /// A query giving one jsonb payload per unit, in the order to work them.
    fn units_query(&self) -> &'static str;

    /// `pullsync.jobs.kind` of the units.
    fn unit_kind(&self) -> &'static str;

    /// The run's phase while its units are worked (shown in `jobs_running`).
    fn phase(&self) -> &'static str;

    /// SPI, in the transaction that claimed the unit: open secrets, load what is known.
    fn prepare(&self, unit: &Unit) -> Result<Prepared<Self::Ready>>;

    /// What the pulls of consecutive batches share; made before the first starts.
    fn shared(&self) -> Result<Self::Shared>;

    /// Pulls one prepared unit over HTTP, on the background runtime while the worker
    /// writes the batch before; so it never calls Postgres. Dropped (its requests
    /// abandoned) when the worker is told to stop.
    fn pull(
        shared: Arc<Self::Shared>,
        ready: Arc<Self::Ready>,
    ) -> impl Future<Output = Self::Pulled> + Send + 'static;

    /// Writes one pulled unit (SPI, in the unit's own transaction).
    fn write(&self, unit: &Unit, ready: &Self::Ready, pulled: Self::Pulled) -> Result<Outcome>;

    /// The outcome of a unit whose write failed and rolled back, recorded in a fresh
    /// transaction.
    fn write_failed(
        &self,
        unit: &Unit,
        ready: &Self::Ready,
        error: &PullsyncError,
    ) -> Result<Outcome>;

    /// Closes a run, in the transaction of its last unit: the metrics, the job log's
    /// metadata, whatever the source holds for the run. Returns the run's result.
    fn finish(&self, job: &Job, totals: &RunTotals) -> Result<Value>;
}

/// A run of units as the runner drives it, whatever the kind's types (`runner.rs`
/// implements it for every `Units`).
pub trait Batches: Sync {
    fn units_query(&self) -> &'static str;
    fn unit_kind(&self) -> &'static str;
    fn phase(&self) -> &'static str;
    /// Claims up to `limit` units of `kind`'s runs, prepares, pulls and writes them.
    /// Returns whether it claimed any.
    fn work(&self, kind: &str, limit: i64, txn: Txn, cancel: Cancel) -> Result<bool>;
    fn finish(&self, job: &Job, totals: &RunTotals) -> Result<Value>;
}
