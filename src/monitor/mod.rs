//! Monitoring: every job records a `sync_metrics` row; thresholds open and resolve
//! `alerts` (with `NOTIFY pullsync_alerts`); `health()` and `metrics()` report.

pub mod functions;
pub mod record;
pub mod sync_log;
