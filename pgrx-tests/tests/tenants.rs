//! Row level security: a role mapped to one workspace reads only that workspace's accounts,
//! posts, metrics and insights — in the tables and in the views.

use postgres::Client;
use pullsync_tests::citus;
use pullsync_tests::db::{
    connect_as, conninfo_as, fresh_extension_database, fresh_role, sqlstate_of,
};

const DB: &str = "it_tenants";
const WS_A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const WS_B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
/// (table or view, what a workspace owns there)
const READABLE: [(&str, i64); 14] = [
    ("pullsync.workspace_threads_accounts", 2),
    ("pullsync.workspace_threads_posts", 6),
    ("pullsync.workspace_threads_post_metrics", 6),
    ("pullsync.workspace_threads_post_metrics_deltas", 6),
    ("pullsync.workspace_threads_account_insights", 2),
    ("pullsync.workspace_threads_account_insights_deltas", 2),
    ("pullsync.workspace_threads_account_links", 2),
    ("pullsync.workspace_threads_account_link_clicks", 2),
    ("pullsync.workspace_threads_account_link_clicks_deltas", 2),
    ("pullsync.workspace_threads_follower_demographics", 2),
    ("pullsync.threads_post_stats", 6),
    ("pullsync.threads_account_stats", 2),
    ("pullsync.threads_link_clicks", 2),
    // two values of one breakdown per account
    ("pullsync.threads_follower_demographics", 4),
];

/// Two accounts per workspace, three posts each, one snapshot and delta per post and account.
fn seed(db: &mut Client) {
    for (n, workspace) in [WS_A, WS_B].iter().enumerate() {
        for a in 0..2 {
            let user = format!("{}{a}", n + 1);
            db.execute(
                "SELECT pullsync.threads_add_account($1::text::uuid, $2, 'user', 'token', now() + interval '30 days')",
                &[&workspace.to_string(), &user],
            )
            .unwrap();
        }
    }
    db.batch_execute(
        "INSERT INTO pullsync.workspace_threads_posts (workspace_threads_account_id, threads_post_id, media_type, published_at)
         SELECT a.id, a.threads_user_id || '-' || g, 'TEXT_POST', now() - interval '2 days'
           FROM pullsync.workspace_threads_accounts a, generate_series(1, 3) g;
         INSERT INTO pullsync.workspace_threads_post_metrics
                (workspace_threads_account_id, workspace_threads_post_id, views, likes, replies, reposts, quotes, shares,
                 captured_at)
         SELECT workspace_threads_account_id, id, 1, 1, 1, 1, 1, 1, now() FROM pullsync.workspace_threads_posts;
         INSERT INTO pullsync.workspace_threads_post_metrics_deltas
                (workspace_threads_account_id, workspace_threads_post_id, views_delta, likes_delta, replies_delta,
                 reposts_delta, quotes_delta, shares_delta, period_start, period_end)
         SELECT workspace_threads_account_id, id, 1, 1, 1, 1, 1, 1, now() - interval '1 hour', now() FROM pullsync.workspace_threads_posts;
         INSERT INTO pullsync.workspace_threads_account_insights
                (workspace_threads_account_id, followers_count, views, likes, replies, reposts, quotes, clicks, captured_at)
         SELECT id, 1, 1, 1, 1, 1, 1, 1, now() FROM pullsync.workspace_threads_accounts;
         INSERT INTO pullsync.workspace_threads_account_insights_deltas
                (workspace_threads_account_id, followers_count_delta, views_delta, likes_delta, replies_delta,
                 reposts_delta, quotes_delta, clicks_delta, period_start, period_end)
         SELECT id, 1, 1, 1, 1, 1, 1, 1, now() - interval '1 hour', now() FROM pullsync.workspace_threads_accounts;
         INSERT INTO pullsync.workspace_threads_account_links
                (workspace_threads_account_id, link_url, current_clicks, clicks_snapshot_at)
         SELECT id, 'https://example.com/' || threads_user_id, 1, now() FROM pullsync.workspace_threads_accounts;
         INSERT INTO pullsync.workspace_threads_account_link_clicks
                (workspace_threads_account_id, link_url, clicks, captured_at)
         SELECT workspace_threads_account_id, link_url, 1, now() FROM pullsync.workspace_threads_account_links;
         INSERT INTO pullsync.workspace_threads_account_link_clicks_deltas
                (workspace_threads_account_id, link_url, clicks_delta, period_start, period_end)
         SELECT workspace_threads_account_id, link_url, 1, now() - interval '1 hour', now()
           FROM pullsync.workspace_threads_account_links;
         INSERT INTO pullsync.workspace_threads_follower_demographics
                (workspace_threads_account_id, snapshot_date, breakdown, followers, captured_at)
         SELECT id, current_date, 'age', '{\"18-24\": 60, \"25-34\": 40}', now() FROM pullsync.workspace_threads_accounts;",
    )
    .unwrap();
}

