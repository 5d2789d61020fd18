//! The test, soak and stop commands.

use crate::args::{flag_value, versions};
use crate::cluster::{cluster_settings, wait_for_feed_server, Cluster};
use crate::install::{build_and_install, install_atomically, Package, Profile};
use crate::pg_tree::{cluster_home, Major, PgTree};
use crate::pg_upgrade;
use crate::prereqs;
use crate::process::{cmd, Result, StatusOk};
use crate::sentinel::Sentinel;
use crate::workspace::{cargo, pgrx_home, workspace_root};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A throwaway key for the throwaway test cluster; the demo generates its own.
const TEST_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The integration tests that need pg_cron: on a version without it they are skipped,
/// and the summary says so.
const PG_CRON_TESTS: &[&str] = &[
    "pg_cron_triggers_a_run_and_schedule_defaults_is_idempotent",
    "rest_schedule_makes_a_pg_cron_job_that_queues_the_pull",
];

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    failed_phases: Vec<String>,
    /// (version, passed, failed) per version, in order.
    per_version: Vec<(Major, u64, u64)>,
    skipped: Vec<String>,
}

impl Tally {
    /// Runs a test command, echoing its output and adding up libtest's result lines.
    fn phase(&mut self, name: &str, command: &mut Command) {
        self.phase_within(name, command, phase_ceiling(name, command));
    }

