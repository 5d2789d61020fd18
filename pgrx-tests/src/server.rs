//! The test cluster's server process: its binaries (PULLSYNC_TEST_PG_BIN, the private
//! installation `cargo xtask test` runs it from), restarts, and installing a package into
//! its installation tree the way xtask does (each file renamed into place).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The bin directory of the installation the test cluster runs from.
pub fn pg_bin() -> PathBuf {
    std::env::var_os("PULLSYNC_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

pub fn pgdata() -> String {
    std::env::var("PULLSYNC_TEST_PGDATA").expect("PULLSYNC_TEST_PGDATA")
}

/// The server log, beside pgdata (where xtask's clusters write it).
pub fn server_log() -> PathBuf {
    Path::new(&pgdata()).with_file_name("server.log")
}

/// `pg_ctl restart` as the postgres OS user, with `mode` (fast, immediate).
pub fn restart(mode: &str) {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin().join("pg_ctl"))
        .arg("-D")
        .arg(pgdata())
        .arg("-l")
        .arg(server_log())
        .args(["-m", mode, "-w", "-t", "120", "restart"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("pg_ctl");
    assert!(status.success(), "pg_ctl restart -m {mode} failed");
}

/// Copies every file below `package` to the same path below `tree`, each written beside
/// its destination and renamed over it, so the running server keeps its mapped library.
pub fn install_package(package: &Path, tree: &Path) -> usize {
    let mut installed = 0;
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(package.join(&relative)).expect("read the package") {
            let entry = entry.expect("a package entry");
            let path = relative.join(entry.file_name());
            if entry.file_type().expect("a file type").is_dir() {
                pending.push(path);
                continue;
            }
            let destination = tree.join(&path);
            std::fs::create_dir_all(destination.parent().expect("a parent")).expect("mkdir");
            let staged = destination.with_extension("pullsync-test-new");
            std::fs::copy(entry.path(), &staged).expect("stage a file");
            std::fs::rename(&staged, &destination).expect("rename into place");
            installed += 1;
        }
    }
    installed
}
