//! The workspace xtask builds: its root, and cargo run there with xtask's own pgrx home.

use crate::process::{cmd, Result, StatusOk};
use std::path::PathBuf;
use std::process::Command;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// pgrx's home for every cargo command of xtask: its own, so `~/.pgrx` (a developer's
/// other pgrx projects) is neither read nor changed.
pub fn pgrx_home() -> PathBuf {
    workspace_root().join("target/pgrx-home")
}

pub fn cargo() -> Command {
    let mut c = cmd("cargo");
    c.current_dir(workspace_root())
        .env("PGRX_HOME", pgrx_home());
    c
}

/// Builds one of the test-tooling binaries (the simulator, its benchmark) in release mode.
pub fn build_release_bin(name: &str) -> Result<()> {
    cargo()
        .args(["build", "--release", "-p", "pullsync-tests", "--bin", name])
        .status_ok()
}

/// The same in debug mode, which shares the integration tests' build.
pub fn build_debug_bin(name: &str) -> Result<()> {
    cargo()
        .args(["build", "-p", "pullsync-tests", "--bin", name])
        .status_ok()
}
