//! The Threads source: accounts and tokens, API client, refresh planning, the three-layer
//! store, and the SQL functions.

pub mod accounts;
pub mod api;
pub mod functions;
pub mod layers;
pub mod plan;
pub mod pull;
pub mod refresh;
pub mod store;
pub mod sync;
pub mod tokens;
