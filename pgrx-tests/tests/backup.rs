//! Backup and restore: a database filled through real use (Threads accounts synced twice
//! from the simulator, a feed pulled from `it_workers`, a downstream consumer served,
//! reconciliations, an alert, a tenant) is dumped with pg_dump in the custom and the plain
//! format, restored into empty databases with pg_restore and psql, and compared table by
//! table; then each restore goes on syncing from where the original stopped.

use postgres::Client;
use pullsync_tests::catalog::{sequence_values, table_digests, tables};
use pullsync_tests::db::{connect, connect_as, conninfo, fresh_database};
use pullsync_tests::feed::rows;
use pullsync_tests::ports::feed_url;
use pullsync_tests::rest_calls;
use pullsync_tests::sim::{Counters, SimConfig, SimServer};
use pullsync_tests::threads::{count, run_scheduled_sync, threads_fixture, QUICK_HTTP};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const SOURCE: &str = "it_backup";
const FROM_CUSTOM: &str = "it_backup_pg_restore";
const FROM_PLAIN: &str = "it_backup_psql";
/// The feed server of the test cluster serves this database (tests/feed.rs).
const PROVIDER: &str = "it_workers";
const CONSUMER: &str = "backup-partner";
const KEY: &str = "backup-key-0123456789abcdef";
const TENANT: &str = "backup_tenant";
const WORKSPACE: &str = "11111111-1111-1111-1111-111111111111";
/// Leases of running processes: not dumped, and may be empty.
const LOCKS: &str = "system_job_locks";
/// The feed epoch: not dumped, drawn anew by the restored database.
const EPOCH: &str = "feed_epoch";

