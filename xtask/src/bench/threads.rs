//! Threads cycles: a first full sync and the incremental cycle 15 simulated minutes later,
//! for pg_pullsync with its bench settings and for dlt (default, tuned and rest_api); and the seed's
//! design (its own program) invoked every 15 simulated minutes until the fleet is synced.

use super::cpu::ClusterCpu;
use super::memory::{Peak, Sampler};
use super::peer::Variant;
use super::seed::FleetRun;
use super::{peer, seed, Bench, Plan, DB, SIM_PORT};
use crate::process::Result;
use crate::simulator::http;
use std::collections::BTreeMap;
use std::process::Child;
use std::time::Instant;

/// pg_pullsync as the bench runs it: two workers, 128 requests in flight each (the cycle
/// waits on API latency, not on the CPU; see the profile notes in BENCHMARKS.md).
pub const PULLSYNC: &[(&str, &str)] = &[
    ("pullsync.workers", "2"),
    ("pullsync.http_concurrency", "128"),
    ("pullsync.batch_size", "256"),
    ("pullsync.batch_delay", "0"),
    ("pullsync.account_concurrency", "0"),
];

/// The simulated API's latency: 50 ms plus 0–20 ms, so 60 ms on average.
const LATENCY: [&str; 4] = ["--latency-ms", "50", "--jitter-ms", "20"];
const MEAN_LATENCY_SECS: f64 = 0.060;
/// One cron interval of simulated time between the two cycles.
const INTERVAL_SECS: u32 = 900;

#[derive(Debug, Clone, Copy)]
pub struct Cycle {
    pub seconds: f64,
    pub requests: u64,
    pub rows: u64,
    pub peak: Peak,
    /// CPU seconds of the cluster's processes (pg_pullsync's runs only)
    pub cpu_seconds: Option<f64>,
    /// The most requests the design has in flight (pg_pullsync's runs only)
    pub in_flight: Option<usize>,
}

impl Cycle {
    /// The time the requests take at the mean latency with `in_flight` always busy: no
    /// run of the design can be faster.
    pub fn latency_floor(&self) -> Option<f64> {
        self.in_flight
            .map(|n| self.requests as f64 * MEAN_LATENCY_SECS / n as f64)
    }
    pub fn over_floor(&self) -> Option<f64> {
        self.latency_floor().map(|floor| self.seconds / floor)
    }
    pub fn cpu_ms_per_1000_requests(&self) -> Option<f64> {
        self.cpu_seconds
            .map(|cpu| cpu * 1e6 / self.requests.max(1) as f64)
    }
    pub fn cpu_ms_per_1000_rows(&self) -> Option<f64> {
        self.cpu_seconds
            .map(|cpu| cpu * 1e6 / self.rows.max(1) as f64)
    }
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub first: Cycle,
    pub incremental: Cycle,
}

/// Runs of two designs on the same workload, index i of each made side by side.
pub struct Pair {
    pub accounts: usize,
    pub ours: Vec<Run>,
    pub theirs: Vec<Run>,
}

/// The seed's program and pg_pullsync on the same fleet, index i of each side by side.
pub struct SeedPair {
    pub accounts: usize,
    pub ours: Vec<Run>,
    pub theirs: Vec<FleetRun>,
}

pub struct Results {
    /// accounts → pg_pullsync's runs
    pub scaling: BTreeMap<usize, Vec<Run>>,
    pub seed: SeedPair,
    /// dlt as a competent user tunes it, as first written, and declared as `rest_api`
    /// resources; the headline is the faster of tuned and rest_api
    pub peer: Pair,
    pub peer_default: Pair,
    pub peer_rest_api: Pair,
}

pub fn measure(bench: &Bench, plan: &Plan) -> Result<Results> {
    let mut sizes: Vec<usize> = plan.threads_accounts.clone();
    sizes.extend([plan.seed_accounts, plan.peer_accounts]);
    sizes.sort_unstable();
    sizes.dedup();
    let mut ours: BTreeMap<usize, Vec<Run>> = BTreeMap::new();
    let (mut seed, mut tuned, mut default, mut rest_api) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 1..=plan.reps {
        for &accounts in &sizes {
            let world = World::new(bench, accounts, plan.posts_per_account);
            println!("\nxtask: bench run {rep}: pg_pullsync, {accounts} accounts");
            ours.entry(accounts)
                .or_default()
                .push(world.pullsync_run(bench, PULLSYNC)?);
            if accounts == plan.seed_accounts {
                println!("xtask: bench run {rep}: the seed's design, {accounts} accounts");
                seed.push(world.seed_run(bench)?);
            }
            if accounts == plan.peer_accounts {
                for (variant, runs) in [
                    (Variant::Tuned, &mut tuned),
                    (Variant::Default, &mut default),
                    (Variant::RestApi, &mut rest_api),
                ] {
                    println!(
                        "xtask: bench run {rep}: dlt {}, {accounts} accounts",
                        variant.name()
                    );
                    runs.push(world.dlt_run(bench, variant)?);
                }
            }
        }
    }
    let pair = |accounts: usize, theirs: Vec<Run>| Pair {
        accounts,
        ours: ours[&accounts].clone(),
        theirs,
    };
    Ok(Results {
        seed: SeedPair {
            accounts: plan.seed_accounts,
            ours: ours[&plan.seed_accounts].clone(),
            theirs: seed,
        },
        peer: pair(plan.peer_accounts, tuned),
        peer_default: pair(plan.peer_accounts, default),
        peer_rest_api: pair(plan.peer_accounts, rest_api),
        scaling: ours
            .iter()
            .filter(|(a, _)| plan.threads_accounts.contains(a))
            .map(|(a, runs)| (*a, runs.clone()))
            .collect(),
    })
}

