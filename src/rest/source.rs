//! The REST source as the job runner sees it: a pull of one source is a job without
//! units, its pages committed one by one.

use crate::error::Result;
use crate::jobs::queue;
use crate::jobs::session::{self, Call};
use crate::jobs::source::{Job, Outcome, Source};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use serde::{Deserialize, Serialize};
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

/// `rest_pull(name)` and `rest_reconcile(name, since)`: the source, and where a
/// reconciliation lists from.
#[derive(Serialize, Deserialize)]
pub struct Named {
    pub name: String,
    #[serde(default)]
    pub since: Option<String>,
}

/// `rest_pull`: one run of the source, now.
pub const PULL_NOW: Call = Call {
    name: "rest_pull",
    run: pull_now,
};

/// `rest_reconcile`: the source listed again and compared with the target.
pub const RECONCILE: Call = Call {
    name: "rest_reconcile",
    run: reconcile_now,
};

fn pull_now(arguments: &Value, txn: Txn, cancel: Cancel) -> Result<Value> {
    let call: Named = session::arguments(arguments)?;
    super::pull::pull(&call.name, txn, cancel).map(|outcome| outcome.result)
}

fn reconcile_now(arguments: &Value, txn: Txn, cancel: Cancel) -> Result<Value> {
    let call: Named = session::arguments(arguments)?;
    super::pull::reconcile(&call.name, call.since.as_deref(), txn, cancel)
}
