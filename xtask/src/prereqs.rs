//! Installs what a fresh Debian machine lacks, and skips what is present.

use crate::run::{cmd, output_of, Result, StatusOk};
use std::path::PathBuf;

pub const PG_CONFIG: &str = "/usr/lib/postgresql/15/bin/pg_config";
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PGRX_VERSION: &str = "0.18.1";

/// The Debian packages DEVELOPERS.md names.
const DEBIAN_PACKAGES: &[&str] = &[
    "postgresql-15",
    "postgresql-server-dev-15",
    "postgresql-15-cron",
    "libclang-dev",
    "clang",
    "pkg-config",
    "sudo",
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

pub fn ensure() -> Result<()> {
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

    let config = pgrx_home().join("config.toml");
    let initialised = std::fs::read_to_string(&config)
        .map(|c| c.contains(PG_CONFIG))
        .unwrap_or(false);
    if initialised {
        println!("xtask: pgrx knows the system PostgreSQL 15");
    } else {
        cmd("cargo")
            .args(["pgrx", "init", "--pg15", PG_CONFIG])
            .status_ok()?;
    }
    Ok(())
}

/// What `cargo xtask bench` needs beyond the tests: the chart's font and Python's venv.
pub fn ensure_bench() -> Result<()> {
    install_missing(&["fonts-dejavu-core", "python3-venv"])
}

fn pgrx_home() -> PathBuf {
    std::env::var_os("PGRX_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".pgrx")
        })
}
