//! Servers that must not be written: a standby (in recovery) and pg_upgrade's own run of
//! the new server (binary-upgrade mode). As pg_cron does, pg_pullsync starts no work there.

use crate::error::{PullsyncError, Result};
use pgrx::prelude::*;

/// Whether this server replays WAL (a standby, or a recovery not yet finished).
pub fn in_recovery() -> bool {
    // SAFETY: reads shared state; callable from any backend or background process.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// Whether this server runs for pg_upgrade (`-b`): no background process may touch it.
pub fn binary_upgrade() -> bool {
    // SAFETY: a flag the postmaster sets from its command line before loading libraries.
    unsafe { pg_sys::IsBinaryUpgrade }
}

/// The check every SQL entry point that writes makes first: on a standby it fails up
/// front (SQLSTATE 25006) instead of halfway with a read-only statement's error.
pub fn require_primary(function: &'static str) -> Result<()> {
    if in_recovery() {
        return Err(PullsyncError::Standby { function });
    }
    Ok(())
}
