//! Background workers and pg_cron, in the cluster's `it_workers` database where
//! `cargo xtask test` points the workers and pg_cron. The tests share that database and one
//! simulator on port 28818 (the cluster's pullsync.threads_api_url), so they run one at a time.

use postgres::Client;
use pullsync_tests::db::{connect_as, fresh_database, fresh_role, sqlstate_of};
use pullsync_tests::sim::faults::{Endpoint, FaultKind, FaultSpec};
use pullsync_tests::sim::{SimConfig, SimServer};
use pullsync_tests::threads::{add_sim_accounts, count};
use pullsync_tests::workers::{
    connect_retrying, differences, finished, queue, set_system, status, wait_finished, wait_for,
    worker_pids,
};
use std::sync::OnceLock;
use std::time::Duration;

fn sim() -> &'static SimServer {
    static SIM: OnceLock<SimServer> = OnceLock::new();
    SIM.get_or_init(|| {
        let port = pullsync_tests::ports::worker_sim_port();
        SimServer::start_on(&SimConfig::small(6, 40), port, 2).unwrap_or_else(|e| {
            panic!("the workers' simulator on port {port} (taken by another server?): {e}")
        })
    })
}

/// A clean slate in it_workers: extension present, no accounts or jobs, the simulator's
/// accounts added, workers running.
struct Fixture {
    db: Client,
    /// (account id, Threads user id)
    accounts: Vec<(uuid::Uuid, String)>,
}

impl Fixture {
    fn count(&mut self, sql: &str) -> i64 {
        count(&mut self.db, sql)
    }
}

fn setup(latency_ms: u64) -> Fixture {
    let sim = sim();
    sim.clear_faults();
    *sim.sim.latency.lock().unwrap() = (latency_ms, 0);
    let mut db = connect_retrying();
    db.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_pullsync;
         TRUNCATE pullsync.workspace_threads_accounts, pullsync.jobs, pullsync.system_job_logs,
                  pullsync.system_job_locks, pullsync.sync_logs CASCADE;",
    )
    .unwrap();
    let accounts = add_sim_accounts(&mut db, sim, "22222222-2222-2222-2222-222222222222");
    wait_for(
        &mut db,
        "two workers running",
        Duration::from_secs(60),
        |db| worker_pids(db).len() >= 2,
    );
    sim.reset_counters();
    Fixture { db, accounts }
}

/// The data equal what a clean run stores: every visible post once, L3 equal to what the
/// simulator serves, the layers consistent.
fn assert_clean(f: &mut Fixture) {
    assert_eq!(differences(&mut f.db, sim()), Vec::<String>::new());
}

#[test]
fn the_call_returns_at_once_and_workers_share_the_run() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(150);
    let job = queue(&mut f.db);
    // Returned before the work was done: the job is still queued or running.
    let at_once = status(&mut f.db, job);
    assert!(
        matches!(at_once["state"].as_str(), Some("queued") | Some("running")),
        "{at_once}"
    );
    // Progress is visible while the slow run is under way.
    wait_for(
        &mut f.db,
        "units in progress",
        Duration::from_secs(60),
        |db| {
            db.query_one(
            "SELECT count(*) FROM pullsync.jobs_running WHERE job_id = $1 AND units_total = 6 AND units_done < 6 AND phase = 'syncing accounts'",
            &[&job],
        )
        .map(|r| r.get::<_, i64>(0) == 1)
        .unwrap_or(false)
        },
    );
    let during = status(&mut f.db, job);
    assert_eq!(during["units_total"], 6, "{during}");
    wait_finished(&mut f.db, job);
    let done = status(&mut f.db, job);
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["units_done"], 6);
    assert_eq!(
        done["worker_pids"].as_array().unwrap().len(),
        2,
        "both workers took units: {done}"
    );
    assert_eq!(done["result"]["success_count"], 6);
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.system_job_logs WHERE status = 'completed'"),
        1
    );
    assert_clean(&mut f);
}

