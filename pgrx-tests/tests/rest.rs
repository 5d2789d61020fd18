//! The REST source against APIs shaped like GitHub's, Stripe's and a page-number API
//! (pgrx-tests/src/rest_api.rs): incremental pulls, a run that fails and resumes exactly
//! there, writes with the rights of the role that added the source, checked
//! configurations, secrets never shown, the workers, and reconciliation.

use postgres::Client;
use pullsync_tests::db::{connect, connect_as, fresh_extension_database, fresh_role};
use pullsync_tests::rest_api::{self, RestApi, GITHUB_TOKEN, STRIPE_KEY, TICKETS_KEY};
use serde_json::{json, Value};

fn github(api: &RestApi, table: &str) -> Value {
    json!({
        "base_url": api.base_url(),
        "path": "/repos/acme/widgets/issues",
        "query": { "per_page": 10, "sort": "updated", "direction": "asc" },
        "auth": { "type": "bearer", "token": GITHUB_TOKEN },
        "primary_key": "id",
        "pagination": { "style": "link_header" },
        "incremental": { "field": "updated_at", "param": "since", "initial": "2000-01-01T00:00:00Z" },
        "target": { "table": table, "columns": { "id": "id", "title": "title", "updated_at": "updated_at" }, "extra": "raw" }
    })
}

fn stripe(api: &RestApi) -> Value {
    json!({
        "base_url": api.base_url(),
        "path": "/v1/customers",
        "query": { "limit": 7 },
        "auth": { "type": "bearer", "token": STRIPE_KEY },
        "records": "data",
        "primary_key": "id",
        "pagination": { "style": "cursor", "param": "starting_after", "last_record_field": "id", "has_more_path": "has_more" },
        "target": { "table": "public.customers", "columns": { "id": "id", "name": "title" } }
    })
}

fn tickets(api: &RestApi, retries: i32) -> Value {
    json!({
        "base_url": api.base_url(),
        "path": "/api/v2/tickets",
        "auth": { "type": "api_key", "header": "X-Api-Key", "key": TICKETS_KEY },
        "records": "results",
        "primary_key": "id",
        "pagination": { "style": "page_number", "size_param": "page_size", "size": 8 },
        "target": { "table": "public.tickets", "columns": { "id": "id", "subject": "title", "changed": "updated_at" } },
        "retries": retries
    })
}

const TABLES: &str = "
    CREATE TABLE public.gh_issues (id bigint PRIMARY KEY, title text, updated_at timestamptz, raw jsonb);
    CREATE TABLE public.customers (id bigint PRIMARY KEY, name text);
    CREATE TABLE public.tickets (id bigint PRIMARY KEY, subject text, changed timestamptz);";

fn json_of(db: &mut Client, sql: &str) -> Value {
    db.query_one(sql, &[]).unwrap().get(0)
}

fn add(db: &mut Client, name: &str, config: &Value) -> Value {
    db.query_one("SELECT pullsync.rest_add_source($1, $2)", &[&name, config])
        .unwrap()
        .get(0)
}

fn pull(db: &mut Client, name: &str) -> Value {
    db.query_one("SELECT pullsync.rest_pull($1)", &[&name])
        .unwrap()
        .get(0)
}

