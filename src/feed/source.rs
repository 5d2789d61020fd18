//! The feed consumer as the job runner sees it: a pull of one source is a job without
//! units, its pages committed one by one.

use crate::error::Result;
use crate::jobs::queue;
use crate::jobs::session::{self, Call};
use crate::jobs::source::{Job, Outcome, Source};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const PULL: &str = "feed_pull";

pub struct FeedPull;

/// Queues a pull: `{"job_id": …}`, or `{"skipped": true}` when one is already queued or
/// running for that source.
pub fn enqueue(consumer_id: &str, mode: &str) -> Result<Value> {
    queue::enqueue(
        PULL,
        json!({ "consumer_id": consumer_id, "mode": mode }),
        json!({ "consumer_id": consumer_id }),
        None,
        "a pull of this source is already queued or running",
    )
}

impl Source for FeedPull {
    fn name(&self) -> &'static str {
        "feed"
    }

    fn kind(&self) -> &'static str {
        PULL
    }

    fn run(&self, job: &Job, txn: Txn, cancel: Cancel) -> Result<Outcome> {
        let consumer = job.payload["consumer_id"].as_str().unwrap_or_default();
        let mode = job.payload["mode"].as_str().unwrap_or("incremental");
        super::pull::pull(consumer, mode, None, txn, cancel)
    }
}

/// `feed_pull(consumer_id, mode, max_pages)`.
#[derive(Serialize, Deserialize)]
pub struct PullArguments {
    pub consumer_id: String,
    pub mode: String,
    pub max_pages: Option<u32>,
}

/// `sync_reconcile(start, end, consumer_id, repair)`, its sources resolved.
#[derive(Serialize, Deserialize)]
pub struct ReconcileArguments {
    pub consumer_ids: Vec<String>,
    pub window: (DateTime<Utc>, DateTime<Utc>),
    pub repair: bool,
}

/// `feed_pull`: one pull of a source, now (`max_pages` may stop it early).
pub const PULL_NOW: Call = Call {
    name: "feed_pull",
    run: pull_now,
};

/// `sync_reconcile`: sources' counts and ids against this database's, repaired on request.
pub const RECONCILE: Call = Call {
    name: "sync_reconcile",
    run: reconcile_now,
};

fn pull_now(arguments: &Value, txn: Txn, cancel: Cancel) -> Result<Value> {
    let call: PullArguments = session::arguments(arguments)?;
    super::pull::pull(&call.consumer_id, &call.mode, call.max_pages, txn, cancel)
        .map(|outcome| outcome.result)
}

fn reconcile_now(arguments: &Value, txn: Txn, cancel: Cancel) -> Result<Value> {
    let call: ReconcileArguments = session::arguments(arguments)?;
    let (start, end) = call.window;
    let mut runs = Vec::with_capacity(call.consumer_ids.len());
    for consumer_id in &call.consumer_ids {
        runs.push(super::reconcile::reconcile(
            consumer_id,
            (start, end),
            call.repair,
            txn,
            cancel,
        )?);
    }
    // The worst of the runs: a failure over a mismatch over a repair over success.
    let rank = |s: &str| match s {
        "success" => 0,
        "repaired" => 1,
        "mismatch" => 2,
        _ => 3,
    };
    let status = runs
        .iter()
        .filter_map(|r| r["status"].as_str())
        .max_by_key(|s| rank(s))
        .unwrap_or("success")
        .to_string();
    Ok(json!({ "status": status, "runs": runs }))
}
