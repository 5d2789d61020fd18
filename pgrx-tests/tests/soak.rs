//! The fault soak: seeded runs of a Threads sync by the background workers and feed pulls
//! from two sources into one consumer, through 5xx answers, throttling, hangs past the
//! timeout, malformed or cut bodies and listings cut between pages (the simulator for
//! Threads, fault proxies in front of the feeds), with kill -9 of a worker and two
//! immediate restarts of the server per run. The worlds have accounts of 0 to 350 posts
//! (several listing pages; some seeds with pages of 25), and while the runs are under way
//! posts are deleted and added, a post takes a media type the client does not know, a token
//! is replaced (the account is connected again afterwards), another is refreshed, a second
//! run is queued behind the first, and `unit_timeout` and `lock_ttl` are short enough to
//! fire. Afterwards the data equal a clean run's: every post the API lists, once, the
//! deleted ones marked, the latest metrics, the layer invariants; the feed rows of each
//! source exactly the provider's, and the items no schema accepts in quarantine, once each.
//!
//! It restarts the cluster, so it runs alone: `cargo xtask test` runs a few seeds after the
//! other tests, `cargo xtask soak` runs 50 (PULLSYNC_SOAK_RUNS, PULLSYNC_SOAK_SEED).
//! `cargo xtask soak --against 0.1.0` runs it on the version that landed first
//! (PULLSYNC_SOAK_LEGACY): Threads listings and the one feed source its schema knows.

use pullsync_tests::db::{connect, fresh_extension_database, try_connect_as};
use pullsync_tests::fault_proxy::{FaultProxy, FeedFaults};
use pullsync_tests::feed::{self, foreign_message, paged_foreign_provider};
use pullsync_tests::ports::feed_url;
use pullsync_tests::server::server_log;
use pullsync_tests::sim::{SimConfig, SimServer};
use pullsync_tests::soak::{
    api_faults, api_faults_fired, feed_differences, listing_world, pull_until_complete,
    reconnect_refused_accounts, settle_threads, unfinished_listings, Seeded, FEED_AFTER_CHAOS,
};
use pullsync_tests::threads::add_sim_accounts;
use pullsync_tests::wait;
use pullsync_tests::workers::{
    connect_retrying, connect_retrying_to, finished, queue, wait_for, worker_pids, DB,
};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONSUMER_DB: &str = "it_soak_consumer";
const KEY: &str = "soak-consumer-key-0123456789";
const WORKSPACE: &str = "50a50a50-0000-4000-8000-000000000001";
/// The second feed source: a provider that is not pg_pullsync.
const FOREIGN: &str = "soak-foreign";
const ACCOUNTS: usize = 8;

#[derive(Default, Debug)]
struct Tally {
    api_faults: u64,
    feed_faults: u64,
    kills: u64,
    restarts: u64,
    /// Kills and restarts that hit while the Threads run was still going.
    mid_run: u64,
    recovery_cycles: u64,
    /// Listings cut short between pages (seen with a resume position) and resumed.
    listings_resumed: u64,
    posts_deleted: u64,
    posts_added: u64,
    quarantined: u64,
    differences: Vec<String>,
}

/// The 0.1.0 mode: only what that version's schema has.
fn legacy() -> bool {
    std::env::var_os("PULLSYNC_SOAK_LEGACY").is_some()
}

