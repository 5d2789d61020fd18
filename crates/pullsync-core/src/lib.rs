//! The pure part of pg_pullsync: everything that needs no Postgres. The extension crate
//! calls it from its pgrx glue; its unit tests run under plain `cargo test -p pullsync-core`.

pub mod crypto;
pub mod error;
pub mod feed;
pub mod http;
pub mod key_file;
pub mod monitor;
pub mod outcome;
pub mod pg_text;
pub mod reconcile;
pub mod rest;
pub mod schema_version;
pub mod statement;
pub mod threads;