/// (id, text) of every row, in id order.
fn rows(db: &mut Client, sql: &str) -> Vec<(i64, String)> {
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn three_apis_shaped_like_real_ones_are_pulled_and_then_incrementally() {
    let api = rest_api::start(rest_api::records(25));
    let mut db = fresh_extension_database("it_rest_apis");
    db.batch_execute(TABLES).unwrap();
    let shown = add(&mut db, "github", &github(&api, "public.gh_issues"));
    assert!(!shown.to_string().contains(GITHUB_TOKEN), "{shown}");
    add(&mut db, "stripe", &stripe(&api));
    add(&mut db, "tickets", &tickets(&api, 3));

    let first = pull(&mut db, "github");
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(
        (first["pages"].as_i64(), first["items"].as_i64()),
        (Some(3), Some(25)),
        "{first}"
    );
    let stored = rows(
        &mut db,
        "SELECT id, title FROM public.gh_issues ORDER BY id",
    );
    let expected: Vec<(i64, String)> = (1..=25).map(|i| (i, format!("record {i}"))).collect();
    assert_eq!(stored, expected);
    let raw: Value = json_of(&mut db, "SELECT raw FROM public.gh_issues WHERE id = 7");
    assert_eq!(
        raw,
        json!({ "labels": ["x"] }),
        "unmapped fields land in the extra column"
    );

    let s = pull(&mut db, "stripe");
    assert_eq!(
        (s["status"].as_str(), s["pages"].as_i64()),
        (Some("completed"), Some(4)),
        "{s}"
    );
    assert_eq!(
        rows(&mut db, "SELECT id, name FROM public.customers ORDER BY id"),
        expected
    );
    let t = pull(&mut db, "tickets");
    assert_eq!(
        (t["status"].as_str(), t["pages"].as_i64()),
        (Some("completed"), Some(4)),
        "{t}"
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT id, subject FROM public.tickets ORDER BY id"
        ),
        expected
    );

    // A change and an addition: the next GitHub run sends the high-water mark and reads
    // only what changed since.
    api.upsert(3, "record 3, edited", "2024-02-01T00:00:00Z");
    api.upsert(26, "record 26", "2024-02-02T00:00:00Z");
    api.clear_requests();
    let second = pull(&mut db, "github");
    assert_eq!(second["since"], "2024-01-01T00:25:00Z", "{second}");
    assert_eq!(
        (second["pages"].as_i64(), second["items"].as_i64()),
        (Some(1), Some(3)),
        "{second}"
    );
    let sent = api.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].1.contains("since=2024-01-01T00:25:00Z"), "{sent:?}");
    let stored = rows(
        &mut db,
        "SELECT id, title FROM public.gh_issues WHERE id IN (3, 26) ORDER BY id",
    );
    assert_eq!(
        stored,
        [(3, "record 3, edited".into()), (26, "record 26".into())]
    );
    let mark: String = db
        .query_one(
            "SELECT high_water FROM pullsync.rest_sources WHERE name = 'github'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(mark, "2024-02-02T00:00:00Z");

    // Every run logged and measured under its own source.
    let logged: i64 = db
        .query_one("SELECT count(*) FROM pullsync.sync_logs WHERE source = 'rest' AND subject = 'github' AND status = 'completed'", &[])
        .unwrap()
        .get(0);
    assert_eq!(logged, 2);
    let metrics: i64 = db
        .query_one(
            "SELECT runs_total FROM pullsync.source_metrics WHERE source = 'rest:tickets'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(metrics, 1);
    let exposition: String = db
        .query_one("SELECT pullsync.metrics()", &[])
        .unwrap()
        .get(0);
    assert!(
        exposition.contains("source=\"rest:stripe\""),
        "{exposition}"
    );
}

#[test]
fn a_run_that_fails_on_a_page_resumes_exactly_there() {
    let api = rest_api::start(rest_api::records(25));
    let mut db = fresh_extension_database("it_rest_resume");
    db.batch_execute(TABLES).unwrap();
    add(&mut db, "tickets", &tickets(&api, 0));
    api.fail_once("page=3", 500);
    let first = pull(&mut db, "tickets");
    assert_eq!(first["status"], "partial", "{first}");
    assert_eq!(first["items"], 16, "{first}");
    let stored: i64 = db
        .query_one("SELECT count(*) FROM public.tickets", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 16, "the two pages before the failure are committed");
    api.clear_requests();
    let second = pull(&mut db, "tickets");
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["resumed"], true, "{second}");
    let pages: Vec<String> = api.requests().into_iter().map(|(_, q)| q).collect();
    assert!(
        pages[0].contains("page=3"),
        "it starts at the failed page: {pages:?}"
    );
    assert_eq!(pages.len(), 2, "{pages:?}");
    let expected: Vec<(i64, String)> = (1..=25).map(|i| (i, format!("record {i}"))).collect();
    assert_eq!(
        rows(
            &mut db,
            "SELECT id, subject FROM public.tickets ORDER BY id"
        ),
        expected
    );
    // A throttled page waits as the API asks and goes on.
    api.fail_once("page=2", 429);
    let third = pull(&mut db, "tickets");
    assert_eq!(third["status"], "completed", "{third}");
}

