//! A REST run's requests ahead of its writes (src/rest/prefetch.rs) against an API that
//! counts its requests in flight (pgrx-tests/src/parallel_api.rs): numbered pages overlap
//! up to `concurrency`, a cursor listing keeps one page ahead, every row is written once
//! and in listing order, and a page failing mid-listing leaves the position at the last
//! page committed, where the next run resumes with nothing lost.

use postgres::Client;
use pullsync_tests::db::fresh_extension_database;
use pullsync_tests::parallel_api::{self, ParallelApi};
use pullsync_tests::rest_calls::{add, pull};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const RECORDS: u64 = 95;
const SIZE: u64 = 10;
const PAGES: u64 = 10;

fn config(api: &ParallelApi, pagination: Value, concurrency: u32) -> Value {
    json!({
        "base_url": api.base_url(),
        "path": "/items",
        "records": "results",
        "primary_key": "id",
        "pagination": pagination,
        "target": { "table": "public.items", "columns": { "id": "id", "title": "title" } },
        "concurrency": concurrency,
        "retries": 0
    })
}

fn page_number() -> Value {
    json!({ "style": "page_number", "size_param": "page_size", "size": SIZE })
}

/// The target logs every row written to it, in the order written.
fn database(name: &str) -> Client {
    let mut db = fresh_extension_database(name);
    db.batch_execute(
        "CREATE TABLE public.items (id bigint PRIMARY KEY, title text);
         CREATE TABLE public.written (n bigserial PRIMARY KEY, id bigint NOT NULL);
         CREATE FUNCTION public.note_written() RETURNS trigger LANGUAGE plpgsql AS
           $$BEGIN INSERT INTO public.written (id) VALUES (NEW.id); RETURN NEW; END$$;
         CREATE TRIGGER note AFTER INSERT OR UPDATE ON public.items
           FOR EACH ROW EXECUTE FUNCTION public.note_written();",
    )
    .unwrap();
    db
}

/// The ids as written, in order.
fn written(db: &mut Client) -> Vec<i64> {
    db.query("SELECT id FROM public.written ORDER BY n", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn every_record() -> Vec<i64> {
    (1..=RECORDS as i64).collect()
}

#[test]
fn numbered_pages_overlap_and_are_written_once_in_order() {
    let api = parallel_api::start(RECORDS, Duration::from_millis(150));
    let mut db = database("it_rest_parallel_pages");
    add(&mut db, "pages", &config(&api, page_number(), 4));
    let clock = Instant::now();
    let out = pull(&mut db, "pages");
    let took = clock.elapsed();
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["items"], RECORDS, "{out}");
    assert_eq!(out["pages"], PAGES, "{out}");
    assert_eq!(written(&mut db), every_record());
    assert!(api.most_in_flight() > 1, "{}", api.most_in_flight());
    assert!(api.most_in_flight() <= 4, "{}", api.most_in_flight());
    // Past the short last page at most concurrency − 1 requests went out.
    assert!(api.requests() <= PAGES + 3, "{}", api.requests());
    assert_eq!(out["api_calls"], api.requests(), "{out}");
    // One page after another would take 10 × 150 ms.
    assert!(took < Duration::from_millis(1_200), "{took:?}");
}

#[test]
fn offsets_overlap_too_and_one_at_a_time_stays_one_at_a_time() {
    let api = parallel_api::start(RECORDS, Duration::from_millis(50));
    let mut db = database("it_rest_parallel_offsets");
    let offsets =
        json!({ "style": "offset", "param": "offset", "limit_param": "limit", "limit": SIZE });
    add(&mut db, "offsets", &config(&api, offsets, 3));
    let out = pull(&mut db, "offsets");
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(written(&mut db), every_record());
    assert!(api.most_in_flight() > 1, "{}", api.most_in_flight());
    assert!(api.most_in_flight() <= 3, "{}", api.most_in_flight());

    let api = parallel_api::start(RECORDS, Duration::from_millis(20));
    db.batch_execute("TRUNCATE public.items, public.written")
        .unwrap();
    add(&mut db, "serial", &config(&api, page_number(), 1));
    let out = pull(&mut db, "serial");
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(written(&mut db), every_record());
    assert_eq!(api.most_in_flight(), 1);
    assert_eq!(api.requests(), PAGES);
}

#[test]
fn a_cursor_listing_keeps_one_page_ahead() {
    let api = parallel_api::start(RECORDS, Duration::from_millis(20));
    let mut db = database("it_rest_parallel_cursor");
    let cursor = json!({ "style": "cursor", "param": "cursor", "cursor_path": "next" });
    let mut source = config(&api, cursor, 4);
    source["query"] = json!({ "limit": SIZE });
    add(&mut db, "cursor", &source);
    let out = pull(&mut db, "cursor");
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(written(&mut db), every_record());
    // Each position comes from the answer before it: never two requests at once.
    assert_eq!(api.most_in_flight(), 1);
    assert_eq!(api.requests(), PAGES);
}

#[test]
fn a_page_failing_mid_listing_leaves_the_last_committed_page_and_the_next_run_resumes() {
    let api = parallel_api::start(RECORDS, Duration::from_millis(30));
    let mut db = database("it_rest_parallel_failure");
    add(&mut db, "pages", &config(&api, page_number(), 4));
    // Page 5 (records 41..50) fails, with pages after it already requested.
    api.fail_after(Some(40));
    let out = pull(&mut db, "pages");
    assert_eq!(out["status"], "partial", "{out}");
    assert_eq!(out["pages"], 4, "{out}");
    assert!(
        out["error"].as_str().unwrap().contains("broken page"),
        "{out}"
    );
    assert_eq!(written(&mut db), (1..=40).collect::<Vec<i64>>());
    let position: Value = db
        .query_one(
            "SELECT run_position FROM pullsync.rest_sources WHERE name = 'pages'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(position, json!({ "at": "page", "page": 5 }));

    api.fail_after(None);
    let resumed = pull(&mut db, "pages");
    assert_eq!(resumed["status"], "completed", "{resumed}");
    assert_eq!(resumed["resumed"], true, "{resumed}");
    assert_eq!(resumed["items"], RECORDS - 40, "{resumed}");
    assert_eq!(written(&mut db), every_record());
}
