//! Bad calls across the SQL API, as a client makes them: each gets an ERROR with the right
//! SQLSTATE, and no table changes.

use postgres::Client;
use pullsync_tests::db::{fresh_extension_database, sqlstate_of};
use std::collections::BTreeMap;

const KEY: &str = "bad-input-key-0123456789";
const WORKSPACE: &str = "'11111111-1111-1111-1111-111111111111'";
const NOBODY: &str = "'00000000-0000-0000-0000-000000000000'";

/// Every table of the extension: its rows as one digest.
fn tables(db: &mut Client) -> BTreeMap<String, String> {
    let names: Vec<String> = db
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'pullsync' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    names
        .into_iter()
        .map(|table| {
            let digest: String = db
                .query_one(
                    &format!(
                        "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')
                           FROM {table} t"
                    ),
                    &[],
                )
                .unwrap()
                .get(0);
            (table, digest)
        })
        .collect()
}

fn scalar(db: &mut Client, sql: &str) -> String {
    db.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn every_bad_call_gets_its_sqlstate_and_changes_nothing() {
    let mut db = fresh_extension_database("it_bad_input");
    let account = scalar(
        &mut db,
        &format!(
            "SELECT pullsync.threads_add_account({WORKSPACE}, '42', 'alice', 'token-abc', now() + interval '50 days')::text"
        ),
    );
    db.batch_execute(&format!(
        "SELECT pullsync.feed_add_consumer('partner', '{KEY}');
         SELECT pullsync.feed_add_source('upstream', 'http://127.0.0.1:9', '{KEY}');
         INSERT INTO pullsync.conversations (id, user_id, started_at) VALUES ('c1', 'u1', now() - interval '1 hour');"
    ))
    .unwrap();
    // A real cursor of the conversations stream, then altered, then used on another stream.
    let cursor = scalar(
        &mut db,
        "SELECT pullsync.feed_conversations('partner', NULL, NULL, 1)->>'checkpoint'",
    );
    let mut tampered = cursor.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let too_many_ids = format!(
        "ARRAY[{}]",
        (0..501)
            .map(|i| format!("'m{i}'"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let before = tables(&mut db);

    let cases: Vec<(String, &str)> = vec![
        // Threads accounts
        ("SELECT pullsync.threads_add_account(NULL, '1', 'a', 'tok', now() + interval '1 day')".into(), "22004"),
        (format!("SELECT pullsync.threads_add_account({WORKSPACE}, '', 'a', 'tok', now() + interval '1 day')"), "22023"),
        (format!("SELECT pullsync.threads_add_account({WORKSPACE}, '12a', 'a', 'tok', now() + interval '1 day')"), "22023"),
        (format!("SELECT pullsync.threads_add_account({WORKSPACE}, '1', '', 'tok', now() + interval '1 day')"), "22023"),
        (format!("SELECT pullsync.threads_add_account({WORKSPACE}, '1', 'a', '', now() + interval '1 day')"), "22023"),
        (format!("SELECT pullsync.threads_add_account({WORKSPACE}, '1', 'a', 'tok', now() - interval '1 hour')"), "22023"),
        (format!("SELECT pullsync.threads_add_account({WORKSPACE}, '1', 'a', 'tok', 'infinity')"), "22023"),
        (format!("SELECT pullsync.threads_add_account({WORKSPACE}, '1', 'a', 'tok', NULL)"), "22004"),
        ("SELECT pullsync.threads_sync_account(NULL)".into(), "22004"),
        ("SELECT pullsync.threads_sync_account('not-a-uuid')".into(), "22P02"),
        (format!("SELECT pullsync.threads_sync_account({NOBODY})"), "42704"),
        ("SELECT pullsync.threads_refresh_tokens(NULL)".into(), "22004"),
        (format!("SELECT pullsync.threads_reconcile({NOBODY}, now() - interval '1 day', now())"), "42704"),
        (format!("SELECT pullsync.threads_reconcile('{account}', now(), now() - interval '1 day')"), "22023"),
        (format!("SELECT pullsync.threads_reconcile('{account}', '-infinity', now())"), "22023"),
        (format!("SELECT pullsync.threads_reconcile('{account}', now() - interval '1000 days', now())"), "22023"),
        // Feed provider
        (format!("SELECT pullsync.feed_add_consumer('bad id!', '{KEY}')"), "22023"),
        ("SELECT pullsync.feed_add_consumer('p2', 'short')".into(), "22023"),
        ("SELECT pullsync.feed_add_consumer('p2', NULL)".into(), "22004"),
        (format!("SELECT pullsync.feed_add_consumer('p2', '{KEY}', -1)"), "22023"),
        ("SELECT pullsync.feed_conversations('nobody', NULL)".into(), "42704"),
        ("SELECT pullsync.feed_conversations(NULL, NULL)".into(), "22004"),
        ("SELECT pullsync.feed_conversations('partner', NULL, 'not a cursor')".into(), "22023"),
        (format!("SELECT pullsync.feed_conversations('partner', NULL, '{tampered}')"), "22023"),
        (format!("SELECT pullsync.feed_all_messages('partner', NULL, '{cursor}')"), "22023"),
        ("SELECT pullsync.feed_conversations('partner', NULL, NULL, 0)".into(), "22023"),
        ("SELECT pullsync.feed_conversations('partner', NULL, NULL, -5)".into(), "22023"),
        ("SELECT pullsync.feed_conversations('partner', NULL, NULL, 1000000)".into(), "22023"),
        ("SELECT pullsync.feed_messages('partner', NULL)".into(), "22004"),
        ("SELECT pullsync.feed_stats(now(), now() - interval '1 day')".into(), "22023"),
        ("SELECT pullsync.feed_stats(NULL, now())".into(), "22004"),
        ("SELECT pullsync.feed_ids('bogus', now() - interval '1 day', now())".into(), "22023"),
        ("SELECT pullsync.feed_items('partner', 'messages', ARRAY[NULL]::text[])".into(), "22004"),
        (format!("SELECT pullsync.feed_items('partner', 'messages', {too_many_ids})"), "22023"),
        // Feed consumer
        (format!("SELECT pullsync.feed_add_source('s2', 'not a url', '{KEY}')"), "22023"),
        (format!("SELECT pullsync.feed_add_source('s2', 'ftp://example.com', '{KEY}')"), "22023"),
        (format!("SELECT pullsync.feed_add_source('s2', 'http://127.0.0.1:9', '{KEY}', batch_size => 0)"), "22023"),
        (format!("SELECT pullsync.feed_add_source('s2', 'http://127.0.0.1:9', '{KEY}', timeout => '-1 s')"), "22023"),
        ("SELECT pullsync.feed_pull('nobody', 'incremental')".into(), "42704"),
        ("SELECT pullsync.feed_pull('upstream', 'sideways')".into(), "22023"),
        ("SELECT pullsync.feed_enqueue('upstream', NULL)".into(), "22004"),
        ("SELECT pullsync.feed_scheduled_sync('bogus')".into(), "22023"),
        // Keys
        ("SELECT pullsync.rotate_encryption_key(NULL)".into(), "22004"),
        ("SELECT pullsync.rotate_encryption_key('not a key')".into(), "22023"),
        ("SELECT pullsync.rotate_encryption_key('c2hvcnQ=')".into(), "22023"),
        // Reconciliation
        ("SELECT pullsync.sync_reconcile(now(), now() - interval '1 day')".into(), "22023"),
        ("SELECT pullsync.sync_reconcile(now() - interval '1000 days', now())".into(), "22023"),
        ("SELECT pullsync.sync_reconcile(NULL, now())".into(), "22004"),
        ("SELECT pullsync.sync_reconcile(now() - interval '1 day', now(), 'nobody')".into(), "42704"),
    ];
    assert!(cases.len() >= 30);
    let mut wrong = Vec::new();
    for (sql, expected) in &cases {
        let got = sqlstate_of(&mut db, sql);
        if got.as_deref() != Some(*expected) {
            wrong.push(format!("{sql}\n    expected {expected}, got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert_eq!(tables(&mut db), before, "a bad call changed a table");
}
