//! The conversation feed's pure parts: the cursor codec, argument checks, page budgets,
//! the failed-authentication throttle, which connections the feed server keeps when full,
//! the feed server's network side and when a pull refreshes its table's statistics.

pub mod auth_throttle;
pub mod connection_slots;
pub mod cursor;
pub mod front;
pub mod page_fill;
pub mod statistics;
pub mod validate;