#[test]
fn an_error_in_one_unit_rolls_back_that_unit_only() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(0);
    let victim = f.accounts[2].0;
    f.db.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION public.it_fail_one() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.workspace_threads_account_id = '{victim}' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER it_fail_one BEFORE INSERT ON pullsync.workspace_threads_posts
             FOR EACH ROW EXECUTE FUNCTION public.it_fail_one();"
    ))
    .unwrap();
    let job = queue(&mut f.db);
    wait_finished(&mut f.db, job);
    let done = status(&mut f.db, job);
    f.db.batch_execute("DROP TRIGGER it_fail_one ON pullsync.workspace_threads_posts; DROP FUNCTION public.it_fail_one()")
        .unwrap();
    assert_eq!(done["state"], "partial", "{done}");
    assert_eq!(done["result"]["success_count"], 5, "{done}");
    let victim_posts: i64 = f
        .db
        .query_one("SELECT count(*) FROM pullsync.workspace_threads_posts WHERE workspace_threads_account_id = $1", &[&victim])
        .unwrap()
        .get(0);
    assert_eq!(victim_posts, 0, "the failed unit wrote nothing");
    let logged: String = f
        .db
        .query_one(
            "SELECT error FROM pullsync.sync_logs WHERE workspace_threads_account_id = $1 AND status = 'failed'",
            &[&victim],
        )
        .unwrap()
        .get(0);
    assert!(logged.contains("injected failure"), "{logged}");
    // The workers went on: the next run completes everything.
    let job = queue(&mut f.db);
    wait_finished(&mut f.db, job);
    assert_eq!(status(&mut f.db, job)["state"], "completed");
    assert_clean(&mut f);
}

#[test]
fn kill_9_of_a_worker_mid_run_still_ends_with_clean_data() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(120);
    // One account a batch, so units finish one by one: with a batch each, both workers'
    // few accounts were written in the same instant and no moment was mid-run.
    set_system(&mut f.db, "ALTER SYSTEM SET pullsync.batch_size = 1");
    let job = queue(&mut f.db);
    wait_for(&mut f.db, "a unit done", Duration::from_secs(60), |db| {
        let s = status(db, job);
        s["units_done"].as_i64().unwrap_or(0) >= 1
            && s["units_done"].as_i64() < s["units_total"].as_i64()
    });
    let victim = worker_pids(&mut f.db)[0];
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    // The postmaster restarts every process; reconnect and wait for the run.
    std::thread::sleep(Duration::from_secs(1));
    f.db = connect_retrying();
    wait_for(
        &mut f.db,
        "the run to finish after the crash",
        Duration::from_secs(180),
        |db| finished(db, job),
    );
    set_system(&mut f.db, "ALTER SYSTEM RESET pullsync.batch_size");
    let done = status(&mut f.db, job);
    assert_eq!(done["state"], "completed", "{done}");
    assert!(!worker_pids(&mut f.db).contains(&victim));
    assert_clean(&mut f);
}

#[test]
fn sigterm_stops_a_worker_and_its_units_are_picked_up() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(200);
    let job = queue(&mut f.db);
    wait_for(&mut f.db, "a unit running", Duration::from_secs(60), |db| {
        db.query_one(
            "SELECT count(*) FROM pullsync.jobs WHERE parent_id = $1 AND state = 'running'",
            &[&job],
        )
        .map(|r| r.get::<_, i64>(0) > 0)
        .unwrap_or(false)
    });
    let victim: i32 = f
        .db
        .query_one("SELECT worker_pid FROM pullsync.jobs WHERE parent_id = $1 AND state = 'running' LIMIT 1", &[&job])
        .unwrap()
        .get(0);
    f.db.execute("SELECT pg_terminate_backend($1)", &[&victim])
        .unwrap();
    wait_for(
        &mut f.db,
        "the worker to exit",
        Duration::from_secs(10),
        |db| !worker_pids(db).contains(&victim),
    );
    wait_finished(&mut f.db, job);
    assert_eq!(status(&mut f.db, job)["state"], "completed");
    assert_clean(&mut f);
}

#[test]
fn sighup_reloads_the_http_concurrency() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(60);
    let run = |f: &mut Fixture| {
        f.db.batch_execute("TRUNCATE pullsync.workspace_threads_posts CASCADE")
            .unwrap();
        sim().reset_counters();
        let job = queue(&mut f.db);
        wait_finished(&mut f.db, job);
        sim().counters().max_in_flight
    };
    set_system(&mut f.db, "ALTER SYSTEM SET pullsync.http_concurrency = 1");
    let narrow = run(&mut f);
    set_system(&mut f.db, "ALTER SYSTEM SET pullsync.http_concurrency = 16");
    let wide = run(&mut f);
    set_system(&mut f.db, "ALTER SYSTEM RESET pullsync.http_concurrency");
    assert!(
        narrow <= 2,
        "one request per worker at concurrency 1, saw {narrow}"
    );
    assert!(wide > 2, "more in flight at concurrency 16, saw {wide}");
}

