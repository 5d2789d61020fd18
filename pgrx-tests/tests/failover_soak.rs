//! The failover soak: seeded runs in which a primary with a streaming standby
//! (`pg_basebackup -R`) is killed with `kill -9` at a seeded moment while it syncs, and the
//! standby is promoted (`pg_ctl promote`). The standby follows asynchronously, or cut off a
//! moment before the crash (odd seeds: the old primary's last commits are lost), or with
//! `synchronous_commit = remote_apply` (every fourth); on PostgreSQL 15, seeds 5, 15, … run
//! under pg_auto_failover, whose monitor promotes the standby. Under way at the crash, on the
//! primary: a Threads run of the workers through the fault soak's API faults and multi-page
//! listings, REST pulls of three API styles queued to the workers, a feed consumer pulling
//! from a provider on a third cluster, and its own feed provider serving a consumer on that
//! third cluster (the provider moves: that consumer holds cursors of the old primary). The
//! clients are pointed at the promoted server and the schedule goes on until everything is
//! complete. The truth is the fault soak's: every post once with the latest metrics, the
//! layer invariants, every feed row exactly its provider's, every REST record once, nothing
//! left in a resume position. What the old primary had committed and the standby never
//! received (read from the old primary, started alone after its crash) is pulled again;
//! rows the third cluster's consumer took from the old primary's lost commits are the only
//! ones it may hold otherwise than the promoted provider, and they are counted, not
//! differences.
//!
//! Per seed it prints the time from the promotion to the first committed page on the
//! promoted server (Threads, REST, feed) and the rows pulled again; a summary at the end.
//! `cargo xtask soak --failover` runs 20 seeds; `cargo xtask test` runs 2
//! (PULLSYNC_FAILOVER_SEEDS, PULLSYNC_FAILOVER_SEED: the first).

use postgres::{Client, NoTls};
use pullsync_tests::auto_failover::Formation;
use pullsync_tests::failover::{
    caught_up, next_xid, replayed_all_received, written_since, PROMOTED_LINE,
};
use pullsync_tests::fault_proxy::{FaultProxy, FeedFaults};
use pullsync_tests::feed::{self, Digests};
use pullsync_tests::rest_api::{self, RestApi, GITHUB_TOKEN, STRIPE_KEY, TICKETS_KEY};
use pullsync_tests::scratch_cluster::{ScratchCluster, ScratchOptions};
use pullsync_tests::sim::{SimConfig, SimServer};
use pullsync_tests::soak::{
    api_faults, api_faults_fired, feed_differences, listing_world, pull_until_complete,
    settle_threads, Seeded, FEED_AFTER_CHAOS,
};
use pullsync_tests::threads::{add_sim_accounts, count};
use pullsync_tests::wait;
use pullsync_tests::workers::worker_pids;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workers' database on every cluster of a seed.
const DB: &str = "fosoak";
const KEY: &str = "failover-soak-key-0123456789";
const WORKSPACE: &str = "fa110fe0-0000-4000-8000-000000000001";
const ACCOUNTS: usize = 8;
/// The feed source of the primary's consumer (pulling from the third cluster), and of the
/// third cluster's consumer (pulling from the primary): each end names it alike.
const FROM_THIRD: &str = "from_third";
const FROM_PRIMARY: &str = "from_primary";
/// REST sources: (name, target table, the column holding the record's title).
const REST: [(&str, &str, &str); 3] = [
    ("fo_tickets", "public.fo_tickets", "subject"),
    ("fo_issues", "public.fo_issues", "title"),
    ("fo_customers", "public.fo_customers", "name"),
];

/// How the standby follows in a seed.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Asynchronous, the standby as close behind as this machine makes it.
    Async,
    /// Asynchronous, the standby cut off from the primary's WAL for a seeded moment before
    /// the crash, as a network partition would: the old primary's last commits never reach
    /// it.
    Lagging,
    /// `synchronous_commit = remote_apply` with the standby synchronous.
    RemoteApply,
    /// pg_auto_failover: a monitor and a keeper per node; the monitor promotes the standby
    /// once it finds the primary gone. Its replication is synchronous.
    AutoFailover,
}

/// Odd seeds lag (the first of the short form), every fourth is synchronous (the second);
/// seeds 5, 15, … run under pg_auto_failover where it runs (PostgreSQL 15).
fn mode(seed: u64, auto_failover: bool) -> Mode {
    match seed % 4 {
        _ if auto_failover && seed % 10 == 5 => Mode::AutoFailover,
        1 | 3 => Mode::Lagging,
        2 => Mode::RemoteApply,
        _ => Mode::Async,
    }
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Lagging => "async, lagging",
            Mode::RemoteApply => "remote_apply",
            Mode::AutoFailover => "pg_auto_failover",
        }
    }
}

