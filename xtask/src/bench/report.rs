//! docs/BENCHMARKS.md from one invocation's results. Everything above the marker line is
//! written anew each time; what follows it (the profile notes) is kept.

use super::growth::{Growth, TABLES};
use super::seed::FleetRun;
use super::stats::{log_log_slope, Summary};
use super::threads::{self, Cycle, Pair, Run};
use super::{attack, feed};
use super::{Plan, SCALE_POSTS};
use crate::process::{cmd, output_of};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

pub const KEEP_MARKER: &str =
    "<!-- Written by hand below this line; cargo xtask bench keeps it. -->";

pub struct Results {
    pub simulator: Summary,
    pub threads: threads::Results,
    /// (accounts, its run) at `SCALE_POSTS` posts per account
    pub scale: Vec<(usize, Run)>,
    pub growth: Growth,
    pub feed: Vec<feed::Size>,
    pub attack: attack::Latency,
}

fn summary(runs: &[Run], figure: impl Fn(&Run) -> f64) -> Summary {
    Summary::of(&runs.iter().map(figure).collect::<Vec<_>>())
}

fn first(runs: &[Run], figure: impl Fn(&Cycle) -> f64) -> Summary {
    summary(runs, |r| figure(&r.first))
}

/// Theirs ÷ ours of a cycle's seconds, pair by pair: how many times faster we are.
fn speedup(pair: &Pair, cycle: impl Fn(&Run) -> &Cycle) -> Summary {
    let ours: Vec<f64> = pair.ours.iter().map(|r| cycle(r).seconds).collect();
    let theirs: Vec<f64> = pair.theirs.iter().map(|r| cycle(r).seconds).collect();
    Summary::of_ratios(&theirs, &ours)
}

/// The faster of dlt tuned and dlt rest_api in the first sync (median), and its name.
fn strongest_peer(t: &threads::Results) -> (&Pair, &'static str) {
    let median = |pair: &Pair| first(&pair.theirs, |c| c.seconds).median;
    if median(&t.peer_rest_api) < median(&t.peer) {
        (&t.peer_rest_api, "rest_api")
    } else {
        (&t.peer, "tuned")
    }
}

/// Accounts synced per second by pg_pullsync's first cycle over those of the seed's first
/// invocation, pair by pair.
fn seed_throughput(seed: &threads::SeedPair) -> Summary {
    let ours: Vec<f64> = seed
        .ours
        .iter()
        .map(|r| seed.accounts as f64 / r.first.seconds)
        .collect();
    let theirs: Vec<f64> = seed
        .theirs
        .iter()
        .map(|f| f.first().accounts_synced as f64 / f.first().seconds)
        .collect();
    Summary::of_ratios(&ours, &theirs)
}

/// (accounts, median first-cycle seconds) per size.
pub fn threads_points(results: &Results) -> Vec<(f64, f64)> {
    results
        .threads
        .scaling
        .iter()
        .map(|(a, runs)| (*a as f64, first(runs, |c| c.seconds).median))
        .collect()
}