#[test]
fn pg_cron_triggers_a_run_and_schedule_defaults_is_idempotent() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(0);
    f.db.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        .unwrap();
    let rows =
        f.db.query(
            "SELECT jobname, schedule FROM pullsync.schedule_defaults()",
            &[],
        )
        .unwrap();
    let schedules: std::collections::BTreeMap<String, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected = [
        ("pullsync-threads-sync", "0,15,30,45 * * * *"),
        ("pullsync-token-refresh", "17 3 * * *"),
        ("pullsync-feed-incremental", "*/5 * * * *"),
        ("pullsync-feed-full", "0 2 * * *"),
        ("pullsync-reconcile", "40 * * * *"),
        ("pullsync-threads-reconcile", "23 4 * * *"),
        ("pullsync-alerts", "*/5 * * * *"),
        ("pullsync-cleanup", "0 3 * * 0"),
    ];
    assert_eq!(
        schedules,
        expected
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    );
    f.db.query("SELECT * FROM pullsync.schedule_defaults()", &[])
        .unwrap();
    assert_eq!(
        f.count("SELECT count(*) FROM cron.job WHERE jobname LIKE 'pullsync-%'"),
        expected.len() as i64,
        "idempotent"
    );
    // An operator granted what docs/SECURITY.md says schedules with its own rights: the
    // sources' default jobs are read from the registry (default_schedules()).
    fresh_role(&mut f.db, "it_cron_operator");
    f.db.batch_execute(
        "GRANT USAGE ON SCHEMA pullsync, cron TO it_cron_operator;
         GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean)
            TO it_cron_operator;
         GRANT EXECUTE ON FUNCTION pullsync.schedule_defaults(), pullsync.unschedule_all() TO it_cron_operator",
    )
    .unwrap();
    let database: String =
        f.db.query_one("SELECT current_database()", &[])
            .unwrap()
            .get(0);
    let mut operator = connect_as(&database, "it_cron_operator");
    let theirs = operator
        .query("SELECT jobname FROM pullsync.schedule_defaults()", &[])
        .unwrap();
    assert_eq!(theirs.len(), expected.len());
    let removed: i32 = operator
        .query_one("SELECT pullsync.unschedule_all()", &[])
        .unwrap()
        .get(0);
    assert_eq!(removed, expected.len() as i32, "the operator's own jobs");
    drop(operator);
    // Every registered command is valid SQL here (explained, not run).
    for row in
        f.db.query(
            "SELECT command FROM cron.job WHERE jobname LIKE 'pullsync-%'",
            &[],
        )
        .unwrap()
    {
        let command: String = row.get(0);
        f.db.batch_execute(&format!("EXPLAIN {command}"))
            .unwrap_or_else(|e| panic!("{command}: {e}"));
    }
    let removed: i32 =
        f.db.query_one("SELECT pullsync.unschedule_all()", &[])
            .unwrap()
            .get(0);
    assert_eq!(removed, expected.len() as i32);
    let again: i32 =
        f.db.query_one("SELECT pullsync.unschedule_all()", &[])
            .unwrap()
            .get(0);
    assert_eq!(again, 0);

    // pg_cron runs the command itself, every minute, in this database.
    f.db.batch_execute("SELECT cron.schedule_in_database('pullsync-it-every-minute', '* * * * *', 'SELECT pullsync.threads_scheduled_sync()', current_database())")
        .unwrap();
    wait_for(
        &mut f.db,
        "pg_cron to queue a run and the workers to finish it",
        Duration::from_secs(150),
        |db| {
            db.query_one("SELECT count(*) FROM pullsync.jobs WHERE parent_id IS NULL AND state = 'completed'", &[])
            .map(|r| r.get::<_, i64>(0) >= 1)
            .unwrap_or(false)
        },
    );
    f.db.batch_execute("SELECT pullsync.unschedule_all()")
        .unwrap();
    assert_clean(&mut f);
}

