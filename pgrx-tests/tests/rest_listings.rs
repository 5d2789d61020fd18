//! REST listings that are not a plain GET (pgrx-tests/src/rest_listings_api.rs): a search
//! API read with POSTs whose cursor and mark go in the body, a GraphQL relay connection
//! (and a GraphQL error in a 200 answer), OData's `@odata.nextLink`, a null cursor that
//! ends a listing, and paginators that never advance, which fail the run by name.

use postgres::Client;
use pullsync_tests::db::fresh_extension_database;
use pullsync_tests::rest_calls::pull;
use pullsync_tests::rest_listings_api::{
    self, ListingsApi, GRAPHQL_TOKEN, ODATA_KEY, SEARCH_TOKEN,
};
use serde_json::{json, Value};

const TABLES: &str = "
    CREATE TABLE public.found (id bigint PRIMARY KEY, title text, updated_at timestamptz);
    CREATE TABLE public.issues (id bigint PRIMARY KEY, title text, updated_at timestamptz);
    CREATE TABLE public.items (id bigint PRIMARY KEY, title text);";

fn add(db: &mut Client, name: &str, config: &Value) -> Value {
    db.query_one("SELECT pullsync.rest_add_source($1, $2)", &[&name, config])
        .unwrap()
        .get(0)
}

fn ids(db: &mut Client, table: &str) -> Vec<i64> {
    db.query(&format!("SELECT id FROM {table} ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn search(api: &ListingsApi) -> Value {
    json!({
        "base_url": api.base_url(),
        "path": "/search",
        "method": "POST",
        "body": { "query": { "match_all": {} }, "size": 4 },
        "auth": { "type": "bearer", "token": SEARCH_TOKEN },
        "records": "hits",
        "primary_key": "id",
        "pagination": { "style": "cursor", "in": "body", "param": "search_after", "cursor_path": "next" },
        "incremental": { "field": "updated_at", "param": "filter.since", "in": "body", "initial": "2000-01-01T00:00:00Z" },
        "target": { "table": "public.found", "columns": { "id": "id", "title": "title", "updated_at": "updated_at" } }
    })
}

fn graphql(api: &ListingsApi, field: &str) -> Value {
    let query = format!(
        "query($first: Int!, $after: String) {{ repository(owner: \"acme\", name: \"widgets\") {{ {field}(first: $first, after: $after) {{ nodes {{ id title updatedAt: updated_at }} pageInfo {{ hasNextPage endCursor }} }} }} }}"
    );
    json!({
        "base_url": api.base_url(),
        "path": "/graphql",
        "body": { "query": query, "variables": { "first": 3 } },
        "auth": { "type": "bearer", "token": GRAPHQL_TOKEN },
        "records": "data.repository.issues.nodes",
        "primary_key": "id",
        "pagination": { "style": "graphql", "cursor_variable": "after", "page_info_path": "data.repository.issues.pageInfo" },
        "target": { "table": "public.issues", "columns": { "id": "id", "title": "title", "updated_at": "updated_at" } }
    })
}

#[test]
fn a_search_api_is_read_with_posts_that_carry_the_cursor_and_the_mark() {
    let api = rest_listings_api::start(rest_listings_api::records(10));
    let mut db = fresh_extension_database("it_rest_listings_post");
    db.batch_execute(TABLES).unwrap();
    let shown = add(&mut db, "search", &search(&api));
    assert!(!shown.to_string().contains(SEARCH_TOKEN), "{shown}");

    let first = pull(&mut db, "search");
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(
        (first["pages"].as_i64(), first["items"].as_i64()),
        (Some(3), Some(10)),
        "{first}"
    );
    assert_eq!(ids(&mut db, "public.found"), (1..=10).collect::<Vec<_>>());
    let sent = api.requests_to("/search");
    assert!(sent.iter().all(|r| r.method == "POST"), "{sent:?}");
    assert_eq!(
        sent[0].body,
        json!({ "query": { "match_all": {} }, "size": 4, "filter": { "since": "2000-01-01T00:00:00Z" } })
    );
    assert_eq!(sent[1].body["search_after"], "after-4", "{sent:?}");
    assert_eq!(sent[2].body["search_after"], "after-8", "{sent:?}");
    // The last page's `"next": null` ended the listing: no fourth request.
    assert_eq!(sent.len(), 3, "{sent:?}");

    // The next run sends the high-water mark in the body and reads what changed.
    api.upsert(3, "record 3, edited", "2024-02-01T00:00:00Z");
    api.clear_requests();
    let second = pull(&mut db, "search");
    assert_eq!(second["status"], "completed", "{second}");
    // The mark's own record (the API's `since` includes it) and the changed one.
    assert_eq!(second["items"], 2, "{second}");
    let sent = api.requests_to("/search");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].body["filter"]["since"], "2024-01-01T00:10:00Z",
        "{sent:?}"
    );
    let title: String = db
        .query_one("SELECT title FROM public.found WHERE id = 3", &[])
        .unwrap()
        .get(0);
    assert_eq!(title, "record 3, edited");
}

