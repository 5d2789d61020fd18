//! The REST source: declarative, incremental pulls of any JSON API into a table of the
//! user's (docs/REST.md). Its configuration and the walk of a listing are pure
//! (pullsync-core/src/rest); here are its row (store), its runs (run: a first run's
//! backfill in windows, or the listing read on: backfill, pull), its job (source), a
//! listing sampled before a source exists (preview), its SQL functions and who may call
//! them (caller), its OAuth 2 tokens (oauth).

pub mod api;
pub mod backfill;
pub mod caller;
pub mod fanout;
pub mod functions;
pub mod oauth;
pub mod parents;
pub mod prefetch;
pub mod preview;
pub mod pull;
pub mod run;
pub mod settings;
pub mod source;
pub mod store;

// Its tables, views and their registration for backups.
pgrx::extension_sql_file!(
    "../../sql/rest.sql",
    name = "rest",
    requires = ["schema", functions::rest_check_access]
);