/// A source cannot hold a worker for longer than `pullsync.rest_run_budget`: the run stops
/// after the page under way, partial, and the next one resumes there.
#[test]
fn a_run_stops_at_its_wall_clock_budget_and_the_next_resumes() {
    let api = rest_api::start(rest_api::records(25));
    let mut db = fresh_extension_database("it_rest_budget");
    db.batch_execute(TABLES).unwrap();
    add(&mut db, "tickets", &tickets(&api, 0));
    api.slow_down(std::time::Duration::from_millis(700));
    db.batch_execute("SET pullsync.rest_run_budget = 1")
        .unwrap();
    let first = pull(&mut db, "tickets");
    assert_eq!(first["status"], "partial", "{first}");
    let pages = first["pages"].as_i64().unwrap();
    assert!(
        (1..4).contains(&pages),
        "stopped before the last of 4 pages: {first}"
    );
    assert!(
        first["error"].as_str().unwrap().contains("rest_run_budget"),
        "{first}"
    );
    let stored: i64 = db
        .query_one("SELECT count(*) FROM public.tickets", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, pages * 8, "every page read was committed");
    api.slow_down(std::time::Duration::ZERO);
    db.batch_execute("RESET pullsync.rest_run_budget").unwrap();
    let second = pull(&mut db, "tickets");
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["resumed"], true, "{second}");
    let expected: Vec<(i64, String)> = (1..=25).map(|i| (i, format!("record {i}"))).collect();
    assert_eq!(
        rows(
            &mut db,
            "SELECT id, subject FROM public.tickets ORDER BY id"
        ),
        expected
    );
}