/// (messages, median pull seconds, median COPY seconds) per size.
pub fn feed_points(results: &Results) -> Vec<(f64, f64, f64)> {
    results
        .feed
        .iter()
        .map(|s| {
            (
                s.messages as f64,
                Summary::of(&s.pull_seconds).median,
                Summary::of(&s.copy_seconds).median,
            )
        })
        .collect()
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

fn machine() -> String {
    let text = |program: &str, args: &[&str]| {
        output_of(cmd(program).args(args))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "{} cores, {} memory, `{}`; commit `{}`; {}",
        text("nproc", &[]),
        text("sh", &["-c", "free -h | awk '/Mem:/ {print $2}'"]),
        text("uname", &["-sr"]),
        text("git", &["rev-parse", "--short", "HEAD"]),
        text("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    )
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn markdown(results: &Results, plan: &Plan, chart: &Path, growth_chart: &Path) -> String {
    let mut md = String::new();
    intro(&mut md, plan);
    headlines(&mut md, results, plan);
    threads_section(&mut md, results);
    scale_section(&mut md, &results.scale);
    peer_section(&mut md, &results.threads);
    seed_section(&mut md, &results.threads.seed);
    feed_section(&mut md, results);
    attack_section(&mut md, &results.attack);
    chart_section(&mut md, chart);
    growth_section(&mut md, &results.growth, growth_chart);
    simulator_section(&mut md, &results.simulator);
    reproduce_section(&mut md);
    md.push_str(KEEP_MARKER);
    md.push('\n');
    md
}

/// A log-log slope with two decimals, a dash when there are too few points.
fn shown_slope(points: &[(f64, f64)]) -> String {
    log_log_slope(points).map_or("—".into(), |s| format!("{s:.2}"))
}

fn threads_slope(results: &Results) -> String {
    shown_slope(&threads_points(results))
}

fn feed_slope(results: &Results) -> String {
    shown_slope(
        &feed_points(results)
            .iter()
            .map(|p| (p.0, p.1))
            .collect::<Vec<_>>(),
    )
}

fn intro(md: &mut String, plan: &Plan) {
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench{} on this project's 2-core build machine. Every figure is the \
         median of {} runs, with the minimum and maximum in parentheses; every comparison is a ratio \
         of two runs made side by side, and the median of those ratios. The machine is shared, so \
         compare ratios, not absolute times across runs.\n\nMachine: {}.\n",
        if plan.quick { " --quick` (small sizes)" } else { "`" },
        plan.reps,
        machine()
    );
}

fn headlines(md: &mut String, results: &Results, plan: &Plan) {
    let _ = writeln!(md, "## Headlines\n");
    let _ = writeln!(md, "| what | figure |\n|---|---|");
    headline_cycles(md, results, plan);
    headline_comparisons(md, results);
    let _ = writeln!(
        md,
        "| log-log slope of time against accounts / against messages | {} / {} |\n",
        threads_slope(results),
        feed_slope(results)
    );
}

/// The headlines on pg_pullsync's own cycles against the cron interval.
fn headline_cycles(md: &mut String, results: &Results, plan: &Plan) {
    if let Some((accounts, runs)) = results.threads.scaling.iter().next_back() {
        let seconds = first(runs, |c| c.seconds);
        let _ = writeln!(
            md,
            "| first sync of {accounts} accounts × {} posts (50 ms API latency) | {} s — {} the 15-minute cron interval |",
            plan.posts_per_account,
            seconds.show(1),
            if seconds.max < 900.0 { "inside" } else { "**outside**" }
        );
    }
    if let Some((accounts, run)) = results.scale.last() {
        for (name, cycle) in [
            ("first sync", &run.first),
            ("incremental cycle", &run.incremental),
        ] {
            let _ = writeln!(
                md,
                "| {name} of {accounts} accounts × {SCALE_POSTS} posts | {:.1} s — {} the 15-minute cron interval |",
                cycle.seconds,
                if cycle.seconds < 900.0 { "inside" } else { "**outside**" }
            );
        }
    }
}

/// The headlines that compare: against dlt, the seed's design, COPY and an idle server.
fn headline_comparisons(md: &mut String, results: &Results) {
    let t = &results.threads;
    let (strongest, strongest_name) = strongest_peer(t);
    let _ = writeln!(
        md,
        "| pg_pullsync vs dlt {strongest_name} (the faster dlt pipeline), first sync of {} accounts | **{}× faster** |",
        strongest.accounts,
        speedup(strongest, |r| &r.first).show(1)
    );
    let _ = writeln!(
        md,
        "| pg_pullsync vs the seed's design (its own program, 60 s invocations every 15 min), {} accounts: accounts synced per minute | **{}×** |",
        t.seed.accounts,
        seed_throughput(&t.seed).show(1)
    );
    if let Some(size) = results.feed.last() {
        let fraction = size.fraction_of_copy();
        let _ = writeln!(
            md,
            "| feed end to end, {} messages, as a fraction of COPY | **{:.0}%** ({:.0}–{:.0}%) |",
            size.messages,
            fraction.median * 100.0,
            fraction.min * 100.0,
            fraction.max * 100.0
        );
    }
    let _ = writeln!(
        md,
        "| feed page latency under attack ({} slow clients from {} addresses + wrong-key flood) over idle | {}× |",
        attack::SLOW_CLIENTS,
        attack::SLOW_ADDRESSES,
        results.attack.slowdown().show(2)
    );
}

/// Section 1: pg_pullsync's cycles at each size, then their CPU and latency floor.
fn threads_section(md: &mut String, results: &Results) {
    let _ = writeln!(md, "## 1. Threads cycle scaling\n");
    let _ = writeln!(
        md,
        "The simulator (`threads-sim`, 2 threads, on the same machine) answers every API call after \
         50 ms plus 0–20 ms of jitter. Each run starts a fresh simulator from the same seed and a \
         fresh extension, adds the accounts, queues `threads_scheduled_sync()` and waits for the \
         background workers; then the simulated clock moves 15 minutes and the second, incremental \
         cycle runs. Settings: {}. Rows are rows added to posts, metric snapshots, deltas and account \
         insights. Worker memory: the largest `RssAnon` (the worker's own memory) and `VmHWM` (its \
         peak RSS, which also counts shared buffers it touched) over the two workers, sampled every \
         100 ms.\n",
        settings(threads::PULLSYNC)
    );
    threads_table(md, &results.threads.scaling);
    let _ = writeln!(
        md,
        "\nTime against accounts, log-log: slope {} (1 = proportional).\n",
        threads_slope(results)
    );
    cpu_table(md, &results.threads.scaling);
}

/// Picks one cycle of a run.
type Pick = fn(&Run) -> Cycle;

/// Each size's first and incremental cycles, in the order the tables show them.
const CYCLES: [(&str, Pick); 2] = [
    ("first", |r: &Run| r.first),
    ("incremental", |r: &Run| r.incremental),
];

fn threads_table(md: &mut String, scaling: &BTreeMap<usize, Vec<Run>>) {
    let _ = writeln!(
        md,
        "| accounts | cycle | seconds | API requests | requests/s | rows | rows/s | worker own memory, MiB | worker peak RSS, MiB |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (accounts, runs) in scaling {
        for (name, pick) in CYCLES {
            let of = |f: fn(&Cycle) -> f64| summary(runs, |r| f(&pick(r)));
            let _ = writeln!(
                md,
                "| {accounts} | {name} | {} | {} | {} | {} | {} | {} | {} |",
                of(|c| c.seconds).show(1),
                of(|c| c.requests as f64).show(0),
                of(Cycle::requests_per_second).show(0),
                of(|c| c.rows as f64).show(0),
                of(Cycle::rows_per_second).show(0),
                of(|c| mib(c.peak.anon_kib as f64)).show(1),
                of(|c| mib(c.peak.hwm_kib as f64)).show(0),
            );
        }
    }
}

fn cpu_table(md: &mut String, scaling: &BTreeMap<usize, Vec<Run>>) {
    let _ = writeln!(
        md,
        "CPU: the seconds the cluster's processes used during the cycle (the postmaster and \
         everything it started: the workers, backends, WAL writer and checkpointer; not the \
         simulator), read from /proc. Latency floor: the requests at the mean simulated latency \
         (60 ms) with all {in_flight} requests in flight always busy (`pullsync.workers` × \
         `pullsync.http_concurrency`), the time no design with that many in flight can beat.\n",
        in_flight = threads::in_flight(threads::PULLSYNC).unwrap_or(0)
    );
    let _ = writeln!(
        md,
        "| accounts | cycle | CPU, s | CPU ms per 1,000 requests | CPU ms per 1,000 rows | latency floor, s | wall ÷ floor |\n|---:|---|---:|---:|---:|---:|---:|"
    );
    for (accounts, runs) in scaling {
        for (name, pick) in CYCLES {
            let of = |f: fn(&Cycle) -> Option<f64>, digits: usize| {
                let values: Option<Vec<f64>> = runs.iter().map(|r| f(&pick(r))).collect();
                values.map_or("—".into(), |v| Summary::of(&v).show(digits))
            };
            let _ = writeln!(
                md,
                "| {accounts} | {name} | {} | {} | {} | {} | {} |",
                of(|c| c.cpu_seconds, 1),
                of(Cycle::cpu_ms_per_1000_requests, 0),
                of(Cycle::cpu_ms_per_1000_rows, 0),
                of(Cycle::latency_floor, 1),
                of(Cycle::over_floor, 2),
            );
        }
    }
    let _ = writeln!(md);
}

/// Section 1b: one run per fleet size at `SCALE_POSTS` posts per account.
fn scale_section(md: &mut String, scale: &[(usize, Run)]) {
    let _ = writeln!(
        md,
        "## 1b. Scale: {SCALE_POSTS} posts per account, up to the largest fleet\n"
    );
    let _ = writeln!(
        md,
        "One run per fleet size, the same settings and simulator; CPU and floor as above.\n"
    );
    let _ = writeln!(
        md,
        "| accounts | cycle | seconds | API requests | rows | CPU, s | CPU ms per 1,000 requests | wall ÷ floor | worker own memory, MiB | worker peak RSS, MiB |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (accounts, run) in scale {
        for (name, c) in [("first", &run.first), ("incremental", &run.incremental)] {
            let _ = writeln!(
                md,
                "| {accounts} | {name} | {:.1} | {} | {} | {} | {} | {} | {:.1} | {:.0} |",
                c.seconds,
                c.requests,
                c.rows,
                c.cpu_seconds.map_or("—".into(), |v| format!("{v:.1}")),
                c.cpu_ms_per_1000_requests()
                    .map_or("—".into(), |v| format!("{v:.0}")),
                c.over_floor().map_or("—".into(), |v| format!("{v:.2}")),
                mib(c.peak.anon_kib as f64),
                mib(c.peak.hwm_kib as f64),
            );
        }
    }
    let _ = writeln!(md);
}

/// Section 2: pg_pullsync against the three dlt pipelines.
fn peer_section(md: &mut String, t: &threads::Results) {
    let _ = writeln!(md, "## 2. Peer: dlt\n");
    let _ = writeln!(
        md,
        "A dlt pipeline (`xtask/peer/dlt_threads.py`, dlt 1.31 in a virtualenv under target/bench) \
         pulls the same simulated accounts into the same Postgres: dlt's REST client with cursor \
         pagination over each account's posts, an incremental cursor on `timestamp`, a transformer \
         fetching each post's insights, the account's insights, all merged (`write_disposition=merge`). \
         Its time includes starting Python, as a scheduled job would. **Tuned** is the pipeline as a \
         competent user runs it, following dlt's performance guide: the per-post insights call \
         deferred (`@dlt.defer`) into dlt's thread pool, the account insights `parallelized`, one \
         REST client per account, `EXTRACT__WORKERS=32` and `EXTRACT__MAX_PARALLEL_ITEMS=64`; \
         **default** is the same pipeline without them. **rest_api** is the same work declared with \
         dlt's `rest_api` source: one set of resources per account (each has its own token), posts \
         with the cursor paginator and incremental cursor, each post's insights a child resource, \
         every resource `parallelized` and the tuned thread pool; a child resource calls once per \
         parent, so it also asks for the insights of repost facades, which have none. The headline \
         compares with the faster of tuned and rest_api. \
         dlt's incremental cursor skips posts it has seen, so its incremental run refreshes no old \
         post's metrics: it does less work than pg_pullsync's.\n"
    );
    let _ = writeln!(
        md,
        "| {} accounts | pg_pullsync, s | dlt tuned, s | faster by | dlt rest_api, s | faster by | dlt default, s | faster by | requests: tuned / rest_api |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        t.peer.accounts
    );
    for (name, pick) in [
        ("first sync", (|r: &Run| &r.first) as fn(&Run) -> &Cycle),
        ("incremental", |r: &Run| &r.incremental),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {}× | {} | {}× | {} | {}× | {} / {} |",
            summary(&t.peer.ours, |r| pick(r).seconds).show(1),
            summary(&t.peer.theirs, |r| pick(r).seconds).show(1),
            speedup(&t.peer, pick).show(1),
            summary(&t.peer_rest_api.theirs, |r| pick(r).seconds).show(1),
            speedup(&t.peer_rest_api, pick).show(1),
            summary(&t.peer_default.theirs, |r| pick(r).seconds).show(1),
            speedup(&t.peer_default, pick).show(1),
            summary(&t.peer.theirs, |r| pick(r).requests as f64).show(0),
            summary(&t.peer_rest_api.theirs, |r| pick(r).requests as f64).show(0),
        );
    }
    let _ = writeln!(md);
}

/// Section 3: pg_pullsync against the seed's design on the same fleet.
fn seed_section(md: &mut String, seed: &threads::SeedPair) {
    let _ = writeln!(md, "## 3. The seed's design\n");
    let _ = writeln!(
        md,
        "The design pg_pullsync replaces, as its own program (`xtask/peer/seed/seed_sync.js`, \
         Node.js with the `pg` package pinned by its lockfile), on the same simulator and tables: a \
         scheduled edge function invoked every 15 minutes that takes the active accounts (never \
         synced first, then the longest unsynced) in batches of 5, the 5 in parallel and each \
         account's calls one after another (every page of posts, each post's insights, the \
         account's insights, one `sync_logs` row), 2 s between batches, and is cut off by the \
         platform's 60 s limit: accounts it did not reach wait for the next invocation. The \
         invocations run one after another with the simulated clock moved 15 minutes between them, \
         until every account was synced once; the fleet's time counts the 15 minutes between \
         invocations. pg_pullsync's figures are its first cycle on the same fleet.\n"
    );
    let _ = writeln!(
        md,
        "| {} accounts | pg_pullsync | the seed's design | pg_pullsync is better by |\n|---|---:|---:|---:|",
        seed.accounts
    );
    seed_table(md, seed);
}

fn seed_table(md: &mut String, seed: &threads::SeedPair) {
    let accounts_per_minute_ours = summary(&seed.ours, |r| {
        seed.accounts as f64 * 60.0 / r.first.seconds
    });
    let theirs = |figure: fn(&FleetRun) -> f64| {
        Summary::of(&seed.theirs.iter().map(figure).collect::<Vec<_>>())
    };
    let fleet_ours: Vec<f64> = seed.ours.iter().map(|r| r.first.seconds).collect();
    let fleet_theirs: Vec<f64> = seed.theirs.iter().map(FleetRun::fleet_seconds).collect();
    let _ = writeln!(
        md,
        "| accounts synced per minute of work | {} | {} | {}× |",
        accounts_per_minute_ours.show(0),
        theirs(|f| f.first().accounts_synced as f64 * 60.0 / f.first().seconds).show(1),
        seed_throughput(seed).show(1)
    );
    let _ = writeln!(
        md,
        "| accounts synced by the first invocation (60 s) / cycle | {} | {} | |",
        seed.accounts,
        theirs(|f| f.first().accounts_synced as f64).show(0)
    );
    let _ = writeln!(
        md,
        "| invocations until every account was synced once | 1 | {} | |",
        theirs(|f| f.invocations.len() as f64).show(0)
    );
    let _ = writeln!(
        md,
        "| until every account was synced once, s | {} | {} | {}× |\n",
        Summary::of(&fleet_ours).show(1),
        Summary::of(&fleet_theirs).show(0),
        Summary::of_ratios(&fleet_theirs, &fleet_ours).show(0)
    );
}

/// Section 4: the feed's pull against COPY of the same rows.
fn feed_section(md: &mut String, results: &Results) {
    let _ = writeln!(md, "## 4. Feed: end to end against COPY\n");
    let _ = writeln!(
        md,
        "The provider's rows (one conversation per 50 messages) are served by the feed server \
         (`pullsync.feed_listen`) from the bench database and pulled by `feed_pull('bench', \
         'incremental')` in a second database of the same cluster, 5,000 rows a page, each page \
         upserted with its checkpoint. The ceiling is COPY of the same rows from a file into the \
         same emptied tables (same indexes and triggers), measured right after each pull.\n"
    );
    let _ = writeln!(
        md,
        "| messages | rows | pull, s | pull rows/s | COPY, s | COPY rows/s | pull as a fraction of COPY |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    for size in &results.feed {
        let fraction = size.fraction_of_copy();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.0}% ({:.0}–{:.0}%) |",
            size.messages,
            size.rows,
            Summary::of(&size.pull_seconds).show(2),
            size.pull_rows_per_second().show(0),
            Summary::of(&size.copy_seconds).show(2),
            size.copy_rows_per_second().show(0),
            fraction.median * 100.0,
            fraction.min * 100.0,
            fraction.max * 100.0
        );
    }
    let _ = writeln!(
        md,
        "\nTime against messages, log-log: slope {}.\n",
        feed_slope(results)
    );
}

