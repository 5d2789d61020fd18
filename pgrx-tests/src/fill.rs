//! A cluster filled as a user would fill it, through real syncs of every source its
//! version has, and the check that its syncs go on afterwards: what the upgrade tests
//! (tests/upgrade.rs, an update of the extension; tests/pg_upgrade.rs, of PostgreSQL)
//! fill before and check after.
//!
//! The cluster is the one `cargo xtask test` prepares for them (xtask/src/upgrade.rs): its
//! workers and feed server serve [`PROVIDER`], whose feed a consumer in [`DATA`] pulls.

use crate::catalog::table_digests;
use crate::db::connect;
use crate::rest_api::{self, RestApi, TICKETS_KEY};
use crate::rest_calls;
use crate::sim::SimConfig;
use crate::threads::{count, threads_fixture, ThreadsFixture, QUICK_HTTP};
use postgres::Client;
use serde_json::Value;
use std::collections::BTreeMap;

/// The database the cluster's workers and feed server serve: the feed's provider.
pub const PROVIDER: &str = "upgrade_provider";
/// The database of the Threads accounts, the feed consumer and the REST source.
pub const DATA: &str = "upgrade_data";
const FEED_KEY: &str = "upgrade-feed-key-0123456789";
/// The provider rows of the fill; the syncs after an upgrade add 20 more.
const PROVIDER_ROWS: i32 = 300;
/// The REST API's records of the fill; one is refused by the target table.
const REST_RECORDS: i64 = 30;

/// Per table of schema pullsync: (rows, digest), from `catalog::table_digests`.
pub type Digests = BTreeMap<String, (i64, String)>;

/// A variable `cargo xtask test` sets for the upgrade tests.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run with `cargo xtask test`"))
}

/// Whether release `a` comes before `b` (versions of the form x.y.z).
pub fn older(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    parts(a) < parts(b)
}

/// Whether `version` has REST sources (0.2.0 and later).
pub fn has_rest(version: &str) -> bool {
    !older(version, "0.2.0")
}

/// The installed version of pg_pullsync in the connected database.
pub fn version(db: &mut Client) -> String {
    db.query_one(
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_pullsync'",
        &[],
    )
    .unwrap()
    .get(0)
}

pub fn json(db: &mut Client, sql: &str) -> Value {
    db.query_one(sql, &[]).unwrap().get(0)
}

/// Provider rows `first..first+n` (conversations and two messages each).
pub fn add_provider_rows(provider: &mut Client, first: i32, n: i32) {
    provider
        .execute(
            "INSERT INTO pullsync.conversations (id, user_id, started_at, updated_at)
             SELECT 'uc' || g, 'u' || (g % 7), timestamptz '2026-06-01 12:00+00' + g * interval '1 s',
                    timestamptz '2026-06-01 12:00+00' + g * interval '1 s'
               FROM generate_series($1::int, $1 + $2 - 1) g",
            &[&first, &n],
        )
        .unwrap();
    provider
        .execute(
            "INSERT INTO pullsync.conversation_messages (id, conversation_id, role, content_redacted, created_at, updated_at)
             SELECT 'um' || g || '-' || k, 'uc' || g, (ARRAY['user', 'assistant'])[k], 'text ' || g,
                    timestamptz '2026-06-01 12:00+00' + g * interval '1 s', timestamptz '2026-06-01 12:00+00' + g * interval '1 s'
               FROM generate_series($1::int, $1 + $2 - 1) g, generate_series(1, 2) k",
            &[&first, &n],
        )
        .unwrap();
}

/// An incremental pull of the consumer's source `partner`.
pub fn feed_pull(db: &mut Client) -> Value {
    json(db, "SELECT pullsync.feed_pull('partner', 'incremental')")
}

/// The REST source of the fill: the page-number API into a table that refuses one
/// record, which goes to quarantine.
fn add_rest_source(db: &mut Client, api: &RestApi) {
    db.batch_execute(
        "CREATE TABLE public.tickets (id bigint PRIMARY KEY, subject text, changed timestamptz,
                                      CONSTRAINT no_four CHECK (subject <> 'record 4'))",
    )
    .unwrap();
    let config = serde_json::json!({
        "base_url": api.base_url(),
        "path": "/api/v2/tickets",
        "auth": { "type": "api_key", "header": "X-Api-Key", "key": TICKETS_KEY },
        "records": "results",
        "primary_key": "id",
        "pagination": { "style": "page_number", "size_param": "page_size", "size": 8 },
        "target": { "table": "public.tickets", "columns": { "id": "id", "subject": "title", "changed": "updated_at" } },
        "retries": 0
    });
    db.execute("SELECT pullsync.rest_add_source('tickets', $1)", &[&config])
        .unwrap();
}

