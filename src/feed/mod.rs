//! The conversation feed, both ends: cursor codec (pure), provider pages and reconciliation
//! counts (serve), the HTTP feed server (server), the consumer (pull), and their SQL
//! functions.

pub mod cursor;
pub mod functions;
pub mod pull;
pub mod serve;
pub mod server;
pub mod validate;
