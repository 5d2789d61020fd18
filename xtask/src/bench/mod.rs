//! `cargo xtask bench`: pg_pullsync against the machine's limit, the seed's design and a
//! peer (dlt), on one cluster of its own. Every figure is the median of `reps` runs with
//! min–max; comparisons pair runs made side by side. Writes docs/BENCHMARKS.md and the
//! scaling chart (with `--quick`: small sizes, written under target/bench/ only).

mod attack;
mod chart;
mod cpu;
mod feed;
mod growth;
mod memory;
mod peer;
mod report;
mod rest;
mod seed;
mod stats;
mod threads;

use crate::cluster::Cluster;
use crate::install::{build_and_install, Profile};
use crate::pg_tree::PgTree;
use crate::prereqs;
use crate::process::{cmd, output_of, Result};
use crate::workspace::{build_release_bin, workspace_root};
use std::path::PathBuf;

const BENCH_PORT: u16 = 28820;
const SIM_PORT: u16 = 28821;
const FEED_PORT: u16 = 28822;
/// The database the workers and the feed server serve; the Threads runs and the feed
/// provider live here.
const DB: &str = "bench";
/// The feed consumer's database.
const CONSUMER_DB: &str = "bench_consumer";

/// What one invocation measures.
pub struct Plan {
    pub reps: usize,
    pub threads_accounts: Vec<usize>,
    pub posts_per_account: usize,
    /// Accounts of the side-by-side runs against the seed's settings and against dlt,
    /// which are slow by design.
    pub seed_accounts: usize,
    pub peer_accounts: usize,
    pub feed_messages: Vec<usize>,
    /// Fleets of `SCALE_POSTS` posts per account, one run each: the largest fleet and the
    /// worker memory against fleet size.
    pub scale_accounts: Vec<usize>,
    pub month: growth::Month,
    pub quick: bool,
}

/// Posts per account of the scale runs.
pub const SCALE_POSTS: usize = 20;

impl Plan {
    fn full() -> Plan {
        Plan {
            reps: 3,
            threads_accounts: vec![100, 1_000, 10_000],
            posts_per_account: 100,
            seed_accounts: 100,
            peer_accounts: 20,
            feed_messages: vec![10_000, 100_000, 1_000_000],
            scale_accounts: vec![1_000, 10_000, 100_000],
            // One cycle a simulated day: at 10,000 accounts each cycle takes about half a
            // minute whatever it finds, and the whole run has to fit a working session.
            month: growth::Month {
                accounts: 10_000,
                posts: SCALE_POSTS,
                days: 30,
                step_hours: 24,
            },
            quick: false,
        }
    }

    fn quick() -> Plan {
        Plan {
            reps: 3,
            threads_accounts: vec![10, 100],
            posts_per_account: 100,
            seed_accounts: 10,
            peer_accounts: 5,
            feed_messages: vec![1_000, 10_000],
            scale_accounts: vec![100, 300],
            month: growth::Month {
                accounts: 50,
                posts: 20,
                days: 2,
                step_hours: 12,
            },
            quick: true,
        }
    }
}

/// The bench cluster and where results go.
pub struct Bench {
    pub cluster: Cluster,
    pub home: PathBuf,
}

impl Bench {
    fn create() -> Result<Bench> {
        let home = workspace_root().join("target/bench");
        std::fs::create_dir_all(&home)?;
        // The cluster lives where the postgres OS user can reach it, whatever the checkout.
        let cluster = Cluster::new(
            crate::pg_tree::cluster_home("bench"),
            BENCH_PORT,
            bench_tree(),
        );
        cluster.remove()?;
        for (port, what) in [
            (BENCH_PORT, "the bench cluster"),
            (SIM_PORT, "the bench's Threads simulator"),
            (FEED_PORT, "the bench cluster's feed server"),
        ] {
            crate::ports::ensure_free(port, what)?;
        }
        let key = output_of(cmd("sh").args(["-c", "head -c 32 /dev/urandom | base64"]))
            .ok_or("cannot generate an encryption key")?;
        // Room for the runs: the data of 10,000 accounts stays in memory, checkpoints are
        // rare. The pullsync settings each run uses are set by ALTER SYSTEM.
        let settings = format!(
            "{}pullsync.database = '{DB}'\n\
             pullsync.threads_api_url = 'http://127.0.0.1:{SIM_PORT}/v1.0'\n\
             pullsync.feed_listen = '127.0.0.1:{FEED_PORT}'\n\
             shared_buffers = '2GB'\n\
             max_wal_size = '16GB'\n\
             checkpoint_timeout = '30min'\n",
            crate::cluster::cluster_settings(crate::pg_tree::Major::Pg15)
        );
        cluster.create(key.trim(), &settings)?;
        cluster.start()?;
        cluster.psql(
            "postgres",
            &format!("CREATE DATABASE {DB}; CREATE DATABASE {CONSUMER_DB};"),
        )?;
        Ok(Bench { cluster, home })
    }

    /// Sets `settings` (name, value) by ALTER SYSTEM and restarts, so the workers start
    /// fresh (their memory peaks belong to one run) and read the settings.
    fn configure(&self, settings: &[(&str, &str)]) -> Result<()> {
        let sql: String = settings
            .iter()
            .map(|(name, value)| format!("ALTER SYSTEM SET {name} = '{value}';\n"))
            .collect();
        self.cluster.psql_quiet("postgres", &sql)?;
        self.cluster.restart()
    }

    fn query(&self, database: &str, sql: &str) -> Result<String> {
        self.cluster
            .query(database, sql)
            .ok_or_else(|| format!("query failed in {database}: {sql}").into())
    }
}

