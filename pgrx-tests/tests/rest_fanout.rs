//! Fan-out (docs/REST.md, "Fan-out") against a GitHub-style API with a listing per repo
//! (pgrx-tests/src/rest_fanout_api.rs): parents from a SQL query run as the owner and only
//! reading, paged children written once, a position and mark per parent, parents pulled in
//! parallel, a parent added later pulled from its start, hostile parent values kept inside
//! their path segment.

use postgres::Client;
use pullsync_tests::db::{connect_as, fresh_extension_database, fresh_role};
use pullsync_tests::rest_calls::pull;
use pullsync_tests::rest_fanout_api::{self, FanoutApi};
use serde_json::{json, Value};
use std::time::Duration;

const INITIAL: &str = "2000-01-01T00:00:00Z";

/// Issues of each repo the query lists, keyed by (repo, number).
fn config(api: &FanoutApi, query: &str, repo_column: &str, table: &str) -> Value {
    json!({
        "base_url": api.base_url(),
        "path": "/repos/{repo}/issues",
        "query": { "per_page": 5 },
        "for_each": { "query": query, "as": { "repo": repo_column } },
        "primary_key": ["$parent.repo", "number"],
        "pagination": { "style": "page_number", "size_param": "per_page", "size": 5 },
        "incremental": { "field": "updated_at", "param": "since", "initial": INITIAL },
        "target": { "table": table,
                    "columns": { "repo": "$parent.repo", "number": "number", "title": "title", "updated_at": "updated_at" } },
        "concurrency": 3,
        "retries": 0
    })
}

fn add(db: &mut Client, name: &str, config: &Value) -> Result<Value, postgres::Error> {
    db.query_one("SELECT pullsync.rest_add_source($1, $2)", &[&name, config])
        .map(|r| r.get(0))
}

fn sqlstate(e: &postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

fn message_of(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// (repo, number, title) of every row.
fn rows(db: &mut Client, table: &str) -> Vec<(String, i64, String)> {
    db.query(
        &format!("SELECT repo::text, number, title FROM {table} ORDER BY 1, 2"),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// The `since` each request for `path` sent, in order.
fn sinces(api: &FanoutApi, path: &str) -> Vec<String> {
    api.requests()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, q)| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("since="))
                .unwrap_or("")
                .replace("%3A", ":")
        })
        .collect()
}

const TABLES: &str = "
    CREATE TABLE public.repos (id bigint PRIMARY KEY, login text);
    INSERT INTO public.repos VALUES (1, 'one'), (2, 'two'), (3, 'three');
    CREATE TABLE public.issues (repo bigint, number bigint, title text, updated_at timestamptz,
                                PRIMARY KEY (repo, number));";

