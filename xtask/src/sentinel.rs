//! The proof that a test run leaves live servers alone: a cluster started before the suites
//! on an installed build (its own tree, standing in for a user's server such as a demo
//! cluster) must still be the same postmaster afterwards and answer a sync; a running
//! demo cluster must survive too; and the system installation's pg_pullsync files must be
//! byte for byte what they were.
//!
//! The sentinel sits where a user's server would hurt most: on the ports the tests took
//! before they asked the OS for free ones (its cluster, its Threads simulator, its feed
//! server), with a listener on each other such port that counts who connects. A test that
//! still reached for an old port would hit the sentinel: its simulator counts no request
//! but the sentinel's own, and no one connects to the listeners.

use crate::cluster::Cluster;
use crate::install::{install_atomically, Package};
use crate::pg_tree::PgTree;
use crate::process::Result;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The ports the tests of 0.2.0 and before took: the test cluster, the workers'
/// simulator and the feed server, which the sentinel's own servers take now.
const OLD_CLUSTER_PORT: u16 = 28816;
const OLD_SIM_PORT: u16 = 28818;
const OLD_FEED_PORT: u16 = 28819;
/// The other old ports (the sentinel's and the upgrade cluster's, a scratch cluster's):
/// a listener on each counts connections.
const OLD_OTHER_PORTS: [u16; 6] = [28822, 28823, 28824, 28825, 28832, 28833];
const WORKSPACE: &str = "5e000000-0000-4000-8000-000000000001";
const KEY: &str = "c2VudGluZWwta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTI=";

pub struct Sentinel {
    cluster: Cluster,
    postmaster: u32,
    simulator: Child,
    sim_port: u16,
    /// The simulator's request count after the sentinel's own first sync.
    sim_requests: u64,
    tripwires: Tripwires,
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
        let home = crate::pg_tree::cluster_home("sentinel");
        Cluster::new(&home, 0, tree.clone()).remove()?;
        let [port, sim_port, feed_port] =
            old_or_free([OLD_CLUSTER_PORT, OLD_SIM_PORT, OLD_FEED_PORT])?;
        let cluster = Cluster::new(&home, port, tree);
        cluster.create(
            KEY,
            &format!(
                "{}pullsync.threads_api_url = 'http://127.0.0.1:{sim_port}/v1.0'\n\
                 pullsync.feed_listen = '127.0.0.1:{feed_port}'\n",
                crate::cluster::cluster_settings(major)
            ),
        )?;
        cluster.start()?;
        crate::workspace::build_debug_bin("threads-sim")?;
        let args = ["--accounts", "3", "--posts", "30", "--seed", "7"].map(String::from);
        let simulator =
            crate::simulator::spawn("debug", sim_port, &args, &home.join("threads-sim.log"))?;
        let simulator_started = Instant::now();
        cluster.psql_quiet("postgres", "CREATE EXTENSION pg_pullsync")?;
        crate::cluster::wait_for_feed_server(&cluster, feed_port, "the sentinel's feed server")?;
        crate::simulator::add_accounts(&cluster, "postgres", sim_port, WORKSPACE)?;
        let posts = sync(&cluster)?;
        println!(
            "xtask: sentinel cluster on port {port} (its simulator on {sim_port}, its feed \
             server on {feed_port}) is up and synced {posts} posts"
        );
        let tripwires = Tripwires::start(&OLD_OTHER_PORTS);
        let demos: Vec<(Cluster, u32)> = crate::demo::clusters_on_this_machine()
            .into_iter()
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
            sim_port,
            sim_requests: requests(sim_port)?,
            tripwires,
            simulator_started,
            demos,
            system_files: system_files(),
        })
    }

    /// Moves the simulator's clock by the time the run took, to the wall clock the cluster
    /// reads: a run that crosses midnight UTC asks for the new day's account insights,
    /// which a simulator still on the old day refuses.
    fn catch_up_clock(&self) -> Result<()> {
        crate::simulator::advance_clock(self.sim_port, self.simulator_started.elapsed().as_secs())
    }

    /// What went wrong for the live servers during the run (empty when nothing did).
    pub fn check(mut self) -> Vec<String> {
        let mut problems = self.tripwires.stop();
        match requests(self.sim_port) {
            Ok(n) if n == self.sim_requests => {}
            Ok(n) => problems.push(format!(
                "the sentinel's simulator on port {} answered {} requests it did not make",
                self.sim_port,
                n - self.sim_requests
            )),
            Err(e) => problems.push(format!("the sentinel's simulator: {e}")),
        }
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

/// Each port of `wanted` where it is free, else one the OS hands out.
fn old_or_free<const N: usize>(wanted: [u16; N]) -> Result<[u16; N]> {
    let free = crate::ports::free_ports::<N>()?;
    Ok(std::array::from_fn(|i| {
        if crate::ports::is_free(wanted[i]) {
            wanted[i]
        } else {
            println!(
                "xtask: port {} is taken; the sentinel uses {} instead",
                wanted[i], free[i]
            );
            free[i]
        }
    }))
}

impl Drop for Tripwires {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Requests the simulator on `port` has answered.
fn requests(port: u16) -> Result<u64> {
    let counters: serde_json::Value =
        serde_json::from_str(&crate::simulator::http(port, "GET", "/admin/counters", "")?)?;
    counters["total"]
        .as_u64()
        .ok_or_else(|| "the simulator's counters have no total".into())
}

/// Listeners on ports no server of a test run may reach, counting who connects.
struct Tripwires {
    stop: Arc<AtomicBool>,
    watched: Vec<(u16, Arc<AtomicU64>, std::thread::JoinHandle<()>)>,
}

impl Tripwires {
    /// Listens on each of `ports` that is free (a taken one is someone else's already).
    fn start(ports: &[u16]) -> Tripwires {
        let stop = Arc::new(AtomicBool::new(false));
        let watched = ports
            .iter()
            .filter_map(|&port| {
                let listener = TcpListener::bind(("127.0.0.1", port)).ok()?;
                listener.set_nonblocking(true).ok()?;
                let hits = Arc::new(AtomicU64::new(0));
                let (stop, counted) = (stop.clone(), hits.clone());
                let thread = std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok(_) => {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                        }
                    }
                });
                Some((port, hits, thread))
            })
            .collect::<Vec<_>>();
        let listening: Vec<String> = watched.iter().map(|(p, _, _)| p.to_string()).collect();
        println!(
            "xtask: the sentinel listens on the tests' old ports {}; no test may connect",
            listening.join(", ")
        );
        Tripwires { stop, watched }
    }

    /// Stops listening; a problem for each port someone connected to.
    fn stop(&mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.watched
            .drain(..)
            .filter_map(|(port, hits, thread)| {
                let _ = thread.join();
                let hits = hits.load(Ordering::Relaxed);
                (hits > 0).then(|| {
                    format!("the test run connected {hits} times to port {port}, which it no longer uses")
                })
            })
            .collect()
    }
}
