//! SQL functions of the REST source (thin glue). SECURITY INVOKER with a pinned
//! search_path: each notes its caller and switches to the extension's owner itself
//! (caller.rs), and every function that names a source checks that the caller may use it.

use super::caller;
use super::{parents, preview, source, store};
use crate::error::Result;
use crate::jobs::session;
use crate::pg_error::{required, OrRaise};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

/// `work` for source `name`, as its owner's role or a role with its privileges.
fn on_source<T>(function: &str, name: &str, work: impl FnOnce() -> Result<T>) -> T {
    caller::enter(function, |caller| {
        caller.may_use(name)?;
        work()
    })
    .or_raise()
}

/// Adds a REST source owned by the calling role: `config` is checked key by key (22023
/// naming the bad key), its target checked against the caller's rights (42501), its secret
/// sealed. Returns the configuration as stored, without the secret.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_add_source(name: Option<String>, config: Option<JsonB>) -> JsonB {
    crate::plumbing::standby::require_primary("rest_add_source").or_raise();
    let name = required(name, "name");
    let config = required(config, "config").0;
    let stored = caller::enter("rest_add_source", |caller| {
        store::save(&name, &config, &caller.name, (false, true), parents::check)
    });
    JsonB(stored.or_raise())
}

/// Reads up to `pages` pages (1 to 10) of the listing `config` describes, as a pull would,
/// and writes nothing: the config is checked as `rest_add_source` checks it (`target` may
/// be left out, or name a table that does not exist yet). Returns the requests made (their
/// URLs without the secret), the rows as a pull would write them, the columns' inferred
/// types and where a pull would go on.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_preview(config: Option<JsonB>, pages: default!(Option<i32>, 1)) -> JsonB {
    let config = required(config, "config").0;
    let pages = required(pages, "pages");
    JsonB(
        caller::enter("rest_preview", |caller| {
            preview::preview(&config, pages, caller)
        })
        .or_raise(),
    )
}

/// Samples the first page of the listing `config` describes (as `rest_preview` does) and
/// proposes a `CREATE TABLE` for its records: the mapped columns (or the records' top-level
/// fields), typed by the values seen, the key as primary key, an `extra jsonb` column; then
/// the `target` to give `rest_add_source`, as a comment.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_infer_table(config: Option<JsonB>) -> String {
    let config = required(config, "config").0;
    caller::enter("rest_infer_table", |caller| {
        preview::infer_table(&config, caller)
    })
    .or_raise()
}

/// Changes a REST source: the keys of `config` replace the stored ones (give `auth` with
/// its secret to change it; without, the sealed one is kept; a new `base_url` needs it).
/// Checked as when added, against the rights of the source's owner, which stays.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_alter_source(name: Option<String>, config: Option<JsonB>) -> JsonB {
    crate::plumbing::standby::require_primary("rest_alter_source").or_raise();
    let name = required(name, "name");
    let patch = required(config, "config").0;
    JsonB(on_source("rest_alter_source", &name, || {
        store::alter(&name, &patch, parents::check)
    }))
}

/// Removes a REST source (its target table and rows stay).
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_drop_source(name: Option<String>) {
    crate::plumbing::standby::require_primary("rest_drop_source").or_raise();
    let name = required(name, "name");
    on_source("rest_drop_source", &name, || store::drop_source(&name))
}

/// Pulls a REST source now and waits for the pull: it runs in a background process of its
/// own, every page committed with its position as it comes (other sessions see it; a
/// cancel keeps what was committed and the next pull resumes there). Returns
/// `{status, pages, items, api_calls, since, …}`.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_pull(name: Option<String>) -> JsonB {
    crate::plumbing::standby::require_primary("rest_pull").or_raise();
    let name = required(name, "name");
    JsonB(on_source("rest_pull", &name, || {
        session::run_with(
            &source::PULL_NOW,
            &source::Named {
                name: name.clone(),
                since: None,
            },
        )
    }))
}

/// Queues a pull for the background workers; returns `{"job_id": …}`.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_enqueue(name: Option<String>) -> JsonB {
    crate::plumbing::standby::require_primary("rest_enqueue").or_raise();
    let name = required(name, "name");
    JsonB(on_source("rest_enqueue", &name, || {
        store::load(&name)?;
        let mut answer = super::source::enqueue(&name)?;
        crate::jobs::wake::warn_without_workers(&mut answer)?;
        Ok::<Value, _>(answer)
    }))
}

/// Lists the source again (from `since`, sent as its incremental parameter, or all of it)
/// and reports the keys the target lacks, as a row of `reconciliation_runs`; in a
/// background process of its own, as `rest_pull`.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_reconcile(name: Option<String>, since: default!(Option<String>, "NULL")) -> JsonB {
    crate::plumbing::standby::require_primary("rest_reconcile").or_raise();
    let name = required(name, "name");
    JsonB(on_source("rest_reconcile", &name, || {
        session::run_with(
            &source::RECONCILE,
            &source::Named {
                name: name.clone(),
                since,
            },
        )
    }))
}

/// Applies the source's quarantined records again (after the cause is fixed: a column
/// type, a constraint); returns `{retried, stored, still_quarantined}`.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn rest_retry_quarantined(name: Option<String>) -> JsonB {
    crate::plumbing::standby::require_primary("rest_retry_quarantined").or_raise();
    let name = required(name, "name");
    JsonB(on_source("rest_retry_quarantined", &name, || {
        store::retry_quarantined(&name)
    }))
}

/// Refuses (42501) unless the calling role may use REST source `name` (42704 when there
/// is none): `rest_schedule`, which runs with the caller's rights, asks before it makes a
/// pg_cron job. It tells nothing but that.
#[pg_extern(schema = "pullsync", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
pub fn rest_check_access(name: Option<String>) {
    let name = required(name, "name");
    on_source("rest_check_access", &name, || Ok(()))
}
