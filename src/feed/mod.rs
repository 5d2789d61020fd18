//! The conversation feed, both ends: cursor codec (pure), provider pages and reconciliation
//! counts (serve, its pages bounded by page_fill), the HTTP feed server (server, with its network side in front and the
//! failed-authentication throttle in auth_throttle), the consumer (pull), and their SQL
//! functions.

pub mod auth_throttle;
pub mod cursor;
pub mod front;
pub mod functions;
pub mod page_fill;
pub mod pull;
pub mod serve;
pub mod server;
pub mod validate;