#[test]
fn a_graphql_connection_is_read_by_its_page_info_and_its_errors_fail_the_run() {
    let api = rest_listings_api::start(rest_listings_api::records(7));
    let mut db = fresh_extension_database("it_rest_listings_graphql");
    db.batch_execute(TABLES).unwrap();
    add(&mut db, "issues", &graphql(&api, "issues"));
    let run = pull(&mut db, "issues");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        (run["pages"].as_i64(), run["items"].as_i64()),
        (Some(3), Some(7)),
        "{run}"
    );
    assert_eq!(ids(&mut db, "public.issues"), (1..=7).collect::<Vec<_>>());
    let sent = api.requests_to("/graphql");
    assert_eq!(sent[0].body["variables"], json!({ "first": 3 }), "{sent:?}");
    assert_eq!(sent[1].body["variables"]["after"], "Y3Vyc29y:3", "{sent:?}");
    assert_eq!(sent[2].body["variables"]["after"], "Y3Vyc29y:6", "{sent:?}");
    assert_eq!(sent.len(), 3, "hasNextPage false ended it: {sent:?}");

    // A 200 answer with `errors` fails the run, its message shown without the token the
    // server echoed.
    add(&mut db, "misspelt", &graphql(&api, "issuez"));
    let failed = pull(&mut db, "misspelt");
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("the GraphQL answer holds errors: Field 'issuez' doesn't exist"),
        "{failed}"
    );
    assert!(!failed.to_string().contains(GRAPHQL_TOKEN), "{failed}");
    let logged: (i64, i64) = db
        .query_one(
            "SELECT count(*) FILTER (WHERE l.error LIKE '%issuez%'),
                    count(*) FILTER (WHERE l::text LIKE '%' || $1 || '%')
               FROM pullsync.sync_logs l WHERE l.subject = 'misspelt'",
            &[&GRAPHQL_TOKEN],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(logged, (1, 0), "logged, and without the token");
}

#[test]
fn odata_next_links_and_null_cursors_lead_to_the_end() {
    let api = rest_listings_api::start(rest_listings_api::records(5));
    let mut db = fresh_extension_database("it_rest_listings_odata");
    db.batch_execute(TABLES).unwrap();
    add(
        &mut db,
        "odata",
        &json!({
            "base_url": api.base_url(),
            "path": "/odata/Items",
            "query": { "$top": 2 },
            "auth": { "type": "api_key", "header": "X-Api-Key", "key": ODATA_KEY },
            "records": "value",
            "primary_key": "id",
            "pagination": { "style": "next_url", "next_url_path": "[\"@odata.nextLink\"]" },
            "target": { "table": "public.items", "columns": { "id": "id", "title": "title" } }
        }),
    );
    let run = pull(&mut db, "odata");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        (run["pages"].as_i64(), run["items"].as_i64()),
        (Some(3), Some(5)),
        "{run}"
    );
    let skips: Vec<Option<String>> = api
        .requests_to("/odata/Items")
        .iter()
        .map(|r| r.query.get("$skiptoken").cloned())
        .collect();
    assert_eq!(skips, [None, Some("2".into()), Some("4".into())]);
    assert_eq!(ids(&mut db, "public.items"), (1..=5).collect::<Vec<_>>());

    // A cursor API whose last page says `"next_cursor": null`.
    db.batch_execute("TRUNCATE public.items").unwrap();
    add(
        &mut db,
        "feed",
        &json!({
            "base_url": api.base_url(),
            "path": "/feed",
            "records": "items",
            "primary_key": "id",
            "pagination": { "style": "cursor", "param": "cursor", "cursor_path": "next_cursor" },
            "target": { "table": "public.items", "columns": { "id": "id", "title": "title" } }
        }),
    );
    let run = pull(&mut db, "feed");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["pages"], 2, "{run}");
    assert_eq!(api.requests_to("/feed").len(), 2);
    assert_eq!(ids(&mut db, "public.items"), (1..=5).collect::<Vec<_>>());
}

#[test]
fn a_paginator_that_never_advances_fails_the_run_by_name() {
    let api = rest_listings_api::start(rest_listings_api::records(3));
    let mut db = fresh_extension_database("it_rest_listings_stuck");
    db.batch_execute(TABLES).unwrap();
    let config = |path: &str| {
        json!({
            "base_url": api.base_url(),
            "path": path,
            "records": "items",
            "primary_key": "id",
            "pagination": { "style": "cursor", "param": "cursor", "cursor_path": "next_cursor" },
            "target": { "table": "public.items", "columns": { "id": "id", "title": "title" } },
            "max_pages": 500
        })
    };
    add(&mut db, "stuck", &config("/stuck"));
    add(&mut db, "circle", &config("/circle"));

    // The same cursor twice in a row.
    let run = pull(&mut db, "stuck");
    assert_eq!(run["status"], "partial", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("REST source stuck: the API handed out cursor \"s1\" again"),
        "{run}"
    );
    assert_eq!(api.requests_to("/stuck").len(), 2, "not 500 requests");
    // The next run resumes at that cursor and stops there at once.
    let again = pull(&mut db, "stuck");
    assert!(
        again["error"]
            .as_str()
            .unwrap()
            .contains("cursor \"s1\" again"),
        "{again}"
    );
    assert_eq!(api.requests_to("/stuck").len(), 3);

    // A round: c1, c2, c3, then c1 again.
    let run = pull(&mut db, "circle");
    assert_eq!(run["status"], "partial", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("REST source circle: the API handed out cursor \"c1\" again"),
        "{run}"
    );
    assert_eq!(api.requests_to("/circle").len(), 4, "not 500 requests");
}