/// Where pg_cron is not installed in the database (or not on the server at all, as on
/// PostgreSQL 18 here), scheduling says so and how to schedule instead; the rest works.
#[test]
fn without_pg_cron_schedule_defaults_explains_and_the_rest_works() {
    let mut plain = fresh_database("it_no_cron");
    plain.batch_execute("CREATE EXTENSION pg_pullsync").unwrap();
    let error = plain
        .query("SELECT * FROM pullsync.schedule_defaults()", &[])
        .unwrap_err();
    let db_error = error.as_db_error().expect("an ERROR");
    assert_eq!(db_error.code().code(), "42704");
    let hint = db_error.hint().unwrap_or_default();
    let available = plain
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron')",
            &[],
        )
        .unwrap()
        .get::<_, bool>(0);
    if available {
        assert!(hint.contains("CREATE EXTENSION pg_cron"), "{hint}");
    } else {
        assert!(
            hint.contains("any scheduler") && hint.contains("OPERATIONS.md"),
            "{hint}"
        );
    }
    assert_eq!(
        sqlstate_of(&mut plain, "SELECT pullsync.unschedule_all()").as_deref(),
        Some("42704")
    );
    assert_eq!(
        sqlstate_of(&mut plain, "SELECT pullsync.job_status(12345)").as_deref(),
        Some("42704")
    );
    let queued: serde_json::Value = plain
        .query_one("SELECT pullsync.threads_scheduled_sync()", &[])
        .unwrap()
        .get(0);
    assert!(queued["job_id"].is_i64(), "{queued}");
    plain.batch_execute("SELECT pullsync.run_jobs()").unwrap();
}

#[test]
fn throttling_in_a_worker_run_stops_that_token_only() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(0);
    let throttled = f.accounts[1].1.clone();
    sim().add_fault(FaultSpec {
        kind: FaultKind::TooManyRequests { retry_after: 60 },
        account: Some(throttled.clone()),
        endpoint: Some(Endpoint::Threads),
        times: None,
        probability: None,
        page: None,
    });
    let job = queue(&mut f.db);
    wait_finished(&mut f.db, job);
    let done = status(&mut f.db, job);
    sim().clear_faults();
    assert_eq!(done["state"], "partial", "{done}");
    assert_eq!(done["result"]["success_count"], 5);
    assert_eq!(sim().counters().by_account[&throttled], 1);
}

