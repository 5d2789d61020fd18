//! The REST source against a server written by others: datasette (PyPI), serving a SQLite
//! table of 2,500 rows as JSON pages linked by `next_url`. A newcomer's path: preview the
//! listing, have a table proposed for it, create it, add the source, pull every row exactly
//! once, then only what changed.

use postgres::Client;
use pullsync_tests::datasette::{Datasette, HOSTILE_COLUMN};
use pullsync_tests::db::{connect_as, fresh_extension_database, fresh_role};
use serde_json::{json, Value};

const ROWS: i64 = 2_500;
const PAGE: i64 = 100;
/// Sent as a query parameter, which datasette echoes in every `next_url`.
const KEY: &str = "dst-9f8e7d6c5b4a";

fn listing(server: &Datasette) -> Value {
    json!({
        "base_url": server.base_url(),
        "path": "/items/items.json",
        "query": { "_shape": "objects", "_size": PAGE },
        "auth": { "type": "api_key", "query": "_key", "key": KEY },
        "records": "rows",
        "primary_key": "id",
        "pagination": { "style": "next_url", "next_url_path": "next_url" },
        "incremental": { "field": "updated_at", "param": "updated_at__gt", "initial": "2000-01-01T00:00:00Z" }
    })
}

fn one<T: for<'a> postgres::types::FromSql<'a>>(db: &mut Client, sql: &str) -> T {
    db.query_one(sql, &[]).unwrap().get(0)
}

fn preview(db: &mut Client, config: &Value, pages: i32) -> Value {
    db.query_one("SELECT pullsync.rest_preview($1, $2)", &[config, &pages])
        .unwrap()
        .get(0)
}

/// Nothing of pg_pullsync's was written: no source, log, metric or job.
fn nothing_written(db: &mut Client) {
    let written: i64 = one(
        db,
        "SELECT (SELECT count(*) FROM pullsync.rest_sources) + (SELECT count(*) FROM pullsync.sync_logs)
              + (SELECT count(*) FROM pullsync.sync_metrics) + (SELECT count(*) FROM pullsync.jobs)",
    );
    assert_eq!(written, 0);
}

