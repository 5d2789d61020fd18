//! The REST source's pure parts: its configuration, JSON paths, and the walk of a listing
//! (request URLs, next positions, records to rows, high-water marks).

pub mod config;
pub mod extra;
pub mod paging;
pub mod path;