/// Section 4b: a consumer's page latency while slow clients and a wrong-key flood attack.
fn attack_section(md: &mut String, a: &attack::Latency) {
    let _ = writeln!(md, "## 4b. Feed server under attack\n");
    let _ = writeln!(
        md,
        "A consumer's page (`/messages`, 500 rows, keep-alive, from 127.0.0.1, which presented \
         its key before the attack) timed {} times in a row on the idle feed server, then again \
         while {} slow clients from {} other loopback addresses open requests without ever \
         finishing their headers (more than the server's 256 connections) and {} connections \
         from yet another address send wrong keys as fast as they are answered. Median page \
         latency: {} ms idle, {} ms under attack; **{}× slower** (median of the per-run ratios, \
         min–max in parentheses). The flood sent {} requests, {} of them throttled before any \
         key check.\n",
        attack::SAMPLES,
        attack::SLOW_CLIENTS,
        attack::SLOW_ADDRESSES,
        attack::FLOODERS,
        Summary::of(&a.idle_ms).show(2),
        Summary::of(&a.attacked_ms).show(2),
        a.slowdown().show(2),
        a.flood_requests,
        a.flood_throttled
    );
}

/// Section 5: the scaling chart.
fn chart_section(md: &mut String, chart: &Path) {
    let _ = writeln!(md, "## 5. Scaling chart\n");
    let _ = writeln!(
        md,
        "![time against accounts and against messages, log-log]({})\n",
        file_name(chart)
    );
}

