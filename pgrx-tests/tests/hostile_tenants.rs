//! A hostile tenant against the REST source (issue 36). Each tenant is a login role holding
//! exactly the grants docs/REST.md gives a role that may define sources, with a schema of
//! its own where it creates what any role may create: tables, triggers, CHECK constraints,
//! defaults, policies, operators, SECURITY DEFINER functions and index expressions. The APIs
//! are loopback listeners of the test's own. Each test is one attack, and fails on 0.2.0;
//! docs/SECURITY.md's threat model names them.

use axum::http::HeaderMap;
use axum::routing::get;
use postgres::Client;
use pullsync_tests::db::{connect, connect_as, fresh_extension_database, fresh_role};
use pullsync_tests::local_server::LocalServer;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// A JSON API on loopback: `GET /items` answers two records and notes the API key each
/// request carried.
struct Api {
    server: LocalServer,
    keys: Arc<Mutex<Vec<Option<String>>>>,
}

impl Api {
    fn start() -> Api {
        let keys: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let seen = keys.clone();
        let app = axum::Router::new().route(
            "/items",
            get(move |headers: HeaderMap| async move {
                let key = headers
                    .get("x-api-key")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                seen.lock().unwrap().push(key);
                axum::Json(json!([{ "id": 1, "name": "one" }, { "id": 2, "name": "two" }]))
            }),
        );
        let server = LocalServer::start(app, 0, 1, "hostile-api").expect("loopback API");
        Api { server, keys }
    }

    fn url(&self) -> &str {
        &self.server.base_url
    }

    /// The API keys of the requests answered so far.
    fn keys(&self) -> Vec<Option<String>> {
        self.keys.lock().unwrap().clone()
    }
}

/// A source of `api` with `key` in `X-Api-Key`, into `table` (id, name).
fn config(api: &Api, key: &str, table: &str) -> Value {
    json!({
        "base_url": api.url(),
        "path": "/items",
        "auth": { "type": "api_key", "header": "X-Api-Key", "key": key },
        "primary_key": "id",
        "pagination": { "style": "none" },
        "target": { "table": table, "columns": { "id": "id", "name": "name" } },
        "retries": 0
    })
}

/// The grants docs/REST.md gives a role that may define REST sources (the block that
/// starts with `CREATE ROLE rest_tenant;`), for `role`.
fn documented_grants(role: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/REST.md"))
        .expect("docs/REST.md");
    let start = doc
        .find("CREATE ROLE rest_tenant;")
        .expect("docs/REST.md has no CREATE ROLE rest_tenant;");
    let block = &doc[start..];
    let block = &block[..block.find("```").expect("the end of the block")];
    block
        .replacen("CREATE ROLE rest_tenant;", "", 1)
        .replace("rest_tenant", role)
}

/// A login role with the documented grants and a schema of the same name that it owns.
fn tenant(db: &mut Client, role: &str) {
    fresh_role(db, role);
    db.batch_execute(&documented_grants(role))
        .expect("the documented grants apply");
    db.batch_execute(&format!("CREATE SCHEMA {role} AUTHORIZATION {role}"))
        .unwrap();
}

fn is_superuser(db: &mut Client, role: &str) -> bool {
    db.query_one(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[&role],
    )
    .unwrap()
    .get(0)
}

fn sqlstate(e: &postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// What a tenant's code can do to the statements the extension runs next: `poison()` sets
/// search_path for the session (`set_config(…, false)`, which outlives a function's SET
/// clause) to the tenant's schema first, where an operator `=` for text runs
/// `ALTER ROLE … SUPERUSER`. That succeeds only when a superuser evaluates it, and then
/// puts search_path back, so no later statement fails and rolls the change back.
fn poison_kit(role: &str) -> String {
    format!(
        "CREATE FUNCTION {role}.escalate(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $f$
         BEGIN
             BEGIN
                 EXECUTE 'ALTER ROLE {role} SUPERUSER';
                 PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false);
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
             RETURN a OPERATOR(pg_catalog.=) b;
         END $f$;
         CREATE OPERATOR {role}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {role}.escalate);
         CREATE FUNCTION {role}.poison() RETURNS boolean LANGUAGE plpgsql AS $f$
         BEGIN
             PERFORM pg_catalog.set_config('search_path', '{role}, pg_catalog', false);
             RETURN true;
         END $f$;
         CREATE FUNCTION {role}.poison_imm(x bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $f$
         BEGIN
             PERFORM pg_catalog.set_config('search_path', '{role}, pg_catalog', false);
             RETURN x;
         END $f$;
         CREATE FUNCTION {role}.poison_row() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
             PERFORM {role}.poison();
             RETURN NEW;
         END $f$;"
    )
}

