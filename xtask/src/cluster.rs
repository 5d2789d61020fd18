//! A PostgreSQL cluster of the project's own, run as the postgres OS user (initdb
//! refuses root) from one installation tree: the demo cluster (the system installation),
//! the test and benchmark clusters (private trees).

use crate::pg_tree::{Major, PgTree};
use crate::process::{cmd, output_of, Result, StatusOk};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

pub struct Cluster {
    /// Owned by postgres; holds pgdata/, the server log and the socket.
    pub home: PathBuf,
    pub port: u16,
    /// The installation its server runs from.
    pub tree: PgTree,
}

impl Cluster {
    pub fn new(home: impl Into<PathBuf>, port: u16, tree: PgTree) -> Self {
        Cluster {
            home: home.into(),
            port,
            tree,
        }
    }

    pub fn pgdata(&self) -> PathBuf {
        self.home.join("pgdata")
    }

    pub fn log_file(&self) -> PathBuf {
        self.home.join("server.log")
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut c = cmd("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(self.tree.bin().join(program));
        c
    }

    pub fn exists(&self) -> bool {
        self.pgdata().join("PG_VERSION").exists()
    }

    /// The sealing key's file: beside pgdata, private to the postgres OS user.
    pub fn key_file(&self) -> PathBuf {
        self.home.join("pullsync.key")
    }

    /// Creates the cluster with trust authentication on loopback only, writes `key` into
    /// its key file, then appends `settings` and the key file's path to postgresql.conf.
    pub fn create(&self, key: &str, settings: &str) -> Result<()> {
        self.create_with(key, settings, &[])
    }

    /// `create`, with more options for initdb.
    pub fn create_with(&self, key: &str, settings: &str, initdb_options: &[&str]) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.home)?;
        cmd("chown")
            .arg("postgres:postgres")
            .arg(&self.home)
            .status_ok()?;
        std::fs::write(self.key_file(), key)?;
        std::fs::set_permissions(self.key_file(), std::fs::Permissions::from_mode(0o600))?;
        cmd("chown")
            .arg("postgres:postgres")
            .arg(self.key_file())
            .status_ok()?;
        self.as_postgres("initdb")
            .arg("-D")
            .arg(self.pgdata())
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth=trust",
            ])
            .args(initdb_options)
            .status_ok()?;
        let conf = format!(
            "\n# added by cargo xtask\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             pullsync.encryption_key_file = '{}'\n{settings}\n",
            self.port,
            self.home.display(),
            self.key_file().display()
        );
        let path = self.pgdata().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str(&conf);
        std::fs::write(&path, text)?;
        Ok(())
    }

    /// The postmaster's pid while it runs. Read from postmaster.pid rather than asked of
    /// pg_ctl, which a re-copied or removed tree may no longer have.
    pub fn postmaster(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pgdata().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()?;
        let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (command.trim() == "postgres").then_some(pid)
    }

    pub fn is_running(&self) -> bool {
        self.postmaster().is_some()
    }

    pub fn start(&self) -> Result<()> {
        self.as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.pgdata())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "120", "start"])
            .status_ok()
    }

    pub fn restart(&self) -> Result<()> {
        self.as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.pgdata())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "120", "-m", "fast", "restart"])
            .status_ok()
    }

    pub fn stop(&self) -> Result<()> {
        let Some(pid) = self.postmaster() else {
            return Ok(());
        };
        if self.tree.bin().join("pg_ctl").exists() {
            return self
                .as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.pgdata())
                .args(["-w", "-t", "60", "-m", "fast", "stop"])
                .status_ok();
        }
        // Its tree is gone: SIGINT is a fast shutdown.
        cmd("kill").args(["-INT", &pid.to_string()]).status_ok()?;
        for _ in 0..600 {
            if self.postmaster().is_none() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(format!(
            "the postmaster {pid} of {} did not stop",
            self.pgdata().display()
        )
        .into())
    }

    pub fn remove(&self) -> Result<()> {
        self.stop()?;
        if self.home.exists() {
            std::fs::remove_dir_all(&self.home)?;
        }
        Ok(())
    }

    fn psql_command(&self, database: &str) -> Command {
        let mut c = cmd("psql");
        c.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &self.port.to_string(), "-d", database])
        // NOTICEs (drop cascades to …) would bury the output that matters.
        .env("PGOPTIONS", "-c client_min_messages=warning")
        // Something on the port that never answers fails the connection instead of
        // hanging the run.
        .env("PGCONNECT_TIMEOUT", "30");
        c
    }

    /// Runs SQL through psql over loopback TCP, as a user would; each statement in its
    /// own transaction (psql -f), so ALTER SYSTEM and friends work.
    pub fn psql(&self, database: &str, sql: &str) -> Result<()> {
        run_with_stdin(self.psql_command(database).args(["-f", "-"]), sql)
    }

    /// Like `psql`, without printing results.
    pub fn psql_quiet(&self, database: &str, sql: &str) -> Result<()> {
        run_with_stdin(
            self.psql_command(database)
                .args(["-o", "/dev/null", "-f", "-"]),
            sql,
        )
    }

    /// The unaligned, tuples-only output of one query.
    pub fn query(&self, database: &str, sql: &str) -> Option<String> {
        output_of(self.psql_command(database).args(["-At", "-c", sql]))
            .map(|s| s.trim().to_string())
    }

    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

/// Settings every cluster of ours needs: the workers preloaded, and pg_cron where the
/// version has it.
pub fn cluster_settings(major: Major) -> String {
    // The tests' and the demo's APIs listen on loopback, which the default refuses.
    let common = "max_worker_processes = 32\npullsync.http_allowed_hosts = 'loopback'\n";
    if major.has_pg_cron() {
        format!(
            "shared_preload_libraries = 'pg_cron,pg_pullsync'\n\
             cron.database_name = 'postgres'\n\
             cron.use_background_workers = on\n{common}"
        )
    } else {
        format!("shared_preload_libraries = 'pg_pullsync'\n{common}")
    }
}

/// Waits up to a minute until `cluster`'s own feed server serves on `port`: its log says
/// so and the port accepts connections. Something else listening there is not enough.
pub fn wait_for_feed_server(cluster: &Cluster, port: u16, what: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let serving = format!("://127.0.0.1:{port}");
    loop {
        let log = std::fs::read_to_string(cluster.log_file()).unwrap_or_default();
        let ours = log
            .lines()
            .any(|l| l.contains("pg_pullsync feed server: serving") && l.ends_with(&serving));
        if ours && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(refused) = log
            .lines()
            .find(|l| l.contains(&format!("cannot listen on 127.0.0.1:{port}")))
        {
            return Err(format!("{what} could not take port {port}: {refused}").into());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{what} did not start serving on port {port} within 60 s (see {})",
                cluster.log_file().display()
            )
            .into());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn run_with_stdin(command: &mut Command, input: &str) -> Result<()> {
    let mut child = command.stdin(std::process::Stdio::piped()).spawn()?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())?;
    let status = child.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("psql failed: {status}").into())
    }
}
