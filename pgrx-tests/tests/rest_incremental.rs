//! Incremental REST runs done right, against pgrx-tests/src/rest_incremental_api.rs: a
//! lookback re-reads the last part of the mark and still stores each record once, with a
//! mark that never goes back; the boundary of an API's `since` keeps the records that
//! share the mark's timestamp; a first run backfills in date windows, in parallel, and a
//! failed window is all the next run reads; `rest_reconcile` marks the keys a complete
//! listing no longer holds, and a failed listing marks nothing.

use postgres::Client;
use pullsync_tests::db::fresh_extension_database;
use pullsync_tests::rest_calls::{add, pull};
use pullsync_tests::rest_incremental_api::{self, Event, EventsApi};
use serde_json::{json, Value};
use std::time::Duration;

fn event(id: i64, updated_at: &str) -> Event {
    Event {
        id,
        title: format!("event {id}"),
        updated_at: updated_at.into(),
    }
}

/// A source of `/{boundary}/events` into `table`, `incremental` its incremental keys.
fn source(api: &EventsApi, boundary: &str, table: &str, incremental: Value) -> Value {
    json!({
        "base_url": api.base_url(),
        "path": format!("/{boundary}/events"),
        "records": "data",
        "primary_key": "id",
        "pagination": { "style": "page_number", "size_param": "per_page", "size": 3 },
        "incremental": incremental,
        "target": { "table": table, "columns": { "id": "id", "title": "title", "updated_at": "updated_at" } },
        "retries": 0
    })
}

fn table(db: &mut Client, name: &str) {
    db.batch_execute(&format!(
        "CREATE TABLE {name} (id bigint PRIMARY KEY, title text, updated_at text, deleted_at timestamptz)"
    ))
    .unwrap();
}

fn mark(db: &mut Client, name: &str) -> Option<String> {
    db.query_one(
        "SELECT high_water FROM pullsync.rest_sources WHERE name = $1",
        &[&name],
    )
    .unwrap()
    .get(0)
}

fn ids(db: &mut Client, sql: &str) -> Vec<i64> {
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_lookback_rereads_the_last_hour_and_stores_each_record_once() {
    let api = rest_incremental_api::start(
        (1..=5)
            .map(|i| event(i, &format!("2024-03-01T10:{:02}:00Z", i * 10)))
            .collect(),
    );
    let mut db = fresh_extension_database("it_rest_lookback");
    table(&mut db, "public.ev");
    let inc = json!({ "field": "updated_at", "param": "since", "initial": "2024-01-01T00:00:00Z", "lookback": "1 hour" });
    add(&mut db, "ev", &source(&api, "inclusive", "public.ev", inc));
    let first = pull(&mut db, "ev");
    assert_eq!(
        (first["status"].as_str(), first["items"].as_i64()),
        (Some("completed"), Some(5)),
        "{first}"
    );
    assert_eq!(first["reread"], 0, "{first}");
    assert_eq!(mark(&mut db, "ev").as_deref(), Some("2024-03-01T10:50:00Z"));

    // A record changed late with a time inside the last hour, and a new one: the lookback
    // sends the mark less an hour and finds both; the re-read ones are upserted, not added.
    api.upsert(2, "event 2, edited late", "2024-03-01T10:45:00Z");
    api.upsert(6, "event 6", "2024-03-01T11:05:00Z");
    api.take_requests();
    let second = pull(&mut db, "ev");
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["since"], "2024-03-01T09:50:00Z", "{second}");
    let sent = api.take_requests();
    assert!(
        sent.iter()
            .all(|q| q.contains("since=2024-03-01T09:50:00Z")),
        "{sent:?}"
    );
    assert_eq!(second["items"], 6, "{second}");
    assert_eq!(
        second["reread"], 5,
        "all but the new one were at or below the mark: {second}"
    );
    assert_eq!(
        ids(&mut db, "SELECT id FROM public.ev ORDER BY id"),
        [1, 2, 3, 4, 5, 6]
    );
    let title: String = db
        .query_one("SELECT title FROM public.ev WHERE id = 2", &[])
        .unwrap()
        .get(0);
    assert_eq!(title, "event 2, edited late");
    assert_eq!(mark(&mut db, "ev").as_deref(), Some("2024-03-01T11:05:00Z"));

    // The record at the mark goes away: the lookback reads only older ones, and the mark
    // stays where it was.
    api.remove(6);
    let third = pull(&mut db, "ev");
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(mark(&mut db, "ev").as_deref(), Some("2024-03-01T11:05:00Z"));
    let rows: i64 = db
        .query_one("SELECT count(*) FROM public.ev", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 6);

    // Checked key by key.
    let refused = db
        .execute(
            "SELECT pullsync.rest_alter_source('ev', $1)",
            &[&json!({ "incremental": { "field": "updated_at", "param": "since", "lookback": "soon" } })],
        )
        .unwrap_err();
    let e = refused.as_db_error().unwrap();
    assert_eq!(e.code().code(), "22023");
    assert!(
        e.message().contains("config.incremental.lookback"),
        "{}",
        e.message()
    );
}