/// `ALTER SYSTEM SET` each setting (one statement each: it cannot run in a transaction
/// block), then a reload.
fn alter_system(db: &mut Client, settings: &[&str]) {
    for setting in settings {
        db.batch_execute(&format!("ALTER SYSTEM SET {setting}"))
            .unwrap();
    }
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
}

/// Stops the standby's streaming (its WAL receiver ends with an empty `primary_conninfo`),
/// leaving the primary running on without it.
fn partition(standby: &ScratchCluster) {
    let mut s = standby.connect(DB);
    alter_system(&mut s, &["primary_conninfo = ''"]);
    wait::until(
        "the standby's WAL receiver to stop",
        Duration::from_secs(60),
        || count(&mut s, "SELECT count(*) FROM pg_stat_wal_receiver") == 0,
    );
}

fn conninfo_connect(conninfo: &str) -> Result<Client, postgres::Error> {
    Client::connect(conninfo, NoTls)
}

/// Connects to `conninfo`, retrying for up to two minutes (a server being promoted).
fn connect_retrying(conninfo: &str, what: &str) -> Client {
    let mut client = None;
    wait::until(
        &format!("a connection to {what}"),
        Duration::from_secs(120),
        || {
            client = conninfo_connect(conninfo).ok();
            client.is_some()
        },
    );
    client.unwrap()
}

fn json_of(db: &mut Client, sql: &str) -> Value {
    db.query_one(sql, &[]).unwrap().get(0)
}

/// A feed provider's rows and a consumer source pointing at `url`, in `db`.
fn provider_and_consumer(db: &mut Client, serves: &str, pulls: &str, url: &str, rows: i32) {
    db.execute(
        "SELECT pullsync.feed_add_consumer($1, $2, 1000000)",
        &[&serves, &KEY],
    )
    .unwrap();
    db.execute(
        "INSERT INTO pullsync.conversations (id, user_id, started_at, updated_at)
         SELECT 'c' || g, 'u' || g % 7, now() - g * interval '1 min', now() FROM generate_series(1, $1 / 20) g",
        &[&rows],
    )
    .unwrap();
    db.execute(
        "INSERT INTO pullsync.conversation_messages (id, conversation_id, role, content_redacted, created_at, updated_at)
         SELECT 'm' || g, 'c' || (g % ($1 / 20) + 1), 'user', 'text ' || g, now() - g * interval '1 s', now()
           FROM generate_series(1, $1) g",
        &[&rows],
    )
    .unwrap();
    point_source(db, pulls, url);
}

/// Adds the feed source `name` pulling from `url`, or points it there.
fn point_source(db: &mut Client, name: &str, url: &str) {
    db.execute(
        "SELECT pullsync.feed_add_source($1, $2, $3, batch_size => 25, rate_limit => 10000,
                                         timeout => '2 s', max_retries => 2, retry_delay => '10 ms')",
        &[&name, &url, &KEY],
    )
    .unwrap();
}

/// The provider writes on: 20 messages updated.
fn provider_writes(db: &mut Client) {
    let _ = db.execute(
        "UPDATE pullsync.conversation_messages SET content_redacted = content_redacted || '+', updated_at = now()
          WHERE feed_source = '' AND id IN (SELECT 'm' || (1 + (random() * 1000)::int) FROM generate_series(1, 20))",
        &[],
    );
}

