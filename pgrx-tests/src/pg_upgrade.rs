//! PostgreSQL's major-version upgrade, pg_upgrade, of a stopped cluster into a new one
//! that `cargo xtask test` initdb'd for it (xtask/src/pg_upgrade.rs): run as the postgres
//! OS user in copy or link mode, with its logs kept (`--retain`) to show what the servers
//! it ran in binary-upgrade mode did.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What pg_pullsync logs when pg_upgrade starts a server with it preloaded (src/lib.rs).
pub const BINARY_UPGRADE_LINE: &str =
    "pg_pullsync: binary-upgrade mode (pg_upgrade), so no background workers start";
/// What the log holds once a pg_pullsync background process or the feed server ran.
const BACKGROUND_PROCESSES: [&str; 2] = ["pg_pullsync worker", "pg_pullsync feed server"];
/// What each server start logs first.
const SERVER_START: &str = "starting PostgreSQL ";

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// The data files are copied: the old cluster stays usable.
    Copy,
    /// The data files are hard-linked: fast, and the old cluster must not start again.
    Link,
}

impl Mode {
    pub fn flag(self) -> &'static str {
        match self {
            Mode::Copy => "--copy",
            Mode::Link => "--link",
        }
    }

    /// pg_upgrade's step that moves the tables' files in this mode.
    fn transfer_step(self) -> &'static str {
        match self {
            Mode::Copy => "Copying user relation files",
            Mode::Link => "Linking user relation files",
        }
    }
}

/// A cluster: the bin directory of its installation and its data directory.
pub struct Side {
    pub bin: PathBuf,
    pub pgdata: PathBuf,
}

pub struct Upgraded {
    pub took: Duration,
    /// The log of every server pg_upgrade started (the old and the new one).
    pub server_log: String,
}

/// pg_upgrade from `old` (stopped cleanly) into `new` (initdb'd, never started) in
/// `mode`. It runs in the new cluster's home, which the postgres OS user owns and where
/// the servers it starts put their sockets, on ports the OS handed out; fails with its
/// output and the servers' log.
pub fn pg_upgrade(old: &Side, new: &Side, mode: Mode) -> Upgraded {
    let ports = crate::ports::free_ports(2);
    let home = new.pgdata.parent().expect("pgdata inside a cluster home");
    let what = format!("pg_upgrade {} into {}", mode.flag(), new.pgdata.display());
    let started = Instant::now();
    let out = crate::wait::output(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(new.bin.join("pg_upgrade"))
            .arg("--old-bindir")
            .arg(&old.bin)
            .arg("--new-bindir")
            .arg(&new.bin)
            .arg("--old-datadir")
            .arg(&old.pgdata)
            .arg("--new-datadir")
            .arg(&new.pgdata)
            .args(["--username", "postgres", "--retain", mode.flag()])
            .args(["--old-port", &ports[0].to_string()])
            .args(["--new-port", &ports[1].to_string()])
            .current_dir(home),
        &what,
        Duration::from_secs(900),
    );
    let took = started.elapsed();
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let server_log = retained_server_log(&new.pgdata);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{output}\nthe servers' log:\n{server_log}",
        out.status
    );
    assert!(
        output.contains(mode.transfer_step()),
        "{what} never said {:?}:\n{output}",
        mode.transfer_step()
    );
    Upgraded { took, server_log }
}

/// The servers' log of the runs retained under `pgdata`'s pg_upgrade_output.d (a
/// directory per run, named after its start time), oldest first.
fn retained_server_log(pgdata: &Path) -> String {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(pgdata.join("pg_upgrade_output.d"))
        .map(|runs| {
            runs.flatten()
                .map(|run| run.path().join("log/pg_upgrade_server.log"))
                .filter(|log| log.exists())
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    logs.iter()
        .map(|log| std::fs::read_to_string(log).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is wrong with the servers' log of a pg_upgrade run for pg_pullsync: each server
/// start (of both `majors`) must have logged [`BINARY_UPGRADE_LINE`], and no background
/// process of pg_pullsync may have run. Empty when all is well.
pub fn binary_upgrade_problems(server_log: &str, majors: [u32; 2]) -> Vec<String> {
    let mut problems = Vec::new();
    let starts: Vec<&str> = server_log
        .lines()
        .filter_map(|l| Some(l.split_once(SERVER_START)?.1))
        .collect();
    for major in majors {
        if !starts.iter().any(|s| s.starts_with(&format!("{major}."))) {
            problems.push(format!("no server of PostgreSQL {major} started"));
        }
    }
    let said = server_log.matches(BINARY_UPGRADE_LINE).count();
    if said < starts.len() {
        problems.push(format!(
            "{} server starts, but pg_pullsync said {BINARY_UPGRADE_LINE:?} {said} times",
            starts.len()
        ));
    }
    for line in server_log.lines() {
        if BACKGROUND_PROCESSES.iter().any(|p| line.contains(p)) {
            problems.push(format!("a pg_pullsync background process ran: {line}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const START_15: &str = "LOG:  starting PostgreSQL 15.14 (Debian 15.14-0+deb12u1) on x86_64";
    const START_18: &str = "LOG:  starting PostgreSQL 18.1 on x86_64-pc-linux-gnu";

    fn log(lines: &[&str]) -> String {
        lines.join("\n")
    }

    #[test]
    fn a_log_where_every_server_said_it_passes() {
        let line = format!("LOG:  {BINARY_UPGRADE_LINE}");
        let server_log = log(&[&line, START_15, &line, START_18, &line, START_18]);
        assert!(binary_upgrade_problems(&server_log, [15, 18]).is_empty());
    }

    #[test]
    fn a_silent_server_a_missing_version_or_a_worker_fails() {
        let line = format!("LOG:  {BINARY_UPGRADE_LINE}");
        let silent = log(&[&line, START_15, START_18]);
        assert_eq!(binary_upgrade_problems(&silent, [15, 18]).len(), 1);
        let only_15 = log(&[&line, START_15]);
        assert_eq!(
            binary_upgrade_problems(&only_15, [15, 18]),
            ["no server of PostgreSQL 18 started"]
        );
        let worker = log(&[
            &line,
            START_15,
            &line,
            START_18,
            "LOG:  pg_pullsync worker 0: started in database \"app\"",
            "LOG:  pg_pullsync feed server: serving database \"app\" on http://127.0.0.1:1",
        ]);
        assert_eq!(binary_upgrade_problems(&worker, [15, 18]).len(), 2);
    }
}