/// The benchmarks' own installation: a release build, apart from the tests' debug one.
fn bench_tree() -> PgTree {
    PgTree::private(crate::pg_tree::Major::Pg15, "15-bench")
}

pub fn bench(args: &[String]) -> Result<()> {
    let plan = if args.iter().any(|a| a == "--quick") {
        Plan::quick()
    } else {
        Plan::full()
    };
    prereqs::ensure(&[crate::pg_tree::Major::Pg15])?;
    if crate::args::flag_value(args, "--only")? == Some("attack") {
        return attack_only(&plan);
    }
    if crate::args::flag_value(args, "--only")? == Some("rest-memory") {
        return crate::run::rest_memory();
    }
    prereqs::ensure_bench()?;
    if crate::args::flag_value(args, "--only")? == Some("rest") {
        return rest::run(args);
    }
    if crate::args::flag_value(args, "--only")? == Some("threads") {
        return threads_only(args);
    }
    let tree = bench_tree();
    tree.ensure_copied()?;
    build_and_install(&tree, Profile::Release)?;
    build_release_bin("threads-sim")?;
    build_release_bin("sim-bench")?;
    peer::prepare(&workspace_root().join("target/bench"))?;
    seed::prepare()?;

    let bench = Bench::create()?;
    let simulator = simulator_throughput(plan.reps)?;
    let threads = threads::measure(&bench, &plan)?;
    let scale = plan
        .scale_accounts
        .iter()
        .map(|&n| Ok((n, threads::pullsync_once(&bench, n, SCALE_POSTS)?)))
        .collect::<Result<Vec<_>>>()?;
    let growth = growth::measure(&bench, plan.month)?;
    let feed = feed::measure(&bench, &plan)?;
    let attack = attack::measure(&plan, feed::KEY)?;
    bench.cluster.stop()?;

    let results = report::Results {
        simulator,
        threads,
        scale,
        growth,
        feed,
        attack,
    };
    let (markdown, chart, growth_chart) = if plan.quick {
        (
            bench.home.join("BENCHMARKS.md"),
            bench.home.join("scaling.png"),
            bench.home.join("growth.png"),
        )
    } else {
        let docs = workspace_root().join("docs");
        (
            docs.join("BENCHMARKS.md"),
            docs.join("benchmarks-scaling.png"),
            docs.join("benchmarks-growth.png"),
        )
    };
    chart::draw(&results, &chart)?;
    chart::draw_growth(&results.growth, &growth_chart)?;
    let existing = std::fs::read_to_string(&markdown).unwrap_or_default();
    let text =
        report::markdown(&results, &plan, &chart, &growth_chart) + report::kept_part(&existing);
    std::fs::write(&markdown, text)?;
    println!(
        "\nxtask: wrote {}, {} and {}",
        markdown.display(),
        chart.display(),
        growth_chart.display()
    );
    Ok(())
}

/// `cargo xtask bench --only attack`: the feed server under attack on its own, over the
/// feed benchmark's smallest provider; prints the figures (docs/BENCHMARKS.md is written
/// by the full run only).
fn attack_only(plan: &Plan) -> Result<()> {
    let tree = bench_tree();
    tree.ensure_copied()?;
    build_and_install(&tree, Profile::Release)?;
    let bench = Bench::create()?;
    feed::provide_for_attack(&bench)?;
    let latency = attack::measure(plan, feed::KEY)?;
    bench.cluster.stop()?;
    println!(
        "xtask: feed page latency under attack over idle: {}× (idle {} ms, attacked {} ms; {} wrong-key requests, {} throttled)",
        latency.slowdown().show(2),
        stats::Summary::of(&latency.idle_ms).show(2),
        stats::Summary::of(&latency.attacked_ms).show(2),
        latency.flood_requests,
        latency.flood_throttled
    );
    Ok(())
}

/// `cargo xtask bench --only threads --accounts N[,N…] [--posts N]`: pg_pullsync's first
/// and incremental cycles at those sizes, once each, printed (for profiling a change;
/// docs/BENCHMARKS.md is written by the full run only).
fn threads_only(args: &[String]) -> Result<()> {
    let number_list = |flag: &str, default: &str| -> Result<Vec<usize>> {
        crate::args::flag_value(args, flag)?
            .unwrap_or(default)
            .split(',')
            .map(|n| {
                n.parse()
                    .map_err(|_| format!("{flag}: {n:?} is not a number").into())
            })
            .collect()
    };
    let accounts = number_list("--accounts", "1000")?;
    let posts = number_list("--posts", "100")?;
    let tree = bench_tree();
    tree.ensure_copied()?;
    build_and_install(&tree, Profile::Release)?;
    build_release_bin("threads-sim")?;
    let bench = Bench::create()?;
    for &n in &accounts {
        threads::pullsync_once(&bench, n, posts[0])?;
    }
    bench.cluster.stop()
}

/// The simulator alone on one server thread: requests/s, one figure per run.
fn simulator_throughput(reps: usize) -> Result<stats::Summary> {
    let binary = workspace_root().join("target/release/sim-bench");
    let mut rates = Vec::new();
    for _ in 0..reps {
        let out =
            output_of(&mut cmd(binary.to_str().expect("utf-8 path"))).ok_or("sim-bench failed")?;
        print!("{out}");
        let rate = out
            .split(": ")
            .nth(2)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .ok_or("cannot read sim-bench output")?;
        rates.push(rate);
    }
    Ok(stats::Summary::of(&rates))
}
