//! A primary and its streaming standby on scratch clusters (tests/failover.rs, the failover
//! soak): what the standby's processes say, waits on replication, and what tells the
//! promoted server's own writes from those it replayed.

use crate::wait;
use postgres::Client;
use std::time::Duration;

/// What each pg_pullsync process (the workers, the feed server) logs once on a standby.
pub const STANDBY_LINE: &str = "this server is a standby (in recovery); idle, writing nothing";
/// What each logs once when its server was promoted.
pub const PROMOTED_LINE: &str = "the server was promoted; starting work";

/// Waits until the standby has replayed everything the primary has written so far.
pub fn caught_up(primary: &mut Client, standby: &mut Client) {
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    wait::until(
        "the standby to replay the primary's WAL",
        Duration::from_secs(60),
        || {
            standby
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false)
        },
    );
}

/// Once the primary is gone: waits until the standby has replayed all the WAL it
/// received (or all it can: a record the crash cut in two is never replayed; its replay
/// position then stands still), so that what it holds is what a promotion starts from.
pub fn replayed_all_received(standby: &mut Client) {
    let mut last = String::new();
    let mut still = 0;
    wait::until(
        "the standby to replay the WAL it received",
        Duration::from_secs(60),
        || {
            let Ok(row) = standby.query_one(
                "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()::text",
                &[],
            ) else {
                return false;
            };
            let replayed: String = row.get(1);
            still = if replayed == last { still + 1 } else { 0 };
            last = replayed;
            // Polled every 100 ms: a second without progress.
            row.get::<_, Option<bool>>(0).unwrap_or(false) || still >= 10
        },
    );
}

/// The first transaction id not yet handed out, as the standby has replayed it. Taken just
/// before promotion: every row version with an xmin at or above it was written by the
/// promoted server (the ids the lost primary handed out past it are handed out again).
pub fn next_xid(db: &mut Client) -> i64 {
    let text: String = db
        .query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", &[])
        .unwrap()
        .get(0);
    text.parse().unwrap()
}

/// Whether `table` holds a row version the promoted server wrote (xmin at or above
/// `boundary`, from `next_xid`; 32-bit xids, far from wraparound in a test cluster).
pub fn written_since(db: &mut Client, table: &str, boundary: i64) -> bool {
    db.query_one(
        &format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE xmin::text::bigint >= $1)"),
        &[&(boundary % (1 << 32))],
    )
    .map(|r| r.get(0))
    .unwrap_or(false)
}
