//! The test cluster's server process: its binaries (PULLSYNC_TEST_PG_BIN, the private
//! installation `cargo xtask test` runs it from), its log, restarts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The bin directory of the installation the test cluster runs from.
pub fn pg_bin() -> PathBuf {
    std::env::var_os("PULLSYNC_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

pub fn pgdata() -> String {
    std::env::var("PULLSYNC_TEST_PGDATA").expect("PULLSYNC_TEST_PGDATA")
}

/// A fresh, empty directory for scratch cluster `name`, owned by the postgres user: beside
/// the test cluster, in this checkout's own directory (`/tmp/pullsync-<hash of the
/// checkout>/scratch/<name>`), so test runs of two checkouts at once never share one.
pub fn fresh_scratch_home(name: &str) -> PathBuf {
    let pgdata = pgdata();
    let home = Path::new(&pgdata)
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("PULLSYNC_TEST_PGDATA={pgdata} has no checkout directory"))
        .join("scratch")
        .join(name);
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    give_to_postgres(&home);
    home
}

/// Makes `path` (and all under it) the postgres user's.
pub fn give_to_postgres(path: &Path) {
    let mut chown = Command::new("chown");
    chown.arg("-R").arg("postgres:postgres").arg(path);
    let status = crate::wait::status(&mut chown, "chown", Duration::from_secs(60));
    assert!(
        status.success(),
        "chown {} failed: {status}",
        path.display()
    );
}

/// The server log, beside pgdata (where xtask's clusters write it).
pub fn server_log() -> PathBuf {
    Path::new(&pgdata()).with_file_name("server.log")
}

/// `pg_ctl restart` as the postgres OS user, with `mode` (fast, immediate).
pub fn restart(mode: &str) {
    pg_ctl(
        &pg_bin(),
        Path::new(&pgdata()),
        &["-m", mode, "-w", "-t", "120", "restart"],
    );
}

/// `pg_ctl <args>` as the postgres OS user on the cluster in `pgdata`, with the programs
/// of `bin`; the server writes its log beside pgdata, as in xtask's clusters.
pub fn pg_ctl(bin: &Path, pgdata: &Path, args: &[&str]) {
    let log = pgdata.with_file_name("server.log");
    let what = format!(
        "pg_ctl {} on {} (see {})",
        args.join(" "),
        pgdata.display(),
        log.display()
    );
    let status = crate::wait::status(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("pg_ctl"))
            .arg("-D")
            .arg(pgdata)
            .arg("-l")
            .arg(&log)
            .args(args)
            .stdout(std::process::Stdio::null()),
        &what,
        Duration::from_secs(300),
    );
    assert!(status.success(), "{what} failed: {status}");
}
