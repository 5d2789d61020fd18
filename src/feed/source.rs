//! The feed consumer as the job runner sees it: a pull of one source is a job without
//! units, its pages committed one by one.

use crate::error::Result;
use crate::jobs::kind::{Job, JobKind, Outcome};
use crate::jobs::queue;
use crate::jobs::session::{self, Call};
use crate::plumbing::txn::Txn;
use crate::registry::{Retention, Schedule, Sealed, SourceSpec};
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

/// The conversation feed (consumer and provider), as general code sees it.
pub static SPEC: SourceSpec = SourceSpec {
    name: "feed",
    job_kinds: &[&FeedPull],
    calls: &[PULL_NOW, RECONCILE],
    define_settings: super::settings::define,
    start_workers: start_server,
    retention: &[
        // Once resolved; an item still waiting stays however old.
        Retention {
            key: "feed_quarantine",
            table: "pullsync.feed_quarantine",
            condition: "t.resolved_at IS NOT NULL AND t.resolved_at < now() - make_interval(secs => $1)",
        },
        // Each stream's newest checkpoint per mode stays: it is where the next pull resumes.
        Retention {
            key: "sync_checkpoints",
            table: "pullsync.sync_checkpoints",
            condition: "t.created_at < now() - make_interval(secs => $2)
                        AND t.id < (SELECT max(n.id) FROM pullsync.sync_checkpoints n
                                     WHERE n.consumer_id = t.consumer_id AND n.stream = t.stream AND n.mode = t.mode)",
        },
    ],
    sealed: &[
        Sealed {
            table: "pullsync.feed_consumers",
            column: "api_key_encrypted",
            what: "feed consumer key",
        },
        Sealed {
            table: "pullsync.feed_sources",
            column: "api_key_encrypted",
            what: "feed source key",
        },
    ],
    state_view: "pullsync.feed_source_state",
    schedules: &[
        Schedule {
            jobname: "pullsync-feed-incremental",
            schedule: "*/5 * * * *",
            command: "SELECT pullsync.feed_scheduled_sync('incremental')",
        },
        Schedule {
            jobname: "pullsync-feed-full",
            schedule: "0 2 * * *",
            command: "SELECT pullsync.feed_scheduled_sync('full')",
        },
        // The last day up to an hour ago: newer rows may still be on their way.
        Schedule {
            jobname: "pullsync-reconcile",
            schedule: "40 * * * *",
            command: "SELECT pullsync.sync_reconcile(now() - interval '25 hours', now() - interval '1 hour', repair => true) \
                      WHERE EXISTS (SELECT 1 FROM pullsync.feed_sources WHERE is_active)",
        },
    ],
};

/// The feed server, when `pullsync.feed_listen` is set.
fn start_server() {
    if super::settings::listen().is_some() {
        super::server::register();
    }
}

/// A queued pull.
#[derive(Deserialize)]
struct QueuedPull {
    consumer_id: String,
    #[serde(default = "incremental")]
    mode: String,
}

fn incremental() -> String {
    "incremental".into()
}

impl JobKind for FeedPull {
    fn kind(&self) -> &'static str {
        PULL
    }

    fn run(&self, job: &Job, txn: Txn, cancel: Cancel) -> Result<Outcome> {
        let pull: QueuedPull = job.payload()?;
        super::pull::pull(&pull.consumer_id, &pull.mode, None, txn, cancel)
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
