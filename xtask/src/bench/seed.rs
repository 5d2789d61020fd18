//! The seed's design as its own program: the scheduled edge function pg_pullsync replaces
//! (xtask/peer/seed/seed_sync.js on the machine's Node.js), one 60 s invocation every 15
//! minutes, against the same simulator and tables.

use super::{Bench, BENCH_PORT, DB, SIM_PORT};
use crate::process::{cmd, Result, StatusOk};
use crate::workspace::workspace_root;
use serde_json::Value;
use std::path::PathBuf;

fn program_dir() -> PathBuf {
    workspace_root().join("xtask/peer/seed")
}

/// Installs the program's pinned dependencies (its package-lock.json).
pub fn prepare() -> Result<()> {
    println!("xtask: npm ci in {}", program_dir().display());
    cmd("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(program_dir())
        .status_ok()
}

/// What one invocation printed.
#[derive(Debug, Clone, Copy)]
pub struct Invocation {
    pub accounts_total: u64,
    pub accounts_synced: u64,
    pub accounts_failed: u64,
    pub requests: u64,
    pub rows: u64,
    pub seconds: f64,
    pub cut_off: bool,
}

impl Invocation {
    fn parse(line: &str) -> Result<Invocation> {
        let v: Value = serde_json::from_str(line.trim())
            .map_err(|e| format!("seed_sync.js printed {line:?}: {e}"))?;
        let number = |key: &str| -> Result<u64> {
            v[key]
                .as_u64()
                .ok_or_else(|| format!("seed_sync.js printed no {key}: {line}").into())
        };
        Ok(Invocation {
            accounts_total: number("accounts_total")?,
            accounts_synced: number("accounts_synced")?,
            accounts_failed: number("accounts_failed")?,
            requests: number("requests")?,
            rows: number("rows")?,
            seconds: v["seconds"]
                .as_f64()
                .ok_or("seed_sync.js printed no seconds")?,
            cut_off: v["cut_off"].as_bool().unwrap_or(false),
        })
    }
}

/// Invocations 15 simulated minutes apart until every account was synced once.
#[derive(Debug, Clone)]
pub struct FleetRun {
    pub invocations: Vec<Invocation>,
}

/// The schedule the seed ran on.
pub const INTERVAL_SECS: f64 = 900.0;
/// More than this many invocations for one fleet means the program is broken.
const MAX_INVOCATIONS: usize = 40;

impl FleetRun {
    pub fn first(&self) -> Invocation {
        self.invocations[0]
    }

    /// From the first invocation's start until the last account was synced, at one
    /// invocation per interval.
    pub fn fleet_seconds(&self) -> f64 {
        let last = self.invocations.last().map_or(0.0, |i| i.seconds);
        (self.invocations.len() - 1) as f64 * INTERVAL_SECS + last
    }
}

/// Runs invocations of the program against the bench database, whose accounts are in
/// place, until every account has been synced once; the simulated clock moves one
/// interval between invocations.
pub fn run_fleet(bench: &Bench, accounts_file: &std::path::Path) -> Result<FleetRun> {
    let mut invocations = Vec::new();
    loop {
        // Its complaints about single accounts go to the bench's stderr.
        let out = cmd("node")
            .arg(program_dir().join("seed_sync.js"))
            .env("THREADS_API", format!("http://127.0.0.1:{SIM_PORT}/v1.0"))
            .env("ACCOUNTS_FILE", accounts_file)
            .env(
                "PG_DSN",
                format!("postgresql://postgres:bench@127.0.0.1:{BENCH_PORT}/{DB}"),
            )
            .stderr(std::process::Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("seed_sync.js failed: {}", out.status).into());
        }
        let invocation = Invocation::parse(&String::from_utf8_lossy(&out.stdout))?;
        println!(
            "xtask: seed invocation {}: {} of {} accounts synced ({} failed), {} requests, {} rows, {:.1} s{}",
            invocations.len() + 1,
            invocation.accounts_synced,
            invocation.accounts_total,
            invocation.accounts_failed,
            invocation.requests,
            invocation.rows,
            invocation.seconds,
            if invocation.cut_off { ", cut off" } else { "" }
        );
        invocations.push(invocation);
        let unsynced: u64 = bench
            .query(
                DB,
                "SELECT count(*) FROM pullsync.workspace_threads_accounts
                  WHERE last_sync_status IS DISTINCT FROM 'completed'",
            )?
            .parse()?;
        if unsynced == 0 {
            return Ok(FleetRun { invocations });
        }
        if invocations.len() >= MAX_INVOCATIONS {
            return Err(format!(
                "the seed left {unsynced} accounts unsynced after {MAX_INVOCATIONS} invocations"
            )
            .into());
        }
        crate::simulator::advance_clock(SIM_PORT, INTERVAL_SECS as u64)?;
    }
}