fn names(db: &mut Client, sql: &str) -> Vec<String> {
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Conversations `from..=to` on the provider, two messages each, written an hour ago (inside
/// the reconciliation window).
fn provider_rows(p: &mut Client, from: i32, to: i32) {
    p.execute(
        "INSERT INTO pullsync.conversations (id, user_id, started_at, last_message_at, updated_at)
         SELECT 'bk-c' || g, 'bk-u' || g % 3, now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour'
           FROM generate_series($1::int, $2::int) g",
        &[&from, &to],
    )
    .unwrap();
    p.execute(
        "INSERT INTO pullsync.conversation_messages (id, conversation_id, role, content_redacted, created_at, updated_at)
         SELECT 'bk-m' || g || '-' || k, 'bk-c' || g, (ARRAY['user', 'assistant'])[k], 'redacted ' || g,
                now() - interval '1 hour', now() - interval '1 hour'
           FROM generate_series($1::int, $2::int) g, generate_series(1, 2) k",
        &[&from, &to],
    )
    .unwrap();
}

/// Waits until the feed server answers for the provider: it starts with the cluster, before
/// `it_workers` exists, and comes up only at its next restart.
fn wait_for_feed_server() {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match reqwest::blocking::get(format!("{}/stats", feed_url())) {
            Ok(r) if r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE => return,
            answer => assert!(
                Instant::now() < deadline,
                "the feed server on {} is not up: {answer:?}",
                feed_url()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn pull(db: &mut Client, consumer: &str) -> Value {
    db.query_one("SELECT pullsync.feed_pull($1)", &[&consumer])
        .unwrap()
        .get(0)
}

/// Fills every table of `db` (but the locks) as a user would; returns the request counters
/// of the first, full Threads run.
fn fill(db: &mut Client, sim: &SimServer, provider: &mut Client) -> Counters {
    sim.reset_counters();
    let first = run_scheduled_sync(db);
    assert_eq!(first["status"], "completed", "{first}");
    let full = sim.counters();
    // A day later metrics have grown and new posts appeared: deltas between two snapshots.
    sim.advance(86_400);
    let second = run_scheduled_sync(db);
    assert_eq!(second["status"], "completed", "{second}");
    let account: uuid::Uuid = db
        .query_one(
            "SELECT id FROM pullsync.workspace_threads_accounts ORDER BY threads_user_id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let reconciled: Value = db
        .query_one(
            "SELECT pullsync.threads_reconcile($1, now() - interval '30 days', now())",
            &[&account],
        )
        .unwrap()
        .get(0);
    assert_eq!(reconciled["status"], "success", "{reconciled}");

    // Consumer of the provider's feed, in small pages so it keeps several checkpoints.
    db.execute(
        "SELECT pullsync.feed_add_source($1, $2, $3, batch_size => 8, rate_limit => 10000, timeout => '10 s',
                                         max_retries => 2, retry_delay => '10 ms')",
        &[&CONSUMER, &feed_url(), &KEY],
    )
    .unwrap();
    let pulled = pull(db, CONSUMER);
    assert_eq!(pulled["status"], "completed", "{pulled}");
    assert_eq!(rows(db), rows(provider));
    let reconciled: Value = db
        .query_one(
            "SELECT pullsync.sync_reconcile(now() - interval '1 day', now(), $1, repair => true)",
            &[&CONSUMER],
        )
        .unwrap()
        .get(0);
    assert_eq!(reconciled["runs"][0]["status"], "success", "{reconciled}");

    // A provider that is not pg_pullsync sends an item no schema accepts: quarantined.
    let foreign =
        pullsync_tests::feed::foreign_provider(vec![pullsync_tests::feed::foreign_message(
            "fx1",
            "moderator",
            "none",
            "2026-06-01T10:00:00Z",
        )]);
    db.execute(
        "SELECT pullsync.feed_add_source('backup-foreign', $1, $2, max_retries => 0, timeout => '5 s')",
        &[&foreign.base_url, &KEY],
    )
    .unwrap();
    assert_eq!(pull(db, "backup-foreign")["quarantined"], 1);

    // A REST source whose target refuses one record: its row and a quarantined record.
    let api = pullsync_tests::rest_api::start(pullsync_tests::rest_api::records(5));
    db.batch_execute(
        "DROP TABLE IF EXISTS public.backup_rest;
         CREATE TABLE public.backup_rest (id bigint PRIMARY KEY, title text CHECK (title <> 'record 2'));",
    )
    .unwrap();
    let config = json!({
        "base_url": api.base_url(),
        "path": "/api/v2/tickets",
        "auth": { "type": "api_key", "header": "X-Api-Key", "key": pullsync_tests::rest_api::TICKETS_KEY },
        "records": "results",
        "primary_key": "id",
        "pagination": { "style": "page_number", "size_param": "page_size", "size": 2 },
        "target": { "table": "public.backup_rest", "columns": { "id": "id", "title": "title" } },
        "retries": 0
    });
    rest_calls::add(db, "backup-rest", &config);
    let rest = rest_calls::pull(db, "backup-rest");
    assert_eq!(rest["quarantined"], 1, "{rest}");

    // A fan-out source: each parent's position and mark in rest_parent_state.
    db.batch_execute(
        "DROP TABLE IF EXISTS public.backup_rest_teams, public.backup_teams;
         CREATE TABLE public.backup_teams (team text PRIMARY KEY);
         INSERT INTO public.backup_teams VALUES ('red'), ('blue');
         CREATE TABLE public.backup_rest_teams (team text, id bigint, title text, PRIMARY KEY (team, id));",
    )
    .unwrap();
    let fan_out = json!({
        "base_url": api.base_url(),
        "path": "/api/v2/tickets",
        "query": { "tag": "{team}" },
        "for_each": { "query": "SELECT team FROM public.backup_teams", "as": { "team": "team" } },
        "auth": { "type": "api_key", "header": "X-Api-Key", "key": pullsync_tests::rest_api::TICKETS_KEY },
        "records": "results",
        "primary_key": ["$parent.team", "id"],
        "pagination": { "style": "page_number", "size_param": "page_size", "size": 2 },
        "target": { "table": "public.backup_rest_teams",
                    "columns": { "team": "$parent.team", "id": "id", "title": "title" } },
        "retries": 0
    });
    rest_calls::add(db, "backup-rest-teams", &fan_out);
    let teams = rest_calls::pull(db, "backup-rest-teams");
    assert_eq!(teams["items"], 10, "{teams}");

    // A source that cannot be reached: its failed pull opens an error-rate alert.
    db.execute(
        "SELECT pullsync.feed_add_source('backup-unreachable', 'http://127.0.0.1:9', $1, max_retries => 0, timeout => '1 s')",
        &[&KEY],
    )
    .unwrap();
    assert_eq!(pull(db, "backup-unreachable")["status"], "failed");
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM pullsync.alerts WHERE source = 'feed:backup-unreachable' AND resolved_at IS NULL"
        ),
        1
    );

    // This database serves its copy of the feed downstream too: a consumer and its bookmark.
    db.execute(
        "SELECT pullsync.feed_add_consumer('backup-downstream', $1)",
        &[&KEY],
    )
    .unwrap();
    db.batch_execute(
        "SELECT pullsync.feed_conversations('backup-downstream', NULL, NULL, 500);
         SELECT pullsync.feed_all_messages('backup-downstream', NULL, NULL, 500);",
    )
    .unwrap();

    // A tenant that reads one workspace (docs/SECURITY.md); the role is cluster-wide, so it
    // survives between runs of this test and outlives the databases.
    db.batch_execute(&format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TENANT}') THEN
             CREATE ROLE {TENANT} LOGIN;
           END IF;
         END $$;
         GRANT USAGE ON SCHEMA pullsync TO {TENANT};
         GRANT SELECT ON pullsync.workspace_threads_accounts, pullsync.workspace_threads_posts,
                         pullsync.threads_post_stats, pullsync.workspace_roles TO {TENANT};
         GRANT EXECUTE ON FUNCTION pullsync.workspace_visible(uuid) TO {TENANT};
         INSERT INTO pullsync.workspace_roles VALUES ('{TENANT}', '{WORKSPACE}');"
    ))
    .unwrap();
    full
}

/// Every table of schema pullsync but the locks, as (rows, digest of its rows).
/// change_xid is left out: the stamp_change_xid trigger fires on the restore's inserts too
/// and stamps the restoring transaction on every row (the test checks that it does).
fn digests(db: &mut Client) -> BTreeMap<String, (i64, String)> {
    let mut digests = table_digests(db, &["change_xid"]);
    digests.remove(LOCKS);
    digests.remove(EPOCH);
    digests
}

/// A PostgreSQL client program of the cluster's own installation.
fn pg_program(name: &str) -> Command {
    Command::new(pullsync_tests::server::pg_bin().join(name))
}

/// Runs a client program that must succeed without a word on stderr: a warning there (say,
/// about the order of the tables' data) is what an operator would see on every backup.
fn run(mut command: Command) {
    let shown = format!("{command:?}");
    let out = pullsync_tests::wait::output(&mut command, &shown, Duration::from_secs(600));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{shown}: {}\n{stderr}",
        out.status
    );
}