fn simulator_section(md: &mut String, simulator: &Summary) {
    let _ = writeln!(md, "## The simulator's own ceiling\n");
    let _ = writeln!(
        md,
        "`sim-bench`: `/{{media-id}}/insights` with no latency, the server on one thread and 64 \
         connections from another: {} requests/s. The Threads figures above are far below it, so \
         the simulator is not what limits them.\n",
        simulator.show(0)
    );
}

fn reproduce_section(md: &mut String) {
    let _ = writeln!(
        md,
        "## Reproduce\n\n```sh\ncargo xtask bench          # everything above, about an hour\ncargo xtask bench --quick  # small sizes, written under target/bench/\n```\n"
    );
}

/// What a daily cleanup of snapshots may take before partitions, dropped whole, are worth
/// their complexity.
const CLEANUP_BUDGET_SECS: f64 = 600.0;

fn growth_section(md: &mut String, growth: &Growth, chart: &Path) {
    let m = growth.month;
    let window = 7;
    let _ = writeln!(md, "## 5b. Storage over a simulated month\n");
    let _ = writeln!(
        md,
        "{} accounts × {} posts (the simulator publishes new posts as its clock moves): a first \
         sync, then {} days with the simulated clock moved {} hours before each cycle and \
         `pullsync.cleanup()` at each day's end, with the default settings (no snapshot \
         retention). Rows and bytes (with indexes and TOAST) at each day's end; per day: the \
         mean over the last {} days. A cycle every {} hours refreshes the youngest posts less \
         often than the 15-minute schedule, which refreshes posts under a day old every cycle; \
         posts older than a day are refreshed hourly, daily or weekly either way.\n",
        m.accounts,
        m.posts,
        m.days,
        m.step_hours,
        window.min(m.days as usize),
        m.step_hours
    );
    let _ = writeln!(
        md,
        "| table | rows after the first sync | rows at the end | rows per day | MiB at the end | MiB per day |\n|---|---:|---:|---:|---:|---:|"
    );
    let (first, last) = (&growth.days[0], &growth.days[growth.days.len() - 1]);
    let (rows, bytes) = (growth.rows_per_day(window), growth.bytes_per_day(window));
    for (i, table) in TABLES.iter().enumerate() {
        let _ = writeln!(
            md,
            "| `{table}` | {} | {} | {:.0} | {:.1} | {:.2} |",
            first.rows[i],
            last.rows[i],
            rows[i],
            last.bytes[i] as f64 / 1048576.0,
            bytes[i] / 1048576.0
        );
    }
    let _ = writeln!(
        md,
        "\nRetention's own speed: with `pullsync.snapshot_retention` at one second, one \
         `cleanup()` deleted {} snapshot rows in {:.1} s, so deleting a day's snapshots once the \
         retention window is full takes about {:.0} s a day: {}\n",
        growth.cleanup_rows,
        growth.cleanup_seconds,
        growth.cleanup_seconds_per_day(window),
        if growth.cleanup_seconds_per_day(window) < CLEANUP_BUDGET_SECS {
            "retention by row deletion keeps up (under 10 minutes a day), so the snapshot tables \
             are not partitioned."
        } else {
            "**more than 10 minutes a day: retention by row deletion does not keep up; partition \
             the snapshot tables by `captured_at`.**"
        }
    );
    let schedule = growth.schedule_cycles_per_step();
    let _ = writeln!(
        md,
        "At the 15-minute schedule a day holds {schedule:.0} times this run's cycles. Account \
         insights take one row per account and cycle, so {:.0} rows a day; post snapshots at \
         most {schedule:.0} times as many (posts refreshed daily or weekly gain none), at most \
         {:.0} a day. Deleting those takes at most {:.0} s a day.\n",
        rows[4] * schedule,
        rows[2] * schedule,
        growth.cleanup_seconds_per_day(window) * schedule
    );
    let _ = writeln!(
        md,
        "![Threads tables over a simulated month]({})\n",
        file_name(chart)
    );
}