#[test]
fn records_sharing_the_marks_timestamp_are_not_lost_inclusive_or_exclusive() {
    let at = "2024-03-01T10:00:00Z";
    let api = rest_incremental_api::start(vec![event(1, at), event(2, at)]);
    let mut db = fresh_extension_database("it_rest_boundary");
    let inc = |boundary: &str| json!({ "field": "updated_at", "param": "since", "initial": "2024-01-01T00:00:00Z", "boundary": boundary });
    for t in ["public.incl", "public.excl", "public.naive"] {
        table(&mut db, t);
    }
    add(
        &mut db,
        "incl",
        &source(&api, "inclusive", "public.incl", inc("inclusive")),
    );
    add(
        &mut db,
        "excl",
        &source(&api, "exclusive", "public.excl", inc("exclusive")),
    );
    // An exclusive API taken for an inclusive one: the loss the setting is there for.
    add(
        &mut db,
        "naive",
        &source(&api, "exclusive", "public.naive", inc("inclusive")),
    );
    for name in ["incl", "excl", "naive"] {
        let run = pull(&mut db, name);
        assert_eq!(
            (run["status"].as_str(), run["items"].as_i64()),
            (Some("completed"), Some(2)),
            "{name}: {run}"
        );
        assert_eq!(mark(&mut db, name).as_deref(), Some(at), "{name}");
    }
    // A record written after the runs with the very timestamp of the mark.
    api.upsert(3, "event 3", at);
    api.take_requests();
    let incl = pull(&mut db, "incl");
    assert_eq!(incl["since"], at, "inclusive sends the mark: {incl}");
    let excl = pull(&mut db, "excl");
    assert_eq!(
        excl["since"], "2024-03-01T09:59:59Z",
        "exclusive sends one step below: {excl}"
    );
    pull(&mut db, "naive");
    assert_eq!(
        ids(&mut db, "SELECT id FROM public.incl ORDER BY id"),
        [1, 2, 3]
    );
    assert_eq!(
        ids(&mut db, "SELECT id FROM public.excl ORDER BY id"),
        [1, 2, 3]
    );
    assert_eq!(
        ids(&mut db, "SELECT id FROM public.naive ORDER BY id"),
        [1, 2]
    );
    // The records at the mark are read again, and stored once.
    assert_eq!(
        (incl["items"].as_i64(), incl["reread"].as_i64()),
        (Some(3), Some(3)),
        "{incl}"
    );
    assert_eq!(
        (excl["items"].as_i64(), excl["reread"].as_i64()),
        (Some(3), Some(3)),
        "{excl}"
    );
}