#[test]
fn three_parents_are_pulled_in_parallel_each_child_once_then_each_from_its_own_mark() {
    let api = rest_fanout_api::start();
    for repo in ["1", "2", "3"] {
        api.set_repo(repo, rest_fanout_api::issues(repo, 12));
    }
    api.slow_down(Duration::from_millis(150));
    let mut db = fresh_extension_database("it_rest_fanout");
    db.batch_execute(TABLES).unwrap();
    let c = config(
        &api,
        "SELECT id, login FROM public.repos",
        "id",
        "public.issues",
    );
    add(&mut db, "issues", &c).unwrap();

    let first = pull(&mut db, "issues");
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(
        (first["pages"].as_i64(), first["items"].as_i64()),
        (Some(9), Some(36)),
        "{first}"
    );
    assert_eq!(
        first["parents"],
        json!({ "listed": 3, "done": 3, "failed": 0, "unfinished": 0, "left_out": 0 })
    );
    // Every child once, under its parent: the numbers repeat from repo to repo.
    let expected: Vec<(String, i64, String)> = ["1", "2", "3"]
        .iter()
        .flat_map(|r| (1..=12).map(move |n| (r.to_string(), n, format!("{r} #{n}"))))
        .collect();
    assert_eq!(rows(&mut db, "public.issues"), expected);
    assert_eq!(api.requests().len(), 9, "{:?}", api.requests());
    let in_flight = api.max_in_flight();
    assert!(
        (2..=3).contains(&in_flight),
        "parents are pulled in parallel within concurrency 3: {in_flight} at once"
    );

    // Each parent sends its own mark: only repo 2 has something new.
    api.slow_down(Duration::ZERO);
    api.upsert("2", 4, "2 #4, edited", "2024-02-01T00:00:00Z");
    api.clear_requests();
    let second = pull(&mut db, "issues");
    assert_eq!(
        (second["status"].as_str(), second["items"].as_i64()),
        (Some("completed"), Some(1)),
        "{second}"
    );
    assert_eq!(sinces(&api, "/repos/1/issues"), ["2024-01-01T00:12:00Z"]);
    assert_eq!(sinces(&api, "/repos/2/issues"), ["2024-01-01T00:12:00Z"]);
    let title: String = db
        .query_one(
            "SELECT title FROM public.issues WHERE repo = 2 AND number = 4",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(title, "2 #4, edited");
    let marks: Vec<(Value, Option<String>)> = db
        .query(
            "SELECT parent_key, high_water FROM pullsync.rest_parent_state ORDER BY parent_key->>'repo'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        marks,
        [
            (json!({ "repo": "1" }), Some("2024-01-01T00:12:00Z".into())),
            (json!({ "repo": "2" }), Some("2024-02-01T00:00:00Z".into())),
            (json!({ "repo": "3" }), Some("2024-01-01T00:12:00Z".into())),
        ]
    );

    // A parent added later is pulled from its first page with the initial mark.
    api.set_repo("4", rest_fanout_api::issues("4", 7));
    db.batch_execute("INSERT INTO public.repos VALUES (4, 'four')")
        .unwrap();
    api.clear_requests();
    let third = pull(&mut db, "issues");
    assert_eq!(
        (third["status"].as_str(), third["items"].as_i64()),
        (Some("completed"), Some(7)),
        "{third}"
    );
    assert_eq!(third["parents"]["listed"], 4);
    assert_eq!(sinces(&api, "/repos/4/issues"), [INITIAL, INITIAL]);
    assert_eq!(rows(&mut db, "public.issues").len(), 36 + 7);

    // Dropping the source drops its parents' states.
    db.batch_execute("SELECT pullsync.rest_drop_source('issues')")
        .unwrap();
    let left: i64 = db
        .query_one("SELECT count(*) FROM pullsync.rest_parent_state", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn a_parent_that_fails_keeps_the_others_and_its_own_progress() {
    let api = rest_fanout_api::start();
    for repo in ["1", "2", "3"] {
        api.set_repo(repo, rest_fanout_api::issues(repo, 6));
    }
    api.fail(Some("2"));
    let mut db = fresh_extension_database("it_rest_fanout_fail");
    db.batch_execute(TABLES).unwrap();
    let c = config(&api, "SELECT id FROM public.repos", "id", "public.issues");
    add(&mut db, "issues", &c).unwrap();

    let first = pull(&mut db, "issues");
    assert_eq!(first["status"], "partial", "{first}");
    assert_eq!(
        first["parents"],
        json!({ "listed": 3, "done": 2, "failed": 1, "unfinished": 0, "left_out": 0 })
    );
    let error = first["error"].as_str().unwrap();
    assert!(
        error.contains("parent {\"repo\":\"2\"}") && error.contains("refused"),
        "{error}"
    );
    assert_eq!(rows(&mut db, "public.issues").len(), 12);

    // The next run reads repo 2 from its start, the others from their marks.
    api.fail(None);
    api.clear_requests();
    let second = pull(&mut db, "issues");
    assert_eq!(
        (second["status"].as_str(), second["items"].as_i64()),
        (Some("completed"), Some(6)),
        "{second}"
    );
    assert_eq!(sinces(&api, "/repos/2/issues"), [INITIAL, INITIAL]);
    assert_eq!(sinces(&api, "/repos/1/issues"), ["2024-01-01T00:06:00Z"]);
    assert_eq!(rows(&mut db, "public.issues").len(), 18);
}

#[test]
fn a_hostile_parent_value_stays_inside_its_path_segment() {
    let api = rest_fanout_api::start();
    let hostile = ["../admin", "x?y", "http://evil", "a/b#c"];
    for repo in hostile {
        api.set_repo(repo, rest_fanout_api::issues(repo, 2));
    }
    let mut db = fresh_extension_database("it_rest_fanout_hostile");
    db.batch_execute(
        "CREATE TABLE public.names (login text);
         INSERT INTO public.names VALUES ('../admin'), ('x?y'), ('http://evil'), ('a/b#c'), ('..'), (NULL);
         CREATE TABLE public.by_name (repo text, number bigint, title text, updated_at timestamptz,
                                      PRIMARY KEY (repo, number));",
    )
    .unwrap();
    let c = config(
        &api,
        "SELECT login FROM public.names",
        "login",
        "public.by_name",
    );
    add(&mut db, "hostile", &c).unwrap();

    let run = pull(&mut db, "hostile");
    assert_eq!(run["status"], "partial", "{run}");
    // `..` would leave its segment (URL parsers drop it even encoded): that parent fails
    // without a request; a null value has no parent.
    assert_eq!(
        run["parents"],
        json!({ "listed": 5, "done": 4, "failed": 1, "unfinished": 0, "left_out": 1 })
    );
    let mut paths: Vec<String> = api.requests().into_iter().map(|(p, _)| p).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/repos/..%2Fadmin/issues",
            "/repos/a%2Fb%23c/issues",
            "/repos/http%3A%2F%2Fevil/issues",
            "/repos/x%3Fy/issues",
        ]
    );
    let stored: Vec<String> = rows(&mut db, "public.by_name")
        .into_iter()
        .map(|(repo, _, _)| repo)
        .collect();
    let mut expected: Vec<String> = hostile
        .iter()
        .flat_map(|r| [r.to_string(), r.to_string()])
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
}

#[test]
fn the_parent_query_runs_as_the_owner_and_only_reads() {
    let api = rest_fanout_api::start();
    api.set_repo("1", rest_fanout_api::issues("1", 3));
    let mut db = fresh_extension_database("it_rest_fanout_owner");
    for role in ["fanout_a", "fanout_b"] {
        fresh_role(&mut db, role);
        db.batch_execute(&format!(
            "GRANT USAGE ON SCHEMA pullsync TO {role};
             GRANT EXECUTE ON FUNCTION pullsync.rest_add_source(text, jsonb),
                                      pullsync.rest_alter_source(text, jsonb),
                                      pullsync.rest_pull(text) TO {role};
             CREATE SCHEMA {role} AUTHORIZATION {role};"
        ))
        .unwrap();
    }
    db.batch_execute(
        "CREATE TABLE public.private_repos (id bigint);
         CREATE TABLE public.shared_repos (id bigint);
         INSERT INTO public.shared_repos VALUES (1);
         GRANT SELECT ON public.shared_repos TO fanout_a;",
    )
    .unwrap();
    let mut a = connect_as("it_rest_fanout_owner", "fanout_a");
    let mut b = connect_as("it_rest_fanout_owner", "fanout_b");
    b.batch_execute("CREATE TABLE fanout_b.secret_repos (id bigint); INSERT INTO fanout_b.secret_repos VALUES (1);")
        .unwrap();
    a.batch_execute(
        "CREATE TABLE fanout_a.repos (id bigint); INSERT INTO fanout_a.repos VALUES (1);
         CREATE TABLE fanout_a.log (n int);
         CREATE FUNCTION fanout_a.bump() RETURNS int LANGUAGE sql AS 'INSERT INTO fanout_a.log VALUES (1) RETURNING 1';
         CREATE TABLE fanout_a.issues (repo bigint, number bigint, title text, updated_at timestamptz,
                                       PRIMARY KEY (repo, number));",
    )
    .unwrap();
    let refusal = |client: &mut Client, query: &str| {
        let c = config(&api, query, "id", "fanout_a.issues");
        let e = add(client, "a_issues", &c).expect_err(query);
        (sqlstate(&e), message_of(&e))
    };
    // Another tenant's table, and a table the owner was not granted.
    assert_eq!(
        refusal(&mut a, "SELECT id FROM fanout_b.secret_repos").0,
        "42501"
    );
    assert_eq!(
        refusal(&mut a, "SELECT id FROM public.private_repos").0,
        "42501"
    );
    // Anything but one SELECT that only reads.
    for query in [
        "WITH d AS (DELETE FROM fanout_a.repos RETURNING id) SELECT id FROM d",
        "DELETE FROM fanout_a.repos RETURNING id",
        "SELECT id FROM fanout_a.repos; DELETE FROM fanout_a.repos",
        "SELECT id FROM fanout_a.repos FOR UPDATE",
    ] {
        let (state, message) = refusal(&mut a, query);
        assert_eq!(state, "22023", "{query}: {message}");
        assert!(message.contains("config.for_each.query"), "{message}");
    }
    // Text that would close the wrapping parenthesis is not one SELECT either.
    let (state, _) = refusal(
        &mut a,
        "SELECT 1 AS id) q; DELETE FROM fanout_a.repos; SELECT (1",
    );
    assert!(state == "22023" || state == "42601", "{state}");
    // A function that writes: the query runs read-only.
    let (state, message) = refusal(&mut a, "SELECT id, fanout_a.bump() FROM fanout_a.repos");
    assert_eq!(state, "42501", "{message}");
    // A column the query does not have.
    let c = config(
        &api,
        "SELECT id AS repo_id FROM fanout_a.repos",
        "id",
        "fanout_a.issues",
    );
    let e = add(&mut a, "a_issues", &c).unwrap_err();
    assert_eq!(sqlstate(&e), "22023", "{e}");
    assert!(message_of(&e).contains("config.for_each.as.repo"), "{e:?}");
    let (log, repos): (i64, i64) = {
        let r = a
            .query_one(
                "SELECT (SELECT count(*) FROM fanout_a.log), (SELECT count(*) FROM fanout_a.repos)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((log, repos), (0, 1), "nothing was written");

    // A right revoked later: the query still runs as the owner when a superuser pulls.
    let c = config(
        &api,
        "SELECT id FROM public.shared_repos",
        "id",
        "fanout_a.issues",
    );
    add(&mut a, "a_issues", &c).unwrap_or_else(|e| panic!("{e:?}"));
    db.batch_execute("REVOKE SELECT ON public.shared_repos FROM fanout_a")
        .unwrap();
    let run = pull(&mut db, "a_issues");
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().is_some_and(
            |e| e.contains("listing the parents failed") && e.contains("permission denied")
        ),
        "{run}"
    );
    assert!(api.requests().is_empty());
    // And with the right, the owner's pull reads it.
    db.batch_execute("GRANT SELECT ON public.shared_repos TO fanout_a")
        .unwrap();
    let run = pull(&mut a, "a_issues");
    assert_eq!(
        (run["status"].as_str(), run["items"].as_i64()),
        (Some("completed"), Some(3)),
        "{run}"
    );
}