fn rest_sources(db: &mut Client, api: &RestApi) {
    db.batch_execute(
        "CREATE TABLE public.fo_tickets (id bigint PRIMARY KEY, subject text, changed timestamptz);
         CREATE TABLE public.fo_issues (id bigint PRIMARY KEY, title text, updated_at timestamptz, raw jsonb);
         CREATE TABLE public.fo_customers (id bigint PRIMARY KEY, name text);",
    )
    .unwrap();
    let configs = [
        json!({
            "base_url": api.base_url(), "path": "/api/v2/tickets",
            "auth": { "type": "api_key", "header": "X-Api-Key", "key": TICKETS_KEY },
            "records": "results", "primary_key": "id",
            "pagination": { "style": "page_number", "size_param": "page_size", "size": 8 },
            "target": { "table": "public.fo_tickets", "columns": { "id": "id", "subject": "title", "changed": "updated_at" } },
            "retries": 3
        }),
        json!({
            "base_url": api.base_url(), "path": "/repos/acme/widgets/issues",
            "query": { "per_page": 10, "sort": "updated", "direction": "asc" },
            "auth": { "type": "bearer", "token": GITHUB_TOKEN },
            "primary_key": "id", "pagination": { "style": "link_header" },
            "incremental": { "field": "updated_at", "param": "since", "initial": "2000-01-01T00:00:00Z" },
            "target": { "table": "public.fo_issues", "columns": { "id": "id", "title": "title", "updated_at": "updated_at" }, "extra": "raw" }
        }),
        json!({
            "base_url": api.base_url(), "path": "/v1/customers", "query": { "limit": 7 },
            "auth": { "type": "bearer", "token": STRIPE_KEY }, "records": "data", "primary_key": "id",
            "pagination": { "style": "cursor", "param": "starting_after", "last_record_field": "id", "has_more_path": "has_more" },
            "target": { "table": "public.fo_customers", "columns": { "id": "id", "name": "title" } }
        }),
    ];
    for ((name, _, _), config) in REST.iter().zip(configs) {
        db.query_one("SELECT pullsync.rest_add_source($1, $2)", &[name, &config])
            .unwrap();
    }
}

/// Queues a pull of each REST source (one already queued or running is left as it is).
fn rest_enqueue_all(db: &mut Client) {
    for (name, _, _) in REST {
        let _ = db.query_one("SELECT pullsync.rest_enqueue($1)", &[&name]);
    }
}

/// What a server holds of what the seed syncs, to tell what the old primary had committed
/// and the standby never received.
#[derive(Default)]
struct Held {
    posts: BTreeSet<String>,
    /// (post, captured_at)
    metrics: BTreeSet<(String, String)>,
    /// (account, captured_at)
    insights: BTreeSet<(String, String)>,
    /// The rows its consumer pulled from the third cluster.
    pulled: (Digests, Digests),
    /// Its own rows, which its feed provider serves.
    provided: (Digests, Digests),
    /// (source, id, title)
    rest: BTreeSet<(String, i64, String)>,
}

