//! The conversation feed end to end: the provider is the cluster's `it_workers` database,
//! served by the built-in feed server (on a free port `cargo xtask test` chose);
//! consumers are fresh databases pulling over HTTP. Tests share the provider, so they run
//! one at a time.

use postgres::Client;
use pullsync_tests::db::{connect, sqlstate_of};
use pullsync_tests::feed::rows;
use pullsync_tests::wait::Deadline;
use serde_json::Value;
use std::time::Duration;

use pullsync_tests::feed::PROVIDER;
use pullsync_tests::ports::feed_url;
const KEY: &str = "feed-key-0123456789abcdef";

fn provider(conversations: i32, messages: i32) -> Client {
    pullsync_tests::feed::provider(conversations, messages, KEY)
}

fn consumer(name: &str, batch: i32) -> Client {
    pullsync_tests::feed::consumer(name, &feed_url(), KEY, batch)
}

fn pull(c: &mut Client, max_pages: Option<i32>) -> Value {
    c.query_one(
        "SELECT pullsync.feed_pull('partner', 'incremental', $1)",
        &[&max_pages],
    )
    .unwrap()
    .get(0)
}

#[test]
fn two_databases_end_to_end_with_writers_and_a_late_commit() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(2_000, 100_000);
    let mut c = consumer("it_feed_consumer", 1000);

    // A transaction that writes, then stays open across the first pulls.
    let mut late = connect(PROVIDER);
    late.batch_execute(
        "BEGIN;
         INSERT INTO pullsync.conversation_messages (id, conversation_id, role, content_redacted, created_at)
         VALUES ('late-1', 'c1', 'user', 'committed late', now());",
    )
    .unwrap();

    // Writers change and add rows while the consumer pulls.
    let writer = std::thread::spawn(|| {
        let mut w = connect(PROVIDER);
        for i in 0..300 {
            w.execute(
                "UPDATE pullsync.conversation_messages SET content_redacted = 'edited ' || ($1::int)::text, updated_at = now()
                  WHERE id = 'm' || (($1 * 331) % 100000 + 1)",
                &[&i],
            )
            .unwrap();
            w.execute(
                "INSERT INTO pullsync.conversation_messages (id, conversation_id, role, content_redacted, created_at)
                 VALUES ('new-' || ($1::int)::text, 'c2', 'assistant', 'new', now())",
                &[&i],
            )
            .unwrap();
            if i % 50 == 0 {
                w.execute("UPDATE pullsync.conversations SET ended_at = now(), updated_at = now() WHERE id = 'c' || ($1 + 1)", &[&i])
                    .unwrap();
            }
        }
    });
    let first = pull(&mut c, Some(40));
    assert_eq!(first["status"], "completed", "{first}");
    let second = pull(&mut c, None);
    assert_eq!(second["status"], "completed", "{second}");
    writer.join().unwrap();
    late.batch_execute("COMMIT").unwrap();
    let third = pull(&mut c, None);
    assert_eq!(third["status"], "completed", "{third}");

    let (source_conversations, source_messages) = rows(&mut p);
    let (target_conversations, target_messages) = rows(&mut c);
    assert_eq!(source_messages.len(), 100_000 + 300 + 1);
    assert!(
        target_messages.contains_key("late-1"),
        "the late commit reached the consumer"
    );
    assert_eq!(
        target_conversations, source_conversations,
        "conversations equal, row by row"
    );
    assert_eq!(
        target_messages, source_messages,
        "messages equal, row by row"
    );

    // Bookmarks and status on both ends.
    let bookmark: i64 = p
        .query_one("SELECT (sync_stats->>'messages_served')::bigint FROM pullsync.sync_bookmarks WHERE consumer_id = 'partner'", &[])
        .unwrap()
        .get(0);
    assert!(bookmark >= 100_301);
    let state: String = c
        .query_one(
            "SELECT state FROM pullsync.sync_status WHERE consumer_id = 'partner'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(state, "completed");
    let total: i64 = c
        .query_one("SELECT total_items FROM pullsync.sync_status", &[])
        .unwrap()
        .get(0);
    assert!(total >= 102_301, "{total}");
}

