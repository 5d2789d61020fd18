//! A second cluster of the test cluster's installation, made and removed by one test: for
//! what only another cluster shows (a provider restored elsewhere has another system
//! identifier). It shares the test cluster's sealing key file content, as a restored
//! provider would keep its key.

use crate::db::connect;
use crate::server::pg_bin;
use postgres::{Client, NoTls};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
}

impl ScratchCluster {
    /// initdb, pg_pullsync preloaded with its workers in `database`, the server and its
    /// feed server on free ports, started. `database` still has to be created.
    pub fn start(name: &str, database: &str) -> Self {
        let ports = crate::ports::free_ports(2);
        let (port, feed_port) = (ports[0], ports[1]);
        use std::os::unix::fs::PermissionsExt;
        let home = PathBuf::from(format!("/tmp/pst-{name}"));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let key_file = home.join("pullsync.key");
        let main_key_file: String = connect("postgres")
            .query_one("SHOW pullsync.encryption_key_file", &[])
            .unwrap()
            .get(0);
        std::fs::copy(&main_key_file, &key_file).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut chown = Command::new("chown");
        chown.arg("-R").arg("postgres:postgres").arg(&home);
        ok(chown, "chown");
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
        );
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

    pub fn conninfo(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={database}",
            self.port
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
