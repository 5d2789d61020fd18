//! The REST source's pure parts: its configuration, JSON paths, the walk of a listing
//! (request URLs, next positions, records to rows, high-water marks), what an answer
//! means (`responses`), what an incremental source sends (lookback, boundary, backfill
//! windows), OAuth 2's tokens, and a listing sampled before a source exists (preview, the
//! table its records suggest).

pub mod config;
pub mod extra;
pub mod fanout;
pub mod incremental;
pub mod infer;
pub mod oauth;
pub mod paging;
pub mod path;
pub mod preview;
pub mod responses;
