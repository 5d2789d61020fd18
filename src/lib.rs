//! pg_pullsync: pulls data from HTTP APIs into the database it runs in.
//! Module map and flow: docs/ARCHITECTURE.md.

use pgrx::prelude::*;

pub mod config;
pub mod error;
pub mod feed;
pub mod jobs;
mod key_rotation;
pub mod monitor;
mod pg_error;
mod pg_time;
pub mod plumbing;
pub mod reconcile;
pub mod registry;
pub mod rest;
mod retention;
mod runtime;
mod secrets;
pub mod threads;

/// Every source this library runs, one line each.
static SOURCES: registry::Sources = &[
    &threads::source::SPEC,
    &feed::source::SPEC,
    &rest::source::SPEC,
];

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/jobs.sql", name = "jobs", requires = ["schema"]);
extension_sql_file!(
    "../sql/monitor.sql",
    name = "monitor",
    requires = ["schema"]
);
extension_sql_file!("../sql/backup.sql", name = "backup", requires = ["schema"]);
extension_sql_file!(
    "../sql/sources.sql",
    name = "sources",
    requires = ["schema", jobs::functions::is_source]
);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

/// Names schema `pullsync` for pgrx, so `#[pg_extern(schema = "pullsync")]` can refer to
/// it. sql/schema.sql creates it, which makes it a member of the extension.
#[pg_schema]
mod pullsync {}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    registry::install(SOURCES);
    config::register(preloading);
    for source in SOURCES {
        (source.define_settings)(preloading);
    }
    jobs::session::install(
        std::iter::once(&jobs::functions::RUN_JOBS)
            .chain(SOURCES.iter().flat_map(|s| s.calls.iter()))
            .collect(),
    );
    if preloading && plumbing::standby::binary_upgrade() {
        // pg_upgrade's own run of the server: nothing of ours may start there (as pg_cron).
        log!("pg_pullsync: binary-upgrade mode (pg_upgrade), so no background workers start");
    } else if preloading {
        jobs::worker::register(config::workers());
        for source in SOURCES {
            (source.start_workers)();
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

/// Required by `cargo pgrx test`; the in-database tests read its key file's path.
#[cfg(any(test, feature = "pg_test"))]
pub mod pg_test {
    macro_rules! key_file {
        () => {
            "/tmp/pg_pullsync-pg_test.key"
        };
    }
    /// Where the test cluster's key file is; written before each test starts the cluster.
    pub const KEY_FILE: &str = key_file!();
    /// A fixed test key: never used outside the throwaway test cluster.
    pub const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    /// Writes the key file, private to the user the cluster runs as (postgres when the
    /// tests run as root with `--runas postgres`).
    pub fn setup(_options: Vec<&str>) {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::read_to_string(KEY_FILE).is_ok_and(|k| k == KEY) {
            return;
        }
        // Tests run on several threads of one process: each stages its own file.
        let staged = format!(
            "{KEY_FILE}.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        std::fs::write(&staged, KEY).expect("write the test key file");
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the test key file");
        // SAFETY: plain libc lookups; the passwd entry is read before any other call.
        unsafe {
            if libc::geteuid() == 0 {
                let pw = libc::getpwnam(c"postgres".as_ptr());
                if !pw.is_null() {
                    let path = std::ffi::CString::new(staged.clone()).expect("no NUL");
                    libc::chown(path.as_ptr(), (*pw).pw_uid, (*pw).pw_gid);
                }
            }
        }
        std::fs::rename(&staged, KEY_FILE).expect("install the test key file");
    }

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pg_pullsync'",
            concat!("pullsync.encryption_key_file = '", key_file!(), "'"),
        ]
    }
}