/// The source's xid stamps are replaced by the restore's own: later than any source row.
fn assert_restamped(source: &mut Client, restored: &mut Client, name: &str) {
    for table in ["conversations", "conversation_messages"] {
        let sql =
            |agg: &str| format!("SELECT {agg}(change_xid::text::bigint) FROM pullsync.{table}");
        let newest: i64 = source.query_one(&sql("max"), &[]).unwrap().get(0);
        let oldest: i64 = restored.query_one(&sql("min"), &[]).unwrap().get(0);
        assert!(
            oldest > newest,
            "{name}: {table}.change_xid re-stamped by the restore ({oldest} after {newest})"
        );
    }
}

/// The restored database syncs on: Threads incrementally with the restored tokens, the
/// feed from its restored checkpoint with exactly the rows written after the dump.
fn goes_on_syncing(
    name: &str,
    sim: &SimServer,
    full: &Counters,
    provider: &mut Client,
    new_rows: &Value,
) {
    let mut db = connect(name);
    db.batch_execute(&format!(
        "SET pullsync.threads_api_url = '{}'; {QUICK_HTTP}",
        sim.api_url()
    ))
    .unwrap();
    let posts = count(
        &mut db,
        "SELECT count(*) FROM pullsync.workspace_threads_posts",
    );
    let accounts = count(
        &mut db,
        "SELECT count(*) FROM pullsync.workspace_threads_accounts",
    ) as u64;
    sim.reset_counters();
    let run = run_scheduled_sync(&mut db);
    assert_eq!(run["status"], "completed", "{name}: {run}");
    assert_eq!(
        run["success_count"].as_u64(),
        Some(accounts),
        "{name}: every restored token opened: {run}"
    );
    let calls = sim.counters();
    let listings = |c: &Counters| c.by_endpoint.get("threads").copied().unwrap_or(0);
    assert_eq!(
        listings(&calls),
        accounts,
        "{name}: one listing page per account, stopped at the known posts ({} in the full run)",
        listings(full)
    );
    assert!(
        calls.total * 10 < full.total,
        "{name}: incremental {calls:?} vs full {full:?}"
    );
    let logged = db
        .query_one(
            "SELECT count(*), coalesce(sum(items_new), 0)::bigint FROM pullsync.sync_logs WHERE job_log_id = $1",
            &[&run["job_log_id"].as_i64()],
        )
        .unwrap();
    assert_eq!(
        (logged.get::<_, i64>(0), logged.get::<_, i64>(1)),
        (accounts as i64, 0),
        "{name}: no post inserted again"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.workspace_threads_posts"
        ),
        posts
    );

    let pulled = pull(&mut db, CONSUMER);
    assert_eq!(pulled["status"], "completed", "{name}: {pulled}");
    assert_eq!(
        &pulled["items"], new_rows,
        "{name}: only the rows written after the dump"
    );
    assert_eq!(rows(&mut db), rows(provider), "{name}: the provider's rows");
}