/// One pg_pullsync run of `accounts` × `posts` with the bench settings.
pub fn pullsync_once(bench: &Bench, accounts: usize, posts: usize) -> Result<Run> {
    println!("\nxtask: pg_pullsync, {accounts} accounts × {posts} posts");
    World::new(bench, accounts, posts).pullsync_run(bench, PULLSYNC)
}

/// A simulated world of `accounts` × `posts`, the same for every run of one size: each
/// run starts its own simulator from the same seed.
pub struct World {
    accounts: usize,
    args: Vec<String>,
    log: std::path::PathBuf,
}

impl World {
    pub fn new(bench: &Bench, accounts: usize, posts: usize) -> World {
        let mut args: Vec<String> = [
            "--accounts",
            &accounts.to_string(),
            "--posts",
            &posts.to_string(),
            "--seed",
            "7",
            "--threads",
            "2",
        ]
        .map(String::from)
        .to_vec();
        args.extend(LATENCY.map(String::from));
        World {
            accounts,
            args,
            log: bench.home.join("threads-sim.log"),
        }
    }

    pub fn simulator(&self) -> Result<Simulator> {
        Ok(Simulator(crate::simulator::spawn(
            "release", SIM_PORT, &self.args, &self.log,
        )?))
    }

    fn pullsync_run(&self, bench: &Bench, settings: &[(&str, &str)]) -> Result<Run> {
        bench.configure(settings)?;
        let _sim = self.simulator()?;
        fresh_extension_with_accounts(bench)?;
        let cpu = ClusterCpu::of(
            bench
                .cluster
                .postmaster()
                .ok_or("the bench cluster is down")?,
        )?;
        let in_flight = in_flight(settings)?;
        let first = pullsync_cycle(bench, &cpu, in_flight)?;
        advance_clock()?;
        let incremental = pullsync_cycle(bench, &cpu, in_flight)?;
        report("pg_pullsync", self.accounts, &first, &incremental);
        Ok(Run { first, incremental })
    }

    fn dlt_run(&self, bench: &Bench, variant: Variant) -> Result<Run> {
        let _sim = self.simulator()?;
        let pipeline = peer::Pipeline::fresh(bench, variant)?;
        let first = timed_cycle(|| pipeline.run(), || pipeline.rows(), None)?;
        advance_clock()?;
        let incremental = timed_cycle(|| pipeline.run(), || pipeline.rows(), None)?;
        report(
            &format!("dlt {}", variant.name()),
            self.accounts,
            &first,
            &incremental,
        );
        Ok(Run { first, incremental })
    }

    /// The seed's program on the same tables (pg_pullsync's workers stay idle: nothing is
    /// queued), invoked until every account was synced once.
    fn seed_run(&self, bench: &Bench) -> Result<FleetRun> {
        let _sim = self.simulator()?;
        fresh_extension_with_accounts(bench)?;
        let accounts_file = bench.home.join("seed-accounts.json");
        std::fs::write(
            &accounts_file,
            http(SIM_PORT, "GET", "/admin/accounts", "")?,
        )?;
        seed::run_fleet(bench, &accounts_file)
    }
}

/// A fresh pg_pullsync in the bench database with every account of the simulator, added
/// by `threads_add_account` as a user would.
pub fn fresh_extension_with_accounts(bench: &Bench) -> Result<()> {
    bench.cluster.psql_quiet(
        DB,
        "DROP EXTENSION IF EXISTS pg_pullsync CASCADE; CREATE EXTENSION pg_pullsync;",
    )?;
    let accounts = http(SIM_PORT, "GET", "/admin/accounts", "")?;
    bench.cluster.psql_quiet(
        DB,
        &format!(
            "SELECT count(pullsync.threads_add_account('b0000000-0000-4000-8000-000000000001',
                    a->>'user_id', a->>'username', a->>'token', now() + interval '58 days'))
               FROM jsonb_array_elements($accounts${accounts}$accounts$::jsonb) a;"
        ),
    )
}