#[test]
fn killing_the_consumer_mid_pull_resumes_without_loss_or_duplicates() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(500, 40_000);
    let mut c = consumer("it_feed_kill", 100);
    // Some pages committed in an earlier call.
    let partial = pull(&mut c, Some(10));
    assert_eq!(partial["pages"], 10);
    let committed: i64 = c
        .query_one("SELECT count(*) FROM pullsync.sync_checkpoints", &[])
        .unwrap()
        .get(0);
    assert_eq!(committed, 10);
    // A second call is killed while it pulls.
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut admin = connect("it_feed_kill");
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
    });
    let killed = c.query_one("SELECT pullsync.feed_pull('partner')", &[]);
    killer.join().unwrap();
    assert!(killed.is_err(), "the pull was killed");
    // Resume in a new session.
    let mut c = connect("it_feed_kill");
    let resumed = pull(&mut c, None);
    assert_eq!(resumed["status"], "completed", "{resumed}");
    assert_eq!(rows(&mut c), rows(&mut p));
    let per_page: i64 = c
        .query_one(
            "SELECT count(*) FROM pullsync.sync_checkpoints WHERE items > 100",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(per_page, 0, "no page larger than the batch");
}

/// Walks `feed_all_messages` page by page with `lim` rows a page, until the last page or
/// until `enough` rows; returns the items.
fn all_messages(p: &mut Client, lim: i32, enough: Option<usize>) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut deadline = Deadline::after(
        Duration::from_secs(600),
        "the last page of feed_all_messages (a cursor that never ends?)",
    );
    loop {
        deadline.check();
        let page: Value = p
            .query_one(
                "SELECT pullsync.feed_all_messages('partner', NULL, $1, $2)",
                &[&cursor, &lim],
            )
            .unwrap()
            .get(0);
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) if enough.is_none_or(|n| items.len() <= n) => {
                cursor = Some(next.to_string())
            }
            _ => return items,
        }
    }
}

#[test]
fn any_page_size_yields_every_row_exactly_once() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(300, 3_000);
    for lim in [1, 7, 100, 999, 5000] {
        // A page size of one proves the point without 3,000 round trips.
        let enough = (lim == 1).then_some(200);
        let items = all_messages(&mut p, lim, enough);
        assert!(items
            .iter()
            .all(|i| i["risk"]["level"].is_string() && i["risk"]["categories"].is_array()));
        let seen: Vec<String> = items
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        let unique: std::collections::HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "lim {lim}: no row twice");
        if lim > 1 {
            assert_eq!(seen.len(), 3_000, "lim {lim}: every row");
        }
    }
    // One conversation's messages, and conversations filtered by user.
    let page: Value = p
        .query_one(
            "SELECT pullsync.feed_messages('partner', 'c7', NULL, 5000)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    let page: Value = p
        .query_one(
            "SELECT pullsync.feed_conversations('partner', NULL, NULL, 5000, 'u3')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(page["items"].as_array().unwrap().len(), 6);
    let stats: Value = p
        .query_one(
            "SELECT pullsync.feed_stats('2026-01-01', '2027-01-01')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        (stats["conversations"].as_i64(), stats["messages"].as_i64()),
        (Some(300), Some(3_000))
    );
    let ids: Value = p
        .query_one(
            "SELECT pullsync.feed_ids('conversations', '2026-01-01', '2027-01-01')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ids["ids"].as_array().unwrap().len(), 300);
    assert!(ids["next_cursor"].is_null());
}

/// Writing transaction ids that gain a digit ('9999' → '10000') sort differently as text;
/// the feed must page in numeric order or it skips rows.
#[test]
fn rows_written_on_both_sides_of_an_xid_digit_boundary_are_all_served() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(0, 0);
    let next_xid = |p: &mut Client| -> i64 {
        p.query_one("SELECT pg_current_xact_id()::text::bigint", &[])
            .unwrap()
            .get(0)
    };
    let xid = next_xid(&mut p);
    let boundary = 10_i64.pow(xid.to_string().len() as u32);
    let burn = boundary - xid - 20;
    if burn > 0 {
        // Tens of thousands of empty commits: no need to wait for each to reach the disk.
        p.batch_execute("SET synchronous_commit = off").unwrap();
        p.batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{burn} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
        ))
        .unwrap();
    }
    // One message per transaction until they straddle the boundary.
    let mut written = 0;
    while next_xid(&mut p) <= boundary + 5 {
        written += 1;
        p.execute(
            "INSERT INTO pullsync.conversation_messages (id, conversation_id, role, created_at)
             VALUES ('m' || $1::int, 'c1', 'user', now())",
            &[&written],
        )
        .unwrap();
    }
    let (low, high): (i64, i64) = {
        let row = p
            .query_one(
                "SELECT min(change_xid::text::bigint), max(change_xid::text::bigint) FROM pullsync.conversation_messages",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        low < boundary && high >= boundary,
        "{low}..{high} around {boundary}"
    );
    for lim in [1, 3] {
        let seen: Vec<String> = all_messages(&mut p, lim, None)
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = (1..=written).map(|n| format!("m{n}")).collect();
        assert_eq!(
            seen, expected,
            "lim {lim}: every row once, in writing order"
        );
    }
}