#[test]
fn a_backfill_in_windows_runs_in_parallel_and_resumes_only_the_failed_window() {
    // Three events a week over four weeks, one at exactly a window's edge.
    let mut events = Vec::new();
    for (i, day) in [1, 3, 5, 8, 10, 12, 15, 17, 19, 22, 24, 26]
        .iter()
        .enumerate()
    {
        events.push(event(i as i64 + 1, &format!("2024-01-{day:02}T00:00:00Z")));
    }
    let api = rest_incremental_api::start(events);
    api.slow_down(Duration::from_millis(150));
    let mut db = fresh_extension_database("it_rest_windows");
    table(&mut db, "public.bf");
    let inc = json!({ "field": "updated_at", "param": "since", "windows": { "since": "2024-01-01T00:00:00Z", "until": "2024-01-29T00:00:00Z", "size": "7 days", "until_param": "until" } });
    let mut config = source(&api, "inclusive", "public.bf", inc);
    config["concurrency"] = json!(4);
    config["pagination"]["size"] = json!(2);
    add(&mut db, "bf", &config);
    api.fail(Some("since=2024-01-15T00:00:00Z"));
    let first = pull(&mut db, "bf");
    assert_eq!(first["status"], "partial", "{first}");
    assert_eq!(
        first["windows"],
        json!({ "total": 4, "done": 3, "open": 1 }),
        "{first}"
    );
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .contains("window 2024-01-15T00:00:00Z..2024-01-22T00:00:00Z"),
        "{first}"
    );
    assert!(api.most_in_flight() >= 2, "windows were read one at a time");
    assert_eq!(
        ids(&mut db, "SELECT id FROM public.bf ORDER BY id"),
        [1, 2, 3, 4, 5, 6, 10, 11, 12]
    );
    assert_eq!(
        mark(&mut db, "bf"),
        None,
        "no mark before every window is done"
    );

    api.fail(None);
    api.take_requests();
    let second = pull(&mut db, "bf");
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["resumed"], true, "{second}");
    let sent = api.take_requests();
    assert!(!sent.is_empty());
    assert!(
        sent.iter().all(|q| q.contains("since=2024-01-15T00:00:00Z")
            && q.contains("until=2024-01-22T00:00:00Z")),
        "only the failed window is read again: {sent:?}"
    );
    assert_eq!(
        ids(&mut db, "SELECT id FROM public.bf ORDER BY id"),
        (1..=12).collect::<Vec<_>>()
    );
    assert_eq!(mark(&mut db, "bf").as_deref(), Some("2024-01-26T00:00:00Z"));

    // Then an ordinary incremental run from the mark.
    api.upsert(13, "event 13", "2024-02-01T00:00:00Z");
    let third = pull(&mut db, "bf");
    assert_eq!(
        (third["status"].as_str(), third["since"].as_str()),
        (Some("completed"), Some("2024-01-26T00:00:00Z")),
        "{third}"
    );
    let sent = api.take_requests();
    assert!(sent.iter().all(|q| !q.contains("until=")), "{sent:?}");
    assert_eq!(mark(&mut db, "bf").as_deref(), Some("2024-02-01T00:00:00Z"));
}

fn reconcile(db: &mut Client, since: Option<&str>) -> Value {
    db.query_one("SELECT pullsync.rest_reconcile('del', $1)", &[&since])
        .unwrap()
        .get(0)
}

fn deleted(db: &mut Client) -> Vec<i64> {
    ids(
        db,
        "SELECT id FROM public.del WHERE deleted_at IS NOT NULL ORDER BY id",
    )
}

#[test]
fn reconcile_marks_keys_no_longer_listed_and_a_failed_listing_marks_nothing() {
    let api = rest_incremental_api::start(
        (1..=5)
            .map(|i| event(i, &format!("2024-03-01T10:0{i}:00Z")))
            .collect(),
    );
    let mut db = fresh_extension_database("it_rest_deletes");
    table(&mut db, "public.del");
    let mut config = source(
        &api,
        "inclusive",
        "public.del",
        json!({ "field": "updated_at", "param": "since" }),
    );
    config["deletes"] = json!({ "column": "deleted_at" });
    add(&mut db, "del", &config);
    assert_eq!(pull(&mut db, "del")["items"], 5);
    let none = reconcile(&mut db, None);
    assert_eq!(
        (none["marked_deleted"].as_i64(), none["status"].as_str()),
        (Some(0), Some("success")),
        "{none}"
    );

    api.remove(2);
    let one = reconcile(&mut db, None);
    assert_eq!(one["marked_deleted"], 1, "{one}");
    assert_eq!(deleted(&mut db), [2]);

    // A listing that fails on its second page marks nothing, nor does one from a since.
    api.remove(4);
    api.fail(Some("page=2"));
    let failed = reconcile(&mut db, None);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["marked_deleted"], Value::Null, "{failed}");
    api.fail(None);
    let partial = reconcile(&mut db, Some("2024-03-01T10:03:00Z"));
    assert_eq!(partial["marked_deleted"], Value::Null, "{partial}");
    assert_eq!(deleted(&mut db), [2]);

    // Key 2 is listed again: unmarked; key 4 is gone: marked.
    api.upsert(2, "event 2, back", "2024-03-01T11:00:00Z");
    let again = reconcile(&mut db, None);
    assert_eq!(
        (
            again["marked_deleted"].as_i64(),
            again["unmarked_deleted"].as_i64()
        ),
        (Some(1), Some(1)),
        "{again}"
    );
    assert_eq!(deleted(&mut db), [4]);

    // The column must be a timestamptz of the target.
    let refused = db
        .execute(
            "SELECT pullsync.rest_alter_source('del', '{\"deletes\": {\"column\": \"nope\"}}')",
            &[],
        )
        .unwrap_err();
    let e = refused.as_db_error().unwrap();
    assert_eq!(e.code().code(), "22023");
    assert!(
        e.message().contains("config.deletes.column"),
        "{}",
        e.message()
    );
}