/// Records, until `over`, every listing seen cut short (an account with a resume
/// position), as (account, position).
fn watch_listings(over: Arc<AtomicBool>, seen: Arc<Mutex<BTreeSet<(String, String)>>>) {
    while !over.load(Ordering::SeqCst) {
        if let Ok(mut db) = try_connect_as(DB, "postgres") {
            while !over.load(Ordering::SeqCst) {
                let Ok(rows) = db.query(
                    "SELECT id::text, posts_listing_resume_after FROM pullsync.workspace_threads_accounts
                      WHERE posts_listing_resume_after IS NOT NULL",
                    &[],
                ) else {
                    break;
                };
                seen.lock()
                    .unwrap()
                    .extend(rows.iter().map(|r| (r.get(0), r.get(1))));
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The foreign source's items: messages in pages, some no schema accepts.
fn foreign_items(rng: &mut Seeded) -> (Vec<serde_json::Value>, Vec<String>, Vec<String>) {
    let (mut items, mut good, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..200 + rng.below(200) {
        let id = format!("fm{i}");
        let role = if rng.below(40) == 0 {
            "moderator"
        } else {
            "user"
        };
        items.push(foreign_message(&id, role, "low", "2026-06-01T10:00:00Z"));
        if role == "user" {
            good.push(id)
        } else {
            bad.push(id)
        }
    }
    (items, good, bad)
}

/// While the runs are under way: posts deleted and added, an unknown media type, a token
/// replaced. Returns the ids of the deleted posts.
fn change_the_world(sim: &SimServer, rng: &mut Seeded, tally: &mut Tally) -> Vec<String> {
    let mut world = sim.sim.world.write().unwrap();
    let now = world.now;
    let mut deleted = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let account = 1 + rng.below(ACCOUNTS as u64 - 1) as usize;
        let id = world.add_post(account);
        tally.posts_added += 1;
        // Recent posts have their metrics read every run, where a deleted one shows.
        let recent: Vec<String> = world.accounts[account]
            .visible_posts(now)
            .iter()
            .filter(|p| p.published_at > now - 86_400 && p.id != id)
            .map(|p| p.id.clone())
            .collect();
        let victim = recent
            .get(rng.below(recent.len().max(1) as u64) as usize)
            .cloned();
        if let Some(victim) = victim {
            world.remove_post(&victim);
            deleted.push(victim);
            tally.posts_deleted += 1;
        }
    }
    let account = rng.below(ACCOUNTS as u64) as usize;
    if let Some(post) = world.accounts[account]
        .posts
        .iter_mut()
        .find(|p| p.published_at <= now)
    {
        post.media_type = threads_model::MediaType::parse("SPATIAL_VIDEO");
    }
    deleted
}

/// Says where a run is, so that no phase of the soak is silent for long.
fn progress(seed: u64, started: Instant, phase: &str) {
    println!(
        "soak: seed {seed} at {:.0} s: {phase}",
        started.elapsed().as_secs_f64()
    );
}

fn one_run(seed: u64, sim: &SimServer, tally: &mut Tally) {
    let legacy = legacy();
    let mut rng = Seeded(seed);
    let started = Instant::now();
    let step = |phase: &str| progress(seed, started, phase);
    step("the world, the provider and the consumer");
    listing_world(sim, seed, &mut rng, ACCOUNTS);
    api_faults(sim, seed);

    // Threads in it_workers (the workers' database), the feed's provider beside it.
    let mut db = connect_retrying();
    db.batch_execute("DROP EXTENSION IF EXISTS pg_pullsync CASCADE; CREATE EXTENSION pg_pullsync;")
        .unwrap_or_else(|e| {
            panic!(
                "recreate pg_pullsync in {DB} (see {}): {e}",
                server_log().display()
            )
        });
    let accounts = add_sim_accounts(&mut db, sim, WORKSPACE);
    if !legacy {
        // One token near its end, old enough to be refreshed during the run.
        db.execute(
            "UPDATE pullsync.workspace_threads_tokens SET expires_at = now() + interval '2 days',
                    issued_at = now() - interval '2 days'
              WHERE workspace_threads_account_id = $1",
            &[&accounts[2].0],
        )
        .unwrap();
    }
    let messages = 2_000 + rng.below(2_000) as i32;
    db.execute(
        "SELECT pullsync.feed_add_consumer('soak', $1, 1000000)",
        &[&KEY],
    )
    .unwrap();
    db.execute(
        "INSERT INTO pullsync.conversations (id, user_id, started_at, updated_at)
         SELECT 'c' || g, 'u' || g % 7, now() - g * interval '1 min', now() FROM generate_series(1, $1 / 20) g",
        &[&messages],
    )
    .unwrap();
    db.execute(
        "INSERT INTO pullsync.conversation_messages (id, conversation_id, role, content_redacted, created_at, updated_at)
         SELECT 'm' || g, 'c' || (g % ($1 / 20) + 1), 'user', 'text ' || g, now() - g * interval '1 s', now()
           FROM generate_series(1, $1) g",
        &[&messages],
    )
    .unwrap();
    let faults = FeedFaults {
        server_error: 0.05,
        throttled: 0.02,
        hang: 0.01,
        malformed: 0.01,
    };
    // Each consumer source reaches its provider through a proxy that injects the faults.
    let proxy = FaultProxy::start(&feed_url(), faults, seed);
    let (foreign_messages, good, bad) = foreign_items(&mut rng);
    let foreign = paged_foreign_provider(Vec::new(), foreign_messages, 40);
    let foreign_proxy = FaultProxy::start(&foreign.base_url, faults, seed ^ 0xF0);
    let mut consumer = fresh_extension_database(CONSUMER_DB);
    let mut sources = vec!["soak"];
    let mut add_source = |name: &str, url: &str| {
        consumer
            .execute(
                "SELECT pullsync.feed_add_source($1, $2, $3, batch_size => 25, rate_limit => 10000,
                                                 timeout => '2 s', max_retries => 2, retry_delay => '10 ms')",
                &[&name, &url, &KEY],
            )
            .unwrap();
    };
    add_source("soak", &proxy.url);
    if !legacy {
        add_source(FOREIGN, &foreign_proxy.url);
        sources.push(FOREIGN);
    }
    drop(consumer);
    wait_for(
        &mut db,
        &format!("two pg_pullsync workers (see {})", server_log().display()),
        Duration::from_secs(60),
        |db| worker_pids(db).len() >= 2,
    );

    let job = queue(&mut db);
    let chaos_over = Arc::new(AtomicBool::new(false));
    let feed = {
        let over = chaos_over.clone();
        let sources = sources.into_iter().map(String::from).collect();
        std::thread::spawn(move || {
            pull_until_complete(sources, over, || try_connect_as(CONSUMER_DB, "postgres"))
        })
    };
    let run_over = Arc::new(AtomicBool::new(false));
    let cut_listings = Arc::new(Mutex::new(BTreeSet::new()));
    let watcher = (!legacy).then(|| {
        let (over, seen) = (run_over.clone(), cut_listings.clone());
        std::thread::spawn(move || watch_listings(over, seen))
    });
    // One or two kill -9 of a worker and two immediate restarts, in a seeded order, while
    // the provider keeps updating rows and the world changes.
    let mut events = vec!["kill", "restart", "restart", "world"];
    if rng.below(2) == 1 {
        events.push("kill");
    }
    if !legacy {
        events.extend(["token", "refresh", "second run"]);
    }
    for i in (1..events.len()).rev() {
        events.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut deleted = Vec::new();
    let mut replaced = None;
    let mut jobs = vec![job];
    step(&format!(
        "run {job} queued; the chaos: {}",
        events.join(", ")
    ));
    for event in events {
        std::thread::sleep(Duration::from_millis(200 + rng.below(1_500)));
        if !finished(&mut db, job) {
            tally.mid_run += 1;
        }
        let _ = db.execute(
            "UPDATE pullsync.conversation_messages SET content_redacted = content_redacted || '+', updated_at = now()
              WHERE id IN (SELECT 'm' || (1 + (random() * 1000)::int) FROM generate_series(1, 20))",
            &[],
        );
        step(event);
        match event {
            "kill" => {
                if let Some(pid) = worker_pids(&mut db).first() {
                    std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status()
                        .unwrap();
                    tally.kills += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            "restart" => {
                pullsync_tests::server::restart("immediate");
                tally.restarts += 1;
            }
            "world" if !legacy => deleted.extend(change_the_world(sim, &mut rng, tally)),
            "world" => {
                let account = 1 + rng.below(ACCOUNTS as u64 - 1) as usize;
                sim.sim.world.write().unwrap().add_post(account);
                tally.posts_added += 1;
            }
            "token" => {
                // Meta replaces the token (a password change): the stored one is refused.
                let index = 3 + rng.below(ACCOUNTS as u64 - 3) as usize;
                sim.sim.world.write().unwrap().issue_token(
                    index,
                    0,
                    threads_model::TOKEN_LIFETIME_SECS,
                );
                replaced = Some(index);
            }
            "refresh" => {
                let _ = db.query_one("SELECT pullsync.threads_refresh_tokens()", &[]);
            }
            _ => {
                if let Ok(row) = db.query_one("SELECT pullsync.threads_scheduled_sync()", &[]) {
                    jobs.extend(row.get::<_, serde_json::Value>(0)["job_id"].as_i64());
                }
            }
        }
        db = connect_retrying();
    }
    chaos_over.store(true, Ordering::SeqCst);

    step(&format!("waiting for the faulty runs {jobs:?} to end"));
    for job in &jobs {
        wait_for(
            &mut db,
            &format!(
                "the faulty run {job} to end (SELECT pullsync.job_status({job}) in {DB}; see {})",
                server_log().display()
            ),
            Duration::from_secs(300),
            |db| finished(db, *job),
        );
    }
    run_over.store(true, Ordering::SeqCst);
    if let Some(watcher) = watcher {
        wait::join(
            watcher,
            "the listing watcher to stop",
            Duration::from_secs(120),
        );
    }
    tally.api_faults += api_faults_fired(sim);
    // Faults off, clock unchanged: further runs fetch what the faults kept from this one.
    // The account whose token was replaced is connected again, as its user would.
    sim.clear_faults();
    if !legacy {
        reconnect_refused_accounts(&mut db, sim, WORKSPACE, replaced);
    }
    let log = format!("{DB}, {}", server_log().display());
    let (found, cycles) = settle_threads(&mut db, sim, WORKSPACE, &deleted, legacy, &log, &step);
    tally.recovery_cycles += cycles;
    tally.differences.extend(
        found
            .into_iter()
            .map(|d| format!("seed {seed}, Threads: {d}")),
    );
    let cut = cut_listings.lock().unwrap().len() as u64;
    tally.listings_resumed += cut;
    if cut > 0 && !legacy {
        let unfinished = unfinished_listings(&mut db);
        if unfinished > 0 {
            tally.differences.push(format!(
                "seed {seed}, Threads: {unfinished} listings never finished"
            ));
        }
    }

    step("waiting for a completed feed pull of each source");
    wait::join(
        feed,
        "the feed thread: pulls until one of each source completes after the chaos",
        FEED_AFTER_CHAOS * 2,
    );
    step("comparing the feed rows");
    tally.feed_faults += proxy.fired() + foreign_proxy.fired();
    let mut consumer = connect_retrying_to(CONSUMER_DB);
    let provided = feed::rows(&mut db);
    let pulled = if legacy {
        feed::rows(&mut consumer)
    } else {
        feed::rows_from(&mut consumer, "soak")
    };
    tally.differences.extend(feed_differences(
        &format!("seed {seed}, feed"),
        &provided,
        &pulled,
    ));
    if !legacy {
        let stored: Vec<String> = feed::rows_from(&mut consumer, FOREIGN)
            .1
            .into_keys()
            .collect();
        let mut expected = good.clone();
        expected.sort();
        if stored != expected {
            tally.differences.push(format!(
                "seed {seed}, feed {FOREIGN}: {} messages stored, {} expected",
                stored.len(),
                expected.len()
            ));
        }
        let held: Vec<String> = consumer
            .query(
                "SELECT item_id FROM pullsync.feed_quarantine WHERE consumer_id = $1 AND resolved_at IS NULL ORDER BY item_id",
                &[&FOREIGN],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut expected_bad = bad.clone();
        expected_bad.sort();
        tally.quarantined += held.len() as u64;
        if held != expected_bad {
            tally.differences.push(format!(
                "seed {seed}, feed {FOREIGN}: quarantined {held:?}, expected {expected_bad:?} once each"
            ));
        }
    }
}

#[test]
#[ignore = "restarts the cluster: cargo xtask test and cargo xtask soak run it in a phase of its own"]
fn seeded_fault_runs_end_with_the_data_of_a_clean_run() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (runs, first_seed) = (env("PULLSYNC_SOAK_RUNS", 3), env("PULLSYNC_SOAK_SEED", 1));
    let port = pullsync_tests::ports::worker_sim_port();
    let sim = SimServer::start_on(&SimConfig::small(1, 1), port, 2).unwrap_or_else(|e| {
        panic!("the workers' simulator on port {port} (taken by another server?): {e}")
    });
    // A hang costs one second, not the default thirty. A silent worker's units and a run
    // without progress are taken back after ten seconds, so both happen within a run.
    let settings: &[&str] = if legacy() {
        &["pullsync.http_timeout = '1s'"]
    } else {
        &[
            "pullsync.http_timeout = '1s'",
            "pullsync.unit_timeout = '10s'",
            "pullsync.lock_ttl = '10s'",
        ]
    };
    let mut admin = connect(DB);
    for setting in settings {
        admin
            .batch_execute(&format!("ALTER SYSTEM SET {setting}"))
            .unwrap();
    }
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let mut tally = Tally::default();
    for seed in first_seed..first_seed + runs {
        let started = std::time::Instant::now();
        let before = tally.differences.len();
        one_run(seed, &sim, &mut tally);
        let found = &tally.differences[before..];
        println!(
            "soak: seed {seed} done in {:.1} s: {} differences{}; so far {} Threads API faults, {} feed HTTP faults, {} kill -9, {} restarts, {} listings cut short and resumed",
            started.elapsed().as_secs_f64(),
            found.len(),
            if found.is_empty() { String::new() } else { format!(" (first: {})", found[..found.len().min(3)].join("; ")) },
            tally.api_faults,
            tally.feed_faults,
            tally.kills,
            tally.restarts,
            tally.listings_resumed
        );
    }
    let mut admin = connect_retrying();
    for setting in settings {
        let name = setting.split(' ').next().unwrap();
        admin
            .batch_execute(&format!("ALTER SYSTEM RESET {name}"))
            .unwrap();
    }
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    println!(
        "soak: {runs} runs{}, {} Threads API faults, {} feed HTTP faults, {} kill -9, {} immediate restarts ({} during a sync), {} listings cut short and resumed, {} posts deleted and {} added during runs, {} feed items quarantined, {} recovery cycles, {} differences",
        if legacy() { " (0.1.0 mode)" } else { "" },
        tally.api_faults,
        tally.feed_faults,
        tally.kills,
        tally.restarts,
        tally.mid_run,
        tally.listings_resumed,
        tally.posts_deleted,
        tally.posts_added,
        tally.quarantined,
        tally.recovery_cycles,
        tally.differences.len()
    );
    let mut per_seed: std::collections::BTreeMap<&str, usize> = Default::default();
    for d in &tally.differences {
        *per_seed
            .entry(d.split(',').next().unwrap_or(d))
            .or_default() += 1;
    }
    assert!(
        tally.differences.is_empty(),
        "differences per seed: {per_seed:?}; the first: {:#?}",
        &tally.differences[..tally.differences.len().min(20)]
    );
}