/// Target tables that each run `poison()` on a write another way: (table, its DDL).
fn poisoned_tables(role: &str) -> Vec<(String, String)> {
    [
        (
            "via_trigger",
            "CREATE TABLE {t} (id bigint PRIMARY KEY, name text);
             CREATE TRIGGER poison BEFORE INSERT OR UPDATE ON {t}
                 FOR EACH ROW EXECUTE FUNCTION {role}.poison_row();",
        ),
        (
            "via_check",
            "CREATE TABLE {t} (id bigint PRIMARY KEY, name text CHECK ({role}.poison()));",
        ),
        (
            "via_default",
            "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, seen boolean DEFAULT {role}.poison());",
        ),
        (
            "via_policy",
            "CREATE TABLE {t} (id bigint PRIMARY KEY, name text);
             ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
             ALTER TABLE {t} FORCE ROW LEVEL SECURITY;
             CREATE POLICY poison ON {t} USING ({role}.poison()) WITH CHECK ({role}.poison());",
        ),
        (
            "via_index",
            "CREATE TABLE {t} (id bigint PRIMARY KEY, name text);
             CREATE INDEX ON {t} (({role}.poison_imm(id)));",
        ),
    ]
    .into_iter()
    .map(|(name, ddl)| {
        let table = format!("{role}.{name}");
        let ddl = ddl.replace("{t}", &table).replace("{role}", role);
        (table, ddl)
    })
    .collect()
}

/// The tenant's own pull in its own session: its target's trigger (or CHECK constraint,
/// default, policy, index expression) sets search_path to its schema, where its `=` would
/// run as whoever the extension's next statement runs as. 0.2.0: the next
/// `UPDATE … WHERE name = $1`, run as the extension's owner, made the tenant superuser.
#[test]
fn a_tenants_target_cannot_reach_the_extensions_statements_through_search_path() {
    let api = Api::start();
    let database = "it_hostile_search_path";
    let role = "hostile_sp";
    let mut db = fresh_extension_database(database);
    tenant(&mut db, role);
    let mut t = connect_as(database, role);
    t.batch_execute(&poison_kit(role)).unwrap();
    for (n, (table, ddl)) in poisoned_tables(role).into_iter().enumerate() {
        t.batch_execute(&ddl).unwrap();
        let name = format!("sp_{n}");
        let before: String = t
            .query_one("SELECT pg_catalog.current_setting('search_path')", &[])
            .unwrap()
            .get(0);
        t.execute(
            "SELECT pullsync.rest_add_source($1, $2)",
            &[&name, &config(&api, "sp-key", &table)],
        )
        .unwrap();
        let pulled = t
            .query_one("SELECT pullsync.rest_pull($1)", &[&name])
            .map(|row| row.get::<_, Value>(0));
        assert!(
            !is_superuser(&mut db, role),
            "{table}: the tenant became superuser ({pulled:?})"
        );
        let after: String = t
            .query_one("SELECT pg_catalog.current_setting('search_path')", &[])
            .unwrap()
            .get(0);
        assert_eq!(
            after, before,
            "{table}: the tenant's setting outlived its write"
        );
        let pulled = pulled.unwrap_or_else(|e| panic!("{table}: {e:?}"));
        assert_eq!(pulled["status"], "completed", "{table}: {pulled}");
        let stored: i64 = db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(stored, 2, "{table}: the tenant's own rows are written");
    }
}

