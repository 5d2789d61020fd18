//! Driving the background workers of the test cluster's `it_workers` database (where
//! `cargo xtask test` points the workers, pg_cron and the feed server): queue a run, wait
//! for it, find workers, reconnect after a crash, compare the data with the simulator.

use crate::db::try_connect_as;
use crate::sim::SimServer;
use crate::threads::{count, layer_violations};
use postgres::Client;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const DB: &str = "it_workers";
/// Connects, retrying while the server restarts after a crash.
pub fn connect_retrying() -> Client {
    connect_retrying_to(DB)
}

pub fn connect_retrying_to(database: &str) -> Client {
    let limit = Duration::from_secs(120);
    let deadline = Instant::now() + limit;
    loop {
        match try_connect_as(database, "postgres") {
            Ok(c) => return c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => panic!(
                "gave up after {} s waiting for a connection to {database} (is the server up? see {}): {e}",
                limit.as_secs(),
                crate::server::server_log().display()
            ),
        }
    }
}

pub fn worker_pids(db: &mut Client) -> Vec<i32> {
    db.query(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_pullsync worker' ORDER BY pid",
        &[],
    )
    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
    .unwrap_or_default()
}

/// Polls `done` on `db` until it holds; fails naming `what` after `limit`.
pub fn wait_for(
    db: &mut Client,
    what: &str,
    limit: Duration,
    mut done: impl FnMut(&mut Client) -> bool,
) {
    crate::wait::until(what, limit, || done(db));
}

/// Runs `sql` (an ALTER SYSTEM) and reloads the configuration. Reloads are asynchronous;
/// the workers read them at the top of their next round.
pub fn set_system(db: &mut Client, sql: &str) {
    db.batch_execute(sql).unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_secs(2));
}

pub fn queue(db: &mut Client) -> i64 {
    let answer: Value = db
        .query_one("SELECT pullsync.threads_scheduled_sync()", &[])
        .unwrap()
        .get(0);
    answer["job_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("not queued: {answer}"))
}

pub fn status(db: &mut Client, job: i64) -> Value {
    db.query_one("SELECT pullsync.job_status($1)", &[&job])
        .unwrap()
        .get(0)
}

pub fn finished(db: &mut Client, job: i64) -> bool {
    db.query_one("SELECT pullsync.job_status($1)", &[&job])
        .map(|r| {
            let v: Value = r.get(0);
            !matches!(v["state"].as_str(), Some("queued") | Some("running"))
        })
        .unwrap_or(false)
}

/// Waits (up to two minutes) until the workers have finished the run.
pub fn wait_finished(db: &mut Client, job: i64) {
    wait_for(db, "the run to finish", Duration::from_secs(120), |db| {
        finished(db, job)
    });
}

/// How the stored data differ from what a clean run stores — every post the simulator
/// shows, once, with the metrics it serves now (L3), and consistent layers. Empty: equal.
/// Posts marked deleted are not compared.
pub fn differences(db: &mut Client, sim: &SimServer) -> Vec<String> {
    differences_where(db, sim, "deleted_at IS NULL")
}

/// `differences` over the stored posts that match `posts_filter` (SQL over
/// workspace_threads_posts).
pub fn differences_where(db: &mut Client, sim: &SimServer, posts_filter: &str) -> Vec<String> {
    let world = sim.sim.world.read().unwrap();
    let expected: HashMap<String, Option<(i64, i64)>> = world
        .accounts
        .iter()
        .flat_map(|a| a.visible_posts(world.now).iter())
        .map(|p| {
            let metrics = p.media_type.has_insights().then(|| {
                let m = p.metrics_at(world.now);
                (m.views, m.likes)
            });
            (p.id.clone(), metrics)
        })
        .collect();
    drop(world);
    let stored: HashMap<String, Option<(i64, i64)>> = db
        .query(
            &format!(
                "SELECT threads_post_id, media_type <> 'REPOST_FACADE', current_views, current_likes
                   FROM pullsync.workspace_threads_posts WHERE {posts_filter}"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let has_insights: bool = r.get(1);
            let metrics = has_insights.then(|| {
                (
                    r.get::<_, Option<i64>>(2).unwrap_or(-1),
                    r.get::<_, Option<i64>>(3).unwrap_or(-1),
                )
            });
            (r.get(0), metrics)
        })
        .collect();
    let mut found = Vec::new();
    for (id, metrics) in &expected {
        match stored.get(id) {
            None => found.push(format!("post {id} missing")),
            Some(m) if m != metrics => {
                found.push(format!("post {id}: stored {m:?}, served {metrics:?}"))
            }
            Some(_) => {}
        }
    }
    for id in stored.keys().filter(|id| !expected.contains_key(*id)) {
        found.push(format!("post {id} not served"));
    }
    let violations = layer_violations(db);
    if violations != 0 {
        found.push(format!("{violations} layer invariant violations"));
    }
    let twice = count(
        db,
        "SELECT count(*) FROM (SELECT workspace_threads_post_id, captured_at FROM pullsync.workspace_threads_post_metrics
                                GROUP BY 1, 2 HAVING count(*) > 1) d",
    );
    if twice != 0 {
        found.push(format!("{twice} snapshots stored twice"));
    }
    found
}
