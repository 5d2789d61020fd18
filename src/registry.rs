//! The sources this library was built with. Each describes itself once, in a `SourceSpec`
//! (its `source.rs`), and `lib.rs` lists the specs, one line each. The general code — the
//! job runner, session calls, settings, retention, key rotation, monitoring, scheduling —
//! loops over the specs and never names a source. A source's tables, views and their
//! registration for backups are in its own SQL file (`sql/<source>.sql`).

use crate::jobs::kind::JobKind;
use crate::jobs::session::Call;
use std::sync::OnceLock;

/// Everything general code needs to know of a source.
pub struct SourceSpec {
    /// `sync_logs.source` and `reconciliation_runs.source`.
    pub name: &'static str,
    /// The kinds of job it queues for the workers.
    pub job_kinds: &'static [&'static dyn JobKind],
    /// Its calls made in a session, run in a process of their own (`jobs::session`).
    pub calls: &'static [Call],
    /// Defines its `pullsync.*` settings; `true` while the library is preloaded, when
    /// server-start settings may be defined too.
    pub define_settings: fn(preloading: bool),
    /// Registers its own background workers at server start, if it has any.
    pub start_workers: fn(),
    /// What `pullsync.cleanup()` removes of its tables.
    pub retention: &'static [Retention],
    /// Its columns sealed with the encryption key, re-sealed by `rotate_encryption_key`.
    pub sealed: &'static [Sealed],
    /// Its state view: `source`, `configured_at`, `jobs_running` and `details` (jsonb),
    /// one row per configured instance; `source_metrics` joins them (sql/monitor.sql).
    pub state_view: &'static str,
    /// Its default pg_cron jobs (`schedule_defaults()`).
    pub schedules: &'static [Schedule],
}

/// A retention rule: rows of `table` (as `t`) matching `condition` go. In the condition,
/// `$1` is `pullsync.log_retention`, `$2` `pullsync.checkpoint_retention` and `$3`
/// `pullsync.snapshot_retention`, in seconds.
pub struct Retention {
    /// Its key in `cleanup()`'s report.
    pub key: &'static str,
    pub table: &'static str,
    pub condition: &'static str,
}

/// A column holding sealed values.
pub struct Sealed {
    pub table: &'static str,
    pub column: &'static str,
    /// What a value is called in errors ("feed source key").
    pub what: &'static str,
}

/// A default pg_cron job.
pub struct Schedule {
    /// Starts with `pullsync-`, which `unschedule_all()` removes.
    pub jobname: &'static str,
    pub schedule: &'static str,
    pub command: &'static str,
}

pub type Sources = &'static [&'static SourceSpec];

static SOURCES: OnceLock<Sources> = OnceLock::new();

/// Installs the sources, once per process (`_PG_init`).
pub fn install(sources: Sources) {
    let _ = SOURCES.set(sources);
}

pub fn all() -> Sources {
    SOURCES.get().copied().unwrap_or_default()
}

/// Every job kind of every source.
pub fn job_kinds() -> impl Iterator<Item = &'static dyn JobKind> {
    all().iter().flat_map(|s| s.job_kinds.iter().copied())
}

/// The job kind `kind` (`pullsync.jobs.kind`).
pub fn job_kind(kind: &str) -> Option<&'static dyn JobKind> {
    job_kinds().find(|k| k.kind() == kind)
}

/// Whether `name` is a registered source's name.
pub fn is_source(name: &str) -> bool {
    all().iter().any(|s| s.name == name)
}