/// The grants docs/SECURITY.md gives a tenant's role.
fn tenant_role(db: &mut Client, role: &str, workspace: Option<&str>) {
    fresh_role(db, role);
    db.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA pullsync TO {role};
         GRANT SELECT ON pullsync.workspace_threads_accounts, pullsync.workspace_threads_posts,
                         pullsync.workspace_threads_post_metrics, pullsync.workspace_threads_post_metrics_deltas,
                         pullsync.workspace_threads_account_insights, pullsync.workspace_threads_account_insights_deltas,
                         pullsync.workspace_threads_account_links, pullsync.workspace_threads_account_link_clicks,
                         pullsync.workspace_threads_account_link_clicks_deltas,
                         pullsync.workspace_threads_follower_demographics,
                         pullsync.threads_post_stats, pullsync.threads_account_stats,
                         pullsync.threads_link_clicks, pullsync.threads_follower_demographics, pullsync.workspace_roles
            TO {role};
         GRANT EXECUTE ON FUNCTION pullsync.workspace_visible(uuid) TO {role};"
    ))
    .unwrap();
    if let Some(workspace) = workspace {
        db.execute(
            "INSERT INTO pullsync.workspace_roles (role_name, workspace_id) VALUES ($1, $2::text::uuid)",
            &[&role, &workspace.to_string()],
        )
        .unwrap();
    }
}

/// The rows `c` counts in each readable table or view.
fn counts(c: &mut Client) -> Vec<i64> {
    READABLE
        .iter()
        .map(|(t, _)| {
            c.query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .unwrap()
                .get(0)
        })
        .collect()
}

