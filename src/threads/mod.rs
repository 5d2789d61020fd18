//! The Threads source: its jobs (source), the sync flow (sync) over the pure pull in
//! pullsync-core, the three-layer store, the token refresh, reconciliation of a window,
//! and the SQL functions.

pub mod functions;
pub mod reconcile;
pub mod refresh;
pub mod settings;
pub mod source;
pub mod store;
pub mod sync;

// Its tables, views and their registration for backups.
pgrx::extension_sql_file!(
    "../../sql/threads.sql",
    name = "threads",
    requires = ["schema"]
);