#[test]
fn a_record_the_target_will_not_take_is_quarantined_and_the_run_goes_on() {
    let api = rest_api::start(rest_api::records(25));
    let mut db = fresh_extension_database("it_rest_quarantine");
    db.batch_execute(TABLES).unwrap();
    db.batch_execute(
        "ALTER TABLE public.tickets ADD CONSTRAINT no_four CHECK (subject <> 'record 4')",
    )
    .unwrap();
    add(&mut db, "tickets", &tickets(&api, 0));
    let run = pull(&mut db, "tickets");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        (run["items"].as_i64(), run["quarantined"].as_i64()),
        (Some(24), Some(1)),
        "{run}"
    );
    let (key, reason): (String, String) = {
        let row = db
            .query_one(
                "SELECT record_key, reason FROM pullsync.rest_quarantine",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(key, "4");
    assert!(reason.contains("no_four"), "{reason}");
    let waiting: i64 = db
        .query_one(
            "SELECT items_quarantined FROM pullsync.source_metrics WHERE source = 'rest:tickets'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(waiting, 1);
    db.batch_execute("ALTER TABLE public.tickets DROP CONSTRAINT no_four")
        .unwrap();
    let retried = json_of(&mut db, "SELECT pullsync.rest_retry_quarantined('tickets')");
    assert_eq!(retried["stored"], 1, "{retried}");
    let expected: Vec<(i64, String)> = (1..=25).map(|i| (i, format!("record {i}"))).collect();
    assert_eq!(
        rows(
            &mut db,
            "SELECT id, subject FROM public.tickets ORDER BY id"
        ),
        expected
    );
}

#[test]
fn writes_have_the_rights_of_the_role_that_added_the_source() {
    let api = rest_api::start(rest_api::records(5));
    let mut db = fresh_extension_database("it_rest_roles");
    for role in ["rest_a", "rest_b"] {
        fresh_role(&mut db, role);
    }
    db.batch_execute(
        "CREATE TABLE public.table_a (id bigint PRIMARY KEY, title text, updated_at timestamptz, raw jsonb);
         CREATE TABLE public.table_b (id bigint PRIMARY KEY, title text, updated_at timestamptz, raw jsonb);
         GRANT INSERT, UPDATE, SELECT ON public.table_a TO rest_a;
         GRANT INSERT, UPDATE, SELECT ON public.table_b TO rest_b;
         GRANT USAGE ON SCHEMA pullsync TO rest_a, rest_b;
         GRANT EXECUTE ON FUNCTION pullsync.rest_add_source(text, jsonb), pullsync.rest_pull(text) TO rest_a, rest_b;",
    )
    .unwrap();
    let mut a = connect_as("it_rest_roles", "rest_a");
    let refused = a
        .query_one(
            "SELECT pullsync.rest_add_source('a_into_b', $1)",
            &[&github(&api, "public.table_b")],
        )
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"), "{refused}");
    add(&mut a, "a_into_a", &github(&api, "public.table_a"));
    let pulled = pull(&mut a, "a_into_a");
    assert_eq!(pulled["items"], 5, "{pulled}");
    let mut b = connect_as("it_rest_roles", "rest_b");
    add(&mut b, "b_into_b", &github(&api, "public.table_b"));
    assert_eq!(pull(&mut b, "b_into_b")["items"], 5);

    // Once rest_a may no longer write its table, no pull writes it, not even one a
    // superuser or a worker runs.
    db.batch_execute("REVOKE INSERT, UPDATE ON public.table_a FROM rest_a")
        .unwrap();
    api.upsert(6, "record 6", "2024-03-01T00:00:00Z");
    let denied = pull(&mut db, "a_into_a");
    assert_eq!(denied["status"], "failed", "{denied}");
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{denied}"
    );
    let written: i64 = db
        .query_one("SELECT count(*) FROM public.table_a WHERE id = 6", &[])
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
    // Row level security holds too: the writes are rest_b's own.
    db.batch_execute(
        "ALTER TABLE public.table_b ENABLE ROW LEVEL SECURITY;
         CREATE POLICY only_small ON public.table_b USING (id < 6) WITH CHECK (id < 6);",
    )
    .unwrap();
    let filtered = pull(&mut db, "b_into_b");
    assert_eq!(filtered["status"], "failed", "{filtered}");
    assert!(
        filtered["error"]
            .as_str()
            .unwrap()
            .contains("row-level security"),
        "{filtered}"
    );
}

#[test]
fn configurations_are_checked_key_by_key_and_secrets_never_shown() {
    let api = rest_api::start(rest_api::records(3));
    let mut db = fresh_extension_database("it_rest_config");
    db.batch_execute(TABLES).unwrap();
    let cases = [
        (
            "pagination",
            json!({ "style": "pages" }),
            "config.pagination.style",
        ),
        ("primary_key", json!([]), "config.primary_key"),
        ("auth", json!({ "type": "bearer" }), "config.auth.token"),
        (
            "target",
            json!({ "table": "public.nowhere", "columns": { "id": "id" } }),
            "config.target.table",
        ),
        (
            "target",
            json!({ "table": "public.customers", "columns": { "id": "id", "colour": "title" } }),
            "config.target.columns.colour",
        ),
    ];
    for (key, value, named) in cases {
        let mut config = stripe(&api);
        config[key] = value;
        let e = db
            .query_one("SELECT pullsync.rest_add_source('bad', $1)", &[&config])
            .unwrap_err();
        let db_error = e.as_db_error().unwrap();
        assert_eq!(db_error.code().code(), "22023", "{e}");
        assert!(
            db_error.message().starts_with(named),
            "{named}: {}",
            db_error.message()
        );
        assert!(db_error.hint().is_some_and(|h| !h.is_empty()), "{e}");
        assert!(!db_error.message().contains(STRIPE_KEY));
    }
    let mut keyless = stripe(&api);
    keyless["target"] = json!({ "table": "public.tickets", "columns": { "subject": "id" } });
    let e = db
        .query_one("SELECT pullsync.rest_add_source('bad', $1)", &[&keyless])
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{e}");

    add(&mut db, "stripe", &stripe(&api));
    let stored: String = db
        .query_one(
            "SELECT config::text || coalesce(secret_encrypted, '') FROM pullsync.rest_sources",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        !stored.contains(STRIPE_KEY) && stored.contains("v1:"),
        "{stored}"
    );
    // A wrong key: the run fails with the API's refusal, and no secret in the message.
    db.query_one(
        "SELECT pullsync.rest_alter_source('stripe', $1)",
        &[&json!({ "auth": { "type": "bearer", "token": "sk_test_wrong-key" } })],
    )
    .unwrap();
    let failed = pull(&mut db, "stripe");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("HTTP 401"),
        "{failed}"
    );
    assert!(
        !failed.to_string().contains("sk_test_wrong-key"),
        "{failed}"
    );
    // Altering other keys keeps the sealed secret.
    db.query_one(
        "SELECT pullsync.rest_alter_source('stripe', $1)",
        &[&json!({ "auth": { "type": "bearer", "token": STRIPE_KEY } })],
    )
    .unwrap();
    db.query_one(
        "SELECT pullsync.rest_alter_source('stripe', $1)",
        &[&json!({ "query": { "limit": 2 } })],
    )
    .unwrap();
    let ok = pull(&mut db, "stripe");
    assert_eq!(
        (ok["status"].as_str(), ok["pages"].as_i64()),
        (Some("completed"), Some(2)),
        "{ok}"
    );
    let dropped = db.execute("SELECT pullsync.rest_drop_source('stripe')", &[]);
    assert!(dropped.is_ok());
    let gone = db
        .query_one("SELECT pullsync.rest_pull('stripe')", &[])
        .unwrap_err();
    assert_eq!(gone.code().map(|c| c.code()), Some("42704"), "{gone}");
    // Without pg_cron in the database, scheduling says what to do instead.
    let unscheduled = db
        .query_one("SELECT pullsync.rest_schedule('stripe')", &[])
        .unwrap_err();
    let e = unscheduled.as_db_error().unwrap();
    assert_eq!(e.code().code(), "42704", "{unscheduled}");
    assert!(
        e.hint().unwrap_or_default().contains("rest_enqueue"),
        "{unscheduled}"
    );
}

