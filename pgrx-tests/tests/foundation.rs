//! The extension as a user meets it: install, remove, privileges, input errors.

use pullsync_tests::db::{
    connect_as, fresh_database, fresh_extension_database, fresh_role, sqlstate_of,
};

/// Every object outside the system schemas, as text, so two states can be compared.
const OBJECTS: &str = "
SELECT 'namespace ' || nspname FROM pg_namespace
 WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
UNION ALL SELECT 'class ' || c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
UNION ALL SELECT 'proc ' || p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
UNION ALL SELECT 'type ' || t.oid::regtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL SELECT 'extension ' || extname FROM pg_extension
ORDER BY 1";

#[test]
fn create_and_drop_extension_leave_nothing_behind() {
    let mut db = fresh_database("it_roundtrip");
    let objects = |db: &mut postgres::Client| -> Vec<String> {
        db.query(OBJECTS, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let before = objects(&mut db);
    db.batch_execute("CREATE EXTENSION pg_pullsync").unwrap();
    let installed = objects(&mut db);
    assert!(installed.iter().any(|o| o == "namespace pullsync"));
    assert!(installed
        .iter()
        .any(|o| o == "class pullsync.workspace_threads_post_metrics_deltas"));
    assert!(installed.len() > before.len() + 40, "{installed:?}");
    db.batch_execute("DROP EXTENSION pg_pullsync CASCADE")
        .unwrap();
    assert_eq!(objects(&mut db), before);
    // And again: a second round trip is just as clean.
    db.batch_execute("CREATE EXTENSION pg_pullsync; DROP EXTENSION pg_pullsync CASCADE")
        .unwrap();
    assert_eq!(objects(&mut db), before);
}

#[test]
fn a_role_without_grants_can_neither_run_functions_nor_read_tokens() {
    let mut db = fresh_extension_database("it_privileges");
    fresh_role(&mut db, "it_nobody");
    db.batch_execute(
        "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', '42', 'alice',
                                             'THAAtoken', now() + interval '30 days')",
    )
    .unwrap();
    let mut nobody = connect_as("it_privileges", "it_nobody");
    let denied = [
        "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', '43', 'bob', 't', now() + interval '1 day')",
        "SELECT * FROM pullsync.workspace_threads_tokens",
        "SELECT * FROM pullsync.workspace_threads_posts",
        "SHOW pullsync.encryption_key",
        "SELECT pullsync.threads_scheduled_sync()",
        "SELECT pullsync.threads_sync_account('00000000-0000-0000-0000-000000000000')",
        "SELECT pullsync.run_jobs()",
        "SELECT pullsync.feed_pull('partner', 'incremental')",
        "SELECT pullsync.threads_refresh_tokens('7 days')",
        "SELECT pullsync.rotate_encryption_key('MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=')",
        "SELECT * FROM pullsync.feed_sources",
        "SELECT * FROM pullsync.feed_consumers",
    ];
    for sql in denied {
        assert_eq!(
            sqlstate_of(&mut nobody, sql).as_deref(),
            Some("42501"),
            "{sql}"
        );
    }
    let visible: i64 = nobody
        .query_one(
            "SELECT count(*) FROM pg_settings WHERE name = 'pullsync.encryption_key'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(visible, 0, "the key must be hidden from pg_settings");
}

/// A SECURITY DEFINER function that resolves names through the caller's search_path can be
/// made to run the caller's objects with the owner's rights.
#[test]
fn every_security_definer_function_pins_a_safe_search_path() {
    let mut db = fresh_extension_database("it_definer");
    let rows = db
        .query(
            "SELECT p.oid::regprocedure::text,
                    (SELECT c FROM unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%')
               FROM pg_proc p
              WHERE p.pronamespace = 'pullsync'::regnamespace AND p.prosecdef",
            &[],
        )
        .unwrap();
    assert!(rows.len() >= 10, "the API functions are SECURITY DEFINER");
    for row in rows {
        let (function, setting): (String, Option<String>) = (row.get(0), row.get(1));
        let setting = setting.unwrap_or_else(|| panic!("{function} has no search_path"));
        let schemas: Vec<&str> = setting["search_path=".len()..]
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .collect();
        assert!(
            schemas
                .iter()
                .all(|s| ["pg_catalog", "pg_temp", "pullsync"].contains(s)),
            "{function}: {setting}"
        );
        // pg_temp must come last, or a temporary object could shadow a catalog one.
        if let Some(i) = schemas.iter().position(|s| *s == "pg_temp") {
            assert_eq!(i, schemas.len() - 1, "{function}: {setting}");
        } else {
            panic!("{function}: {setting} leaves pg_temp first by default");
        }
    }
}

#[test]
fn the_documented_reader_role_reads_analytics_but_never_tokens() {
    let mut db = fresh_extension_database("it_reader");
    fresh_role(&mut db, "it_reader_role");
    db.batch_execute(&documented_grants("pullsync_reader", "it_reader_role"))
        .expect("the documented reader grants apply");
    let mut reader = connect_as("it_reader", "it_reader_role");
    for relation in [
        "workspace_threads_accounts",
        "workspace_threads_posts",
        "workspace_threads_post_metrics",
        "workspace_threads_post_metrics_deltas",
        "workspace_threads_account_insights",
        "workspace_threads_account_insights_deltas",
        "workspace_threads_account_links",
        "workspace_threads_account_link_clicks",
        "workspace_threads_account_link_clicks_deltas",
        "workspace_threads_follower_demographics",
        "threads_post_stats",
        "threads_account_stats",
        "threads_link_clicks",
        "threads_follower_demographics",
        "workspace_roles",
    ] {
        let sql = format!("SELECT * FROM pullsync.{relation}");
        assert_eq!(sqlstate_of(&mut reader, &sql), None, "as the reader: {sql}");
    }
    assert_eq!(
        sqlstate_of(
            &mut reader,
            "SELECT pullsync.workspace_visible('11111111-1111-1111-1111-111111111111')"
        ),
        None
    );
    for sql in [
        "SELECT * FROM pullsync.workspace_threads_tokens",
        "SELECT * FROM pullsync.feed_consumers",
        "SELECT pullsync.threads_scheduled_sync()",
    ] {
        assert_eq!(
            sqlstate_of(&mut reader, sql).as_deref(),
            Some("42501"),
            "{sql}"
        );
    }
}

#[test]
fn the_documented_monitor_role_reads_health_and_metrics_but_no_rows() {
    let mut db = fresh_extension_database("it_monitor_grants");
    fresh_role(&mut db, "it_monitor_role");
    db.batch_execute(&documented_grants("pullsync_monitor", "it_monitor_role"))
        .expect("the documented monitor grants apply");
    let mut monitor = connect_as("it_monitor_grants", "it_monitor_role");
    for sql in [
        "SELECT pullsync.health()",
        "SELECT pullsync.metrics()",
        "SELECT * FROM pullsync.source_metrics",
        "SELECT * FROM pullsync.alerts",
    ] {
        assert_eq!(
            sqlstate_of(&mut monitor, sql),
            None,
            "as the monitor: {sql}"
        );
    }
    for sql in [
        "SELECT * FROM pullsync.workspace_threads_posts",
        "SELECT * FROM pullsync.threads_post_stats",
        "SELECT * FROM pullsync.workspace_threads_tokens",
        "SELECT pullsync.run_jobs()",
    ] {
        assert_eq!(
            sqlstate_of(&mut monitor, sql).as_deref(),
            Some("42501"),
            "{sql}"
        );
    }
}

#[test]
fn bad_inputs_to_threads_add_account_get_clear_errors() {
    let mut db = fresh_extension_database("it_bad_input");
    let ws = "'11111111-1111-1111-1111-111111111111'";
    let later = "now() + interval '60 days'";
    let cases = [
        (format!("NULL, '1', 'a', 't', {later}"), "22004"),
        (format!("{ws}, NULL, 'a', 't', {later}"), "22004"),
        (format!("{ws}, '1', NULL, 't', {later}"), "22004"),
        (format!("{ws}, '1', 'a', NULL, {later}"), "22004"),
        (format!("{ws}, '1', 'a', 't', NULL"), "22004"),
        (format!("{ws}, '', 'a', 't', {later}"), "22023"),
        (format!("{ws}, 'abc', 'a', 't', {later}"), "22023"),
        (format!("{ws}, '1', '', 't', {later}"), "22023"),
        (format!("{ws}, '1', 'a', '', {later}"), "22023"),
        (format!("{ws}, '1', 'a', '   ', {later}"), "22023"),
        (
            format!("{ws}, '1', 'a', 't', now() - interval '1 minute'"),
            "22023",
        ),
        (format!("{ws}, '1', 'a', 't', 'infinity'"), "22023"),
    ];
    for (args, state) in cases {
        let sql = format!("SELECT pullsync.threads_add_account({args})");
        assert_eq!(sqlstate_of(&mut db, &sql).as_deref(), Some(state), "{sql}");
    }
    let rows: i64 = db
        .query_one(
            "SELECT count(*) FROM pullsync.workspace_threads_accounts",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "a refused call stores nothing");
}

#[test]
fn a_missing_key_gets_an_error_that_says_how_to_set_one() {
    let mut db = fresh_extension_database("it_no_key");
    db.batch_execute("SET pullsync.encryption_key_file = ''")
        .unwrap();
    let err = db
        .batch_execute(
            "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', '1', 'a', 't', now() + interval '1 day')",
        )
        .unwrap_err();
    let db_err = err.as_db_error().expect("a server error");
    assert_eq!(db_err.code().code(), "55000");
    assert!(db_err
        .hint()
        .unwrap_or_default()
        .contains("pullsync.encryption_key"));
}

#[test]
fn snapshot_rows_cannot_be_updated() {
    let mut db = fresh_extension_database("it_snapshots");
    db.batch_execute(
        "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', '7', 'a', 't', now() + interval '1 day');
         INSERT INTO pullsync.workspace_threads_account_insights
                (workspace_threads_account_id, followers_count, views, likes, replies, reposts, quotes, clicks, captured_at)
         SELECT id, 1, 1, 1, 1, 1, 1, 1, now() FROM pullsync.workspace_threads_accounts;",
    )
    .unwrap();
    assert_eq!(
        sqlstate_of(
            &mut db,
            "UPDATE pullsync.workspace_threads_account_insights SET views = 5"
        )
        .as_deref(),
        Some("0A000")
    );
}

/// The SQL block of docs/SECURITY.md that starts with `CREATE ROLE <role>;`, for `as_role`:
/// the test runs the grants the documentation gives, not a copy of them.
fn documented_grants(role: &str, as_role: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SECURITY.md"))
        .expect("docs/SECURITY.md");
    let start = doc
        .find(&format!("CREATE ROLE {role};"))
        .unwrap_or_else(|| panic!("docs/SECURITY.md has no CREATE ROLE {role};"));
    let block = &doc[start..];
    let block = &block[..block.find("```").expect("the end of the block")];
    block
        .replacen(&format!("CREATE ROLE {role};"), "", 1)
        .replace(role, as_role)
}

#[test]
fn the_documented_operator_role_runs_everything_it_is_granted() {
    let mut db = fresh_extension_database("it_operator");
    fresh_role(&mut db, "it_operator_role");
    db.batch_execute(&documented_grants("pullsync_operator", "it_operator_role"))
        .expect("the documented operator grants apply");
    // Superuser-only settings: short HTTP waits for the calls below that reach nothing.
    db.batch_execute(
        "ALTER DATABASE it_operator SET pullsync.http_timeout = '1s';
         ALTER DATABASE it_operator SET pullsync.http_max_retries = 0;",
    )
    .unwrap();
    let mut op = connect_as("it_operator", "it_operator_role");
    let queued: serde_json::Value = op
        .query_one("SELECT pullsync.threads_scheduled_sync()", &[])
        .expect("threads_scheduled_sync as the operator")
        .get(0);
    let job = queued["job_id"].as_i64().expect("a queued run");
    for sql in [
        format!("SELECT pullsync.job_status({job})"),
        "SELECT * FROM pullsync.jobs_running".into(),
        "SELECT pullsync.run_jobs()".into(),
        format!("SELECT pullsync.job_status({job})"),
        "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', '1', 'op', 'token', now() + interval '30 days')".into(),
        "SELECT pullsync.threads_refresh_tokens('1 day')".into(),
        "SELECT pullsync.feed_add_consumer('op-partner', 'op-key-0123456789abcdef', 100)".into(),
        "SELECT pullsync.feed_add_source('op-source', 'http://127.0.0.1:9', 'op-key-0123456789abcdef', max_retries => 0, timeout => '1 s')".into(),
        "SELECT pullsync.feed_pull('op-source', 'incremental')".into(),
        "SELECT pullsync.feed_enqueue('op-source', 'incremental')".into(),
        "SELECT pullsync.feed_retry_quarantined('op-source')".into(),
        "SELECT pullsync.feed_scheduled_sync('incremental')".into(),
        "SELECT * FROM pullsync.sync_status".into(),
        "SELECT pullsync.check_alerts()".into(),
        "SELECT pullsync.cleanup()".into(),
    ] {
        assert_eq!(sqlstate_of(&mut op, &sql), None, "as the operator: {sql}");
    }
    let account: uuid::Uuid = db
        .query_one("SELECT id FROM pullsync.workspace_threads_accounts", &[])
        .unwrap()
        .get(0);
    for sql in [
        format!("SELECT pullsync.threads_sync_account('{account}')"),
        format!("SELECT pullsync.threads_reconcile('{account}', now() - interval '1 day', now())"),
        "SELECT pullsync.sync_reconcile(now() - interval '1 hour', now(), 'op-source')".into(),
    ] {
        // The Threads API is out of reach here: the call may fail, but not for privileges.
        assert_ne!(
            sqlstate_of(&mut op, &sql).as_deref(),
            Some("42501"),
            "as the operator: {sql}"
        );
    }
    assert_eq!(
        sqlstate_of(&mut op, "SELECT * FROM pullsync.workspace_threads_tokens").as_deref(),
        Some("42501")
    );
}
