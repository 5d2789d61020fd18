//! Storage over a simulated month: the simulator's clock moves in steps with a scheduled
//! cycle after each, `pullsync.cleanup()` runs once a simulated day, and the rows and bytes
//! of every Threads table are read at each day's end. Then retention's own speed: how
//! fast `cleanup()` deletes snapshots, against what a day adds.

use super::threads::{self, PULLSYNC};
use super::{Bench, DB};
use crate::process::Result;
use std::time::Instant;

/// The Threads tables, in the order the report lists them.
pub const TABLES: [&str; 7] = [
    "workspace_threads_accounts",
    "workspace_threads_posts",
    "workspace_threads_post_metrics",
    "workspace_threads_post_metrics_deltas",
    "workspace_threads_account_insights",
    "workspace_threads_account_insights_deltas",
    "workspace_threads_tokens",
];

/// How the month is simulated.
#[derive(Debug, Clone, Copy)]
pub struct Month {
    pub accounts: usize,
    pub posts: usize,
    pub days: u32,
    pub step_hours: u32,
}

/// Rows and bytes (with indexes and TOAST) of each table of `TABLES`, at one day's end.
#[derive(Debug, Clone)]
pub struct Day {
    pub rows: Vec<i64>,
    pub bytes: Vec<i64>,
}

impl Day {
    pub fn total_bytes(&self) -> i64 {
        self.bytes.iter().sum()
    }
}

pub struct Growth {
    pub month: Month,
    /// index 0: after the first sync; index d: at the end of day d
    pub days: Vec<Day>,
    /// Snapshot rows one `cleanup()` deleted with retention at its minimum, and the
    /// seconds it took.
    pub cleanup_rows: i64,
    pub cleanup_seconds: f64,
}

impl Growth {
    /// Rows per day each table gained over the last `window` days (the steady state).
    pub fn rows_per_day(&self, window: usize) -> Vec<f64> {
        self.per_day(window, |d| &d.rows)
    }

    pub fn bytes_per_day(&self, window: usize) -> Vec<f64> {
        self.per_day(window, |d| &d.bytes)
    }

    fn per_day(&self, window: usize, of: impl Fn(&Day) -> &Vec<i64>) -> Vec<f64> {
        let last = self.days.len() - 1;
        let window = window.min(last).max(1);
        let (then, now) = (of(&self.days[last - window]), of(&self.days[last]));
        now.iter()
            .zip(then)
            .map(|(n, t)| (n - t) as f64 / window as f64)
            .collect()
    }

    /// How many of the schedule's cycles fall in one of this month's steps.
    pub fn schedule_cycles_per_step(&self) -> f64 {
        f64::from(self.month.step_hours) * 3600.0 / super::seed::INTERVAL_SECS
    }

    /// Snapshot rows a day adds (post metrics and account insights; retention keeps the
    /// deltas), over what `cleanup()` deletes per second: the seconds deleting a day's
    /// growth takes once the retention window is full.
    pub fn cleanup_seconds_per_day(&self, window: usize) -> f64 {
        let rows = self.rows_per_day(window);
        let per_day = rows[2] + rows[4];
        per_day / (self.cleanup_rows.max(1) as f64 / self.cleanup_seconds)
    }
}

pub fn measure(bench: &Bench, month: Month) -> Result<Growth> {
    println!(
        "\nxtask: a simulated month: {} accounts × {} posts, {} days, a cycle every {} h",
        month.accounts, month.posts, month.days, month.step_hours
    );
    let world = threads::World::new(bench, month.accounts, month.posts);
    bench.configure(PULLSYNC)?;
    let _sim = world.simulator()?;
    threads::fresh_extension_with_accounts(bench)?;
    threads::run_cycle(bench)?;
    let mut days = vec![read_day(bench)?];
    for day in 1..=month.days {
        let started = Instant::now();
        for _ in 0..24 / month.step_hours {
            threads::advance_clock_by(month.step_hours * 3600)?;
            threads::run_cycle(bench)?;
        }
        bench.query(DB, "SELECT pullsync.cleanup()")?;
        let today = read_day(bench)?;
        println!(
            "xtask: day {day}: {} snapshot rows, {:.0} MiB in the Threads tables ({:.0} s)",
            today.rows[2] + today.rows[4],
            today.total_bytes() as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        );
        days.push(today);
    }
    // Retention's speed: every snapshot but each post's and account's newest is past a
    // retention of one second.
    let started = Instant::now();
    let removed = bench.query(
        DB,
        "SET pullsync.snapshot_retention = '1s';
         SELECT coalesce(sum(value::bigint), 0) FROM jsonb_each_text(pullsync.cleanup()->'removed')
          WHERE key LIKE '%_snapshots'",
    )?;
    let cleanup_seconds = started.elapsed().as_secs_f64();
    Ok(Growth {
        month,
        days,
        cleanup_rows: removed.lines().last().unwrap_or("0").trim().parse()?,
        cleanup_seconds,
    })
}

fn read_day(bench: &Bench) -> Result<Day> {
    let mut day = Day {
        rows: Vec::new(),
        bytes: Vec::new(),
    };
    for table in TABLES {
        let line = bench.query(
            DB,
            &format!(
                "SELECT count(*), pg_total_relation_size('pullsync.{table}') FROM pullsync.{table}"
            ),
        )?;
        let (rows, bytes) = line
            .split_once('|')
            .ok_or_else(|| format!("{table}: {line}"))?;
        day.rows.push(rows.parse()?);
        day.bytes.push(bytes.parse()?);
    }
    Ok(day)
}
