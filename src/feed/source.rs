//! The feed consumer as the job runner sees it: a pull of one source is a job without
//! units, its pages committed one by one.

use crate::error::Result;
use crate::jobs::queue;
use crate::jobs::source::{Job, Outcome, Source};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
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