pub fn rest_pull(db: &mut Client) -> Value {
    json(db, "SELECT pullsync.rest_pull('tickets')")
}

/// Whether `version` has REST fan-out (0.3.0 and later).
pub fn has_fan_out(version: &str) -> bool {
    !older(version, "0.3.0")
}

/// A fan-out source over the same API, one listing per team (its `tag`), pulled once:
/// each team's position and mark in rest_parent_state.
fn add_fan_out_source(db: &mut Client, api: &RestApi) {
    db.batch_execute(
        "CREATE TABLE public.teams (team text PRIMARY KEY);
         INSERT INTO public.teams VALUES ('red'), ('blue');
         CREATE TABLE public.team_tickets (team text, id bigint, subject text, PRIMARY KEY (team, id));",
    )
    .unwrap();
    let config = serde_json::json!({
        "base_url": api.base_url(),
        "path": "/api/v2/tickets",
        "query": { "tag": "{team}" },
        "for_each": { "query": "SELECT team FROM public.teams", "as": { "team": "team" } },
        "auth": { "type": "api_key", "header": "X-Api-Key", "key": TICKETS_KEY },
        "records": "results",
        "primary_key": ["$parent.team", "id"],
        "pagination": { "style": "page_number", "size_param": "page_size", "size": 8 },
        "target": { "table": "public.team_tickets",
                    "columns": { "team": "$parent.team", "id": "id", "subject": "title" } },
        "retries": 0
    });
    rest_calls::add(db, "team-tickets", &config);
    let pulled = rest_calls::pull(db, "team-tickets");
    assert_eq!(pulled["status"], "completed", "{pulled}");
}

/// The filled cluster's databases and the simulators its sources pull from, which must
/// outlive any upgrade for the syncs after it.
pub struct Filled {
    /// The data database and the Threads simulator its accounts sync from.
    pub fx: ThreadsFixture,
    pub provider: Client,
    pub api: RestApi,
    /// Whether the version filled has REST sources (and the fill one).
    pub rest: bool,
}

/// Fills the cluster running pg_pullsync `version`: demo-sized Threads data synced
/// twice a day apart, a feed consumer of the cluster's own feed server (`feed_url`) with
/// checkpoints, reconciliation, an unreachable source with its alert, a tenant mapping,
/// and from 0.2.0 on a REST source with a quarantined record.
pub fn fill(version_filled: &str, feed_url: &str) -> Filled {
    let mut provider = connect(PROVIDER);
    provider
        .batch_execute("CREATE EXTENSION pg_pullsync")
        .unwrap();
    assert_eq!(
        version(&mut provider),
        version_filled,
        "the cluster runs the version to fill"
    );
    provider
        .execute(
            "SELECT pullsync.feed_add_consumer('partner', $1, 1000000)",
            &[&FEED_KEY],
        )
        .unwrap();
    add_provider_rows(&mut provider, 1, PROVIDER_ROWS);

    let mut fx = threads_fixture(DATA, &SimConfig::small(20, 200));
    assert_eq!(version(&mut fx.db), version_filled);
    assert_eq!(fx.scheduled_sync()["status"], "completed");
    fx.sim.advance(86_400);
    fx.db
        .batch_execute("SET pullsync.metrics_every_run_age = '400d'")
        .unwrap();
    assert_eq!(fx.scheduled_sync()["status"], "completed");
    fx.db
        .execute(
            "SELECT pullsync.feed_add_source('partner', $1, $2, batch_size => 50, rate_limit => 10000,
                                             timeout => '10 s', max_retries => 2, retry_delay => '10 ms')",
            &[&feed_url, &FEED_KEY],
        )
        .unwrap();
    let pulled = feed_pull(&mut fx.db);
    assert_eq!(pulled["status"], "completed", "{pulled}");
    json(
        &mut fx.db,
        "SELECT pullsync.sync_reconcile('2026-06-01', '2026-06-02', 'partner')",
    );
    fx.db
        .execute(
            "SELECT pullsync.feed_add_source('unreachable', 'http://127.0.0.1:9', $1, max_retries => 0, timeout => '1 s')",
            &[&FEED_KEY],
        )
        .unwrap();
    fx.db
        .batch_execute("SET pullsync.alert_error_runs = 1")
        .unwrap();
    json(
        &mut fx.db,
        "SELECT pullsync.feed_pull('unreachable', 'incremental')",
    );
    fx.db
        .execute(
            "INSERT INTO pullsync.workspace_roles (workspace_id, role_name)
             VALUES ('11111111-1111-1111-1111-111111111111', 'postgres')",
            &[],
        )
        .unwrap();
    let api = rest_api::start(rest_api::records(REST_RECORDS));
    let rest = has_rest(version_filled);
    if rest {
        add_rest_source(&mut fx.db, &api);
        let pulled = rest_pull(&mut fx.db);
        assert_eq!(
            (pulled["status"].as_str(), pulled["quarantined"].as_i64()),
            (Some("completed"), Some(1)),
            "{pulled}"
        );
    }
    if has_fan_out(version_filled) {
        add_fan_out_source(&mut fx.db, &api);
    }
    Filled {
        fx,
        provider,
        api,
        rest,
    }
}

