//! SQL functions of the REST source (thin glue).

use super::{pull, store};
use crate::pg_error::{required, OrRaise};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use pgrx::prelude::*;
use pgrx::JsonB;

/// Adds a REST source: `config` is checked key by key (22023 naming the bad key), its
/// target checked against the calling role's rights (42501), its secret sealed. Returns
/// the configuration as stored, without the secret.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_add_source(name: Option<String>, config: Option<JsonB>) -> JsonB {
    let name = required(name, "name");
    let config = required(config, "config").0;
    JsonB(store::save(&name, &config, false, true).or_raise())
}

/// Changes a REST source: the keys of `config` replace the stored ones (give `auth` with
/// its secret to change it; without, the sealed one is kept). Checked as when added, and
/// its writes then have the calling role's rights.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_alter_source(name: Option<String>, config: Option<JsonB>) -> JsonB {
    let name = required(name, "name");
    let patch = required(config, "config").0;
    let merged = store::patched(&name, &patch).or_raise();
    JsonB(store::save(&name, &merged, true, patch.get("auth").is_some()).or_raise())
}

/// Removes a REST source (its target table and rows stay).
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_drop_source(name: Option<String>) {
    store::drop_source(&required(name, "name")).or_raise()
}

/// Pulls a REST source now, in this session: every page with its position in a
/// subtransaction. Returns `{status, pages, items, api_calls, since, …}`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_pull(name: Option<String>) -> JsonB {
    let name = required(name, "name");
    JsonB(
        pull::pull(&name, Txn::Subtransaction, Cancel::Backend)
            .or_raise()
            .result,
    )
}

/// Queues a pull for the background workers; returns `{"job_id": …}`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_enqueue(name: Option<String>) -> JsonB {
    let name = required(name, "name");
    store::load(&name).or_raise();
    let mut answer = super::source::enqueue(&name).or_raise();
    crate::jobs::wake::warn_without_workers(&mut answer).or_raise();
    JsonB(answer)
}

/// Lists the source again (from `since`, sent as its incremental parameter, or all of it)
/// and reports the keys the target lacks, as a row of `reconciliation_runs`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_reconcile(name: Option<String>, since: default!(Option<String>, "NULL")) -> JsonB {
    let name = required(name, "name");
    JsonB(pull::reconcile(&name, since.as_deref(), Cancel::Backend).or_raise())
}

/// Applies the source's quarantined records again (after the cause is fixed: a column
/// type, a constraint); returns `{retried, stored, still_quarantined}`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_retry_quarantined(name: Option<String>) -> JsonB {
    JsonB(store::retry_quarantined(&required(name, "name")).or_raise())
}
