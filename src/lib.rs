//! pg_pullsync: pulls data from HTTP APIs into the database it runs in.
//! Module map and flow: docs/ARCHITECTURE.md.

use pgrx::prelude::*;

pub mod config;
pub mod crypto;
pub mod error;
pub mod feed;
pub mod http;
pub mod jobs;
mod key_rotation;
pub mod monitor;
mod pg_compat;
mod pg_error;
mod pg_time;
pub mod reconcile;
mod retention;
mod runtime;
pub mod schema_version;
mod subxact;
pub mod threads;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/jobs.sql", name = "jobs", requires = ["schema"]);
extension_sql_file!("../sql/feed.sql", name = "feed", requires = ["schema"]);
extension_sql_file!(
    "../sql/monitor.sql",
    name = "monitor",
    requires = ["schema"]
);
extension_sql_file!("../sql/backup.sql", name = "backup", requires = ["schema"]);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

/// Names schema `pullsync` for pgrx, so `#[pg_extern(schema = "pullsync")]` can refer to
/// it. sql/schema.sql creates it, which makes it a member of the extension.
#[pg_schema]
mod pullsync {}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    config::register(preloading);
    if preloading {
        jobs::worker::register(config::WORKERS.get());
        if config::feed_listen().is_some() {
            feed::server::register();
        }
    } else {
        log!(
            "pg_pullsync: loaded without shared_preload_libraries, so no background workers run; \
             queued jobs wait until run with pullsync.run_jobs() or until pg_pullsync is preloaded"
        );
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pg_pullsync'",
            // A fixed test key: never used outside the throwaway test cluster.
            "pullsync.encryption_key = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='",
        ]
    }
}
