//! A primary and its streaming standby (`pg_basebackup -R`) on scratch clusters: on the
//! standby the workers and the feed server idle and say so once, the entry points that
//! write refuse with SQLSTATE 25006; after a crash of the primary (`kill -9`) during a
//! run and `pg_ctl promote`, the promoted server finishes the run from what was committed.

use pullsync_tests::failover::{caught_up, PROMOTED_LINE, STANDBY_LINE};
use pullsync_tests::scratch_cluster::{ScratchCluster, ScratchOptions};
use pullsync_tests::sim::{SimConfig, SimServer};
use pullsync_tests::threads::{add_sim_accounts, count, layer_violations};
use pullsync_tests::wait;
use pullsync_tests::workers::{differences, finished, queue, status};
use serde_json::Value;
use std::time::Duration;

const DB: &str = "failover";

#[test]
fn standby_idles_and_the_promoted_server_finishes_the_run() {
    let mut config = SimConfig::small(8, 120);
    config.latency_ms = 150;
    let sim = SimServer::start(&config);
    let options = ScratchOptions {
        replication: true,
        conf: vec![
            format!("pullsync.threads_api_url = '{}'", sim.api_url()),
            "pullsync.workers = 2".into(),
            // One account per transaction, a pause between them: the crash finds the run
            // with some accounts committed and others not.
            "pullsync.batch_size = 1".into(),
            "pullsync.batch_delay = '1s'".into(),
            "pullsync.unit_timeout = 10".into(),
            "pullsync.lock_ttl = 60".into(),
            "pullsync.http_timeout = '5s'".into(),
        ],
    };
    let primary = ScratchCluster::start_with("fo-primary", DB, &options);
    primary
        .connect("postgres")
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .unwrap();
    let mut p = primary.connect(DB);
    p.batch_execute("CREATE EXTENSION pg_pullsync").unwrap();
    add_sim_accounts(&mut p, &sim, "33333333-3333-3333-3333-333333333333");

    let standby = primary.standby("fo-standby");
    let mut s = standby.connect(DB);
    caught_up(&mut p, &mut s);

    // The standby's workers and feed server idle, each saying so once.
    wait::until(
        "the standby's two workers and feed server to say they idle",
        Duration::from_secs(60),
        || standby.log().matches(STANDBY_LINE).count() >= 3,
    );
    let processes: Vec<String> = s
        .query(
            "SELECT backend_type FROM pg_stat_activity
              WHERE backend_type IN ('pg_pullsync worker', 'pg_pullsync feed server') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        processes,
        [
            "pg_pullsync feed server",
            "pg_pullsync worker",
            "pg_pullsync worker"
        ],
        "the standby's processes wait connected, for promotion"
    );

    // The entry points that write refuse up front, with Postgres' own read-only SQLSTATE
    // and a message that says why (a write would fail halfway with another).
    for (function, call) in [
        (
            "threads_scheduled_sync",
            "SELECT pullsync.threads_scheduled_sync()",
        ),
        ("run_jobs", "SELECT pullsync.run_jobs()"),
        ("cleanup", "SELECT pullsync.cleanup()"),
        ("check_alerts", "SELECT pullsync.check_alerts()"),
        (
            "feed_scheduled_sync",
            "SELECT pullsync.feed_scheduled_sync()",
        ),
        ("feed_pull", "SELECT pullsync.feed_pull('nobody')"),
        ("rest_enqueue", "SELECT pullsync.rest_enqueue('nothing')"),
        ("schedule_defaults", "SELECT pullsync.schedule_defaults()"),
        ("unschedule_all", "SELECT pullsync.unschedule_all()"),
        ("rest_schedule", "SELECT pullsync.rest_schedule('nothing')"),
    ] {
        let error = s.batch_execute(call).expect_err(call);
        let db_error = error.as_db_error().expect(call);
        assert_eq!(db_error.code().code(), "25006", "{call}: {db_error}");
        assert!(
            db_error.message().contains("is a standby") && db_error.message().contains(function),
            "{call}: the error says why: {db_error}"
        );
    }

    // A run queued on the primary: it replicates, the standby's workers leave it alone.
    let before = sim.counters().total;
    let job = queue(&mut p);
    wait::until(
        "the run to be under way on the primary",
        Duration::from_secs(60),
        || {
            count(
                &mut p,
                &format!("SELECT count(*) FROM pullsync.jobs WHERE parent_id = {job} AND state = 'completed'"),
            ) >= 1
        },
    );
    caught_up(&mut p, &mut s);
    let on_standby: Value = s
        .query_one("SELECT pullsync.job_status($1)", &[&job])
        .unwrap()
        .get(0);
    assert!(
        matches!(on_standby["state"].as_str(), Some("queued" | "running")),
        "the run replicated: {on_standby}"
    );
    assert!(
        sim.counters().total > before,
        "the primary's workers pull from the simulator"
    );
    assert_eq!(
        standby.log().matches(STANDBY_LINE).count(),
        3,
        "each process said it once"
    );
    assert!(
        !standby.log().contains("read-only transaction"),
        "nothing tried to write on the standby:\n{}",
        standby.log()
    );

    // The primary crashes mid-run; the standby is promoted and finishes what was committed.
    assert!(
        !finished(&mut p, job),
        "the run must still be under way at the crash (raise the latency)"
    );
    drop(p);
    primary.kill_9();
    drop(s);
    let promoted_at = std::time::Instant::now();
    standby.promote();
    wait::until(
        "the promoted server's processes to start working",
        Duration::from_secs(30),
        || standby.log().matches(PROMOTED_LINE).count() >= 3,
    );
    let mut n = standby.connect(DB);
    wait::until(
        "the run to finish on the promoted server",
        Duration::from_secs(120),
        || finished(&mut n, job),
    );
    eprintln!(
        "failover: the interrupted run finished {:.1} s after the promotion began",
        promoted_at.elapsed().as_secs_f64()
    );
    let result = status(&mut n, job);
    assert_eq!(result["state"], "completed", "{result}");
    assert_eq!(differences(&mut n, &sim), Vec::<String>::new());
    assert_eq!(layer_violations(&mut n), 0);
    assert_eq!(
        count(
            &mut n,
            "SELECT count(*) - count(DISTINCT threads_post_id) FROM pullsync.workspace_threads_posts"
        ),
        0,
        "every post once"
    );
    assert_eq!(
        count(
            &mut n,
            "SELECT count(*) FROM pullsync.workspace_threads_accounts WHERE posts_listing_resume_after IS NOT NULL"
        ),
        0,
        "nothing left in a resume position"
    );
    // New work is taken on the promoted server.
    let next = queue(&mut n);
    wait::until(
        "a new run to finish on the promoted server",
        Duration::from_secs(120),
        || finished(&mut n, next),
    );
}
