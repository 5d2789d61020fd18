//! The REST source's pure parts: its configuration, JSON paths, and the walk of a listing
//! (request URLs, next positions, records to rows, high-water marks), and what an answer
//! means (`responses`).

pub mod config;
pub mod extra;
pub mod paging;
pub mod path;
pub mod responses;