/// The hand-written part of an existing file, after the marker.
pub fn kept_part(existing: &str) -> &str {
    existing
        .split_once(KEEP_MARKER)
        .map(|(_, rest)| rest.strip_prefix('\n').unwrap_or(rest))
        .unwrap_or("")
}

fn settings(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("`{k} = {v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::growth::{Day, Month};
    use crate::bench::memory::Peak;
    use crate::bench::seed::Invocation;

    fn cycle(seconds: f64, requests: u64, rows: u64, cpu_seconds: Option<f64>) -> Cycle {
        Cycle {
            seconds,
            requests,
            rows,
            peak: Peak {
                anon_kib: rows * 3 + 2048,
                hwm_kib: rows * 7 + 90_000,
            },
            cpu_seconds,
            in_flight: cpu_seconds.map(|_| 32),
        }
    }

    /// pg_pullsync's run at `scale`, or a peer's (no CPU, no floor) when `ours` is false.
    fn run(scale: f64, ours: bool) -> Run {
        let cpu = |s: f64| ours.then_some(s);
        Run {
            first: cycle(
                12.5 * scale,
                (900.0 * scale) as u64,
                (4_000.0 * scale) as u64,
                cpu(3.2 * scale),
            ),
            incremental: cycle(
                4.25 * scale,
                (300.0 * scale) as u64,
                (700.0 * scale) as u64,
                cpu(0.9 * scale),
            ),
        }
    }

    fn pair(accounts: usize, theirs: f64) -> Pair {
        Pair {
            accounts,
            ours: vec![run(1.0, true), run(1.1, true), run(0.95, true)],
            theirs: vec![
                run(theirs, false),
                run(theirs * 1.2, false),
                run(theirs * 0.9, false),
            ],
        }
    }

    fn fleet(invocations: usize, synced: u64) -> FleetRun {
        let invocation = |i: usize| Invocation {
            accounts_total: 10,
            accounts_synced: synced + i as u64,
            accounts_failed: 0,
            requests: 400,
            rows: 900,
            seconds: 60.0 - i as f64,
            cut_off: i + 1 < invocations,
        };
        FleetRun {
            invocations: (0..invocations).map(invocation).collect(),
        }
    }

    fn day(scale: i64) -> Day {
        Day {
            rows: (1..=7).map(|t| t * 1_000 * scale).collect(),
            bytes: (1..=7).map(|t| t * 65_536 * scale).collect(),
        }
    }

    fn sample() -> Results {
        Results {
            simulator: Summary::of(&[41_000.0, 39_500.0, 40_250.0]),
            threads: threads::Results {
                scaling: [
                    (10, vec![run(0.2, true), run(0.25, true), run(0.22, true)]),
                    (100, vec![run(1.0, true), run(1.3, true), run(0.9, true)]),
                ]
                .into(),
                seed: threads::SeedPair {
                    accounts: 10,
                    ours: vec![run(0.3, true), run(0.35, true)],
                    theirs: vec![fleet(3, 4), fleet(2, 6)],
                },
                peer: pair(5, 6.0),
                peer_default: pair(5, 15.0),
                peer_rest_api: pair(5, 5.5),
            },
            scale: vec![(100, run(2.0, true)), (300, run(5.5, false))],
            growth: Growth {
                month: Month {
                    accounts: 50,
                    posts: 20,
                    days: 2,
                    step_hours: 12,
                },
                days: vec![day(1), day(2), day(4)],
                cleanup_rows: 12_345,
                cleanup_seconds: 1.75,
            },
            feed: vec![
                feed::Size {
                    messages: 1_000,
                    rows: 1_020,
                    pull_seconds: vec![0.5, 0.45, 0.6],
                    copy_seconds: vec![0.2, 0.21, 0.19],
                },
                feed::Size {
                    messages: 10_000,
                    rows: 10_200,
                    pull_seconds: vec![2.5, 2.4, 2.9],
                    copy_seconds: vec![1.2, 1.1, 1.3],
                },
            ],
            attack: attack::Latency {
                idle_ms: vec![1.2, 1.1, 1.3],
                attacked_ms: vec![2.5, 2.2, 3.1],
                flood_requests: 123_456,
                flood_throttled: 120_000,
            },
        }
    }

    #[test]
    fn the_report_has_every_section_in_order() {
        let md = markdown(
            &sample(),
            &Plan::quick(),
            Path::new("/x/scaling.png"),
            Path::new("/x/growth.png"),
        );
        let headings: Vec<&str> = md.lines().filter(|l| l.starts_with("## ")).collect();
        assert_eq!(
            headings,
            [
                "## Headlines",
                "## 1. Threads cycle scaling",
                "## 1b. Scale: 20 posts per account, up to the largest fleet",
                "## 2. Peer: dlt",
                "## 3. The seed's design",
                "## 4. Feed: end to end against COPY",
                "## 4b. Feed server under attack",
                "## 5. Scaling chart",
                "## 5b. Storage over a simulated month",
                "## The simulator's own ceiling",
                "## Reproduce",
            ]
        );
        assert!(md.ends_with(&format!("\n{KEEP_MARKER}\n")));
        for line in [
            "Written by `cargo xtask bench --quick` (small sizes) on",
            "| first sync of 100 accounts × 100 posts (50 ms API latency) | 12.5 (11.2–16.2) s — inside",
            "| pg_pullsync vs dlt rest_api (the faster dlt pipeline), first sync of 5 accounts | **5.5 (5.2–6.0)× faster** |",
            "| 300 | first | 68.8 | 4950 | 22000 | — | — | — | 66.5 | 238 |",
            "| invocations until every account was synced once | 1 | 2 (2–3) | |",
            "| 10000 | 10200 | 2.50 (2.40–2.90) | 4080 (3517–4250) | 1.20 (1.10–1.30) | 8500 (7846–9273) | 46% (45–48%) |",
            "![time against accounts and against messages, log-log](scaling.png)",
            "retention by row deletion keeps up",
        ] {
            assert!(md.contains(line), "{line:?} not in:\n{md}");
        }
    }

    #[test]
    fn the_report_says_what_is_too_slow_and_what_is_missing() {
        let mut slow = sample();
        slow.threads.scaling = [(10_000, vec![run(80.0, true)])].into();
        slow.scale.clear();
        slow.feed.clear();
        slow.growth.cleanup_seconds = 5_000.0;
        let md = markdown(
            &slow,
            &Plan::full(),
            Path::new("scaling.png"),
            Path::new("growth.png"),
        );
        for line in [
            "Written by `cargo xtask bench` on",
            "| first sync of 10000 accounts × 100 posts (50 ms API latency) | 1000.0 (1000.0–1000.0) s — **outside**",
            "| log-log slope of time against accounts / against messages | — / — |",
            "**more than 10 minutes a day: retention by row deletion does not keep up;",
        ] {
            assert!(md.contains(line), "{line:?} not in:\n{md}");
        }
        assert!(!md.contains("| feed end to end"), "{md}");
    }

    #[test]
    fn the_hand_written_part_survives_a_rewrite() {
        let existing = format!("# Benchmarks\nold figures\n{KEEP_MARKER}\n## Profile\nnotes\n");
        assert_eq!(kept_part(&existing), "## Profile\nnotes\n");
        assert_eq!(kept_part("no marker yet"), "");
    }
}
