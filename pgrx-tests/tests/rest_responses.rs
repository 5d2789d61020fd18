//! Response actions and the API's announced rate limit against a real cluster
//! (pgrx-tests/src/rest_responses_api.rs): a listing that ends with a 404 completes, an
//! error body in a 200 is retried, a broken page is skipped and counted, a matched answer
//! fails the run with the rule's message, and a spent `X-RateLimit-Remaining` is waited out
//! before the next request instead of drawing a 429.

use postgres::Client;
use pullsync_tests::db::fresh_extension_database;
use pullsync_tests::rest_calls::{add, pull};
use pullsync_tests::rest_responses_api::{self, ResponsesApi, Shape};
use serde_json::{json, Value};

fn items(api: &ResponsesApi, responses: Value) -> Value {
    json!({
        "base_url": api.base_url(),
        "path": "/items",
        "records": "results",
        "primary_key": "id",
        "pagination": { "style": "page_number", "size_param": "page_size", "size": 4 },
        "target": { "table": "public.items", "columns": { "id": "id", "title": "title" } },
        "retries": 2,
        "responses": responses
    })
}

fn database(name: &str) -> Client {
    let mut db = fresh_extension_database(name);
    db.batch_execute("CREATE TABLE public.items (id bigint PRIMARY KEY, title text)")
        .unwrap();
    db
}

fn ids(db: &mut Client) -> Vec<i64> {
    db.query("SELECT id FROM public.items ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_listing_that_ends_with_a_404_completes_with_every_record() {
    let api = rest_responses_api::start(8, Shape::EndsWith404);
    let mut db = database("it_rest_responses_end");
    add(&mut db, "plain", &items(&api, Value::Null));
    let refused = pull(&mut db, "plain");
    assert_eq!(refused["status"], "partial", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("HTTP 404"),
        "{refused}"
    );
    db.batch_execute("TRUNCATE public.items").unwrap();

    add(
        &mut db,
        "ends",
        &items(&api, json!([{ "status": [204, 404], "action": "end" }])),
    );
    let ended = pull(&mut db, "ends");
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["items"], 8, "{ended}");
    assert_eq!(ended["error"], Value::Null, "{ended}");
    assert_eq!(ids(&mut db), (1..=8).collect::<Vec<_>>());
}

#[test]
fn an_error_body_in_a_200_is_retried_then_read() {
    let api = rest_responses_api::start(10, Shape::BusyOnce(2));
    let mut db = database("it_rest_responses_retry");
    add(
        &mut db,
        "busy",
        &items(
            &api,
            json!([{ "status": 200, "body_contains": "busy, try again", "action": "retry" }]),
        ),
    );
    let run = pull(&mut db, "busy");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        (run["items"].as_i64(), run["api_calls"].as_i64()),
        (Some(10), Some(4)),
        "{run}"
    );
    assert_eq!(ids(&mut db), (1..=10).collect::<Vec<_>>());
    assert_eq!(api.requests(), 4);
}

#[test]
fn a_broken_page_is_skipped_and_counted() {
    let api = rest_responses_api::start(10, Shape::Broken(2));
    let mut db = database("it_rest_responses_skip");
    add(
        &mut db,
        "broken",
        &items(
            &api,
            json!([{ "status": 500, "body_contains": "broken page", "action": "skip" }]),
        ),
    );
    let run = pull(&mut db, "broken");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        (run["skipped"].as_i64(), run["items"].as_i64()),
        (Some(1), Some(6)),
        "{run}"
    );
    assert_eq!(ids(&mut db), vec![1, 2, 3, 4, 9, 10]);
    // Skipped at once: a 500 the rule matched is not retried.
    assert_eq!(api.requests(), 3);
}

#[test]
fn a_matched_answer_fails_the_run_with_the_rules_message() {
    let api = rest_responses_api::start(10, Shape::Suspended(2));
    let mut db = database("it_rest_responses_fail");
    add(
        &mut db,
        "suspended",
        &items(
            &api,
            json!([{ "body_contains": "account suspended", "action": "fail",
                     "message": "the account is suspended: renew it" }]),
        ),
    );
    let run = pull(&mut db, "suspended");
    assert_eq!(run["status"], "partial", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 200: the account is suspended: renew it (config.responses[0], fail)"),
        "{run}"
    );
    assert_eq!(ids(&mut db), vec![1, 2, 3, 4]);
    assert_eq!(api.requests(), 2, "a failure is not retried");
}

#[test]
fn a_spent_rate_limit_is_waited_out_before_the_next_request() {
    let api = rest_responses_api::start(10, Shape::Limited(2));
    let mut db = database("it_rest_responses_quota");
    add(&mut db, "limited", &items(&api, Value::Null));
    let started = std::time::Instant::now();
    let run = pull(&mut db, "limited");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["items"], 10, "{run}");
    assert_eq!(ids(&mut db), (1..=10).collect::<Vec<_>>());
    assert_eq!(api.throttled(), 0, "no request went out before the reset");
    assert_eq!(api.requests(), 3);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "it waited"
    );
}

#[test]
fn a_bad_rule_is_refused_naming_its_key() {
    let api = rest_responses_api::start(1, Shape::EndsWith404);
    let mut db = database("it_rest_responses_config");
    let error = db
        .execute(
            "SELECT pullsync.rest_add_source('bad', $1)",
            &[&items(&api, json!([{ "status": 404, "action": "ignore" }]))],
        )
        .unwrap_err();
    let db_error = error.as_db_error().unwrap();
    assert_eq!(db_error.code().code(), "22023");
    assert!(
        db_error.message().starts_with("config.responses[0].action"),
        "{}",
        db_error.message()
    );
}