#[test]
fn a_newcomer_previews_infers_and_pulls_datasette_exactly_once() {
    let server = Datasette::start("rest_third_party", ROWS as usize);
    let mut db = fresh_extension_database("rest_third_party");
    db.batch_execute("CREATE TABLE public.x (kept int)")
        .unwrap();
    let config = listing(&server);

    // The first two pages, mapped by their top-level fields; the key never shown, though
    // datasette echoes it in each next_url.
    let seen = preview(&mut db, &config, 2);
    assert!(!seen.to_string().contains(KEY), "{seen}");
    let requests = seen["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{seen}");
    for request in requests {
        assert_eq!(request["method"], "GET");
        assert_eq!(request["status"], 200);
        assert_eq!(request["records"], PAGE);
        assert!(
            request["url"].as_str().unwrap().contains("_key=[redacted]"),
            "{request}"
        );
    }
    assert!(requests[1]["url"].as_str().unwrap().contains("_next=100"));
    assert_eq!(seen["rows_total"], 2 * PAGE);
    assert_eq!(seen["rows_shown"], 100);
    assert_eq!(seen["left_out"], 0);
    assert_eq!(seen["since"], "2000-01-01T00:00:00Z");
    assert_eq!(seen["error"], Value::Null);
    assert_eq!(seen["target"], Value::Null);
    assert_eq!(seen["next"]["at"], "url");
    assert!(seen["next"]["url"].as_str().unwrap().contains("_next=200"));
    let first = &seen["rows"][0];
    assert_eq!(first["id"], 1);
    assert_eq!(first[HOSTILE_COLUMN], "x1");
    assert_eq!(first["extra"], json!({}));
    let types: Vec<(String, String)> = seen["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["column"].as_str().unwrap().into(),
                c["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("id", "bigint"),
        ("updated_at", "timestamptz"),
        ("name", "text"),
        ("price", "numeric"),
        ("active", "bigint"),
        ("order", "bigint"),
        (HOSTILE_COLUMN, "text"),
    ]
    .iter()
    .map(|(c, t)| (c.to_string(), t.to_string()))
    .collect();
    assert_eq!(types, expected);
    nothing_written(&mut db);

    // A table proposed for it, hostile column name and all, that creates just that table.
    let mut named = config.clone();
    named["target"] = json!({ "table": "public.items" });
    let proposal: String = db
        .query_one("SELECT pullsync.rest_infer_table($1)", &[&named])
        .unwrap()
        .get(0);
    assert!(!proposal.contains(KEY));
    assert!(
        proposal.starts_with("CREATE TABLE public.items (\n"),
        "{proposal}"
    );
    for line in [
        "    id bigint,",
        "    updated_at timestamptz,",
        "    price numeric,",
        "    \"order\" bigint,",
        "    \"a\"\"; DROP TABLE x; --\" text,",
        "    extra jsonb,",
        "    PRIMARY KEY (id)",
    ] {
        assert!(proposal.contains(line), "{line} in {proposal}");
    }
    nothing_written(&mut db);
    db.batch_execute(&proposal).unwrap();
    let kept: i64 = one(
        &mut db,
        "SELECT count(*) FROM pg_class WHERE oid = 'public.x'::regclass",
    );
    assert_eq!(kept, 1);
    let hostile: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.items'::regclass AND attname = $1",
            &[&HOSTILE_COLUMN],
        )
        .unwrap()
        .get(0);
    assert_eq!(hostile, 1);

    // The target the proposal names, as rest_add_source takes it.
    let target = proposal
        .lines()
        .find_map(|l| l.strip_prefix("-- \"target\": "))
        .expect("the proposal names its target");
    let mut source = config.clone();
    source["target"] = serde_json::from_str(target).unwrap();

    // A preview of the whole configuration maps rows as the pull will, to the checked table.
    let mapped = preview(&mut db, &source, 1);
    assert_eq!(mapped["target"], "public.items", "{mapped}");
    assert_eq!(mapped["rows"][0]["order"], 1);
    nothing_written(&mut db);

    // Every row exactly once, in 25 pages.
    db.query_one(
        "SELECT pullsync.rest_add_source('datasette', $1)",
        &[&source],
    )
    .unwrap();
    let pulled: Value = one(&mut db, "SELECT pullsync.rest_pull('datasette')");
    assert_eq!(pulled["status"], "completed", "{pulled}");
    assert_eq!(pulled["pages"], ROWS / PAGE);
    assert_eq!(pulled["items"], ROWS);
    assert_eq!(pulled["api_calls"], ROWS / PAGE);
    let (rows, ids, lowest, highest): (i64, i64, i64, i64) = {
        let r = db
            .query_one(
                "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM public.items",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    assert_eq!((rows, ids, lowest, highest), (ROWS, ROWS, 1, ROWS));
    let sample: (String, String, String) = {
        let r = db
            .query_one(
                &format!(
                    "SELECT name, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), {} FROM public.items WHERE id = 2500",
                    "\"a\"\"; DROP TABLE x; --\""
                ),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        sample,
        (
            "item 2500".into(),
            "2024-01-01 00:41:40".into(),
            "x2500".into()
        )
    );

    // Only what changed since the mark: datasette filters by updated_at__gt.
    server.touch("2024-02-01T00:00:00Z", &[3, 1_000, 2_499]);
    let again: Value = one(&mut db, "SELECT pullsync.rest_pull('datasette')");
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["since"], "2024-01-01T00:41:40Z");
    assert_eq!(again["items"], 3);
    assert_eq!(again["pages"], 1);
    let renamed: i64 = one(
        &mut db,
        "SELECT count(*) FROM public.items WHERE name LIKE 'renamed %'",
    );
    assert_eq!(renamed, 3);
    assert_eq!(
        one::<i64>(&mut db, "SELECT count(*) FROM public.items"),
        ROWS
    );
    let idle: Value = one(&mut db, "SELECT pullsync.rest_pull('datasette')");
    assert_eq!(
        (idle["since"].clone(), idle["items"].clone()),
        (json!("2024-02-01T00:00:00Z"), json!(0))
    );
    let logged: String = one(
        &mut db,
        "SELECT string_agg(l::text, '') FROM pullsync.sync_logs l",
    );
    assert!(!logged.contains(KEY));

    // A role that may not write the target is refused a preview of it, as rest_add_source
    // would refuse it; previewing without a target asks no rights of a table.
    fresh_role(&mut db, "third_party_reader");
    db.batch_execute(
        "GRANT USAGE ON SCHEMA pullsync TO third_party_reader;
         GRANT EXECUTE ON FUNCTION pullsync.rest_preview(jsonb, integer) TO third_party_reader;
         GRANT SELECT ON public.items TO third_party_reader;",
    )
    .unwrap();
    let mut reader = connect_as("rest_third_party", "third_party_reader");
    let refused = reader
        .query_one("SELECT pullsync.rest_preview($1)", &[&source])
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"), "{refused}");
    let open: Value = reader
        .query_one("SELECT pullsync.rest_preview($1)", &[&config])
        .unwrap()
        .get(0);
    assert_eq!(open["rows_total"], PAGE);
    drop(reader);
    db.batch_execute("DROP OWNED BY third_party_reader; DROP ROLE third_party_reader")
        .unwrap();
}

#[test]
fn a_preview_reads_at_most_ten_pages_and_checks_its_configuration() {
    let server = Datasette::start("rest_third_party_limits", 30);
    let mut db = fresh_extension_database("rest_third_party_limits");
    let mut config = listing(&server);
    config["query"]["_size"] = json!(2);
    let code = |db: &mut Client, config: &Value, pages: i32| {
        db.query_one("SELECT pullsync.rest_preview($1, $2)", &[config, &pages])
            .unwrap_err()
            .code()
            .map(|c| c.code().to_string())
    };
    assert_eq!(code(&mut db, &config, 11).as_deref(), Some("22023"));
    assert_eq!(code(&mut db, &config, 0).as_deref(), Some("22023"));
    let mut no_key = config.clone();
    no_key.as_object_mut().unwrap().remove("primary_key");
    assert_eq!(code(&mut db, &no_key, 1).as_deref(), Some("22023"));
    let seen = preview(&mut db, &config, 10);
    assert_eq!(seen["requests"].as_array().unwrap().len(), 10);
    assert_eq!(seen["rows_total"], 20);
    assert!(seen["next"]["url"].as_str().unwrap().contains("_next=20"));

    // The listing's end: no next position.
    config["query"]["_size"] = json!(100);
    let all = preview(&mut db, &config, 3);
    assert_eq!(all["requests"].as_array().unwrap().len(), 1);
    assert_eq!(all["next"], Value::Null);

    // A failed request shows its status; a page with no records has no table to infer.
    config["path"] = json!("/items/missing.json");
    let missing = preview(&mut db, &config, 1);
    assert_eq!(missing["requests"][0]["status"], 404, "{missing}");
    assert!(missing["error"].as_str().unwrap().contains("HTTP 404"));
    assert!(!missing.to_string().contains(KEY));
    let nothing = db
        .query_one("SELECT pullsync.rest_infer_table($1)", &[&config])
        .unwrap_err();
    assert_eq!(nothing.code().map(|c| c.code()), Some("22023"));
    assert!(!nothing.to_string().contains(KEY));

    // Code run on another role's behalf may not sample: a materialized view's refresh is
    // a security-restricted operation.
    let peek = format!(
        "CREATE FUNCTION public.peek() RETURNS int LANGUAGE sql AS $f$
             SELECT jsonb_array_length(pullsync.rest_preview('{}'::jsonb)->'requests') $f$;
         CREATE MATERIALIZED VIEW public.peeked AS SELECT public.peek() WITH NO DATA;",
        listing(&server)
    );
    db.batch_execute(&peek).unwrap();
    assert_eq!(
        pullsync_tests::db::sqlstate_of(&mut db, "REFRESH MATERIALIZED VIEW public.peeked")
            .as_deref(),
        Some("42501")
    );
    nothing_written(&mut db);
}
