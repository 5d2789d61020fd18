//! Calls made in a session hold no transaction across a request: `rest_pull`,
//! `feed_pull`, `threads_sync_account`, the reconciliations and `run_jobs` run in a
//! background process of their own, so another session sees each page as it commits, the
//! calling backend holds no transaction id while they run, and a cancel keeps what was
//! committed: the next call resumes there.

use postgres::Client;
use pullsync_tests::db::{connect, fresh_extension_database};
use pullsync_tests::sim::{SimConfig, SimServer};
use pullsync_tests::threads::add_sim_accounts;
use pullsync_tests::wait;
use pullsync_tests::{feed, ports, rest_api};
use serde_json::{json, Value};
use std::time::Duration;

fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

/// The calling session's backend: whether it holds a transaction id now.
fn holds_xid(watcher: &mut Client, pid: i32) -> bool {
    watcher
        .query_one(
            "SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .unwrap()
        .get(0)
}

#[test]
fn rest_pull_commits_page_by_page_and_a_cancel_resumes_where_it_stopped() {
    let api = rest_api::start(rest_api::records(40));
    let mut db = fresh_extension_database("it_session_rest");
    db.batch_execute(
        "CREATE TABLE public.tickets (id bigint PRIMARY KEY, subject text, changed timestamptz)",
    )
    .unwrap();
    let config = json!({
        "base_url": api.base_url(),
        "path": "/api/v2/tickets",
        "auth": { "type": "api_key", "header": "X-Api-Key", "key": rest_api::TICKETS_KEY },
        "records": "results",
        "primary_key": "id",
        "pagination": { "style": "page_number", "size_param": "page_size", "size": 8 },
        "target": { "table": "public.tickets", "columns": { "id": "id", "subject": "title", "changed": "updated_at" } }
    });
    db.execute("SELECT pullsync.rest_add_source('tickets', $1)", &[&config])
        .unwrap();
    api.slow_down(Duration::from_millis(600));

    // Another session sees the first pages while the call is under way, and the caller
    // holds no transaction id meanwhile; what was committed stays after the cancel.
    let stored = "SELECT count(*) FROM public.tickets";
    let mut seen = 0;
    let mut db = cancel_midway(
        "it_session_rest",
        db,
        "SELECT pullsync.rest_pull('tickets')",
        |w| count(w, stored) >= 16,
        |w| {
            seen = count(w, stored);
            assert!(seen < 40, "pages show before the call ends ({seen} of 40)");
        },
    );
    let kept = count(&mut db, stored);
    assert!(kept >= seen, "the cancel kept the committed pages ({kept})");

    // The next call resumes after what was committed, not at page 1.
    api.slow_down(Duration::ZERO);
    api.clear_requests();
    let second: Value = db
        .query_one("SELECT pullsync.rest_pull('tickets')", &[])
        .unwrap()
        .get(0);
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["resumed"], true, "{second}");
    let pages: Vec<String> = api.requests().into_iter().map(|(_, q)| q).collect();
    let first_page = pages[0]
        .split('&')
        .find_map(|p| p.strip_prefix("page="))
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(1);
    assert!(
        first_page > 2,
        "the next call starts after the committed pages: {pages:?}"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM public.tickets"), 40);

    // Calls beyond pullsync.max_session_calls are refused rather than taking every
    // background worker slot: one runs now (slow), and this session allows one.
    api.slow_down(Duration::from_millis(600));
    let mut watcher = connect("it_session_rest");
    let slow = std::thread::spawn(|| {
        connect("it_session_rest").batch_execute("SELECT pullsync.rest_pull('tickets')")
    });
    wait::until(
        "a call to run in a process of its own",
        Duration::from_secs(30),
        || {
            count(
                &mut watcher,
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_pullsync session call'",
            ) >= 1
        },
    );
    db.batch_execute("SET pullsync.max_session_calls = 1")
        .unwrap();
    let refused = db
        .query_one("SELECT pullsync.rest_pull('tickets')", &[])
        .unwrap_err();
    let refused = refused.as_db_error().unwrap();
    assert_eq!(refused.code().code(), "53000", "{refused}");
    assert!(refused.message().contains("max_session_calls"), "{refused}");
    db.batch_execute("RESET pullsync.max_session_calls")
        .unwrap();
    api.slow_down(Duration::ZERO);
    slow.join().unwrap().unwrap();

    // An error of the call comes back with its SQLSTATE.
    let missing = db
        .query_one("SELECT pullsync.rest_pull('no_such_source')", &[])
        .unwrap_err();
    let missing = missing.as_db_error().unwrap();
    assert_eq!(missing.code().code(), "42704", "{missing}");
}

#[test]
fn threads_sync_account_holds_no_transaction_across_its_requests() {
    let mut config = SimConfig::small(1, 60);
    config.latency_ms = 250;
    let sim = SimServer::start(&config);
    let mut db = fresh_extension_database("it_session_threads");
    db.batch_execute(&format!(
        "SET pullsync.threads_api_url = '{}'",
        sim.api_url()
    ))
    .unwrap();
    let accounts = add_sim_accounts(&mut db, &sim, "11111111-1111-1111-1111-111111111111");
    let account = accounts[0].0;
    db.execute(
        "CREATE TEMP TABLE call AS SELECT $1::uuid AS account",
        &[&account],
    )
    .unwrap();
    let mut db = cancel_midway(
        "it_session_threads",
        db,
        "SELECT pullsync.threads_sync_account((SELECT account FROM call))",
        |_| sim.counters().total >= 3,
        |_| {},
    );

    // The session's setting (the API's URL) went with the call; the next one completes.
    let done: Value = db
        .query_one("SELECT pullsync.threads_sync_account($1)", &[&account])
        .unwrap()
        .get(0);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.workspace_threads_posts"
        ),
        60
    );
}