/// Worker settings set by ALTER SYSTEM for one test, reset when dropped.
struct WorkerSettings(Vec<&'static str>);

impl WorkerSettings {
    fn apply(db: &mut Client, settings: &[(&'static str, &str)]) -> WorkerSettings {
        for (name, value) in settings {
            db.batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'"))
                .unwrap();
        }
        db.batch_execute("SELECT pg_reload_conf()").unwrap();
        // Reloads are asynchronous; the workers read them at the top of their next round.
        std::thread::sleep(Duration::from_secs(2));
        WorkerSettings(settings.iter().map(|(n, _)| *n).collect())
    }
}

impl Drop for WorkerSettings {
    fn drop(&mut self) {
        let mut db = connect_retrying();
        for name in &self.0 {
            db.batch_execute(&format!("ALTER SYSTEM RESET {name}"))
                .unwrap();
        }
        db.batch_execute("SELECT pg_reload_conf()").unwrap();
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn fault_on(account: &str, endpoint: Endpoint, kind: FaultKind, times: Option<u64>) {
    sim().add_fault(FaultSpec {
        kind,
        account: Some(account.to_string()),
        endpoint: Some(endpoint),
        times,
        probability: None,
        page: None,
    });
}

/// The worker holding the account's unit, once it is claimed.
fn unit_worker(db: &mut Client, account: uuid::Uuid) -> Option<(i32, i32)> {
    db.query_opt(
        "SELECT worker_pid, attempts FROM pullsync.jobs
          WHERE parent_id IS NOT NULL AND state = 'running' AND payload->>'account_id' = $1::text",
        &[&account.to_string()],
    )
    .unwrap()
    .map(|r| (r.get(0), r.get(1)))
}

#[test]
fn a_unit_that_outlives_unit_timeout_is_not_pulled_twice() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(0);
    let _settings = WorkerSettings::apply(&mut f.db, &[("pullsync.unit_timeout", "10s")]);
    let (slow_id, slow) = f.accounts[0].clone();
    // Its listing answers after 15 s: longer than the unit timeout.
    fault_on(
        &slow,
        Endpoint::Threads,
        FaultKind::Slow { ms: 15_000 },
        Some(1),
    );
    let job = queue(&mut f.db);
    wait_finished(&mut f.db, job);
    let done = status(&mut f.db, job);
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(
        sim().calls(Endpoint::Threads, &slow),
        1,
        "the heartbeat kept the unit claimed: one listing request, not two"
    );
    let attempts: i32 = f
        .db
        .query_one(
            "SELECT attempts FROM pullsync.jobs WHERE parent_id = $1 AND payload->>'account_id' = $2::text",
            &[&job, &slow_id.to_string()],
        )
        .unwrap()
        .get(0);
    assert_eq!(attempts, 1);
    assert_clean(&mut f);
}

#[test]
fn a_fleet_that_needs_more_than_the_lock_ttl_is_synced_in_turn() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(0);
    // One account per batch and a pause after each: the run takes longer than the lock
    // TTL, as a large fleet does.
    let _settings = WorkerSettings::apply(
        &mut f.db,
        &[
            ("pullsync.lock_ttl", "10s"),
            ("pullsync.batch_size", "1"),
            ("pullsync.batch_delay", "5s"),
        ],
    );
    let started = std::time::Instant::now();
    let first = queue(&mut f.db);
    // The schedule fires every 4 s; a run that still makes progress is never abandoned.
    let mut queued_later = Vec::new();
    while !finished(&mut f.db, first) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never ended"
        );
        std::thread::sleep(Duration::from_secs(4));
        let answer: serde_json::Value =
            f.db.query_one("SELECT pullsync.threads_scheduled_sync()", &[])
                .unwrap()
                .get(0);
        queued_later.push(answer);
    }
    let done = status(&mut f.db, first);
    assert_eq!(done["state"], "completed", "{done}");
    assert!(
        started.elapsed() > Duration::from_secs(10),
        "the run outlived the TTL"
    );
    assert!(
        queued_later
            .iter()
            .all(|a| a["skipped"] == true || a["job_id"].as_i64() != Some(first)),
        "{queued_later:?}"
    );
    let synced = f.count(
        "SELECT count(*) FROM pullsync.workspace_threads_accounts WHERE last_posts_sync_at IS NOT NULL",
    );
    assert_eq!(synced, 6, "every account synced by the one run");
    let abandoned = f.count("SELECT count(*) FROM pullsync.jobs WHERE phase = 'abandoned'");
    assert_eq!(abandoned, 0);
    // The next run starts with the account synced longest ago.
    let oldest: uuid::Uuid = f
        .db
        .query_one(
            "SELECT id FROM pullsync.workspace_threads_accounts ORDER BY last_posts_sync_at LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let next = queue(&mut f.db);
    wait_for(
        &mut f.db,
        "the next run to be planned",
        Duration::from_secs(60),
        |db| {
            count(
                db,
                &format!("SELECT count(*) FROM pullsync.jobs WHERE parent_id = {next}"),
            ) > 0
        },
    );
    let first_unit: String = f
        .db
        .query_one(
            "SELECT payload->>'account_id' FROM pullsync.jobs WHERE parent_id = $1 ORDER BY id LIMIT 1",
            &[&next],
        )
        .unwrap()
        .get(0);
    assert_eq!(first_unit, oldest.to_string());
    wait_finished(&mut f.db, next);
}

#[test]
fn a_unit_whose_worker_stops_every_time_fails_after_three_attempts() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(0);
    let (poison_id, poison) = f.accounts[2].clone();
    // Its listing never answers: each worker that takes it is stopped while it waits.
    fault_on(&poison, Endpoint::Threads, FaultKind::Hang, None);
    let job = queue(&mut f.db);
    let mut stopped = Vec::new();
    for attempt in 1..=3 {
        let mut claimed = None;
        wait_for(
            &mut f.db,
            "the poison unit to be claimed",
            Duration::from_secs(60),
            |db| {
                claimed = unit_worker(db, poison_id).filter(|(_, a)| *a == attempt);
                claimed.is_some()
            },
        );
        let (pid, _) = claimed.unwrap();
        f.db.execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
        stopped.push(pid);
    }
    wait_finished(&mut f.db, job);
    sim().clear_faults();
    let done = status(&mut f.db, job);
    assert_eq!(done["state"], "partial", "{done}");
    assert_eq!(done["result"]["success_count"], 5, "{done}");
    let (state, attempts, error): (String, i32, String) = {
        let r =
            f.db.query_one(
                "SELECT state, attempts, result->>'error' FROM pullsync.jobs
                  WHERE parent_id = $1 AND payload->>'account_id' = $2::text",
                &[&job, &poison_id.to_string()],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((state.as_str(), attempts), ("failed", 3));
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    wait_for(
        &mut f.db,
        "the workers back",
        Duration::from_secs(60),
        |db| worker_pids(db).len() >= 2,
    );
}

#[test]
fn an_account_deleted_mid_run_ends_its_unit_as_skipped() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(0);
    let (gone_id, gone) = f.accounts[3].clone();
    fault_on(
        &gone,
        Endpoint::Threads,
        FaultKind::Slow { ms: 3_000 },
        Some(1),
    );
    let job = queue(&mut f.db);
    wait_for(
        &mut f.db,
        "the account's unit to be claimed",
        Duration::from_secs(60),
        |db| unit_worker(db, gone_id).is_some(),
    );
    f.db.execute(
        "DELETE FROM pullsync.workspace_threads_accounts WHERE id = $1",
        &[&gone_id],
    )
    .unwrap();
    wait_finished(&mut f.db, job);
    let done = status(&mut f.db, job);
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["result"]["success_count"], 5, "{done}");
    assert_eq!(done["result"]["skipped_count"], 1, "{done}");
}

/// Kinds share the workers: with both workers busy on one tenant's REST runs and a third
/// queued, a Threads run queued after it is claimed first when a worker frees up.
#[test]
fn a_pile_of_one_kinds_jobs_does_not_keep_another_kind_waiting() {
    let _serial = pullsync_tests::feed::serial();
    let mut f = setup(0);
    let api = pullsync_tests::rest_api::start(pullsync_tests::rest_api::records(24));
    // Three pages of 8, each answered after 400 ms: a run holds its worker for over a second.
    api.slow_down(Duration::from_millis(400));
    let mut rest_jobs = Vec::new();
    for n in 1..=3 {
        let name = format!("fair_{n}");
        f.db.batch_execute(&format!(
            "DROP TABLE IF EXISTS public.{name};
             CREATE TABLE public.{name} (id bigint PRIMARY KEY, subject text, changed timestamptz);
             SELECT pullsync.rest_drop_source(name) FROM pullsync.rest_sources WHERE name = '{name}';"
        ))
        .unwrap();
        let config = serde_json::json!({
            "base_url": api.base_url(),
            "path": "/api/v2/tickets",
            "auth": { "type": "api_key", "header": "X-Api-Key", "key": pullsync_tests::rest_api::TICKETS_KEY },
            "records": "results",
            "primary_key": "id",
            "pagination": { "style": "page_number", "size_param": "page_size", "size": 8 },
            "target": { "table": format!("public.{name}"), "columns": { "id": "id", "subject": "title", "changed": "updated_at" } }
        });
        f.db.execute("SELECT pullsync.rest_add_source($1, $2)", &[&name, &config])
            .unwrap();
        let queued: serde_json::Value =
            f.db.query_one("SELECT pullsync.rest_enqueue($1)", &[&name])
                .unwrap()
                .get(0);
        rest_jobs.push(queued["job_id"].as_i64().expect("a queued REST run"));
    }
    let threads = queue(&mut f.db);
    for job in rest_jobs.iter().chain([&threads]) {
        wait_finished(&mut f.db, *job);
    }
    let claimed = |db: &mut Client, job: i64| -> std::time::SystemTime {
        db.query_one(
            "SELECT claimed_at FROM pullsync.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap()
        .get(0)
    };
    let (threads_at, last_rest_at) = (
        claimed(&mut f.db, threads),
        claimed(&mut f.db, rest_jobs[2]),
    );
    assert!(
        threads_at < last_rest_at,
        "the Threads run, queued last, is claimed before the third REST run"
    );
    for job in rest_jobs {
        assert_eq!(status(&mut f.db, job)["state"], "completed");
    }
    assert_eq!(status(&mut f.db, threads)["state"], "completed");
    f.db.batch_execute(
        "SELECT pullsync.rest_drop_source(name) FROM pullsync.rest_sources WHERE name LIKE 'fair\\_%';
         DROP TABLE public.fair_1, public.fair_2, public.fair_3;",
    )
    .unwrap();
}