#[test]
fn a_dump_restores_every_row_and_the_restore_goes_on_syncing() {
    let mut provider = connect(PROVIDER);
    provider
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_pullsync;
             TRUNCATE pullsync.conversations, pullsync.conversation_messages;",
        )
        .unwrap();
    provider
        .execute(
            "SELECT pullsync.feed_add_consumer($1, $2, 1000000)",
            &[&CONSUMER, &KEY],
        )
        .unwrap();
    provider_rows(&mut provider, 1, 20);
    wait_for_feed_server();

    // 150 posts an account: the full run lists two pages of each.
    let mut f = threads_fixture(SOURCE, &SimConfig::small(3, 150));
    let full = fill(&mut f.db, &f.sim, &mut provider);
    let db = &mut f.db;

    let tables = tables(db);
    let empty: Vec<&String> = tables
        .iter()
        .filter(|t| {
            t.as_str() != LOCKS && count(db, &format!("SELECT count(*) FROM pullsync.{t}")) == 0
        })
        .collect();
    assert!(empty.is_empty(), "tables the test leaves empty: {empty:?}");
    let unregistered = names(
        db,
        &format!(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'pullsync' AND c.relkind IN ('r', 'p', 'S') AND c.relname NOT IN ('{LOCKS}', '{EPOCH}')
                AND c.oid NOT IN (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'pg_pullsync')
              ORDER BY 1"
        ),
    );
    assert!(
        unregistered.is_empty(),
        "tables and sequences pg_dump would leave out: {unregistered:?}"
    );
    let source = digests(db);
    let source_sequences = sequence_values(db);
    assert!(
        source_sequences.values().all(Option::is_some),
        "{source_sequences:?}"
    );

    let dir = std::env::temp_dir().join(format!("pullsync-backup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| -> PathBuf { dir.join(name) };
    for (format, path) in [("c", file("custom.dump")), ("p", file("plain.sql"))] {
        let mut dump = pg_program("pg_dump");
        dump.arg(format!("-F{format}"))
            .arg("-f")
            .arg(&path)
            .arg("-d")
            .arg(conninfo(SOURCE));
        run(dump);
    }
    fresh_database(FROM_CUSTOM);
    let mut restore = pg_program("pg_restore");
    restore
        .args(["--exit-on-error", "-d"])
        .arg(conninfo(FROM_CUSTOM))
        .arg(file("custom.dump"));
    run(restore);
    fresh_database(FROM_PLAIN);
    let mut load = pg_program("psql");
    load.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(conninfo(FROM_PLAIN))
        .arg("-f")
        .arg(file("plain.sql"));
    run(load);
    std::fs::remove_dir_all(&dir).unwrap();

    let posts = count(db, "SELECT count(*) FROM pullsync.workspace_threads_posts");
    for name in [FROM_CUSTOM, FROM_PLAIN] {
        let mut restored = connect(name);
        assert_eq!(digests(&mut restored), source, "{name}: every table equal");
        assert_eq!(sequence_values(&mut restored), source_sequences, "{name}");
        assert_restamped(db, &mut restored, name);
        let epoch = "SELECT epoch FROM pullsync.feed_epoch";
        assert_ne!(
            count(db, epoch),
            count(&mut restored, epoch),
            "{name}: a restored database draws its own feed epoch, so old cursors are refused"
        );
        // The tenant's grants and workspace mapping came along.
        let mut tenant = connect_as(name, TENANT);
        assert_eq!(
            count(
                &mut tenant,
                "SELECT count(*) FROM pullsync.workspace_threads_posts"
            ),
            posts,
            "{name}: the tenant reads its workspace"
        );
    }
    let compared: i64 = source.values().map(|(n, _)| n).sum();
    // Straight to stdout, past the test harness's capture, so the run's log shows it.
    writeln!(
        std::io::stdout(),
        "backup: {compared} rows compared in {} tables and {} sequences, in 2 restores",
        source.len(),
        source_sequences.len()
    )
    .unwrap();

    provider_rows(&mut provider, 21, 23);
    let new_rows = json!({ "conversations": 3, "messages": 6 });
    for name in [FROM_CUSTOM, FROM_PLAIN] {
        goes_on_syncing(name, &f.sim, &full, &mut provider, &new_rows);
    }
}
