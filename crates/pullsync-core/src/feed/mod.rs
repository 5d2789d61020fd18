//! The conversation feed's pure parts: the cursor codec, argument checks, page budgets,
//! the failed-authentication throttle and the feed server's network side.

pub mod auth_throttle;
pub mod cursor;
pub mod front;
pub mod page_fill;
pub mod validate;