/// What `role` counts in each readable table or view of `database`, and the workspaces it sees.
fn seen_by(database: &str, role: &str) -> (Vec<i64>, Vec<String>) {
    let mut c = connect_as(database, role);
    let counts = counts(&mut c);
    let workspaces = c
        .query(
            "SELECT DISTINCT workspace_id::text FROM pullsync.workspace_threads_accounts ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (counts, workspaces)
}

/// Seeds `database` with two workspaces and four roles, and checks what each reads.
fn each_role_reads_only_its_workspaces(database: &str, db: &mut Client) {
    seed(db);
    let (a, b) = (format!("{database}_a"), format!("{database}_b"));
    let (unmapped, analyst) = (
        format!("{database}_unmapped"),
        format!("{database}_analyst"),
    );
    tenant_role(db, &a, Some(WS_A));
    tenant_role(db, &b, Some(WS_B));
    tenant_role(db, &unmapped, None);
    tenant_role(db, &analyst, None);
    db.execute(
        "INSERT INTO pullsync.workspace_roles (role_name, workspace_id) VALUES ($1, NULL)",
        &[&analyst],
    )
    .unwrap();
    let one: Vec<i64> = READABLE.iter().map(|(_, n)| *n).collect();
    let both: Vec<i64> = one.iter().map(|n| n * 2).collect();

    assert_eq!(seen_by(database, &a), (one.clone(), vec![WS_A.to_string()]));
    assert_eq!(seen_by(database, &b), (one, vec![WS_B.to_string()]));
    assert_eq!(
        seen_by(database, &unmapped),
        (vec![0; READABLE.len()], vec![])
    );
    assert_eq!(
        seen_by(database, &analyst),
        (both.clone(), vec![WS_A.to_string(), WS_B.to_string()])
    );
    // The superuser (and the extension's own functions and workers) see everything.
    assert_eq!(counts(db), both);
    // A tenant sees only its own mapping.
    let mappings: i64 = connect_as(database, &a)
        .query_one("SELECT count(*) FROM pullsync.workspace_roles", &[])
        .unwrap()
        .get(0);
    assert_eq!(mappings, 1);
}

#[test]
fn a_tenant_role_reads_only_its_workspace() {
    let mut db = fresh_extension_database(DB);
    each_role_reads_only_its_workspaces(DB, &mut db);

    // A tenant cannot map itself elsewhere, nor read tokens.
    let mut a = connect_as(DB, "it_tenants_a");
    for sql in [
        format!("INSERT INTO pullsync.workspace_roles VALUES ('it_tenants_a', '{WS_B}')"),
        "UPDATE pullsync.workspace_roles SET workspace_id = NULL".to_string(),
        "SELECT * FROM pullsync.workspace_threads_tokens".to_string(),
    ] {
        assert_eq!(sqlstate_of(&mut a, &sql).as_deref(), Some("42501"), "{sql}");
    }

    // An application maps its users by switching to the tenant's role per transaction.
    fresh_role(&mut db, "it_app");
    db.batch_execute("ALTER ROLE it_app NOINHERIT; GRANT it_tenants_a, it_tenants_b TO it_app")
        .unwrap();
    let mut app = connect_as(DB, "it_app");
    // NOINHERIT: as itself the application role reads nothing.
    assert_eq!(
        sqlstate_of(
            &mut app,
            "SELECT 1 FROM pullsync.workspace_threads_accounts"
        )
        .as_deref(),
        Some("42501")
    );
    let mut tx = app.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE it_tenants_b").unwrap();
    let workspaces: Vec<String> = tx
        .query(
            "SELECT DISTINCT workspace_id::text FROM pullsync.threads_account_stats",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(workspaces, vec![WS_B.to_string()]);
    tx.rollback().unwrap();
}

/// The policies in the form docs/SCALING.md gives them for Citus (function calls instead of
/// subqueries) keep tenants apart as the single-node ones do.
#[test]
fn a_tenant_role_reads_only_its_workspace_under_the_citus_policies() {
    let database = "it_tenants_citus";
    let mut db = fresh_extension_database(database);
    for statement in citus::preparation() {
        db.batch_execute(&statement).unwrap();
    }
    each_role_reads_only_its_workspaces(database, &mut db);
}

/// A tenant's own function in a query over the views runs only on the tenant's rows: the
/// views are security barriers, so the planner does not run it before the workspace
/// filter. Tried with a function that prints what it sees, and with a division-by-zero
/// oracle that would fail on another workspace's row.
#[test]
fn a_tenant_function_sees_no_other_workspace_through_the_views() {
    let mut db = fresh_extension_database("it_tenant_leak");
    seed(&mut db);
    tenant_role(&mut db, "it_leak_a", Some(WS_A));
    db.batch_execute("GRANT TEMPORARY ON DATABASE it_tenant_leak TO it_leak_a")
        .unwrap();
    let foreign: Vec<String> = db
        .query(
            "SELECT threads_user_id FROM pullsync.workspace_threads_accounts WHERE workspace_id = $1::text::uuid",
            &[&WS_B.to_string()],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(foreign.len(), 2);

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let mut config: postgres::Config = conninfo_as("it_tenant_leak", "it_leak_a").parse().unwrap();
    config.notice_callback(move |notice| sink.lock().unwrap().push(notice.message().to_string()));
    let mut tenant = config.connect(postgres::NoTls).unwrap();
    tenant
        .batch_execute(
            "CREATE FUNCTION pg_temp.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
             $$ BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END $$;",
        )
        .unwrap();
    for sql in [
        "SELECT count(*) FROM pullsync.threads_post_stats WHERE pg_temp.leak(threads_post_id)",
        "SELECT count(*) FROM pullsync.threads_account_stats WHERE pg_temp.leak(threads_user_id)",
        "SELECT count(*) FROM pullsync.threads_post_stats WHERE pg_temp.leak(username || workspace_id::text)",
    ] {
        let rows: i64 = tenant.query_one(sql, &[]).unwrap().get(0);
        assert!(rows > 0, "{sql}");
    }
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the function ran");
    let leaked: Vec<&String> = seen
        .iter()
        .filter(|line| foreign.iter().any(|id| line.contains(id.as_str())) || line.contains(WS_B))
        .collect();
    assert!(
        leaked.is_empty(),
        "another workspace's rows reached the tenant's function: {leaked:?}"
    );

    for id in &foreign {
        for sql in [
            format!("SELECT count(*) FROM pullsync.threads_account_stats WHERE 1 / (CASE WHEN threads_user_id = '{id}' THEN 0 ELSE 1 END) = 1"),
            format!("SELECT count(*) FROM pullsync.threads_post_stats WHERE 1 / (CASE WHEN threads_post_id LIKE '{id}-%' THEN 0 ELSE 1 END) = 1"),
        ] {
            assert_eq!(sqlstate_of(&mut tenant, &sql), None, "the oracle answered: {sql}");
        }
    }
}