#[test]
fn a_queued_pull_runs_in_the_workers_and_reconciliation_names_missing_keys() {
    let api = rest_api::start(rest_api::records(20));
    let mut db = connect(pullsync_tests::workers::DB);
    db.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_pullsync;
         DROP TABLE IF EXISTS public.rest_worker_tickets;
         CREATE TABLE public.rest_worker_tickets (id bigint PRIMARY KEY, subject text, changed timestamptz);
         DELETE FROM pullsync.rest_sources WHERE name = 'worker_tickets';",
    )
    .unwrap();
    let mut config = tickets(&api, 3);
    config["target"]["table"] = json!("public.rest_worker_tickets");
    add(&mut db, "worker_tickets", &config);
    let queued = json_of(&mut db, "SELECT pullsync.rest_enqueue('worker_tickets')");
    let job = queued["job_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{queued}"));
    pullsync_tests::workers::wait_finished(&mut db, job);
    let status = pullsync_tests::workers::status(&mut db, job);
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["result"]["items"], 20, "{status}");
    db.batch_execute("DELETE FROM public.rest_worker_tickets WHERE id IN (5, 17)")
        .unwrap();
    let run = json_of(&mut db, "SELECT pullsync.rest_reconcile('worker_tickets')");
    assert_eq!(run["status"], "mismatch", "{run}");
    assert_eq!(
        run["streams"]["records"]["missing"],
        json!(["17", "5"]),
        "{run}"
    );
    let recorded: i64 = db
        .query_one("SELECT count(*) FROM pullsync.reconciliation_runs WHERE source = 'rest' AND status = 'mismatch'", &[])
        .unwrap()
        .get(0);
    assert!(recorded >= 1);
    db.batch_execute(
        "SELECT pullsync.rest_drop_source('worker_tickets');
         DROP TABLE public.rest_worker_tickets;",
    )
    .unwrap();
}

/// On PostgreSQL 15 only (pg_cron has no package for 18 here; `cargo xtask test` skips it).
#[test]
fn rest_schedule_makes_a_pg_cron_job_that_queues_the_pull() {
    let mut db = connect(pullsync_tests::workers::DB);
    db.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_pullsync; CREATE EXTENSION IF NOT EXISTS pg_cron",
    )
    .unwrap();
    let job: i64 = db
        .query_one(
            "SELECT pullsync.rest_schedule('sched_demo', '17 3 * * *')",
            &[],
        )
        .unwrap()
        .get(0);
    let (schedule, command): (String, String) = {
        let row = db
            .query_one(
                "SELECT schedule, command FROM cron.job WHERE jobid = $1",
                &[&job],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(schedule, "17 3 * * *");
    assert_eq!(command, "SELECT pullsync.rest_enqueue('sched_demo')");
    let again: i64 = db
        .query_one(
            "SELECT pullsync.rest_schedule('sched_demo', '*/30 * * * *')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(again, job, "the same name replaces the job");
    db.execute("SELECT cron.unschedule($1::bigint)", &[&job])
        .unwrap();
}

/// A long pull's last statements (over tables grown by the pull) crossed
/// `jit_above_cost` and loaded LLVM into the pulling process; its statements are never
/// compiled, whatever the database's settings.
#[test]
fn a_pull_runs_without_jit_compilation() {
    let api = rest_api::start(rest_api::records(10));
    let mut db = fresh_extension_database("it_rest_no_jit");
    db.batch_execute(TABLES).unwrap();
    db.batch_execute(
        "ALTER DATABASE it_rest_no_jit SET jit = on;
         CREATE TABLE public.jit_seen (setting text);
         CREATE FUNCTION public.note_jit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.jit_seen VALUES (pg_catalog.current_setting('jit'));
             RETURN NEW;
         END $$;
         CREATE TRIGGER note_jit BEFORE INSERT ON public.tickets
             FOR EACH ROW EXECUTE FUNCTION public.note_jit();",
    )
    .unwrap();
    add(&mut db, "tickets", &tickets(&api, 0));
    let answer = pull(&mut db, "tickets");
    assert_eq!(answer["status"], "completed", "{answer}");
    let seen = json_of(
        &mut db,
        "SELECT jsonb_build_object('rows', count(*), 'settings', jsonb_agg(DISTINCT setting)) FROM public.jit_seen",
    );
    assert_eq!(seen, json!({"rows": 10, "settings": ["off"]}));
}
