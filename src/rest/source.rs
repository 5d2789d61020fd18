//! The REST source as the job runner sees it: a pull of one source is a job without
//! units, its pages committed one by one.

use crate::error::Result;
use crate::jobs::kind::{Job, JobKind, Outcome};
use crate::jobs::queue;
use crate::jobs::session::{self, Call};
use crate::plumbing::txn::Txn;
use crate::registry::{Retention, Sealed, SourceSpec};
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

/// The REST source, as general code sees it.
pub static SPEC: SourceSpec = SourceSpec {
    name: "rest",
    job_kinds: &[&RestPull],
    calls: &[PULL_NOW, RECONCILE, super::preview::PREVIEW],
    define_settings: super::settings::define,
    start_workers: || {},
    retention: &[Retention {
        key: "rest_quarantine",
        table: "pullsync.rest_quarantine",
        // Once resolved; a record still waiting stays however old.
        condition:
            "t.resolved_at IS NOT NULL AND t.resolved_at < now() - make_interval(secs => $1)",
    }],
    sealed: &[
        Sealed {
            table: "pullsync.rest_sources",
            column: "secret_encrypted",
            what: "REST source secret",
        },
        Sealed {
            table: "pullsync.rest_sources",
            column: "refresh_token_encrypted",
            what: "REST source OAuth 2 refresh token",
        },
        Sealed {
            table: "pullsync.rest_sources",
            column: "access_token_encrypted",
            what: "REST source OAuth 2 access token",
        },
    ],
    state_view: "pullsync.rest_source_state",
    // Each source is scheduled on its own (`rest_schedule`).
    schedules: &[],
};

impl JobKind for RestPull {
    fn kind(&self) -> &'static str {
        PULL
    }

    fn run(&self, job: &Job, txn: Txn, cancel: Cancel) -> Result<Outcome> {
        let source: Named = job.payload()?;
        super::run::run(&source.name, txn, cancel)
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
    super::run::run(&call.name, txn, cancel).map(|outcome| outcome.result)
}

fn reconcile_now(arguments: &Value, txn: Txn, cancel: Cancel) -> Result<Value> {
    let call: Named = session::arguments(arguments)?;
    super::pull::reconcile(&call.name, call.since.as_deref(), txn, cancel)
}
