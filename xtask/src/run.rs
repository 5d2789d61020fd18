//! The commands, and small helpers to run programs.

use crate::cluster::Cluster;
use crate::install::{build_and_install, build_tree, install_atomically, Package, Profile};
use crate::prereqs;
use crate::sentinel::Sentinel;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const TEST_PORT: u16 = 28816;
/// Where tests/workers.rs serves its simulator (fixed: the workers read it from the config).
const WORKER_SIM_PORT: u16 = 28818;
/// The feed server of it_workers, for tests/feed.rs.
const FEED_PORT: u16 = 28819;
/// A throwaway key for the throwaway test cluster; the demo generates its own.
const TEST_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub fn cmd(program: &str) -> Command {
    Command::new(program)
}

pub trait StatusOk {
    fn status_ok(&mut self) -> Result<()>;
}

impl StatusOk for Command {
    fn status_ok(&mut self) -> Result<()> {
        let status = self
            .status()
            .map_err(|e| format!("{:?}: {e}", self.get_program()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "{:?} {:?} failed: {status}",
                self.get_program(),
                self.get_args().collect::<Vec<_>>()
            )
            .into())
        }
    }
}

pub fn output_of(command: &mut Command) -> Option<String> {
    let out = command.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

pub fn cargo() -> Command {
    let mut c = cmd("cargo");
    c.current_dir(workspace_root())
        .env("PGRX_HOME", prereqs::pgrx_home());
    c
}

/// Settings every cluster of ours needs: the workers and pg_cron preloaded.
pub fn cluster_settings(key: &str) -> String {
    format!(
        "shared_preload_libraries = 'pg_cron,pg_pullsync'\n\
         cron.database_name = 'postgres'\n\
         cron.use_background_workers = on\n\
         max_worker_processes = 32\n\
         pullsync.encryption_key = '{key}'\n"
    )
}

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    failed_phases: Vec<&'static str>,
}

impl Tally {
    /// Runs a test command, echoing its output and adding up libtest's result lines.
    fn phase(&mut self, name: &'static str, command: &mut Command) {
        println!("\nxtask: === {name} ===");
        let ok = match command.stdout(Stdio::piped()).spawn() {
            Ok(mut child) => {
                let stdout = child.stdout.take().expect("piped stdout");
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    println!("{line}");
                    if let Some(rest) = line.trim().strip_prefix("test result: ") {
                        self.passed += count(rest, " passed");
                        self.failed += count(rest, " failed");
                    }
                }
                child.wait().map(|s| s.success()).unwrap_or(false)
            }
            Err(e) => {
                eprintln!("xtask: cannot start {name}: {e}");
                false
            }
        };
        if !ok {
            self.failed_phases.push(name);
        }
    }

    /// A check of xtask's own: passes when it found no problem.
    fn check(&mut self, name: &'static str, problems: &[String]) {
        println!("\nxtask: === {name} ===");
        if problems.is_empty() {
            println!("ok");
            self.passed += 1;
        } else {
            for p in problems {
                println!("FAILED: {p}");
            }
            self.failed += 1;
            self.failed_phases.push(name);
        }
    }

    fn summary(&self) -> Result<()> {
        println!(
            "\nxtask: summary: {} passed, {} failed{}",
            self.passed,
            self.failed,
            if self.failed_phases.is_empty() {
                String::new()
            } else {
                format!("; failing phases: {}", self.failed_phases.join(", "))
            }
        );
        if self.failed > 0 || !self.failed_phases.is_empty() {
            return Err("tests failed".into());
        }
        Ok(())
    }
}

/// "ok. 5 passed; 0 failed; …" → the number before `label`.
fn count(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            let part = part
                .trim()
                .trim_start_matches("ok.")
                .trim_start_matches("FAILED.")
                .trim();
            part.strip_suffix(label.trim_start())
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `cargo xtask test [--only <integration test>]`.
pub fn test(args: &[String]) -> Result<()> {
    prereqs::ensure()?;
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args.get(i + 1).cloned().ok_or("--only needs a test name, e.g. --only backup"))
        .transpose()?;
    let tree = build_tree();
    // A cluster left by an interrupted run runs from the tree this run installs into.
    integration_cluster().stop()?;
    let mut tally = Tally::default();

    let package = build_and_install(&tree, Profile::Debug)?;
    if let Some(name) = only {
        match name.as_str() {
            "upgrade" => upgrade_phase(&mut tally, &package)?,
            "package" => package_phase(&mut tally)?,
            _ => {
                let cluster = test_cluster()?;
                if name == "soak" {
                    soak_phase(&mut tally, &cluster, SHORT_SOAK_RUNS);
                } else {
                    tally.phase(
                        "integration test (--only)",
                        integration_command(&cluster).args(["--test", &name, "--", "--test-threads=2"]),
                    );
                }
                cluster.stop()?;
            }
        }
        return tally.summary();
    }
    let sentinel = Sentinel::start(&package)?;

    tally.phase(
        "unit tests",
        cargo().args([
            "test",
            "-p",
            "threads-model",
            "-p",
            "xtask",
            "-p",
            "pullsync-tests",
            "--lib",
            "--bins",
        ]),
    );

    let pgrx_home = PathBuf::from("/tmp/pullsync-pgrx");
    std::fs::create_dir_all(&pgrx_home)?;
    cmd("chown")
        .arg("postgres:postgres")
        .arg(&pgrx_home)
        .status_ok()?;
    tally.phase(
        "pgrx tests (cargo pgrx test pg15)",
        cargo()
            .args(["pgrx", "test", "pg15", "--runas", "postgres", "--pgdata"])
            .arg(pgrx_home.join("pgdata")),
    );

    // `cargo pgrx test` installed its pg_test build; the integration tests use the package.
    install_atomically(&package, &tree)?;
    integration(&mut tally)?;
    upgrade_phase(&mut tally, &package)?;
    package_phase(&mut tally)?;

    let problems = sentinel.check();
    tally.check("live servers survive the run (sentinel, demo, system files)", &problems);
    tally.summary()
}