/// The same attack on a background worker, where a poisoned setting would last for the
/// worker's life and reach every later job.
#[test]
fn a_tenants_target_cannot_reach_a_workers_statements_through_search_path() {
    let api = Api::start();
    let database = pullsync_tests::workers::DB;
    let role = "hostile_wk";
    let mut db = connect(database);
    db.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_pullsync;
         DELETE FROM pullsync.rest_sources WHERE name = 'hostile_wk';
         DROP SCHEMA IF EXISTS hostile_wk CASCADE;",
    )
    .unwrap();
    tenant(&mut db, role);
    let mut t = connect_as(database, role);
    t.batch_execute(&poison_kit(role)).unwrap();
    let (table, ddl) = poisoned_tables(role).swap_remove(0);
    t.batch_execute(&ddl).unwrap();
    t.execute(
        "SELECT pullsync.rest_add_source('hostile_wk', $1)",
        &[&config(&api, "wk-key", &table)],
    )
    .unwrap();
    for _ in 0..2 {
        let queued: Value = t
            .query_one("SELECT pullsync.rest_enqueue('hostile_wk')", &[])
            .unwrap()
            .get(0);
        let job = queued["job_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{queued}"));
        pullsync_tests::workers::wait_finished(&mut db, job);
        let status = pullsync_tests::workers::status(&mut db, job);
        assert!(!is_superuser(&mut db, role), "the tenant became superuser");
        assert_eq!(status["state"], "completed", "{status}");
    }
    db.batch_execute(
        "SELECT pullsync.rest_drop_source('hostile_wk');
         DROP SCHEMA hostile_wk CASCADE;",
    )
    .unwrap();
}