impl Filled {
    /// The digests of the data database's and the provider's tables; fails when the fill
    /// left a table empty in both, which would then prove nothing.
    pub fn digests(&mut self) -> (Digests, Digests) {
        let data = table_digests(&mut self.fx.db, &[]);
        let provider = table_digests(&mut self.provider, &[]);
        // Provider tables (consumers, bookmarks) fill in the provider's database. Only a
        // feed item no schema accepts would fill feed_quarantine, which the feed's own
        // tests do.
        let empty: Vec<&String> = data
            .iter()
            .filter(|(table, (rows, _))| {
                *rows == 0
                    && provider[*table].0 == 0
                    && !["system_job_locks", "feed_quarantine"].contains(&table.as_str())
            })
            .map(|(table, _)| table)
            .collect();
        assert!(empty.is_empty(), "tables the fill left empty: {empty:?}");
        (data, provider)
    }

    /// After an upgrade (with `fx.db` and `provider` connected to the upgraded cluster):
    /// an incremental Threads run completes, which opens the sealed tokens, and finds the
    /// same posts with the layers consistent; the feed consumer reads the 20 rows the
    /// provider gains (from its checkpoint, or, when the provider's identity changed,
    /// from shortly before its newest row), and holds the provider's rows exactly; the
    /// REST source stores a new record, each record once. Returns the feed pull's result.
    /// Repeatable on another copy of the same filled cluster: what it adds to the
    /// simulators is the same each time.
    pub fn assert_syncs_go_on(&mut self) -> Value {
        self.fx
            .db
            .batch_execute(&format!(
                "SET pullsync.threads_api_url = '{}'; {QUICK_HTTP}",
                self.fx.sim.api_url()
            ))
            .unwrap();
        let posts_before = self
            .fx
            .count("SELECT count(*) FROM pullsync.workspace_threads_posts");
        let run = self.fx.scheduled_sync();
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(
            self.fx
                .count("SELECT count(*) FROM pullsync.workspace_threads_posts"),
            posts_before
        );
        assert_eq!(self.fx.layer_violations(), 0);
        add_provider_rows(&mut self.provider, PROVIDER_ROWS + 1, 20);
        let pulled = feed_pull(&mut self.fx.db);
        assert_eq!(pulled["status"], "completed", "{pulled}");
        let db = &mut self.fx.db;
        assert_eq!(
            count(
                db,
                "SELECT count(*) FROM pullsync.conversations WHERE feed_source = 'partner'"
            ),
            i64::from(PROVIDER_ROWS + 20)
        );
        assert_eq!(
            count(db, "SELECT count(*) FROM pullsync.conversation_messages"),
            i64::from(2 * (PROVIDER_ROWS + 20))
        );
        assert!(
            crate::feed::rows_from(db, "partner") == crate::feed::rows_from(&mut self.provider, ""),
            "the consumer's rows differ from the provider's"
        );
        if self.rest {
            self.api
                .upsert(REST_RECORDS + 1, "record 31", "2024-01-02T00:00:00Z");
            let pulled = rest_pull(db);
            assert_eq!(pulled["status"], "completed", "{pulled}");
            assert_eq!(
                count(db, "SELECT count(*) FROM public.tickets"),
                REST_RECORDS,
                "every record but the quarantined one, and the new one"
            );
        }
        pulled
    }
}