/// Kills the simulator when the run ends, however it ends.
pub struct Simulator(Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn advance_clock() -> Result<()> {
    advance_clock_by(INTERVAL_SECS)
}

pub fn advance_clock_by(seconds: u32) -> Result<()> {
    crate::simulator::advance_clock(SIM_PORT, seconds.into())
}

fn report(who: &str, accounts: usize, first: &Cycle, incremental: &Cycle) {
    for (name, c) in [("first", first), ("incremental", incremental)] {
        println!(
            "xtask: {who} {accounts} accounts, {name} cycle: {:.1} s, {} requests ({:.0}/s), {} rows ({:.0}/s), worker peak {} KiB own / {} KiB RSS",
            c.seconds,
            c.requests,
            c.requests_per_second(),
            c.rows,
            c.rows_per_second(),
            c.peak.anon_kib,
            c.peak.hwm_kib
        );
        if let (Some(cpu), Some(over)) = (c.cpu_seconds, c.over_floor()) {
            println!(
                "xtask:   CPU {cpu:.1} s ({:.0} ms per 1,000 requests), {over:.2}× the latency floor",
                c.cpu_ms_per_1000_requests().unwrap_or(0.0)
            );
        }
    }
}

/// workers × http_concurrency of a pg_pullsync setting.
pub fn in_flight(settings: &[(&str, &str)]) -> Result<usize> {
    let value = |name: &str| -> Result<usize> {
        let (_, v) = settings
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| format!("the bench settings lack {name}"))?;
        Ok(v.parse()?)
    };
    Ok(value("pullsync.workers")? * value("pullsync.http_concurrency")?)
}

/// Measures one cycle of `work`: wall time, API requests the simulator answered, rows
/// added (by `rows`), the workers' memory peak and, given the cluster, its CPU time.
fn timed_cycle(
    work: impl FnOnce() -> Result<()>,
    rows: impl Fn() -> Result<u64>,
    cpu: Option<&ClusterCpu>,
) -> Result<Cycle> {
    let before = rows()?;
    http(SIM_PORT, "POST", "/admin/counters/reset", "")?;
    let sampler = Sampler::start();
    let cpu_before = cpu.map(ClusterCpu::seconds);
    let started = Instant::now();
    work()?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu.zip(cpu_before).map(|(c, b)| c.seconds() - b);
    let peak = sampler.finish();
    let counters: serde_json::Value =
        serde_json::from_str(&http(SIM_PORT, "GET", "/admin/counters", "")?)?;
    Ok(Cycle {
        seconds,
        requests: counters["total"].as_u64().ok_or("no request count")?,
        rows: rows()? - before,
        peak,
        cpu_seconds,
        in_flight: None,
    })
}

const THREADS_ROWS: &str = "SELECT (SELECT count(*) FROM pullsync.workspace_threads_posts)
     + (SELECT count(*) FROM pullsync.workspace_threads_post_metrics)
     + (SELECT count(*) FROM pullsync.workspace_threads_post_metrics_deltas)
     + (SELECT count(*) FROM pullsync.workspace_threads_account_insights)
     + (SELECT count(*) FROM pullsync.workspace_threads_account_insights_deltas)";

/// Queues a scheduled run and waits for the workers to finish it.
fn pullsync_cycle(bench: &Bench, cpu: &ClusterCpu, in_flight: usize) -> Result<Cycle> {
    let rows = || -> Result<u64> { Ok(bench.query(DB, THREADS_ROWS)?.parse()?) };
    let cycle = timed_cycle(|| run_cycle(bench), rows, Some(cpu))?;
    Ok(Cycle {
        in_flight: Some(in_flight),
        ..cycle
    })
}

/// Queues a scheduled run and waits until it completed.
pub fn run_cycle(bench: &Bench) -> Result<()> {
    let job = bench.query(DB, "SELECT pullsync.threads_scheduled_sync()->>'job_id'")?;
    if job.is_empty() {
        return Err("the run was not queued".into());
    }
    // One session polls, so the waiting costs no process starts.
    bench.query(
        DB,
        &format!(
            "DO $$ BEGIN
               WHILE pullsync.job_status({job})->>'state' IN ('queued', 'running') LOOP
                 PERFORM pg_sleep(0.05);
               END LOOP;
             END $$"
        ),
    )?;
    let status = bench.query(
        DB,
        &format!("SELECT pullsync.job_status({job})->'result'->>'status'"),
    )?;
    if status == "completed" {
        Ok(())
    } else {
        let result = bench.query(DB, &format!("SELECT pullsync.job_status({job})"))?;
        Err(format!("the run ended {status}: {result}").into())
    }
}
