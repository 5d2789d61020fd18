//! The Threads source: its jobs (source), the sync flow (sync) over the pure pull in
//! pullsync-core, the three-layer store, the token refresh, reconciliation of a window,
//! and the SQL functions.

pub mod functions;
pub mod reconcile;
pub mod refresh;
pub mod source;
pub mod store;
pub mod sync;