#[test]
fn feed_pull_commits_page_by_page_and_a_cancel_resumes_where_it_stopped() {
    let _serial = feed::serial();
    let _provider = feed::provider(120, 0, "session-key-0123456789");
    let mut db = fresh_extension_database("it_session_feed");
    // Ten rows a page, three pages a second: the pull takes seconds.
    db.execute(
        "SELECT pullsync.feed_add_source('partner', $1, 'session-key-0123456789', batch_size => 10, rate_limit => 3,
                                         timeout => '10 s', max_retries => 2, retry_delay => '10 ms')",
        &[&ports::feed_url()],
    )
    .unwrap();
    let stored = "SELECT count(*) FROM pullsync.conversations WHERE feed_source = 'partner'";
    let mut seen = 0;
    let mut db = cancel_midway(
        "it_session_feed",
        db,
        "SELECT pullsync.feed_pull('partner')",
        |w| count(w, stored) >= 30,
        |w| {
            seen = count(w, stored);
            assert!(
                seen < 120,
                "pages show before the call ends ({seen} of 120)"
            );
        },
    );
    assert!(
        count(&mut db, stored) >= seen,
        "the cancel kept the committed pages"
    );

    // The next pull resumes from the last committed page: fewer pages than the whole.
    let second: Value = db
        .query_one("SELECT pullsync.feed_pull('partner')", &[])
        .unwrap()
        .get(0);
    assert_eq!(second["status"], "completed", "{second}");
    assert!(
        second["pages"].as_i64().unwrap() < 12,
        "it resumed rather than starting over: {second}"
    );
    assert_eq!(count(&mut db, stored), 120);
}

/// Runs `sql` on `db` in a thread and, once `started` (asked of another session) says its
/// work is under way, checks that the caller holds no transaction id, lets `during` look
/// (from that session), then cancels: both the call (57014) and the process it runs in
/// end. Returns the connection.
fn cancel_midway(
    database: &str,
    mut db: Client,
    sql: &'static str,
    mut started: impl FnMut(&mut Client) -> bool,
    during: impl FnOnce(&mut Client),
) -> Client {
    let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let cancel = db.cancel_token();
    let caller = std::thread::spawn(move || {
        let outcome = db.batch_execute(sql);
        (db, outcome)
    });
    let mut watcher = connect(database);
    wait::until(
        &format!("the work of {sql} to be under way"),
        Duration::from_secs(30),
        || started(&mut watcher),
    );
    assert!(
        !holds_xid(&mut watcher, pid),
        "{sql}: the caller holds no xid"
    );
    during(&mut watcher);
    cancel.cancel_query(postgres::NoTls).unwrap();
    let (db, outcome) = caller.join().unwrap();
    let error = outcome.expect_err(sql);
    assert_eq!(
        error.as_db_error().map(|e| e.code().code()),
        Some("57014"),
        "{sql}: {error}"
    );
    wait::until(
        &format!("the process of {sql} to stop"),
        Duration::from_secs(30),
        || {
            count(
                &mut watcher,
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_pullsync session call'",
            ) == 0
        },
    );
    db
}

