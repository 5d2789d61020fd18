//! The proof that a test run leaves live servers alone: a cluster started before the suites
//! on an installed build (its own tree, standing in for a production server) must still
//! be the same postmaster afterwards and answer a sync; a running demo cluster must
//! survive too; and the system installation's pg_pullsync files must be byte for byte
//! what they were.

use crate::cluster::Cluster;
use crate::install::{install_atomically, Package};
use crate::pg_tree::{Major, PgTree};
use crate::run::Result;
use std::path::PathBuf;
use std::process::Child;
use std::time::Instant;

const PORT: u16 = 28822;
const SIM_PORT: u16 = 28823;
const WORKSPACE: &str = "5e000000-0000-4000-8000-000000000001";
const KEY: &str = "c2VudGluZWwta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTI=";

pub struct Sentinel {
    cluster: Cluster,
    postmaster: u32,
    simulator: Child,
    /// When the simulator started: its clock stands still unless moved.
    simulator_started: Instant,
    /// Running demo clusters and their postmaster pids.
    demos: Vec<(Cluster, u32)>,
    system_files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

/// The pg_pullsync files of the system installation, with their bytes (None: absent).
fn system_files() -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let tree = PgTree::system();
    let mut paths = vec![tree.libdir().join("pg_pullsync.so")];
    if let Ok(dir) = std::fs::read_dir(tree.extension_dir()) {
        paths.extend(
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().contains("pg_pullsync")),
        );
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).ok();
            (p, bytes)
        })
        .collect()
}

/// Syncs every account of the sentinel's database; Ok when posts arrived.
fn sync(cluster: &Cluster) -> Result<i64> {
    let posts = cluster
        .query(
            "postgres",
            "SELECT count(*) FILTER (WHERE r->>'status' = 'completed')
               FROM pullsync.workspace_threads_accounts a,
                    LATERAL pullsync.threads_sync_account(a.id) r;
             ",
        )
        .ok_or("the sentinel cluster did not answer a sync")?;
    let completed: i64 = posts.parse()?;
    let stored: i64 = cluster
        .query(
            "postgres",
            "SELECT count(*) FROM pullsync.workspace_threads_posts",
        )
        .ok_or("the sentinel cluster did not answer")?
        .parse()?;
    if completed == 0 || stored == 0 {
        return Err(
            format!("sentinel sync: {completed} accounts completed, {stored} posts").into(),
        );
    }
    Ok(stored)
}

impl Sentinel {
    /// Starts the sentinel on `package` (installed into its own tree) and notes the demo
    /// cluster and the system files.
    pub fn start(package: &Package) -> Result<Sentinel> {
        let major = package.major;
        let tree = PgTree::private(major, &format!("{}-sentinel", major.number()));
        tree.ensure_copied()?;
        install_atomically(package, &tree)?;
        let home = PathBuf::from("/tmp/pullsync-sentinel");
        let cluster = Cluster::new(&home, PORT, tree);
        cluster.remove()?;
        cluster.create(
            KEY,
            &format!(
                "{}pullsync.threads_api_url = 'http://127.0.0.1:{SIM_PORT}/v1.0'\n",
                crate::run::cluster_settings(major)
            ),
        )?;
        cluster.start()?;
        crate::run::build_debug_bin("threads-sim")?;
        let args = ["--accounts", "3", "--posts", "30", "--seed", "7"].map(String::from);
        let simulator =
            crate::simulator::spawn("debug", SIM_PORT, &args, &home.join("threads-sim.log"))?;
        let simulator_started = Instant::now();
        cluster.psql_quiet("postgres", "CREATE EXTENSION pg_pullsync")?;
        crate::simulator::add_accounts(&cluster, "postgres", SIM_PORT, WORKSPACE)?;
        let posts = sync(&cluster)?;
        println!("xtask: sentinel cluster on port {PORT} is up and synced {posts} posts");
        let demos: Vec<(Cluster, u32)> = Major::ALL
            .into_iter()
            .map(crate::demo::cluster)
            .filter_map(|demo| {
                demo.postmaster().map(|pid| {
                    println!(
                        "xtask: the demo cluster on port {} (postmaster {pid}) is running; it must survive",
                        demo.port
                    );
                    (demo, pid)
                })
            })
            .collect();
        if demos.is_empty() {
            println!("xtask: no demo cluster is running, so none is checked");
        }
        Ok(Sentinel {
            postmaster: cluster
                .postmaster()
                .ok_or("the sentinel's postmaster is not running")?,
            cluster,
            simulator,
            simulator_started,
            demos,
            system_files: system_files(),
        })
    }

    /// Moves the simulator's clock by the time the run took, to the wall clock the cluster
    /// reads: a run that crosses midnight UTC asks for the new day's account insights,
    /// which a simulator still on the old day refuses.
    fn catch_up_clock(&self) -> Result<()> {
        crate::simulator::advance_clock(SIM_PORT, self.simulator_started.elapsed().as_secs())
    }

    /// What went wrong for the live servers during the run (empty when nothing did).
    pub fn check(self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.cluster.postmaster() != Some(self.postmaster) {
            problems.push("the sentinel cluster did not survive the test run".to_string());
        } else if let Err(e) = self.catch_up_clock().and_then(|()| sync(&self.cluster)) {
            problems.push(format!("the sentinel cluster no longer syncs: {e}"));
        }
        for (demo, pid) in &self.demos {
            let alive = demo.postmaster() == Some(*pid)
                && demo.query("postgres", "SELECT 1").as_deref() == Some("1");
            if !alive {
                problems.push(format!(
                    "the demo cluster on port {} did not survive the test run",
                    demo.port
                ));
            }
        }
        for ((path, before), (_, after)) in self.system_files.iter().zip(system_files()) {
            if *before != after {
                problems.push(format!("the test run changed {}", path.display()));
            }
        }
        if self.system_files.len() != system_files().len() {
            problems.push(
                "the test run added or removed pg_pullsync files of the system installation".into(),
            );
        }
        if let Err(e) = self.cluster.stop() {
            problems.push(format!("cannot stop the sentinel cluster: {e}"));
        }
        problems
    }
}

/// The simulator and the cluster stop with the sentinel, also when a run ends early.
impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.simulator.kill();
        let _ = self.simulator.wait();
        let _ = self.cluster.stop();
    }
}