#[test]
fn a_first_pull_reads_each_page_not_every_row_stored_so_far() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(0, 0);
    let messages = 100_000;
    p.execute(
        "INSERT INTO pullsync.conversation_messages (id, conversation_id, role, created_at)
         SELECT 'm' || g, 'c' || (g % 100), 'user', now() FROM generate_series(1, $1) g",
        &[&messages],
    )
    .unwrap();
    let mut c = consumer("it_feed_first_pull", 2000);
    // What the planner believes after autovacuum saw the table empty.
    c.batch_execute(
        "UPDATE pg_class SET relpages = 1, reltuples = 0
          WHERE oid = 'pullsync.conversation_messages'::regclass",
    )
    .unwrap();
    let mut txn = c.transaction().unwrap();
    let run: Value = txn
        .query_one("SELECT pullsync.feed_pull('partner', 'incremental')", &[])
        .unwrap()
        .get(0);
    let read: i64 = txn
        .query_one(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
               FROM pg_stat_xact_user_tables WHERE relid = 'pullsync.conversation_messages'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    txn.commit().unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    let stored: i64 = c
        .query_one("SELECT count(*) FROM pullsync.conversation_messages", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, i64::from(messages));
    // Planned for an empty table all along, the 50 pages would read 4.9 million rows.
    assert!(
        read < 10 * i64::from(messages),
        "{read} rows read to store {messages}"
    );
}

#[test]
fn bad_arguments_and_cursors_get_clear_errors() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(10, 10);
    let good: Value = p
        .query_one(
            "SELECT pullsync.feed_conversations('partner', NULL, NULL, 5)",
            &[],
        )
        .unwrap()
        .get(0);
    let cursor = good["checkpoint"].as_str().unwrap().to_string();
    let mut tampered = cursor.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = [
        ("SELECT pullsync.feed_conversations(NULL, NULL)".to_string(), "22004"),
        ("SELECT pullsync.feed_conversations('nobody', NULL)".to_string(), "42704"),
        ("SELECT pullsync.feed_conversations('partner', NULL, NULL, 0)".to_string(), "22023"),
        ("SELECT pullsync.feed_conversations('partner', NULL, NULL, 5001)".to_string(), "22023"),
        ("SELECT pullsync.feed_conversations('partner', NULL, 'garbage')".to_string(), "22023"),
        (format!("SELECT pullsync.feed_conversations('partner', NULL, '{tampered}')"), "22023"),
        (format!("SELECT pullsync.feed_all_messages('partner', NULL, '{cursor}')"), "22023"),
        ("SELECT pullsync.feed_stats('2027-01-01', '2026-01-01')".to_string(), "22023"),
        ("SELECT pullsync.feed_ids('users', '2026-01-01', '2027-01-01')".to_string(), "22023"),
        ("SELECT pullsync.feed_add_consumer('bad id', 'feed-key-0123456789abcdef')".to_string(), "22023"),
        ("SELECT pullsync.feed_add_consumer('x', 'short')".to_string(), "22023"),
        ("SELECT pullsync.feed_add_source('x', 'ftp://host', 'feed-key-0123456789abcdef')".to_string(), "22023"),
        ("SELECT pullsync.feed_add_source('x', 'http://h', 'feed-key-0123456789abcdef', batch_size => 0)".to_string(), "22023"),
        ("SELECT pullsync.feed_add_source('x', 'http://h', 'feed-key-0123456789abcdef', timeout => '0 s')".to_string(), "22023"),
        ("SELECT pullsync.feed_pull('nobody')".to_string(), "42704"),
        ("SELECT pullsync.feed_pull('partner', 'sometimes')".to_string(), "22023"),
    ];
    for (sql, state) in cases {
        assert_eq!(sqlstate_of(&mut p, &sql).as_deref(), Some(state), "{sql}");
    }
    let err = p
        .batch_execute("SELECT pullsync.feed_conversations('partner', NULL, 'garbage')")
        .unwrap_err();
    let hint = err
        .as_db_error()
        .unwrap()
        .hint()
        .unwrap_or_default()
        .to_string();
    assert!(hint.contains("null cursor"), "{hint}");
}