/// A tenant's SECURITY DEFINER function that a superuser calls, and a tenant's index
/// expression that a superuser's ANALYZE evaluates, both call `rest_add_source`. 0.2.0 took
/// the session's role for the owner: the source was the superuser's, and its pulls ran the
/// tenant's trigger with superuser rights.
#[test]
fn a_source_added_by_a_tenants_code_is_the_tenants_or_refused() {
    let api = Api::start();
    let database = "it_hostile_spoof";
    let role = "hostile_df";
    let mut db = fresh_extension_database(database);
    tenant(&mut db, role);
    let mut t = connect_as(database, role);
    t.batch_execute(&format!(
        "CREATE TABLE {role}.items (id bigint PRIMARY KEY, name text);
         CREATE FUNCTION {role}.escalate() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
             BEGIN
                 EXECUTE 'ALTER ROLE {role} SUPERUSER';
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
             RETURN NEW;
         END $f$;
         CREATE TRIGGER escalate BEFORE INSERT OR UPDATE ON {role}.items
             FOR EACH ROW EXECUTE FUNCTION {role}.escalate();
         CREATE FUNCTION {role}.helpful(config jsonb) RETURNS jsonb
             LANGUAGE sql SECURITY DEFINER AS $f$ SELECT pullsync.rest_add_source('spoof_definer', config) $f$;"
    ))
    .unwrap();

    // The superuser runs the tenant's SECURITY DEFINER function: the source is the
    // function owner's, and its pull writes with the tenant's rights.
    db.execute(
        &format!("SELECT {role}.helpful($1)"),
        &[&config(&api, "df-key", &format!("{role}.items"))],
    )
    .unwrap();
    let owner = |db: &mut Client, name: &str| -> String {
        db.query_one(
            "SELECT owner_role::text FROM pullsync.rest_sources WHERE name = $1",
            &[&name],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(owner(&mut db, "spoof_definer"), role);
    let pulled: Value = db
        .query_one("SELECT pullsync.rest_pull('spoof_definer')", &[])
        .unwrap()
        .get(0);
    assert_eq!(pulled["status"], "completed", "{pulled}");
    assert!(!is_superuser(&mut db, role), "the tenant became superuser");
    // A superuser who changes the tenant's source does not become its owner either.
    db.execute(
        "SELECT pullsync.rest_alter_source('spoof_definer', '{\"timeout_ms\": 5000}')",
        &[],
    )
    .unwrap();
    assert_eq!(owner(&mut db, "spoof_definer"), role);
    db.query_one("SELECT pullsync.rest_pull('spoof_definer')", &[])
        .unwrap();
    assert!(!is_superuser(&mut db, role), "the tenant became superuser");

    // An index expression that calls rest_add_source when someone else's command
    // evaluates it: the superuser's ANALYZE runs it as the table's owner, in a
    // security-restricted operation, where rest_add_source refuses.
    let spoof = config(&api, "ix-key", &format!("{role}.items"));
    t.batch_execute(&format!(
        "CREATE TABLE {role}.bait (x integer);
         INSERT INTO {role}.bait SELECT pg_catalog.generate_series(1, 20);
         CREATE FUNCTION {role}.sneaky(x integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $f$
         BEGIN
             IF session_user OPERATOR(pg_catalog.<>) current_user THEN
                 PERFORM pullsync.rest_add_source('spoof_index', '{spoof}'::jsonb);
             END IF;
             RETURN x;
         END $f$;
         CREATE INDEX ON {role}.bait (({role}.sneaky(x)));"
    ))
    .unwrap();
    let refused = db
        .batch_execute(&format!("ANALYZE {role}.bait"))
        .unwrap_err();
    assert_eq!(sqlstate(&refused), "42501", "{refused:?}");
    assert!(
        refused
            .as_db_error()
            .is_some_and(|e| e.message().contains("security-restricted operation")),
        "{refused:?}"
    );
    let added: i64 = db
        .query_one(
            "SELECT count(*) FROM pullsync.rest_sources WHERE name = 'spoof_index'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(added, 0);
}

/// Tenant A against tenant B's source, with every REST function it holds. 0.2.0 accepted
/// any name: A pointed B's source at its own listener, pulled it and received B's key, and
/// could reconcile, retry, queue, schedule and drop B's source.
#[test]
fn a_tenant_cannot_use_another_tenants_source() {
    let (api_a, api_b) = (Api::start(), Api::start());
    let database = "it_hostile_cross";
    let (role_a, role_b) = ("hostile_a", "hostile_b");
    let mut db = fresh_extension_database(database);
    for role in [role_a, role_b] {
        tenant(&mut db, role);
        db.batch_execute(&format!(
            "CREATE TABLE {role}.items (id bigint PRIMARY KEY, name text);
             ALTER TABLE {role}.items OWNER TO {role};"
        ))
        .unwrap();
    }
    let b_key = "b-secret-key-0123456789";
    let mut b = connect_as(database, role_b);
    b.execute(
        "SELECT pullsync.rest_add_source('b_src', $1)",
        &[&config(&api_b, b_key, "hostile_b.items")],
    )
    .unwrap();
    let mut a = connect_as(database, role_a);
    let hijack = json!({ "base_url": api_a.url() }).to_string();
    let attempts = [
        format!("SELECT pullsync.rest_alter_source('b_src', '{hijack}')"),
        "SELECT pullsync.rest_pull('b_src')".into(),
        "SELECT pullsync.rest_enqueue('b_src')".into(),
        "SELECT pullsync.rest_reconcile('b_src')".into(),
        "SELECT pullsync.rest_retry_quarantined('b_src')".into(),
        "SELECT pullsync.rest_schedule('b_src', '* * * * *')".into(),
        "SELECT pullsync.rest_drop_source('b_src')".into(),
    ];
    for sql in &attempts {
        let e = a.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "as tenant A: {sql}: {e:?}");
        let message = format!("{:?}", e.as_db_error());
        assert!(
            !message.contains(api_b.url())
                && !message.contains("/items")
                && !message.contains(b_key),
            "the refusal shows B's configuration: {message}"
        );
    }
    for relation in [
        "pullsync.rest_sources",
        "pullsync.rest_quarantine",
        "pullsync.rest_source_state",
        "pullsync.source_states",
        "pullsync.source_metrics",
    ] {
        let e = a
            .batch_execute(&format!("SELECT * FROM {relation}"))
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "as tenant A: {relation}");
    }
    assert_eq!(
        api_a.keys(),
        Vec::<Option<String>>::new(),
        "A's listener got a request"
    );

    // B's source is as B left it, and B (and a role with B's privileges) still uses it.
    let base_url: String = db
        .query_one(
            "SELECT config->>'base_url' FROM pullsync.rest_sources WHERE name = 'b_src'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(base_url, api_b.url());
    let pulled: Value = b
        .query_one("SELECT pullsync.rest_pull('b_src')", &[])
        .unwrap()
        .get(0);
    assert_eq!(pulled["status"], "completed", "{pulled}");
    fresh_role(&mut db, "hostile_b_app");
    db.batch_execute("GRANT hostile_b TO hostile_b_app")
        .unwrap();
    let mut b_app = connect_as(database, "hostile_b_app");
    let pulled: Value = b_app
        .query_one("SELECT pullsync.rest_pull('b_src')", &[])
        .unwrap()
        .get(0);
    assert_eq!(pulled["status"], "completed", "{pulled}");
    assert_eq!(api_b.keys(), vec![Some(b_key.to_string()); 2]);
}

/// Whoever may alter a source could point it at a server of their own and have its sealed
/// secret sent there; 0.2.0 kept the secret across a new base_url.
#[test]
fn a_new_base_url_needs_the_secret_again() {
    let (api, elsewhere) = (Api::start(), Api::start());
    let database = "it_hostile_base_url";
    let role = "hostile_bu";
    let mut db = fresh_extension_database(database);
    tenant(&mut db, role);
    let mut t = connect_as(database, role);
    t.batch_execute(&format!(
        "CREATE TABLE {role}.items (id bigint PRIMARY KEY, name text)"
    ))
    .unwrap();
    let key = "bu-secret-key-0123456789";
    t.execute(
        "SELECT pullsync.rest_add_source('bu_src', $1)",
        &[&config(&api, key, &format!("{role}.items"))],
    )
    .unwrap();
    let moved = json!({ "base_url": elsewhere.url() });
    let e = t
        .query_one("SELECT pullsync.rest_alter_source('bu_src', $1)", &[&moved])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023", "{e:?}");
    let db_error = e.as_db_error().unwrap();
    assert!(db_error.message().starts_with("config.base_url"), "{e:?}");
    assert!(db_error.hint().is_some_and(|h| h.contains("auth")), "{e:?}");
    // Other keys change without the secret; the base_url with it.
    t.query_one(
        "SELECT pullsync.rest_alter_source('bu_src', $1)",
        &[&json!({ "timeout_ms": 5000, "base_url": api.url() })],
    )
    .unwrap();
    let new_key = "bu-new-key-0123456789";
    let with_secret = json!({
        "base_url": elsewhere.url(),
        "auth": { "type": "api_key", "header": "X-Api-Key", "key": new_key }
    });
    t.query_one(
        "SELECT pullsync.rest_alter_source('bu_src', $1)",
        &[&with_secret],
    )
    .unwrap();
    let pulled: Value = t
        .query_one("SELECT pullsync.rest_pull('bu_src')", &[])
        .unwrap()
        .get(0);
    assert_eq!(pulled["status"], "completed", "{pulled}");
    assert_eq!(elsewhere.keys(), vec![Some(new_key.to_string())]);
    assert_eq!(api.keys(), Vec::<Option<String>>::new());
}

/// A secret written into a statement as a literal reaches the server log whenever that
/// statement fails; the documented examples must show it passed as a parameter. 0.2.0's
/// examples carried `"token": "ghp_…"`.
#[test]
fn the_docs_pass_secrets_as_parameters() {
    for doc in ["docs/REST.md", "README.md"] {
        let text = std::fs::read_to_string(format!("{}/../{doc}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("{doc}: {e}"));
        for literal in ["\"token\": \"", "\"key\": \"", "\"password\": \""] {
            assert!(
                !text.contains(literal),
                "{doc} writes a secret as a literal ({literal}…): pass it as $1"
            );
        }
    }
}
