//! `system_job_locks`: a named lock with a TTL. A lock whose TTL passed, or whose holder
//! backend is gone (pid and start time no longer in pg_stat_activity), is taken over.

use crate::error::Result;
use pgrx::prelude::*;

/// Takes `name` for this backend for `ttl_secs`; false when a live holder has it.
pub fn acquire(name: &str, ttl_secs: i32) -> Result<bool> {
    let taken = Spi::connect_mut(|client| {
        let rows = client.update(
            "INSERT INTO pullsync.system_job_locks AS l (name, holder_pid, holder_start, acquired_at, expires_at)
             SELECT $1, pg_backend_pid(), a.backend_start, now(), now() + make_interval(secs => $2)
               FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
             ON CONFLICT (name) DO UPDATE
                SET holder_pid = EXCLUDED.holder_pid, holder_start = EXCLUDED.holder_start,
                    acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
              WHERE l.expires_at <= now()
                 OR (l.holder_pid, l.holder_start) = (EXCLUDED.holder_pid, EXCLUDED.holder_start)
                 OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                                 WHERE a.pid = l.holder_pid AND a.backend_start = l.holder_start)
             RETURNING 1",
            None,
            &[name.into(), f64::from(ttl_secs).into()],
        )?;
        Ok::<_, pgrx::spi::SpiError>(!rows.is_empty())
    })?;
    Ok(taken)
}