#[test]
fn the_feed_server_checks_keys_rate_limits_and_answers_json_errors() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(20, 20);
    p.execute("SELECT pullsync.feed_add_consumer('slow', $1, 6)", &[&KEY])
        .unwrap();
    let http = reqwest::blocking::Client::new();
    let get = |path: &str, consumer: &str, key: &str| {
        let r = http
            .get(format!("{}{path}", feed_url()))
            .query(&[("consumer_id", consumer)])
            .bearer_auth(key)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, r.json::<Value>().unwrap(), retry)
    };
    let (status, body, _) = get("/conversations?limit=5", "partner", KEY);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
    let (status, body, _) = get("/conversations", "partner", "wrong-key-0123456789");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body, _) = get("/conversations?cursor=nonsense", "partner", KEY);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
    let (status, _, _) = get("/nowhere", "partner", KEY);
    assert_eq!(status, 404);
    let (status, body, _) = get(
        "/stats?start=2026-01-01T00:00:00Z&end=2027-01-01T00:00:00Z",
        "partner",
        KEY,
    );
    assert_eq!((status, body["messages"].as_i64()), (200, Some(20)));
    let (status, body, _) = get("/conversations/c3/messages", "partner", KEY);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get(
            "/ids?kind=messages&start=2026-01-01T00:00:00Z&end=2027-01-01T00:00:00Z",
            "partner",
            KEY
        )
        .0,
        200
    );
    // 6 per minute: the first passes, the next is refused with Retry-After.
    assert_eq!(get("/messages", "slow", KEY).0, 200);
    let (status, body, retry) = get("/messages", "slow", KEY);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert!(retry.is_some());
}

#[test]
fn a_queued_pull_runs_through_the_job_runner() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(100, 2_000);
    let mut c = consumer("it_feed_queue", 300);
    let queued: Value = c
        .query_one(
            "SELECT pullsync.feed_enqueue('partner', 'incremental')",
            &[],
        )
        .unwrap()
        .get(0);
    let job = queued["job_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{queued}"));
    let again: Value = c
        .query_one("SELECT pullsync.feed_enqueue('partner')", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        again["skipped"], true,
        "one pull per source at a time: {again}"
    );
    let state: String = c
        .query_one("SELECT state FROM pullsync.sync_status", &[])
        .unwrap()
        .get(0);
    assert_eq!(state, "running");
    // This database has no workers: run the queue here, with the same runner.
    c.batch_execute("SELECT pullsync.run_jobs()").unwrap();
    let status: Value = c
        .query_one("SELECT pullsync.job_status($1)", &[&job])
        .unwrap()
        .get(0);
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["result"]["items"]["messages"], 2_000);
    assert_eq!(rows(&mut c), rows(&mut p));
    assert_eq!(
        sqlstate_of(&mut c, "SELECT pullsync.feed_enqueue('nobody')").as_deref(),
        Some("42704")
    );
}

fn reconcile(c: &mut Client, repair: bool) -> Value {
    let answer: Value = c
        .query_one(
            "SELECT pullsync.sync_reconcile('2026-06-01', '2026-06-02', 'partner', repair => $1)",
            &[&repair],
        )
        .unwrap()
        .get(0);
    answer["runs"][0].clone()
}

fn ids(run: &Value, stream: &str, side: &str) -> Vec<String> {
    serde_json::from_value(run["streams"][stream][side].clone()).unwrap()
}