fn integration_cluster() -> Cluster {
    Cluster::new("/tmp/pullsync-it", TEST_PORT, build_tree())
}

/// Starts the integration-test cluster afresh on the installed package.
fn test_cluster() -> Result<Cluster> {
    let cluster = integration_cluster();
    cluster.remove()?;
    // The workers and pg_cron live in it_workers, the database of tests/workers.rs, which
    // keeps one Threads simulator on WORKER_SIM_PORT for them.
    let settings = format!(
        "{}pullsync.database = 'it_workers'\n\
         pullsync.batch_size = 2\n\
         pullsync.http_retry_delay = 5\n\
         pullsync.feed_listen = '127.0.0.1:{FEED_PORT}'\n\
         pullsync.threads_api_url = 'http://127.0.0.1:{WORKER_SIM_PORT}/v1.0'\n",
        cluster_settings(TEST_KEY).replace(
            "cron.database_name = 'postgres'",
            "cron.database_name = 'it_workers'"
        )
    );
    cluster.create(&settings)?;
    cluster.start()?;
    cluster.psql("postgres", "CREATE DATABASE it_workers")?;
    Ok(cluster)
}

/// `cargo test -p pullsync-tests` pointed at `cluster`.
fn integration_command(cluster: &Cluster) -> Command {
    let mut command = cargo();
    command
        .args(["test", "-p", "pullsync-tests"])
        .env("PULLSYNC_TEST_DSN", cluster.dsn())
        .env("PULLSYNC_TEST_PGDATA", cluster.pgdata())
        .env("PULLSYNC_TEST_PG_BIN", cluster.tree.bin());
    command
}

fn integration(tally: &mut Tally) -> Result<()> {
    let cluster = test_cluster()?;
    tally.phase(
        "integration tests (pgrx-tests, real cluster)",
        integration_command(&cluster).args(["--tests", "--", "--test-threads=2"]),
    );
    soak_phase(tally, &cluster, SHORT_SOAK_RUNS);
    cluster.stop()
}

fn upgrade_phase(tally: &mut Tally, package: &Package) -> Result<()> {
    let (cluster, env) = crate::upgrade::prepare(package)?;
    let mut command = cargo();
    command
        .args(["test", "-p", "pullsync-tests", "--test", "upgrade", "--"])
        .args(["--ignored", "--test-threads=1", "--nocapture"])
        .envs(env);
    tally.phase("upgrade test (0.1.0 as it landed → this build)", &mut command);
    cluster.stop()
}

fn package_phase(tally: &mut Tally) -> Result<()> {
    let deb = crate::package::build_deb(Profile::Debug)?;
    let problems = crate::package::check_deb(&deb)?;
    tally.check("Debian package (cargo xtask package)", &problems);
    Ok(())
}

/// Seeded runs of the short soak inside `cargo xtask test`; `cargo xtask soak` runs more.
const SHORT_SOAK_RUNS: u32 = 3;
const SOAK_RUNS: u32 = 50;

/// The fault soak restarts the server, so it runs after the other tests, alone.
fn soak_phase(tally: &mut Tally, cluster: &Cluster, runs: u32) {
    tally.phase(
        "fault soak (tests/soak.rs)",
        integration_command(cluster)
            .args(["--test", "soak", "--"])
            .args(["--ignored", "--test-threads=1", "--nocapture"])
            .env("PULLSYNC_SOAK_RUNS", runs.to_string()),
    );
}

/// `cargo xtask soak`: the long fault soak on a fresh test cluster.
pub fn soak() -> Result<()> {
    prereqs::ensure()?;
    integration_cluster().stop()?;
    build_and_install(&build_tree(), Profile::Debug)?;
    let cluster = test_cluster()?;
    let mut tally = Tally::default();
    soak_phase(&mut tally, &cluster, SOAK_RUNS);
    cluster.stop()?;
    if tally.failed > 0 || !tally.failed_phases.is_empty() {
        return Err("the soak failed".into());
    }
    Ok(())
}

pub fn stop() -> Result<()> {
    crate::demo::cluster().stop()?;
    crate::demo::stop_simulator()?;
    println!("pg_pullsync demo cluster and simulator stopped");
    Ok(())
}

/// Builds one of the test-tooling binaries (the simulator, its benchmark) in release mode.
pub fn build_release_bin(name: &str) -> Result<()> {
    cargo()
        .args(["build", "--release", "-p", "pullsync-tests", "--bin", name])
        .status_ok()
}

/// The same in debug mode, which shares the integration tests' build.
pub fn build_debug_bin(name: &str) -> Result<()> {
    cargo()
        .args(["build", "-p", "pullsync-tests", "--bin", name])
        .status_ok()
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_libtest_summaries() {
        let line =
            "ok. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(count(line, " passed"), 5);
        assert_eq!(count(line, " failed"), 2);
        assert_eq!(count("FAILED. 1 passed; 3 failed; 0 ignored", " failed"), 3);
    }
}
