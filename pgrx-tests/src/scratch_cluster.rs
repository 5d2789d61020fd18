//! A second cluster of the test cluster's installation, made and removed by one test: for
//! what only another cluster shows (a provider restored elsewhere has another system
//! identifier). It shares the test cluster's sealing key file content, as a restored
//! provider would keep its key.

use crate::db::connect;
use crate::server::pg_bin;
use crate::wait;
use postgres::{Client, NoTls};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct ScratchCluster {
    home: PathBuf,
    port: u16,
    /// Where its feed server listens.
    pub feed_port: u16,
}

fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--"]).arg(program);
    command.stdout(Stdio::null());
    command
}

fn ok(mut command: Command, what: &str) {
    let status = wait::status(&mut command, what, Duration::from_secs(300));
    assert!(status.success(), "{what} failed: {status}");
}

/// Settings a scratch cluster adds to the defaults.
#[derive(Default)]
pub struct ScratchOptions {
    /// Ready to stream to a standby: wal_level replica, WAL senders, hot standby, and a
    /// trust entry for replication from 127.0.0.1.
    pub replication: bool,
    /// More postgresql.conf lines.
    pub conf: Vec<String>,
}

impl ScratchOptions {
    fn conf_lines(&self) -> String {
        let mut text = String::new();
        if self.replication {
            text.push_str("wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n");
        }
        for line in &self.conf {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

impl ScratchCluster {
    /// initdb, pg_pullsync preloaded with its workers in `database`, the server and its
    /// feed server on free ports, started. `database` still has to be created.
    pub fn start(name: &str, database: &str) -> Self {
        Self::start_with(name, database, &ScratchOptions::default())
    }

    /// `start`, with `options` added to its configuration.
    pub fn start_with(name: &str, database: &str, options: &ScratchOptions) -> Self {
        let ports = crate::ports::free_ports(2);
        let (port, feed_port) = (ports[0], ports[1]);
        use std::os::unix::fs::PermissionsExt;
        let home = crate::server::fresh_scratch_home(name);
        let key_file = home.join("pullsync.key");
        let main_key_file: String = connect("postgres")
            .query_one("SHOW pullsync.encryption_key_file", &[])
            .unwrap()
            .get(0);
        std::fs::copy(&main_key_file, &key_file).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        crate::server::give_to_postgres(&key_file);
        let pgdata = home.join("pgdata");
        let mut initdb = as_postgres(&pg_bin().join("initdb"));
        initdb.arg("-D").arg(&pgdata).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth=trust",
        ]);
        ok(initdb, "initdb");
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_pullsync'\nmax_worker_processes = 16\n\
             pullsync.encryption_key_file = '{}'\npullsync.database = '{database}'\n\
             pullsync.feed_listen = '127.0.0.1:{feed_port}'\npullsync.http_allowed_hosts = 'loopback'\n",
            home.display(),
            key_file.display()
        ) + &options.conf_lines();
        if options.replication {
            // Streaming replication from 127.0.0.1 without a password, as the tests' clusters
            // take every other local connection.
            let hba = pgdata.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).unwrap();
            text.push_str("\nhost replication all 127.0.0.1/32 trust\n");
            std::fs::write(&hba, text).unwrap();
        }
        let path = pgdata.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
        let cluster = ScratchCluster {
            home,
            port,
            feed_port,
        };
        let mut start = as_postgres(&pg_bin().join("pg_ctl"));
        start
            .arg("-D")
            .arg(&pgdata)
            .arg("-l")
            .arg(cluster.home.join("server.log"))
            .args(["-w", "-t", "120", "start"]);
        ok(start, "pg_ctl start");
        cluster
    }

    /// A streaming standby of this cluster (which was started with `replication`), made
    /// with `pg_basebackup -R` and started on free ports of its own: `name`'s directory,
    /// the primary's settings and sealing key.
    pub fn standby(&self, name: &str) -> ScratchCluster {
        let ports = crate::ports::free_ports(2);
        let (port, feed_port) = (ports[0], ports[1]);
        let home = crate::server::fresh_scratch_home(name);
        let pgdata = home.join("pgdata");
        let mut backup = as_postgres(&pg_bin().join("pg_basebackup"));
        backup
            .arg("-D")
            .arg(&pgdata)
            // A fast checkpoint: a spread one waits minutes after writes.
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "stream", "-R"])
            .arg("--checkpoint=fast")
            .arg("-p")
            .arg(self.port.to_string());
        ok(backup, "pg_basebackup");
        // postgresql.auto.conf is read last: its lines win over the primary's copied ones.
        let auto = pgdata.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&auto).unwrap();
        text.push_str(&format!(
            "\nport = {port}\nunix_socket_directories = '{}'\n\
             pullsync.feed_listen = '127.0.0.1:{feed_port}'\n",
            home.display()
        ));
        std::fs::write(&auto, text).unwrap();
        let standby = ScratchCluster {
            home,
            port,
            feed_port,
        };
        standby.pg_ctl(&["-w", "-t", "120", "start"], "pg_ctl start (standby)");
        standby
    }

    /// The handle of a cluster that another program (pg_auto_failover's keeper) will make
    /// in `name`'s directory and run on `port`; its feed server on `feed_port`.
    pub fn made_elsewhere(name: &str, port: u16, feed_port: u16) -> ScratchCluster {
        let home = crate::server::fresh_scratch_home(name);
        ScratchCluster {
            home,
            port,
            feed_port,
        }
    }

    pub fn pgdata(&self) -> PathBuf {
        self.home.join("pgdata")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A clean shutdown (`pg_ctl stop -m fast`).
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "-t", "120", "stop"], "pg_ctl stop");
    }

    fn pg_ctl(&self, args: &[&str], what: &str) {
        let mut command = as_postgres(&pg_bin().join("pg_ctl"));
        command
            .arg("-D")
            .arg(self.home.join("pgdata"))
            .arg("-l")
            .arg(self.home.join("server.log"))
            .args(args);
        ok(command, what);
    }

    /// Promotes this standby (`pg_ctl promote`, waiting until it takes writes).
    pub fn promote(&self) {
        self.pg_ctl(&["-w", "-t", "120", "promote"], "pg_ctl promote");
    }

    /// A crash of the whole server: its postmaster and every child of it get SIGKILL, the
    /// postmaster first stopped so that it starts no process meanwhile.
    pub fn kill_9(&self) {
        let pid_file = self.home.join("pgdata/postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).unwrap();
        let pid = text.lines().next().unwrap().trim().to_string();
        for (program, args) in [
            ("kill", vec!["-STOP", pid.as_str()]),
            ("pkill", vec!["-KILL", "-P", pid.as_str()]),
            ("kill", vec!["-KILL", pid.as_str()]),
        ] {
            let mut command = Command::new(program);
            command.args(&args);
            wait::status(&mut command, program, Duration::from_secs(30));
        }
        wait::until(
            "the killed postmaster to be gone",
            Duration::from_secs(30),
            // Gone, or a zombie its new parent has not reaped yet.
            || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_or(true, |stat| stat.contains(") Z "))
            },
        );
    }

    /// Starts this crashed server again on a port of its own, to read what it had
    /// committed (crash recovery gives all of it back): without pg_pullsync preloaded, so
    /// its workers and feed server stay down, and without synchronous standbys to wait for.
    pub fn restart_alone(&mut self) {
        self.port = crate::ports::free_ports(1)[0];
        let options = format!(
            "-c port={} -c shared_preload_libraries='' -c synchronous_standby_names=''",
            self.port
        );
        self.pg_ctl(
            &["-w", "-t", "120", "-o", &options, "start"],
            "pg_ctl start (alone, after the crash)",
        );
    }

    /// The server's log so far, with the files of its logging collector if it has one (a
    /// server pg_auto_failover's keeper runs).
    pub fn log(&self) -> String {
        let mut text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let mut collected: Vec<PathBuf> = std::fs::read_dir(self.pgdata().join("log"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        collected.sort();
        for file in collected {
            text.push_str(&std::fs::read_to_string(file).unwrap_or_default());
        }
        text
    }

    pub fn log_path(&self) -> PathBuf {
        self.home.join("server.log")
    }

    pub fn conninfo(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={database} {}",
            self.port,
            crate::db::CEILINGS
        )
    }

    pub fn connect(&self, database: &str) -> Client {
        Client::connect(&self.conninfo(database), NoTls)
            .unwrap_or_else(|e| panic!("connect to the scratch cluster's {database}: {e}"))
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        let mut stop = as_postgres(&pg_bin().join("pg_ctl"));
        stop.arg("-D")
            .arg(self.home.join("pgdata"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