    /// `phase`, which fails when it outlives `limit`: a hang no test's own bound caught
    /// (a deadlock in a server thread, say) is killed with every process under it.
    fn phase_within(&mut self, name: &str, command: &mut Command, limit: Duration) {
        println!("\nxtask: === {name} ===");
        let mut timed_out = false;
        let ok = match command.stdout(Stdio::piped()).spawn() {
            Ok(mut child) => {
                let stdout = child.stdout.take().expect("piped stdout");
                // Lines come through a channel, so that a silent hang still meets the limit.
                let (send, lines) = mpsc::channel();
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                        if send.send(line).is_err() {
                            break;
                        }
                    }
                });
                let mut deadline = Instant::now() + limit;
                loop {
                    match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(line) => {
                            println!("{line}");
                            if let Some(rest) = line.trim().strip_prefix("test result: ") {
                                self.add(count(rest, " passed"), count(rest, " failed"));
                            }
                        }
                        Err(RecvTimeoutError::Timeout) if !timed_out => {
                            timed_out = true;
                            kill_tree(child.id());
                            // What the killed processes wrote last, for a few seconds.
                            deadline = Instant::now() + Duration::from_secs(10);
                        }
                        Err(_) => break,
                    }
                }
                child.wait().map(|s| s.success()).unwrap_or(false)
            }
            Err(e) => {
                eprintln!("xtask: cannot start {name}: {e}");
                false
            }
        };
        if timed_out {
            let failure = format!("timed out after {}: {name}", shown(limit));
            eprintln!("xtask: {failure}");
            self.add(0, 1);
            self.failed_phases.push(failure);
        } else if !ok {
            self.failed_phases.push(name.to_string());
        }
    }

    fn add(&mut self, passed: u64, failed: u64) {
        self.passed += passed;
        self.failed += failed;
        if let Some((_, p, f)) = self.per_version.last_mut() {
            *p += passed;
            *f += failed;
        }
    }

    /// A phase that could not run to its end (a build or a cluster that failed) is a
    /// failure too; the other versions' phases still run.
    fn record(&mut self, major: Major, outcome: Result<()>) {
        if let Err(e) = outcome {
            eprintln!("xtask: PostgreSQL {}: {e}", major.number());
            self.add(0, 1);
            self.failed_phases
                .push(format!("PostgreSQL {} setup ({e})", major.number()));
        }
    }

    /// Counts what follows as `major`'s.
    fn version(&mut self, major: Major) {
        self.per_version.push((major, 0, 0));
    }

    /// A check of xtask's own: passes when it found no problem.
    fn check(&mut self, name: &str, problems: &[String]) {
        println!("\nxtask: === {name} ===");
        if problems.is_empty() {
            println!("ok");
            self.add(1, 0);
        } else {
            for p in problems {
                println!("FAILED: {p}");
            }
            self.add(0, 1);
            self.failed_phases.push(name.to_string());
        }
    }

    fn summary(&self) -> Result<()> {
        for (major, passed, failed) in &self.per_version {
            println!(
                "xtask: PostgreSQL {}: {passed} passed, {failed} failed",
                major.number()
            );
        }
        for skipped in &self.skipped {
            println!("xtask: skipped {skipped}");
        }
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

/// The longest a phase may run before it counts as hung, builds included: far above what
/// a slow machine takes. The soaks' grow with their seeds.
fn phase_ceiling(name: &str, command: &Command) -> Duration {
    let seeds = |variable: &str| {
        command
            .get_envs()
            .find(|(key, _)| *key == variable)
            .and_then(|(_, value)| value?.to_str()?.parse::<u64>().ok())
            .unwrap_or(1)
    };
    let minutes = if name.starts_with("fault soak") {
        (10 * seeds("PULLSYNC_SOAK_RUNS")).max(30)
    } else if name.starts_with("failover soak") {
        (5 * seeds("PULLSYNC_FAILOVER_SEEDS")).max(20)
    } else {
        40
    };
    Duration::from_secs(60 * minutes)
}

fn shown(limit: Duration) -> String {
    match limit.as_secs() {
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Kills `root` and every process under it (found through /proc). Not a process group of
/// its own: Ctrl-C in the terminal must still reach the tests.
fn kill_tree(root: u32) {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (name) state ppid …", where the name may hold spaces and parentheses.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            Some((pid, ppid.parse().ok()?))
        })
        .collect();
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    let _ = cmd("kill")
        .arg("-KILL")
        .args(tree.iter().map(u32::to_string))
        .status();
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

/// `cargo xtask test [--pg 15|18] [--only <integration test>]`.
pub fn test(args: &[String]) -> Result<()> {
    let majors = versions(args)?;
    let only = flag_value(args, "--only")?;
    prereqs::ensure(&majors)?;
    prereqs::ensure_rest_server()?;
    // A cluster left by an interrupted run runs from the tree this run installs into.
    for major in &majors {
        integration_cluster(*major).stop()?;
    }
    let mut tally = Tally::default();
    let mut packages = Vec::new();
    for major in &majors {
        packages.push(build_and_install(&major.build_tree(), Profile::Debug)?);
    }

    if only == Some(PG_UPGRADE) {
        tally.version(pg_upgrade::NEW);
        let outcome = pg_upgrade_phase(&mut tally, &majors, &packages);
        tally.record(pg_upgrade::NEW, outcome);
        return tally.summary();
    }
    if let Some(name) = only {
        for (major, package) in majors.iter().zip(&packages) {
            tally.version(*major);
            let outcome = only_phase(&mut tally, *major, package, name);
            tally.record(*major, outcome);
        }
        return tally.summary();
    }
    let sentinel = Sentinel::start(&packages[0])?;
    tally.check(
        "released upgrade scripts unchanged (xtask/src/releases.rs)",
        &crate::releases::check_frozen_upgrade_scripts(),
    );

    tally.version(majors[0]);
    tally.phase(
        "unit tests",
        cargo().args([
            "test",
            "-p",
            "pullsync-core",
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
    for (i, (major, package)) in majors.iter().zip(&packages).enumerate() {
        if i > 0 {
            tally.version(*major);
        }
        let started = std::time::Instant::now();
        let outcome = version_phases(&mut tally, *major, package);
        tally.record(*major, outcome);
        println!(
            "xtask: PostgreSQL {} phases took {} s",
            major.number(),
            started.elapsed().as_secs()
        );
    }

    if majors.contains(&pg_upgrade::OLD) && majors.contains(&pg_upgrade::NEW) {
        let outcome = pg_upgrade_phase(&mut tally, &majors, &packages);
        tally.record(pg_upgrade::NEW, outcome);
    } else {
        tally.skipped.push(format!(
            "the pg_upgrade test (PostgreSQL {} → {}; --pg picked one version)",
            pg_upgrade::OLD.number(),
            pg_upgrade::NEW.number()
        ));
    }

    let problems = sentinel.check();
    tally.check(
        "live servers survive the run (sentinel, demo, system files)",
        &problems,
    );
    tally.summary()
}

/// Everything that runs once per PostgreSQL version.
fn version_phases(tally: &mut Tally, major: Major, package: &Package) -> Result<()> {
    let pg = major.number();
    let pgrx_data = crate::pg_tree::cluster_home(&format!("pgrx{pg}"));
    std::fs::create_dir_all(&pgrx_data)?;
    cmd("chown")
        .arg("postgres:postgres")
        .arg(&pgrx_data)
        .status_ok()?;
    // The test build links the same library file as the packages (see install.rs).
    crate::install::remove_linked_library(&workspace_root().join("target"), Profile::Debug)?;
    let port = crate::ports::choose_pgrx_test_port(&pgrx_home().join("config.toml"), pg as u16)?;
    println!("xtask: cargo pgrx test's cluster takes port {port}");
    tally.phase(
        &format!("pgrx tests (cargo pgrx test pg{pg})"),
        cargo()
            .args([
                "pgrx",
                "test",
                &major.pgrx_name(),
                "--runas",
                "postgres",
                "--pgdata",
            ])
            .arg(pgrx_data.join("pgdata")),
    );
    // `cargo pgrx test` installed its pg_test build; the integration tests use the package.
    install_atomically(package, &major.build_tree())?;
    integration(tally, major)?;
    upgrade_phase(tally, major, package)?;
    package_phase(tally, major, package)
}

fn only_phase(tally: &mut Tally, major: Major, package: &Package, name: &str) -> Result<()> {
    match name {
        "upgrade" => upgrade_phase(tally, major, package),
        "package" => package_phase(tally, major, package),
        _ => {
            let cluster = test_cluster(major)?;
            if name == "soak" {
                soak_phase(tally, &cluster, SHORT_SOAK_RUNS);
            } else if name == "failover_soak" {
                failover_soak_phase(
                    tally,
                    integration_command(&cluster),
                    major,
                    SHORT_FAILOVER_SEEDS,
                );
            } else {
                let mut command = integration_command(&cluster);
                command.args(["--test", name, "--", "--test-threads=2", "--nocapture"]);
                skip_pg_cron_tests(tally, major, &mut command);
                tally.phase(
                    &format!("integration test {name} (PostgreSQL {})", major.number()),
                    &mut command,
                );
            }
            cluster.cluster.stop()
        }
    }
}

/// The integration-test cluster of `major`, to stop one an interrupted run left.
fn integration_cluster(major: Major) -> Cluster {
    Cluster::new(cluster_home("it"), 0, major.build_tree())
}

/// The integration-test cluster and the ports of the servers beside it, each one the OS
/// handed out for this run.
struct TestCluster {
    cluster: Cluster,
    feed_port: u16,
    /// Where tests/workers.rs serves its simulator: the cluster's threads_api_url.
    worker_sim_port: u16,
}

/// Starts the integration-test cluster afresh on the installed package.
fn test_cluster(major: Major) -> Result<TestCluster> {
    test_cluster_on(major.build_tree())
}

/// Starts the integration-test cluster afresh on the package installed in `tree`.
fn test_cluster_on(tree: PgTree) -> Result<TestCluster> {
    let major = tree.major;
    integration_cluster(major).remove()?;
    let [port, feed_port, worker_sim_port] = crate::ports::free_ports::<3>()?;
    let cluster = Cluster::new(cluster_home("it"), port, tree);
    // The workers and pg_cron live in it_workers, the database of tests/workers.rs, which
    // keeps one Threads simulator on worker_sim_port for them.
    let settings = format!(
        "{}pullsync.database = 'it_workers'\n\
         pullsync.batch_size = 2\n\
         pullsync.http_retry_delay = 5\n\
         pullsync.feed_listen = '127.0.0.1:{feed_port}'\n\
         pullsync.threads_api_url = 'http://127.0.0.1:{worker_sim_port}/v1.0'\n",
        cluster_settings(major).replace(
            "cron.database_name = 'postgres'",
            "cron.database_name = 'it_workers'"
        )
    );
    cluster.create(TEST_KEY, &settings)?;
    cluster.start()?;
    cluster.psql("postgres", "CREATE DATABASE it_workers")?;
    // The workers and the feed server started before it_workers existed; they come back
    // after their restart time, and tests must not start before that.
    wait_for_feed_server(&cluster, feed_port, "the test cluster's feed server")?;
    Ok(TestCluster {
        cluster,
        feed_port,
        worker_sim_port,
    })
}

/// `cargo test -p pullsync-tests` pointed at the test cluster and its servers.
fn integration_command(test: &TestCluster) -> Command {
    let cluster = &test.cluster;
    let mut command = cargo();
    command
        .args(["test", "-p", "pullsync-tests"])
        .env("PULLSYNC_TEST_DSN", cluster.dsn())
        .env("PULLSYNC_TEST_PGDATA", cluster.pgdata())
        .env("PULLSYNC_TEST_PG_BIN", cluster.tree.bin())
        .env(
            "PULLSYNC_TEST_FEED_ADDR",
            format!("127.0.0.1:{}", test.feed_port),
        )
        .env(
            "PULLSYNC_TEST_WORKER_SIM_PORT",
            test.worker_sim_port.to_string(),
        )
        .env("PULLSYNC_TEST_DATASETTE", prereqs::datasette_program());
    command
}

fn integration(tally: &mut Tally, major: Major) -> Result<()> {
    let cluster = test_cluster(major)?;
    let mut command = integration_command(&cluster);
    // Every test file runs even after one fails, so a run reports all failures.
    command.args(["--tests", "--no-fail-fast", "--", "--test-threads=2"]);
    skip_pg_cron_tests(tally, major, &mut command);
    tally.phase(
        &format!(
            "integration tests (pgrx-tests, PostgreSQL {})",
            major.number()
        ),
        &mut command,
    );
    soak_phase(tally, &cluster, SHORT_SOAK_RUNS);
    failover_soak_phase(
        tally,
        integration_command(&cluster),
        major,
        SHORT_FAILOVER_SEEDS,
    );
    cluster.cluster.stop()
}

/// On a version without pg_cron, the tests that need it are skipped, and the summary says so.
fn skip_pg_cron_tests(tally: &mut Tally, major: Major, command: &mut Command) {
    if major.has_pg_cron() {
        return;
    }
    for test in PG_CRON_TESTS {
        command.args(["--skip", test]);
        tally.skipped.push(format!(
            "{test} on PostgreSQL {} (needs pg_cron, which has no package for it here)",
            major.number()
        ));
    }
}

/// The upgrade test from every release made for `major`, each rebuilt from its commit.
fn upgrade_phase(tally: &mut Tally, major: Major, package: &Package) -> Result<()> {
    for release in crate::releases::released_for(major) {
        let old = crate::upgrade::base_package(release, major)?;
        let problem = crate::releases::check_install_script(release, &old)?;
        tally.check(
            &format!(
                "{} install script rebuilt for PostgreSQL {} is the released one",
                release.version,
                major.number()
            ),
            &Vec::from_iter(problem),
        );
        let (cluster, env) = crate::upgrade::prepare(release, &old, package)?;
        let mut command = cargo();
        command
            .args(["test", "-p", "pullsync-tests", "--test", "upgrade", "--"])
            .args(["--ignored", "--test-threads=1", "--nocapture"])
            .envs(env);
        tally.phase(
            &format!(
                "upgrade test (PostgreSQL {}: {} as it landed → this build)",
                major.number(),
                release.version
            ),
            &mut command,
        );
        cluster.stop()?;
    }
    Ok(())
}

/// The name `--only` takes for the pg_upgrade test, its file's.
const PG_UPGRADE: &str = "pg_upgrade";
/// Filling, two pg_upgrade runs and the checks after each take minutes; a build of the
/// tests before them (with `--only`) more.
const PG_UPGRADE_CEILING: Duration = Duration::from_secs(30 * 60);

/// pg_upgrade from PostgreSQL 15 to 18 (tests/pg_upgrade.rs), with this build's package of
/// each version.
fn pg_upgrade_phase(tally: &mut Tally, majors: &[Major], packages: &[Package]) -> Result<()> {
    let [old, new] = [pg_upgrade::OLD, pg_upgrade::NEW].map(|wanted| {
        majors
            .iter()
            .position(|m| *m == wanted)
            .map(|i| &packages[i])
    });
    let (Some(old), Some(new)) = (old, new) else {
        return Err(format!(
            "the pg_upgrade test needs PostgreSQL {} and {}: leave out --pg",
            pg_upgrade::OLD.number(),
            pg_upgrade::NEW.number()
        )
        .into());
    };
    let started = Instant::now();
    let prepared = pg_upgrade::prepare(&[old, new])?;
    let mut command = cargo();
    command
        .args(["test", "-p", "pullsync-tests", "--test", PG_UPGRADE, "--"])
        .args(["--ignored", "--test-threads=1", "--nocapture"])
        .envs(prepared.env);
    tally.phase_within(
        &format!(
            "pg_upgrade test (PostgreSQL {} → {}, copy and link)",
            pg_upgrade::OLD.number(),
            pg_upgrade::NEW.number()
        ),
        &mut command,
        PG_UPGRADE_CEILING,
    );
    for cluster in prepared.clusters {
        cluster.stop()?;
    }
    println!(
        "xtask: the pg_upgrade phase took {} s",
        started.elapsed().as_secs()
    );
    Ok(())
}

fn package_phase(tally: &mut Tally, major: Major, package: &Package) -> Result<()> {
    let deb = crate::package::build_deb(package)?;
    let problems = crate::package::check_deb(major, &deb)?;
    tally.check(
        &format!(
            "Debian package (cargo xtask package --pg {})",
            major.number()
        ),
        &problems,
    );
    Ok(())
}

/// Seeded runs of the short soak inside `cargo xtask test`; `cargo xtask soak` runs more.
const SHORT_SOAK_RUNS: u32 = 3;
const SOAK_RUNS: u32 = 50;
/// Seeds of the failover soak inside `cargo xtask test` (the second with a synchronous
/// standby), and in `cargo xtask soak --failover`.
const SHORT_FAILOVER_SEEDS: u32 = 2;
const FAILOVER_SEEDS: u32 = 20;

/// The fault soak restarts the server, so it runs after the other tests, alone.
fn soak_phase(tally: &mut Tally, cluster: &TestCluster, runs: u32) {
    soak_phase_with(
        tally,
        integration_command(cluster),
        cluster.cluster.tree.major,
        runs,
    );
}

fn soak_phase_with(tally: &mut Tally, mut command: Command, major: Major, runs: u32) {
    tally.phase(
        &format!("fault soak (tests/soak.rs, PostgreSQL {})", major.number()),
        command
            .args(["--test", "soak", "--"])
            .args(["--ignored", "--test-threads=1", "--nocapture"])
            .env("PULLSYNC_SOAK_RUNS", runs.to_string()),
    );
}

/// The failover soak (tests/failover_soak.rs) kills and promotes scratch clusters of its
/// own, so it runs alone too; it needs the test cluster only for its installation and key.
fn failover_soak_phase(tally: &mut Tally, mut command: Command, major: Major, seeds: u32) {
    tally.phase(
        &format!(
            "failover soak (tests/failover_soak.rs, PostgreSQL {})",
            major.number()
        ),
        command
            .args(["--test", "failover_soak", "--"])
            .args(["--ignored", "--test-threads=1", "--nocapture"])
            .env("PULLSYNC_FAILOVER_SEEDS", seeds.to_string()),
    );
}

/// `cargo xtask bench --only rest-memory`: what one REST page costs the backend that pulls
/// it (pgrx-tests/tests/rest_memory.rs), on a fresh test cluster of the debug build.
pub fn rest_memory() -> Result<()> {
    let major = Major::Pg15;
    build_and_install(&major.build_tree(), Profile::Debug)?;
    let cluster = test_cluster(major)?;
    let mut command = integration_command(&cluster);
    command.args([
        "--test",
        "rest_memory",
        "--",
        "--ignored",
        "--test-threads=1",
        "--nocapture",
    ]);
    let outcome = command.status_ok();
    cluster.cluster.stop()?;
    outcome
}

/// `cargo xtask soak [--pg 15|18] [--against 0.1.0 | --failover]`: the long fault soak on
/// a fresh test cluster; with `--against`, on the version that landed first (rebuilt from
/// its commit), in the soak's 0.1.0 mode, to see what that version loses; with
/// `--failover`, the failover soak's seeds instead.
pub fn soak(args: &[String]) -> Result<()> {
    let majors = versions(args)?;
    let failover = args.iter().any(|a| a == "--failover");
    if failover && flag_value(args, "--against")?.is_some() {
        return Err("--failover runs this build: it takes no --against".into());
    }
    let against = match flag_value(args, "--against")? {
        Some("0.1.0") => Some(crate::releases::release("0.1.0")?),
        Some(other) => {
            return Err(format!(
                "--against takes 0.1.0, the version the soak's legacy mode knows, not {other}"
            )
            .into())
        }
        None => None,
    };
    prereqs::ensure(&majors)?;
    let mut tally = Tally::default();
    for major in majors {
        integration_cluster(major).stop()?;
        let cluster = if let Some(release) = against {
            let tree = PgTree::private(major, &format!("{}-soak-base", major.number()));
            if tree.root.exists() {
                std::fs::remove_dir_all(&tree.root)?;
            }
            tree.ensure_copied()?;
            install_atomically(&crate::upgrade::base_package(release, major)?, &tree)?;
            test_cluster_on(tree)?
        } else {
            build_and_install(&major.build_tree(), Profile::Debug)?;
            test_cluster(major)?
        };
        let mut command = integration_command(&cluster);
        if failover {
            failover_soak_phase(&mut tally, command, major, FAILOVER_SEEDS);
        } else {
            if against.is_some() {
                command.env("PULLSYNC_SOAK_LEGACY", "1");
            }
            soak_phase_with(&mut tally, command, major, SOAK_RUNS);
        }
        cluster.cluster.stop()?;
    }
    if tally.failed > 0 || !tally.failed_phases.is_empty() {
        return Err("the soak failed".into());
    }
    Ok(())
}

pub fn stop() -> Result<()> {
    for major in Major::ALL {
        crate::demo::cluster(major).stop()?;
    }
    crate::demo::stop_simulator()?;
    println!("pg_pullsync demo cluster and simulator stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{cmd, count, phase_ceiling, Tally};
    use std::time::{Duration, Instant};

    #[test]
    fn a_phase_past_its_limit_is_killed_with_its_children_and_fails() {
        let pid_file = std::env::temp_dir().join(format!("xtask-phase-{}", std::process::id()));
        let mut command = cmd("sh");
        command.arg("-c").arg(format!(
            "sleep 300 & echo $! > {}; echo 'test result: ok. 2 passed; 0 failed;'; wait",
            pid_file.display()
        ));
        let mut tally = Tally::default();
        let started = Instant::now();
        tally.phase_within("a hung phase", &mut command, Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(tally.passed, 2, "the output before the hang still counts");
        assert_eq!(tally.failed, 1);
        assert_eq!(tally.failed_phases, ["timed out after 2 s: a hung phase"]);
        let sleeper = std::fs::read_to_string(&pid_file).unwrap();
        let _ = std::fs::remove_file(&pid_file);
        // Killed, it is gone once init has reaped it.
        let proc_dir = format!("/proc/{}", sleeper.trim());
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_to_string(format!("{proc_dir}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        });
        assert!(
            gone,
            "the phase's child process {} still runs",
            sleeper.trim()
        );
    }

    #[test]
    fn a_phase_within_its_limit_passes() {
        let mut command = cmd("sh");
        command.args(["-c", "echo 'test result: ok. 3 passed; 0 failed;'"]);
        let mut tally = Tally::default();
        tally.phase_within("a quick phase", &mut command, Duration::from_secs(60));
        assert_eq!((tally.passed, tally.failed), (3, 0));
        assert!(tally.failed_phases.is_empty());
    }

    #[test]
    fn the_soaks_get_minutes_by_the_seed_and_the_others_forty() {
        let mut failover = cmd("cargo");
        failover.env("PULLSYNC_FAILOVER_SEEDS", "20");
        assert_eq!(
            phase_ceiling(
                "failover soak (tests/failover_soak.rs, PostgreSQL 15)",
                &failover
            ),
            Duration::from_secs(100 * 60)
        );
        failover.env("PULLSYNC_FAILOVER_SEEDS", "2");
        assert_eq!(
            phase_ceiling(
                "failover soak (tests/failover_soak.rs, PostgreSQL 15)",
                &failover
            ),
            Duration::from_secs(20 * 60)
        );
        let mut soak = cmd("cargo");
        soak.env("PULLSYNC_SOAK_RUNS", "50");
        assert_eq!(
            phase_ceiling("fault soak (tests/soak.rs, PostgreSQL 15)", &soak),
            Duration::from_secs(500 * 60)
        );
        soak.env("PULLSYNC_SOAK_RUNS", "3");
        assert_eq!(
            phase_ceiling("fault soak (tests/soak.rs, PostgreSQL 15)", &soak),
            Duration::from_secs(30 * 60)
        );
        assert_eq!(
            phase_ceiling(
                "integration tests (pgrx-tests, PostgreSQL 15)",
                &cmd("cargo")
            ),
            Duration::from_secs(40 * 60)
        );
    }

    #[test]
    fn counts_libtest_summaries() {
        let line =
            "ok. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(count(line, " passed"), 5);
        assert_eq!(count(line, " failed"), 2);
        assert_eq!(count("FAILED. 1 passed; 3 failed; 0 ignored", " failed"), 3);
    }
}
