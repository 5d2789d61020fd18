//! pg_auto_failover (Debian's `postgresql-15-auto-failover`) on this machine: a monitor on
//! the system's PostgreSQL 15 (where the package puts its extension) and keepers
//! (`pg_autoctl … --run`) for scratch clusters of the test installation, for the failover
//! soak's seeds in which the monitor, not the test, promotes the standby.

use crate::server::pg_bin;
use crate::wait;
use postgres::{Client, NoTls};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PG_AUTOCTL: &str = "/usr/bin/pg_autoctl";
/// The monitor runs on the system's PostgreSQL 15, which holds the pgautofailover extension.
const MONITOR_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Whether pg_auto_failover can run with the test installation: its package is installed
/// and the tests run on PostgreSQL 15, the version it is packaged for here.
pub fn available() -> bool {
    let version = wait::output(
        Command::new(pg_bin().join("pg_ctl")).arg("--version"),
        "pg_ctl --version",
        Duration::from_secs(60),
    );
    Path::new(PG_AUTOCTL).exists()
        && Path::new(MONITOR_BIN)
            .join("../lib/pgautofailover.so")
            .exists()
        && String::from_utf8_lossy(&version.stdout).contains(" 15.")
}

/// A monitor and the keepers started for it; dropped, the keepers are killed and the
/// monitor stopped (the nodes' servers are their scratch clusters' to stop).
pub struct Formation {
    home: PathBuf,
    port: u16,
    keepers: Vec<(u16, Child)>,
}

/// `pg_autoctl` as the postgres OS user, its state and configuration under `home` rather
/// than in the postgres user's home directory.
fn autoctl(home: &Path, bin: &Path) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--", "env"])
        .arg(format!(
            "XDG_CONFIG_HOME={}",
            home.join("xdg/config").display()
        ))
        .arg(format!("XDG_DATA_HOME={}", home.join("xdg/data").display()))
        .arg(format!("PATH={}:/usr/bin:/bin", bin.display()))
        // Its own connections to the nodes go over TCP: their sockets are not in the
        // default directory.
        .arg("PGHOST=127.0.0.1")
        .arg(PG_AUTOCTL);
    command
}

/// A log file the postgres user writes, for a process's output.
fn log_file(path: &Path) -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let _ = Command::new("chown")
        .arg("postgres:postgres")
        .arg(path)
        .status();
    file
}

impl Formation {
    /// A monitor in `name`'s scratch directory, on a free port, running.
    pub fn start(name: &str) -> Formation {
        let home = crate::server::fresh_scratch_home(name);
        let port = crate::ports::free_ports(1)[0];
        let monitor_bin = Path::new(MONITOR_BIN);
        let mut create = autoctl(&home, monitor_bin);
        create
            .args(["create", "monitor", "--pgdata"])
            .arg(home.join("monitor"))
            .args(["--pgport", &port.to_string()])
            .args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"])
            .arg("--pgctl")
            .arg(monitor_bin.join("pg_ctl"))
            .stdout(log_file(&home.join("monitor.log")))
            .stderr(log_file(&home.join("monitor.log")));
        let status = wait::status(
            &mut create,
            "pg_autoctl create monitor",
            Duration::from_secs(300),
        );
        assert!(
            status.success(),
            "pg_autoctl create monitor failed: see {}/monitor.log",
            home.display()
        );
        let mut formation = Formation {
            home,
            port,
            keepers: Vec::new(),
        };
        let mut run = autoctl(&formation.home, monitor_bin);
        run.args(["run", "--pgdata"])
            .arg(formation.home.join("monitor"))
            .stdout(log_file(&formation.home.join("monitor.log")))
            .stderr(log_file(&formation.home.join("monitor.log")));
        formation
            .keepers
            .push((port, run.spawn().expect("pg_autoctl run")));
        let mut monitor = None;
        wait::until(
            "the pg_auto_failover monitor to take connections",
            Duration::from_secs(120),
            || {
                monitor = formation.monitor().ok();
                monitor.is_some()
            },
        );
        formation
    }

    fn monitor(&self) -> Result<Client, postgres::Error> {
        Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=pg_auto_failover connect_timeout=30",
                self.port
            ),
            NoTls,
        )
    }

    /// Starts a keeper for the node of `pgdata` on `port` (an existing, stopped cluster
    /// becomes the primary; a missing directory a standby, made with pg_basebackup), its
    /// output and its server's log appended to `log`.
    pub fn add_node(&mut self, pgdata: &Path, port: u16, log: &Path) {
        let uri = format!(
            "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
            self.port
        );
        let mut keeper = autoctl(&self.home, &pg_bin());
        keeper
            .args(["create", "postgres", "--pgdata"])
            .arg(pgdata)
            .args(["--pgport", &port.to_string()])
            .args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"])
            .args(["--monitor", &uri, "--pgctl"])
            .arg(pg_bin().join("pg_ctl"))
            .arg("--run")
            .stdin(Stdio::null())
            .stdout(log_file(log))
            .stderr(log_file(log));
        self.keepers
            .push((port, keeper.spawn().expect("pg_autoctl create postgres")));
    }

    /// The state the node on `port` last reported to the monitor.
    pub fn state(&self, port: u16) -> Option<String> {
        self.monitor()
            .ok()?
            .query_opt(
                "SELECT reportedstate::text FROM pgautofailover.node WHERE nodeport = $1",
                &[&i32::from(port)],
            )
            .ok()
            .flatten()
            .map(|r| r.get(0))
    }

    /// Waits until the node on `port` reports `state`, running `meanwhile` between polls.
    pub fn wait_for(&self, port: u16, state: &str, limit: Duration, mut meanwhile: impl FnMut()) {
        wait::until(
            &format!(
                "the node on port {port} to report {state} to the monitor (see {})",
                self.home.display()
            ),
            limit,
            || {
                meanwhile();
                self.state(port).as_deref() == Some(state)
            },
        );
    }

    /// Kills the keeper of the node on `port` and its processes with SIGKILL, so that it
    /// restarts nothing: with its server killed too, the node is gone as in a crash.
    pub fn kill_keeper(&mut self, port: u16) {
        if let Some(i) = self.keepers.iter().position(|(p, _)| *p == port) {
            let (_, child) = self.keepers.remove(i);
            kill_tree(child);
        }
    }
}

/// `child` (a `runuser`) and every process under it, with SIGKILL.
fn kill_tree(mut child: Child) {
    let mut pids = vec![child.id()];
    let mut next = 0;
    while let Some(&parent) = pids.get(next) {
        let out = wait::output(
            Command::new("pgrep").args(["-P", &parent.to_string()]),
            "pgrep",
            Duration::from_secs(30),
        );
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok()),
        );
        next += 1;
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .status();
    let _ = child.wait();
}

impl Drop for Formation {
    fn drop(&mut self) {
        for (_, child) in self.keepers.drain(..) {
            kill_tree(child);
        }
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(MONITOR_BIN).join("pg_ctl"))
            .arg("-D")
            .arg(self.home.join("monitor"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
