//! The Threads source: accounts and tokens, API client, refresh planning, the three-layer
//! store, and the SQL functions.

pub mod accounts;
pub mod functions;
pub mod tokens;