impl Held {
    fn read(db: &mut Client) -> Held {
        let pairs = |db: &mut Client, sql: &str| -> BTreeSet<(String, String)> {
            db.query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        };
        let mut rest = BTreeSet::new();
        for (name, table, column) in REST {
            for row in db
                .query(&format!("SELECT id, {column} FROM {table}"), &[])
                .unwrap()
            {
                rest.insert((name.to_string(), row.get(0), row.get(1)));
            }
        }
        Held {
            posts: db
                .query(
                    "SELECT threads_post_id FROM pullsync.workspace_threads_posts",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            metrics: pairs(
                db,
                "SELECT p.threads_post_id, m.captured_at::text FROM pullsync.workspace_threads_post_metrics m
                   JOIN pullsync.workspace_threads_posts p ON p.id = m.workspace_threads_post_id",
            ),
            insights: pairs(
                db,
                "SELECT a.threads_user_id, i.captured_at::text FROM pullsync.workspace_threads_account_insights i
                   JOIN pullsync.workspace_threads_accounts a ON a.id = i.workspace_threads_account_id",
            ),
            pulled: feed::rows_from(db, FROM_THIRD),
            provided: feed::rows_from(db, ""),
            rest,
        }
    }
}

/// Entries of `old` that `kept` lacks or holds otherwise.
fn changed_or_gone<K: Ord + Clone, V: PartialEq>(
    old: &BTreeMap<K, V>,
    kept: &BTreeMap<K, V>,
) -> Vec<K> {
    old.iter()
        .filter(|(k, v)| kept.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Rows committed on the old primary that the standby never received, by kind.
#[derive(Default, Clone, Copy)]
struct Lost {
    posts: usize,
    metrics: usize,
    insights: usize,
    feed: usize,
    rest: usize,
    /// Provider rows (its own, served to the third cluster), not pulled but written.
    provided: usize,
}

impl Lost {
    fn pulled_again(&self) -> usize {
        self.posts + self.metrics + self.insights + self.feed + self.rest
    }
}

/// What one seed measured.
struct Figures {
    seed: u64,
    mode: Mode,
    /// Under pg_auto_failover: seconds from the crash to the promotion by its monitor.
    detection: Option<f64>,
    /// Whether the Threads run was still under way at the crash.
    mid_run: bool,
    /// Seconds from the promotion to the first page committed on the promoted server:
    /// Threads, REST, feed.
    first_page: [Option<f64>; 3],
    lost: Lost,
    /// Rows the third cluster's consumer holds as the old primary's lost commits served
    /// them: named, not differences.
    kept_from_lost: usize,
    api_faults: u64,
    feed_faults: u64,
    differences: Vec<String>,
}

fn progress(seed: u64, started: Instant, phase: &str) {
    println!(
        "failover soak: seed {seed} at {:.0} s: {phase}",
        started.elapsed().as_secs_f64()
    );
}

fn one_seed(seed: u64, sim: &SimServer, auto_failover: bool) -> Figures {
    let mut rng = Seeded(seed);
    let started = Instant::now();
    let step = |phase: &str| progress(seed, started, phase);
    let mode = mode(seed, auto_failover);
    step(&format!(
        "the primary, the third cluster, the world ({})",
        mode.name()
    ));
    listing_world(sim, seed, &mut rng, ACCOUNTS);
    api_faults(sim, seed);
    let api = rest_api::start(rest_api::records(150 + rng.below(150) as i64));
    api.slow_down(Duration::from_millis(20 + rng.below(30)));
    let feed_faults = FeedFaults {
        server_error: 0.05,
        throttled: 0.02,
        hang: 0.01,
        malformed: 0.01,
    };

    let third = ScratchCluster::start("fos-third", DB);
    third
        .connect("postgres")
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .unwrap();
    let options = ScratchOptions {
        replication: true,
        conf: vec![
            format!("pullsync.threads_api_url = '{}'", sim.api_url()),
            "pullsync.workers = 2".into(),
            // A hang costs a second; units and runs of the dead primary's workers are
            // taken back ten seconds after their last sign of life.
            "pullsync.http_timeout = '1s'".into(),
            "pullsync.unit_timeout = '10s'".into(),
            "pullsync.lock_ttl = '10s'".into(),
            // Over what pg_autoctl sets (its file is included first): the memory of a
            // test cluster. Its logging collector writes into pgdata/log.
            "shared_buffers = '128MB'".into(),
        ],
    };
    let mut primary = ScratchCluster::start_with("fos-primary", DB, &options);
    primary
        .connect("postgres")
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .unwrap();
    let mut t = third.connect(DB);
    t.batch_execute("CREATE EXTENSION pg_pullsync").unwrap();
    let mut p = primary.connect(DB);
    p.batch_execute("CREATE EXTENSION pg_pullsync").unwrap();
    add_sim_accounts(&mut p, sim, WORKSPACE);
    rest_sources(&mut p, &api);
    let to_third = FaultProxy::start(
        &format!("http://127.0.0.1:{}", third.feed_port),
        feed_faults,
        seed,
    );
    let mut to_primary = FaultProxy::start(
        &format!("http://127.0.0.1:{}", primary.feed_port),
        feed_faults,
        seed ^ 0xF0,
    );
    let rows = 1_000 + rng.below(1_000) as i32;
    provider_and_consumer(&mut p, FROM_PRIMARY, FROM_THIRD, &to_third.url, rows);
    provider_and_consumer(&mut t, FROM_THIRD, FROM_PRIMARY, &to_primary.url, rows);

    // Declared after the clusters, the formation is dropped first: its keepers are gone
    // before the clusters stop, and restart nothing.
    let (standby, mut formation) = if mode == Mode::AutoFailover {
        step("pg_auto_failover: the monitor, the primary's keeper, the standby's (pg_basebackup)");
        let ports = pullsync_tests::ports::free_ports(1);
        // The standby's copy of the settings names the primary's feed port: only a primary
        // serves, and only one of them is primary at a time.
        let standby = ScratchCluster::made_elsewhere("fos-standby", ports[0], primary.feed_port);
        drop(p);
        primary.stop();
        let mut formation = Formation::start("fos-monitor");
        formation.add_node(&primary.pgdata(), primary.port(), &primary.log_path());
        formation.wait_for(primary.port(), "single", Duration::from_secs(120), || {});
        formation.add_node(&standby.pgdata(), standby.port(), &standby.log_path());
        let mut polls = 0;
        let mut admin = primary.connect("postgres");
        formation.wait_for(
            standby.port(),
            "secondary",
            Duration::from_secs(300),
            || {
                // pg_basebackup asks for a spread checkpoint: one now ends it.
                polls += 1;
                if polls % 20 == 0 {
                    let _ = admin.batch_execute("CHECKPOINT");
                }
            },
        );
        (standby, Some(formation))
    } else {
        step("the standby (pg_basebackup -R)");
        (primary.standby("fos-standby"), None)
    };
    let mut p = primary.connect(DB);
    let mut s = standby.connect(DB);
    caught_up(&mut p, &mut s);
    if mode == Mode::RemoteApply {
        // Set on the primary alone, after the base backup: the promoted server must not
        // wait for a standby it does not have.
        alter_system(
            &mut p,
            &[
                "synchronous_standby_names = '*'",
                "synchronous_commit = 'remote_apply'",
            ],
        );
        wait::until(
            "the standby to be the synchronous one",
            Duration::from_secs(60),
            || {
                p.query_one(
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                    &[],
                )
                .map(|r| r.get::<_, i64>(0) == 1)
                .unwrap_or(false)
            },
        );
    }
    drop(s);
    wait::until(
        "the primary's two pg_pullsync workers",
        Duration::from_secs(60),
        || worker_pids(&mut p).len() >= 2,
    );

    // The work under way: a Threads run, the REST pulls, both feed consumers.
    let job = pullsync_tests::workers::queue(&mut p);
    rest_enqueue_all(&mut p);
    let primary_conninfo = Arc::new(Mutex::new(primary.conninfo(DB)));
    let chaos_over = Arc::new(AtomicBool::new(false));
    let consumer_on_primary = {
        let (over, conninfo) = (chaos_over.clone(), primary_conninfo.clone());
        std::thread::spawn(move || {
            pull_until_complete(vec![FROM_THIRD.into()], over, || {
                conninfo_connect(&conninfo.lock().unwrap())
            })
        })
    };
    let consumer_on_third = {
        let (over, conninfo) = (chaos_over.clone(), third.conninfo(DB));
        std::thread::spawn(move || {
            pull_until_complete(vec![FROM_PRIMARY.into()], over, || {
                conninfo_connect(&conninfo)
            })
        })
    };
    let events = 1 + rng.below(4);
    let lag = Duration::from_millis(300 + rng.below(1_700));
    for event in 0..events {
        std::thread::sleep(Duration::from_millis(200 + rng.below(1_500)));
        provider_writes(&mut p);
        provider_writes(&mut t);
        // The API gets new records (at the end of every order its pages follow).
        let id = 10_000 + event as i64;
        api.upsert(
            id,
            &format!("record {id}, new in seed {seed}"),
            &format!("2025-01-01T00:{event:02}:00Z"),
        );
        rest_enqueue_all(&mut p);
        if rng.below(3) == 0 {
            let _ = p.query_one("SELECT pullsync.threads_scheduled_sync()", &[]);
        }
    }
    let third_held_cursors = count(
        &mut t,
        &format!(
            "SELECT count(*) FROM pullsync.sync_checkpoints WHERE consumer_id = '{FROM_PRIMARY}'"
        ),
    ) > 0;
    if mode == Mode::Lagging {
        partition(&standby);
        // Written while cut off: the consumer pulls them from the third cluster, the third
        // cluster's consumer from this primary, and both are lost with it.
        std::thread::sleep(lag / 2);
        provider_writes(&mut p);
        provider_writes(&mut t);
        std::thread::sleep(lag / 2);
    }
    let mid_run = !pullsync_tests::workers::finished(&mut p, job);
    step(&format!(
        "kill -9 of the primary ({} the Threads run)",
        if mid_run { "during" } else { "after" }
    ));
    drop(p);
    if let Some(formation) = formation.as_mut() {
        formation.kill_keeper(primary.port());
    }
    primary.kill_9();
    let crashed_at = Instant::now();

    let mut s = standby.connect(DB);
    replayed_all_received(&mut s);
    let at_kill = Held::read(&mut s);
    let boundary = next_xid(&mut s);
    drop(s);
    let promoted_at = if formation.is_some() {
        step("waiting for the monitor to promote the standby");
        let mut s = standby.connect(DB);
        wait::until(
            "pg_auto_failover's monitor to promote the standby",
            Duration::from_secs(300),
            || {
                count(
                    &mut s,
                    "SELECT count(*) FROM (SELECT WHERE NOT pg_is_in_recovery()) x",
                ) == 1
            },
        );
        Instant::now()
    } else {
        step("pg_ctl promote");
        let at = Instant::now();
        standby.promote();
        at
    };
    let detection = formation
        .is_some()
        .then(|| promoted_at.duration_since(crashed_at).as_secs_f64());
    *primary_conninfo.lock().unwrap() = standby.conninfo(DB);
    // The third cluster's consumer is pointed at the promoted provider, as its operator
    // would; its cursors are the old primary's.
    to_primary = FaultProxy::start(
        &format!("http://127.0.0.1:{}", standby.feed_port),
        feed_faults,
        seed ^ 0xF1,
    );
    point_source(&mut t, FROM_PRIMARY, &to_primary.url);
    let mut n = connect_retrying(&standby.conninfo(DB), "the promoted server");
    wait::until(
        "the promoted server's workers and feed server to start working",
        Duration::from_secs(60),
        || standby.log().matches(PROMOTED_LINE).count() >= 3,
    );
    // What the schedule queues next, on the promoted server.
    rest_enqueue_all(&mut n);
    let _ = n.query_one("SELECT pullsync.threads_scheduled_sync()", &[]);

    step("waiting for the first pages on the promoted server");
    let sources: [&[&str]; 3] = [
        &[
            "pullsync.workspace_threads_posts",
            "pullsync.workspace_threads_post_metrics",
            "pullsync.workspace_threads_account_insights",
        ],
        &[
            "public.fo_tickets",
            "public.fo_issues",
            "public.fo_customers",
        ],
        &["pullsync.sync_checkpoints"],
    ];
    let mut first_page: [Option<f64>; 3] = [None; 3];
    let mut deadline = wait::Deadline::after(
        Duration::from_secs(180),
        "a page of each source committed on the promoted server",
    );
    while first_page.iter().any(Option::is_none) {
        for (i, tables) in sources.iter().enumerate() {
            if first_page[i].is_none() && tables.iter().any(|t| written_since(&mut n, t, boundary))
            {
                first_page[i] = Some(promoted_at.elapsed().as_secs_f64());
            }
        }
        if deadline.passed() {
            break;
        }
        deadline.check();
        std::thread::sleep(Duration::from_millis(50));
    }

    // The world goes on after the failover.
    for _ in 0..1 + rng.below(2) {
        provider_writes(&mut n);
        provider_writes(&mut t);
        std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
    }
    chaos_over.store(true, Ordering::SeqCst);

    step("waiting for every queued run to end on the promoted server");
    let all_done = |db: &mut Client| {
        count(
            db,
            "SELECT count(*) FROM pullsync.jobs WHERE state IN ('queued', 'running')",
        ) == 0
    };
    wait::until(
        &format!(
            "every run to end on the promoted server (SELECT * FROM pullsync.jobs WHERE state IN ('queued', 'running'); see {})",
            standby.log_path().display()
        ),
        Duration::from_secs(300),
        || all_done(&mut n),
    );
    let mut differences: Vec<String> = Vec::new();
    let api_faults = api_faults_fired(sim);
    sim.clear_faults();
    let log = standby.log_path().display().to_string();
    let (found, _) = settle_threads(&mut n, sim, WORKSPACE, &[], false, &log, &step);
    differences.extend(found.into_iter().map(|d| format!("Threads: {d}")));
    let twice = count(
        &mut n,
        "SELECT count(*) - count(DISTINCT threads_post_id) FROM pullsync.workspace_threads_posts",
    );
    if twice != 0 {
        differences.push(format!("Threads: {twice} posts stored twice"));
    }
    let resuming = count(
        &mut n,
        "SELECT count(*) FROM pullsync.workspace_threads_accounts WHERE posts_listing_resume_after IS NOT NULL",
    );
    if resuming != 0 {
        differences.push(format!(
            "Threads: {resuming} listings left in a resume position"
        ));
    }

    step("REST: pulls until each source's last run is complete");
    for _ in 0..5 {
        if rest_differences(&mut n, &api).is_empty() {
            break;
        }
        rest_enqueue_all(&mut n);
        wait::until(
            "the REST pulls to end on the promoted server",
            Duration::from_secs(300),
            || all_done(&mut n),
        );
    }
    differences.extend(rest_differences(&mut n, &api));

    step("waiting for a completed feed pull of each consumer");
    wait::join(
        consumer_on_primary,
        "the promoted server's consumer: pulls until one completes after the chaos",
        FEED_AFTER_CHAOS * 2,
    );
    wait::join(
        consumer_on_third,
        "the third cluster's consumer: pulls until one completes after the chaos",
        FEED_AFTER_CHAOS * 2,
    );
    // The consumers pulled side by side, and a pull called in SQL is one transaction: it
    // holds back what its own cluster's provider serves until it ends. The schedule's next
    // pull of each, one at a time, takes the rest.
    for (db, source) in [(&mut n, FROM_THIRD), (&mut t, FROM_PRIMARY)] {
        if !pull_completes(db, source) {
            differences.push(format!("feed {source}: no pull completed after the chaos"));
        }
    }
    let feed_faults = to_third.fired() + to_primary.fired();
    differences.extend(feed_differences(
        "feed from the third cluster (the consumer failed over)",
        &feed::rows_from(&mut t, ""),
        &feed::rows_from(&mut n, FROM_THIRD),
    ));
    let filtered = count(
        &mut n,
        "SELECT count(*) FROM (SELECT DISTINCT ON (consumer_id, stream) window_start FROM pullsync.sync_checkpoints
                                WHERE mode IN ('incremental', 'catch_up') ORDER BY consumer_id, stream, id DESC) c
          WHERE window_start IS NOT NULL",
    ) + count(
        &mut t,
        "SELECT count(*) FROM (SELECT DISTINCT ON (consumer_id, stream) window_start FROM pullsync.sync_checkpoints
                                WHERE mode IN ('incremental', 'catch_up') ORDER BY consumer_id, stream, id DESC) c
          WHERE window_start IS NOT NULL",
    );
    if filtered != 0 {
        differences.push(format!("feed: {filtered} streams left in a filtered read"));
    }

    step("the old primary, started alone: what it had committed");
    primary.restart_alone();
    let old = Held::read(&mut primary.connect(DB));
    let mut lost = Lost {
        posts: old.posts.difference(&at_kill.posts).count(),
        metrics: old.metrics.difference(&at_kill.metrics).count(),
        insights: old.insights.difference(&at_kill.insights).count(),
        feed: changed_or_gone(&old.pulled.0, &at_kill.pulled.0).len()
            + changed_or_gone(&old.pulled.1, &at_kill.pulled.1).len(),
        rest: old.rest.difference(&at_kill.rest).count(),
        provided: 0,
    };
    // The provider moved: the third cluster's consumer may hold a row as only the old
    // primary's lost commits had it; any other difference is one.
    let provided = feed::rows_from(&mut n, "");
    let mut pulled = feed::rows_from(&mut t, FROM_PRIMARY);
    let mut kept_from_lost = 0;
    for (old_rows, kept_rows, pulled_rows, provided_rows) in [
        (
            &old.provided.0,
            &at_kill.provided.0,
            &mut pulled.0,
            &provided.0,
        ),
        (
            &old.provided.1,
            &at_kill.provided.1,
            &mut pulled.1,
            &provided.1,
        ),
    ] {
        let gone = changed_or_gone(old_rows, kept_rows);
        lost.provided += gone.len();
        for id in gone {
            if pulled_rows.get(&id).is_some() && pulled_rows.get(&id) == old_rows.get(&id) {
                kept_from_lost += 1;
                match provided_rows.get(&id) {
                    Some(now) => pulled_rows.insert(id, now.clone()),
                    None => pulled_rows.remove(&id),
                };
            }
        }
    }
    differences.extend(feed_differences(
        "feed from the promoted provider (the provider moved)",
        &provided,
        &pulled,
    ));
    if third_held_cursors {
        let noticed = count(
            &mut t,
            &format!(
                "SELECT count(*) FROM pullsync.sync_logs WHERE consumer_id = '{FROM_PRIMARY}'
                    AND array_to_string(notes, ' ') LIKE '%identity changed%'"
            ),
        );
        if noticed == 0 {
            differences.push(
                "feed: the third cluster's consumer never noticed that its provider moved".into(),
            );
        }
    }
    drop(formation);
    Figures {
        seed,
        mode,
        detection,
        mid_run,
        first_page,
        lost,
        kept_from_lost,
        api_faults,
        feed_faults,
        differences,
    }
}

/// Whether a pull of `source` completes within ten tries (the proxies still inject faults).
fn pull_completes(db: &mut Client, source: &str) -> bool {
    (0..10).any(|_| {
        db.query_one("SELECT pullsync.feed_pull($1, 'incremental')", &[&source])
            .map(|r| r.get::<_, Value>(0)["status"] == "completed")
            .unwrap_or(false)
    })
}

/// How each REST source's target differs from the API's records (id and title, each once),
/// and runs left in a resume position.
fn rest_differences(db: &mut Client, api: &RestApi) -> Vec<String> {
    let mut expected: Vec<(i64, String)> = api
        .data
        .lock()
        .unwrap()
        .records
        .iter()
        .map(|r| (r.id, r.title.clone()))
        .collect();
    expected.sort();
    let mut found = Vec::new();
    for (name, table, column) in REST {
        let stored: Vec<(i64, String)> = db
            .query(
                &format!("SELECT id, {column} FROM {table} ORDER BY id"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        if stored != expected {
            let missing: Vec<i64> = expected
                .iter()
                .filter(|e| !stored.contains(e))
                .map(|e| e.0)
                .collect();
            let extra = stored.iter().filter(|s| !expected.contains(s)).count();
            found.push(format!(
                "REST {name}: {} records missing or stale ({missing:?}), {extra} extra, of {}",
                missing.len(),
                expected.len()
            ));
        }
        let open = json_of(
            db,
            &format!(
                "SELECT to_jsonb(run_position IS NOT NULL) FROM pullsync.rest_sources WHERE name = '{name}'"
            ),
        );
        if open == json!(true) {
            found.push(format!("REST {name}: left in a resume position"));
        }
    }
    found
}

fn seconds(values: &[f64]) -> String {
    if values.is_empty() {
        return "none".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "{:.1}/{:.1}/{:.1} s",
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    )
}

#[test]
#[ignore = "kills and promotes clusters of its own: cargo xtask test and cargo xtask soak --failover run it in a phase of its own"]
fn a_failover_at_a_seeded_moment_loses_nothing() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (seeds, first_seed) = (
        env("PULLSYNC_FAILOVER_SEEDS", 2),
        env("PULLSYNC_FAILOVER_SEED", 1),
    );
    let sim = SimServer::start(&SimConfig::small(1, 1));
    let auto_failover = pullsync_tests::auto_failover::available();
    println!(
        "failover soak: pg_auto_failover {}",
        if auto_failover {
            "runs here: seeds 5, 15, … fail over under its monitor"
        } else {
            "is not installed for this PostgreSQL version: no seed of it"
        }
    );
    let mut all = Vec::new();
    for seed in first_seed..first_seed + seeds {
        let started = Instant::now();
        let f = one_seed(seed, &sim, auto_failover);
        let shown = |v: Option<f64>| v.map_or("none".into(), |s| format!("{s:.1} s"));
        println!(
            "failover soak: seed {seed} done in {:.0} s ({}, the crash {} the Threads run{}): first page after promotion: Threads {}, REST {}, feed {}; lost with the old primary and pulled again: {} rows ({} posts, {} metric snapshots, {} account snapshots, {} feed rows, {} REST records); provider rows lost: {} ({} held by the moved provider's consumer as the old primary served them); {} API faults, {} feed faults; {} differences{}",
            started.elapsed().as_secs_f64(),
            f.mode.name(),
            if f.mid_run { "during" } else { "after" },
            f.detection.map_or(String::new(), |d| format!(
                "; the monitor promoted the standby {d:.1} s after the crash"
            )),
            shown(f.first_page[0]),
            shown(f.first_page[1]),
            shown(f.first_page[2]),
            f.lost.pulled_again(),
            f.lost.posts,
            f.lost.metrics,
            f.lost.insights,
            f.lost.feed,
            f.lost.rest,
            f.lost.provided,
            f.kept_from_lost,
            f.api_faults,
            f.feed_faults,
            f.differences.len(),
            if f.differences.is_empty() {
                String::new()
            } else {
                format!(": {}", f.differences.join("; "))
            }
        );
        all.push(f);
    }
    let page_times =
        |i: usize| -> Vec<f64> { all.iter().filter_map(|f| f.first_page[i]).collect() };
    let differences: Vec<String> = all
        .iter()
        .flat_map(|f| {
            f.differences
                .iter()
                .map(move |d| format!("seed {}: {d}", f.seed))
        })
        .collect();
    println!(
        "failover soak: {seeds} seeds ({} with remote_apply, {} with the standby lagging, {} under pg_auto_failover), {seeds} kill -9 of the primary ({} during the Threads run), {seeds} promotions; first committed page after promotion (min/median/max): Threads {}, REST {}, feed {}; rows lost with the old primary and pulled again: {} (at most {} in a seed); provider rows lost: {}, {} of them held by the consumer as the old primary served them; {} differences",
        all.iter().filter(|f| f.mode == Mode::RemoteApply).count(),
        all.iter().filter(|f| f.mode == Mode::Lagging).count(),
        all.iter().filter(|f| f.mode == Mode::AutoFailover).count(),
        all.iter().filter(|f| f.mid_run).count(),
        seconds(&page_times(0)),
        seconds(&page_times(1)),
        seconds(&page_times(2)),
        all.iter().map(|f| f.lost.pulled_again()).sum::<usize>(),
        all.iter().map(|f| f.lost.pulled_again()).max().unwrap_or(0),
        all.iter().map(|f| f.lost.provided).sum::<usize>(),
        all.iter().map(|f| f.kept_from_lost).sum::<usize>(),
        differences.len()
    );
    assert!(
        differences.is_empty(),
        "the first differences: {:#?}",
        &differences[..differences.len().min(20)]
    );
}
