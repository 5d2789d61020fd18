//! The REST source as the job runner sees it: a pull of one source is a job without
//! units, its pages committed one by one.

use crate::error::Result;
use crate::jobs::queue;
use crate::jobs::source::{Job, Outcome, Source};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use serde_json::{json, Value};

const PULL: &str = "rest_pull";

pub struct RestPull;

/// Queues a pull: `{"job_id": …}`, or `{"skipped": true}` when one is already queued or
/// running for that source.
pub fn enqueue(name: &str) -> Result<Value> {
    queue::enqueue(
        PULL,
        json!({ "name": name }),
        json!({ "name": name }),
        None,
        "a pull of this source is already queued or running",
    )
}

impl Source for RestPull {
    fn name(&self) -> &'static str {
        "rest"
    }

    fn kind(&self) -> &'static str {
        PULL
    }

    fn run(&self, job: &Job, txn: Txn, cancel: Cancel) -> Result<Outcome> {
        let name = job.payload["name"].as_str().unwrap_or_default();
        super::pull::pull(name, txn, cancel)
    }
}