#[test]
fn reconciliations_and_run_jobs_hold_no_transaction_and_stop_on_a_cancel() {
    // REST: a slow API, reconciled, then a queued pull worked by run_jobs.
    let api = rest_api::start(rest_api::records(24));
    let mut db = fresh_extension_database("it_session_misc");
    db.batch_execute(
        "CREATE TABLE public.tickets (id bigint PRIMARY KEY, subject text, changed timestamptz)",
    )
    .unwrap();
    let config = json!({
        "base_url": api.base_url(),
        "path": "/api/v2/tickets",
        "auth": { "type": "api_key", "header": "X-Api-Key", "key": rest_api::TICKETS_KEY },
        "records": "results",
        "primary_key": "id",
        "pagination": { "style": "page_number", "size_param": "page_size", "size": 8 },
        "target": { "table": "public.tickets", "columns": { "id": "id", "subject": "title", "changed": "updated_at" } }
    });
    db.execute("SELECT pullsync.rest_add_source('tickets', $1)", &[&config])
        .unwrap();
    api.slow_down(Duration::from_millis(800));
    let requests = || api.requests().len();
    let before = requests();
    let db = cancel_midway(
        "it_session_misc",
        db,
        "SELECT pullsync.rest_reconcile('tickets')",
        |_| requests() > before,
        |_| {},
    );
    let mut db = db;
    db.batch_execute("SELECT pullsync.rest_enqueue('tickets')")
        .unwrap();
    let before = requests();
    let mut db = cancel_midway(
        "it_session_misc",
        db,
        "SELECT pullsync.run_jobs()",
        |_| requests() > before,
        |_| {},
    );
    api.slow_down(Duration::ZERO);
    let steps: i32 = db
        .query_one("SELECT pullsync.run_jobs()", &[])
        .unwrap()
        .get(0);
    assert!(
        steps >= 1,
        "the cancelled job went back to the queue and ran"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM public.tickets"), 24);
    let report: Value = db
        .query_one("SELECT pullsync.rest_reconcile('tickets')", &[])
        .unwrap()
        .get(0);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(
        report["streams"]["records"]["missing"],
        json!([]),
        "{report}"
    );

    // Threads: an account reconciled against a slow API.
    let mut config = SimConfig::small(1, 40);
    config.latency_ms = 300;
    let sim = SimServer::start(&config);
    db.batch_execute(&format!(
        "SET pullsync.threads_api_url = '{}'",
        sim.api_url()
    ))
    .unwrap();
    let accounts = add_sim_accounts(&mut db, &sim, "11111111-1111-1111-1111-111111111111");
    db.execute(
        "CREATE TEMP TABLE call AS SELECT $1::uuid AS account",
        &[&accounts[0].0],
    )
    .unwrap();
    let db = cancel_midway(
        "it_session_misc",
        db,
        "SELECT pullsync.threads_reconcile((SELECT account FROM call), now() - interval '30 days', now())",
        |_| sim.counters().total > 0,
        |_| {},
    );

    // Feed: a source reconciled with repair, one provider call a second.
    let mut db = db;
    let _serial = feed::serial();
    let _provider = feed::provider(60, 0, "misc-key-0123456789");
    db.execute(
        "SELECT pullsync.feed_add_source('partner', $1, 'misc-key-0123456789', batch_size => 10, rate_limit => 1,
                                         timeout => '10 s', max_retries => 2, retry_delay => '10 ms')",
        &[&ports::feed_url()],
    )
    .unwrap();
    let started = std::time::Instant::now();
    cancel_midway(
        "it_session_misc",
        db,
        "SELECT pullsync.sync_reconcile('2026-05-01', '2026-07-01', 'partner', repair => true)",
        |_| started.elapsed() > Duration::from_secs(1),
        |_| {},
    );
}
