//! The REST source's pure parts: its configuration, JSON paths, the walk of a listing
//! (request URLs, next positions, records to rows, high-water marks), what an answer
//! means (`responses`), and a listing sampled before a source exists (preview, the table
//! its records suggest).

pub mod config;
pub mod extra;
pub mod infer;
pub mod paging;
pub mod path;
pub mod preview;
pub mod responses;
