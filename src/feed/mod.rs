//! The conversation feed, both ends: provider pages and reconciliation counts (serve), the
//! HTTP feed server (server; its network side and the cursor codec live in pullsync-core),
//! the consumer (pull, driven as a job by source), the streams both ends share, and their
//! SQL functions.

pub mod functions;
pub mod provider;
pub mod pull;
pub mod reconcile;
pub mod serve;
pub mod server;
pub mod settings;
pub mod source;
pub mod store;
pub mod streams;

// Its tables, views and their registration for backups.
pgrx::extension_sql_file!("../../sql/feed.sql", name = "feed", requires = ["schema"]);