#[test]
fn reconcile_names_exactly_the_missing_and_extra_rows_and_repair_restores_equality() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(300, 6_000);
    let mut c = consumer("it_feed_reconcile", 1000);
    assert_eq!(pull(&mut c, None)["status"], "completed");
    let clean = reconcile(&mut c, false);
    assert_eq!(clean["status"], "success", "{clean}");
    assert_eq!(clean["source_counts"], clean["target_counts"]);

    // Rows lost on the consumer, among them ones that share a timestamp with thousands of
    // others, and one row the provider never had.
    c.batch_execute(
        "DELETE FROM pullsync.conversation_messages WHERE id IN ('m2', 'm17', 'm3000', 'm5999');
         DELETE FROM pullsync.conversations WHERE id IN ('c5', 'c300');
         INSERT INTO pullsync.conversation_messages (feed_source, id, conversation_id, role, created_at)
         VALUES ('partner', 'stray', 'c1', 'user', '2026-06-01 13:00:00+00');",
    )
    .unwrap();
    let found = reconcile(&mut c, false);
    assert_eq!(found["status"], "mismatch", "{found}");
    assert_eq!(
        ids(&found, "messages", "missing"),
        ["m17", "m2", "m3000", "m5999"]
    );
    assert_eq!(ids(&found, "messages", "extra"), ["stray"]);
    assert_eq!(ids(&found, "conversations", "missing"), ["c300", "c5"]);
    assert!(ids(&found, "conversations", "extra").is_empty());
    let run_id = found["run_id"].as_i64().unwrap();
    let row = c
        .query_one(
            "SELECT status, discrepancies, missing_ids, extra_ids FROM pullsync.reconciliation_runs WHERE id = $1",
            &[&run_id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "mismatch");
    assert_eq!(row.get::<_, i32>(1), 7);
    assert_eq!(row.get::<_, Vec<String>>(3), ["messages:stray"]);
    assert_eq!(row.get::<_, Vec<String>>(2).len(), 6);

    let repaired = reconcile(&mut c, true);
    assert_eq!(repaired["repaired"], 6, "{repaired}");
    assert_eq!(
        repaired["status"], "mismatch",
        "the stray row is reported, not deleted"
    );
    c.batch_execute("DELETE FROM pullsync.conversation_messages WHERE id = 'stray'")
        .unwrap();
    assert_eq!(reconcile(&mut c, true)["status"], "success");
    assert_eq!(rows(&mut p), rows(&mut c), "equal row by row");

    c.batch_execute("DELETE FROM pullsync.conversation_messages WHERE id = 'm9'")
        .unwrap();
    let fixed = reconcile(&mut c, true);
    assert_eq!(fixed["status"], "repaired", "{fixed}");
    assert_eq!(rows(&mut p), rows(&mut c));

    for (sql, state) in [
        (
            "SELECT pullsync.sync_reconcile('2026-06-02', '2026-06-01', 'partner')",
            "22023",
        ),
        (
            "SELECT pullsync.sync_reconcile('2026-01-01', '2026-06-01', 'partner')",
            "22023",
        ),
        (
            "SELECT pullsync.sync_reconcile('2026-06-01', '2026-06-02', 'nobody')",
            "42704",
        ),
        (
            "SELECT pullsync.sync_reconcile(NULL, '2026-06-02', 'partner')",
            "22004",
        ),
        (
            "SELECT pullsync.sync_reconcile('-infinity', '2026-06-02', 'partner')",
            "22023",
        ),
    ] {
        assert_eq!(sqlstate_of(&mut c, sql).as_deref(), Some(state), "{sql}");
    }
    let provider_ids: Value = p
        .query_one(
            "SELECT pullsync.feed_items('partner', 'messages', ARRAY['m1', 'm2', 'nope'])",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(provider_ids["items"].as_array().unwrap().len(), 2);
}

#[test]
fn updates_under_replica_mode_are_served() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(20, 20);
    let mut c = consumer("it_feed_replica", 50);
    assert_eq!(pull(&mut c, None)["status"], "completed");
    // Logical replication apply and some bulk loaders write with ordinary triggers off.
    p.batch_execute(
        "SET session_replication_role = replica;
         UPDATE pullsync.conversations SET user_id = 'moved', updated_at = updated_at + interval '1 hour'
          WHERE id = 'c5';
         RESET session_replication_role;",
    )
    .unwrap();
    assert_eq!(pull(&mut c, None)["status"], "completed");
    let user: String = c
        .query_one(
            "SELECT user_id FROM pullsync.conversations WHERE id = 'c5'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(user, "moved", "the update was served");
    assert_eq!(rows(&mut c), rows(&mut p));
}

#[test]
fn items_no_schema_accepts_are_quarantined_and_the_consumer_moves_on() {
    // Its pull holds a transaction open, which holds back every provider's horizon in
    // the cluster: the paging tests must not run beside it.
    let _serial = pullsync_tests::feed::serial();
    use pullsync_tests::feed::{foreign_message as message, foreign_provider};
    let server = foreign_provider(vec![
        message("fm1", "user", "none", "2026-06-01T10:00:00Z"),
        message("fm2", "moderator", "none", "2026-06-01T10:01:00Z"),
        message("fm3", "assistant", "extreme", "2026-06-01T10:02:00Z"),
        message("fm4", "user", "low", "not a time"),
        message("", "user", "none", "2026-06-01T10:04:00Z"),
        message("fm6", "assistant", "high", "2026-06-01T10:05:00Z"),
    ]);
    let mut c = pullsync_tests::db::fresh_extension_database("it_feed_quarantine");
    c.execute(
        "SELECT pullsync.feed_add_source('foreign', $1, $2, max_retries => 0, timeout => '5 s')",
        &[&server.base_url, &KEY],
    )
    .unwrap();
    let result: Value = c
        .query_one("SELECT pullsync.feed_pull('foreign', 'incremental')", &[])
        .unwrap()
        .get(0);
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["quarantined"], 4, "{result}");
    let stored: Vec<String> = c
        .query(
            "SELECT id FROM pullsync.conversation_messages ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, ["fm1", "fm6"], "the good items arrived");
    let reasons: Vec<(String, String, String)> = c
        .query(
            "SELECT coalesce(item_id, ''), reason, page_cursor FROM pullsync.feed_quarantine ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let ids: Vec<&str> = reasons.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["fm2", "fm3", "fm4", ""]);
    assert!(reasons
        .iter()
        .all(|r| r.2 == "foreign-messages-1" && !r.1.is_empty()));
    assert!(
        reasons[0].1.contains("check constraint"),
        "{:?}",
        reasons[0]
    );
    // The checkpoint committed: the next pull resumes after the page, nothing repeats.
    let checkpoint: String = c
        .query_one(
            "SELECT cursor FROM pullsync.sync_checkpoints WHERE stream = 'messages' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(checkpoint, "foreign-messages-1");
    // Visible in sync_status, health(), metrics() and an alert.
    let in_status: i64 = c
        .query_one(
            "SELECT quarantined FROM pullsync.sync_status WHERE consumer_id = 'foreign'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(in_status, 4);
    let health: Value = c.query_one("SELECT pullsync.health()", &[]).unwrap().get(0);
    assert_eq!(
        health["sources"]["feed:foreign"]["items_quarantined"], 4,
        "{health}"
    );
    let metrics: String = c
        .query_one("SELECT pullsync.metrics()", &[])
        .unwrap()
        .get(0);
    assert!(
        metrics.contains("pullsync_items_quarantined{source=\"feed:foreign\"} 4"),
        "{metrics}"
    );
    let alerts: i64 = c
        .query_one(
            "SELECT count(*) FROM pullsync.alerts WHERE alert_type = 'quarantine' AND resolved_at IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(alerts, 1);
    // Once the cause is fixed (here: the item corrected), a retry stores it.
    c.batch_execute(
        "UPDATE pullsync.feed_quarantine SET item = jsonb_set(item, '{role}', '\"user\"') WHERE item_id = 'fm2'",
    )
    .unwrap();
    let retried: Value = c
        .query_one("SELECT pullsync.feed_retry_quarantined('foreign')", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        (
            retried["stored"].as_i64(),
            retried["still_quarantined"].as_i64()
        ),
        (Some(1), Some(3)),
        "{retried}"
    );
    let fixed: i64 = c
        .query_one(
            "SELECT count(*) FROM pullsync.conversation_messages WHERE id = 'fm2'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(fixed, 1);
}
