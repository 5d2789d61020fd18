//! The upgrade test's cluster: pg_pullsync 0.1.0 as it landed, rebuilt from its commit and
//! installed into a tree of its own; pgrx-tests/tests/upgrade.rs fills it through real
//! syncs, installs this build's package over it and runs `ALTER EXTENSION … UPDATE`.

use crate::cluster::Cluster;
use crate::install::{build_package, install_atomically, Package, Profile};
use crate::pg_tree::{Major, PgTree};
use crate::run::{cmd, workspace_root, Result, StatusOk};
use std::path::PathBuf;

/// The version every upgrade starts from, and the commit it landed as.
pub const BASE_VERSION: &str = "0.1.0";
const BASE_COMMIT: &str = "4a0883ea7e13b651e388d14ec609a59eaa495150";
const PORT: u16 = 28824;
const FEED_PORT: u16 = 28825;
const KEY: &str = "dXBncmFkZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGU=";

/// The sources of the base version, exported from git (once).
fn base_sources() -> Result<PathBuf> {
    let dir = workspace_root().join(format!("target/xtask/src-{BASE_VERSION}"));
    if dir.join("Cargo.toml").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    let archive = workspace_root().join(format!("target/xtask/src-{BASE_VERSION}.tar"));
    cmd("git")
        .current_dir(workspace_root())
        .args(["archive", "--format=tar", "-o"])
        .arg(&archive)
        .arg(BASE_COMMIT)
        .status_ok()
        .map_err(|e| {
            format!("cannot export {BASE_VERSION} ({BASE_COMMIT}) from git, is this a shallow clone? {e}")
        })?;
    cmd("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .status_ok()?;
    // 0.1.0 named only the pg15 feature; its code builds for 18 with pgrx's own feature.
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    if !text.contains("\npg18 = ") {
        let text = text.replacen(
            "\npg15 = [\"pgrx/pg15\", \"pgrx-tests/pg15\"]\n",
            "\npg15 = [\"pgrx/pg15\", \"pgrx-tests/pg15\"]\npg18 = [\"pgrx/pg18\", \"pgrx-tests/pg18\"]\n",
            1,
        );
        std::fs::write(&manifest, text)?;
    }
    Ok(dir)
}

/// Builds the base version for `major`, installs it into a fresh upgrade tree and starts
/// its cluster. Returns the cluster and the environment the upgrade test reads.
pub fn prepare(major: Major, new_package: &Package) -> Result<(Cluster, Vec<(String, String)>)> {
    let pg = major.pgrx_name();
    let old = build_package(
        &base_sources()?,
        &workspace_root().join(format!("target/xtask/target-{BASE_VERSION}-{pg}")),
        major,
        &format!("package-{BASE_VERSION}-{pg}"),
        Profile::Debug,
    )?;
    let tree = PgTree::private(major, &format!("{}-upgrade", major.number()));
    let cluster = Cluster::new("/tmp/pullsync-up", PORT, tree.clone());
    cluster.remove()?;
    // A fresh copy: the last run left the new version in it.
    if tree.root.exists() {
        std::fs::remove_dir_all(&tree.root)?;
    }
    tree.ensure_copied()?;
    install_atomically(&old, &tree)?;
    cluster.create(&format!(
        "{}pullsync.database = 'upgrade_provider'\n\
         pullsync.http_retry_delay = 5\n\
         pullsync.feed_listen = '127.0.0.1:{FEED_PORT}'\n",
        crate::run::cluster_settings(KEY, major)
    ))?;
    cluster.start()?;
    cluster.psql("postgres", "CREATE DATABASE upgrade_provider")?;
    // Its feed server started before the database existed and comes back after its
    // restart time.
    crate::run::wait_for_listener(FEED_PORT, "the upgrade cluster's feed server")?;
    let env = vec![
        ("PULLSYNC_TEST_DSN".into(), cluster.dsn()),
        (
            "PULLSYNC_TEST_PGDATA".into(),
            cluster.pgdata().display().to_string(),
        ),
        (
            "PULLSYNC_TEST_PG_BIN".into(),
            tree.bin().display().to_string(),
        ),
        (
            "PULLSYNC_UPGRADE_PACKAGE".into(),
            new_package.root.display().to_string(),
        ),
        (
            "PULLSYNC_UPGRADE_TREE".into(),
            tree.root.display().to_string(),
        ),
        (
            "PULLSYNC_UPGRADE_FEED_URL".into(),
            format!("http://127.0.0.1:{FEED_PORT}"),
        ),
        ("PULLSYNC_UPGRADE_FROM".into(), BASE_VERSION.into()),
    ];
    Ok((cluster, env))
}
