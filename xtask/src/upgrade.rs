//! The upgrade test's cluster: a released version of pg_pullsync as it landed, rebuilt
//! from its commit and installed into a tree of its own; pgrx-tests/tests/upgrade.rs fills
//! it through real syncs, installs this build's package over it and runs `ALTER
//! EXTENSION … UPDATE` along the chain of upgrade scripts. The pg_upgrade test
//! (xtask/src/pg_upgrade.rs) starts its cluster the same way.

use crate::cluster::Cluster;
use crate::install::{build_package, install_atomically, Package, Profile};
use crate::pg_tree::{Major, PgTree};
use crate::process::{cmd, Result, StatusOk};
use crate::releases::Release;
use crate::workspace::workspace_root;
use std::path::{Path, PathBuf};

/// The sealing key of the upgrade tests' clusters.
pub const KEY: &str = "dXBncmFkZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGU=";

/// The sources of `release` for `major`, exported from git (once), with the changes a
/// rebuild here needs (`patch_sources`).
fn base_sources(release: &Release, major: Major) -> Result<PathBuf> {
    let version = release.version;
    let dir = workspace_root().join(format!("target/xtask/src-{version}-{}", major.pgrx_name()));
    let stamp = dir.join(".xtask-exported-from");
    let exported = format!("{} patched for {version}", release.commit);
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == exported) {
        return Ok(dir);
    }
    // Exported and patched beside, then renamed: a half-done export is never reused.
    let partial = dir.with_extension("partial");
    for stale in [&dir, &partial] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)?;
        }
    }
    std::fs::create_dir_all(&partial)?;
    let archive = workspace_root().join(format!("target/xtask/src-{version}.tar"));
    cmd("git")
        .current_dir(workspace_root())
        .args(["archive", "--format=tar", "-o"])
        .arg(&archive)
        .arg(release.commit)
        .status_ok()
        .map_err(|e| {
            format!(
                "cannot export {version} ({}) from git, is this a shallow clone? {e}",
                release.commit
            )
        })?;
    cmd("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&partial)
        .status_ok()?;
    patch_sources(release, major, &partial)?;
    std::fs::write(partial.join(".xtask-exported-from"), exported)?;
    std::fs::rename(&partial, &dir)?;
    Ok(dir)
}

/// 0.1.0 and 0.2.0 both numbered their threads-model 0.1.0 (it takes the workspace's
/// version since 0.3.0): 0.1.0's copy is renamed to `0.1.0-base`, because the builds share
/// one target directory, where cargo keys a path crate by name, version and path relative
/// to its workspace, and an unrenamed copy would be taken for 0.2.0's. 0.1.0 was released for PostgreSQL 15
/// only: for 18 (which `cargo xtask soak --against 0.1.0` runs) its manifest gains the
/// `pg18` feature and its calls of `proc_exit`, which PostgreSQL 18's binding no longer
/// marks as not returning, are followed by `unreachable!()` (what src/plumbing/compat.rs
/// does since). Later releases build as they landed.
fn patch_sources(release: &Release, major: Major, dir: &Path) -> Result<()> {
    if release.version != "0.1.0" {
        return Ok(());
    }
    patch(
        &dir.join("crates/threads-model/Cargo.toml"),
        "\nversion = \"0.1.0\"\n",
        "\nversion = \"0.1.0-base\"\n",
    )?;
    patch(
        &dir.join("Cargo.lock"),
        "name = \"threads-model\"\nversion = \"0.1.0\"\n",
        "name = \"threads-model\"\nversion = \"0.1.0-base\"\n",
    )?;
    if major == Major::Pg18 {
        patch(
            &dir.join("Cargo.toml"),
            "\npg15 = [\"pgrx/pg15\", \"pgrx-tests/pg15\"]\n",
            "\npg15 = [\"pgrx/pg15\", \"pgrx-tests/pg15\"]\npg18 = [\"pgrx/pg18\", \"pgrx-tests/pg18\"]\n",
        )?;
        for file in ["src/feed/server.rs", "src/jobs/worker.rs"] {
            patch(
                &dir.join(file),
                "unsafe { pg_sys::proc_exit(1) };",
                "unsafe { pg_sys::proc_exit(1) };\nunreachable!();",
            )?;
        }
    }
    Ok(())
}

/// The command that installs `package` into `tree` the way xtask installs (by rename):
/// this xtask binary, for the test to run while the old version's server runs.
fn install_command(package: &Package, tree: &PgTree) -> Result<String> {
    Ok(format!(
        "{} install-package {} {} {}",
        std::env::current_exe()?.display(),
        package.major.number(),
        package.root.display(),
        tree.root.display()
    ))
}

/// `cargo xtask install-package <major> <package root> <tree root>`.
pub fn install_package(args: &[String]) -> Result<()> {
    let [major, package, tree] = args else {
        return Err("usage: install-package <15|18> <package root> <tree root>".into());
    };
    let major = Major::parse(major)?;
    install_atomically(
        &Package {
            major,
            root: package.into(),
        },
        &PgTree {
            major,
            root: tree.into(),
        },
    )
}

/// Replaces every `from` in `file` with `to`; an error when there is none.
fn patch(file: &Path, from: &str, to: &str) -> Result<()> {
    let text = std::fs::read_to_string(file)?;
    if !text.contains(from) {
        return Err(format!("{} has no {from:?} to patch", file.display()).into());
    }
    std::fs::write(file, text.replace(from, to))?;
    Ok(())
}

/// `release`'s package for `major`, built from its commit (once).
pub fn base_package(release: &Release, major: Major) -> Result<Package> {
    build_package(
        &base_sources(release, major)?,
        major,
        &format!("package-{}-{}", release.version, major.pgrx_name()),
        Profile::Debug,
    )
}

/// Installs `old`, `release`'s package, into a fresh upgrade tree and starts its cluster
/// (its feed server on; both on ports the OS handed out). Returns the cluster and the
/// environment the upgrade test reads.
pub fn prepare(
    release: &Release,
    old: &Package,
    new_package: &Package,
) -> Result<(Cluster, Vec<(String, String)>)> {
    let major = old.major;
    let tree = PgTree::private(major, &format!("{}-upgrade", major.number()));
    Cluster::new(crate::pg_tree::cluster_home("up"), 0, tree.clone()).remove()?;
    let [port, feed_port] = crate::ports::free_ports::<2>()?;
    let cluster = Cluster::new(crate::pg_tree::cluster_home("up"), port, tree.clone());
    // A fresh copy: the last run left the new version in it.
    if tree.root.exists() {
        std::fs::remove_dir_all(&tree.root)?;
    }
    tree.ensure_copied()?;
    install_atomically(old, &tree)?;
    start_cluster(&cluster, feed_port)?;
    let mut env = test_env(&cluster, feed_port);
    env.extend([
        (
            "PULLSYNC_UPGRADE_INSTALL".into(),
            install_command(new_package, &tree)?,
        ),
        ("PULLSYNC_UPGRADE_FROM".into(), release.version.into()),
    ]);
    Ok((cluster, env))
}

/// The settings of the upgrade tests' clusters: pg_pullsync's workers and its feed server
/// (on `feed_port`) serve the provider database of pgrx-tests/src/fill.rs.
pub fn settings(major: Major, feed_port: u16) -> String {
    format!(
        "{}pullsync.database = 'upgrade_provider'\n\
         pullsync.http_retry_delay = 5\n\
         pullsync.feed_listen = '127.0.0.1:{feed_port}'\n",
        crate::cluster::cluster_settings(major)
    )
}

/// Creates `cluster` (a new one) with [`settings`] and the upgrade tests' key, starts it,
/// creates the provider database and waits for the feed server to serve it.
pub fn start_cluster(cluster: &Cluster, feed_port: u16) -> Result<()> {
    cluster.create(KEY, &settings(cluster.tree.major, feed_port))?;
    cluster.start()?;
    cluster.psql("postgres", "CREATE DATABASE upgrade_provider")?;
    // Its feed server started before the database existed and comes back after its
    // restart time.
    crate::cluster::wait_for_feed_server(cluster, feed_port, "the upgrade cluster's feed server")
}

/// What the upgrade tests read of a cluster `start_cluster` started: how to reach it and
/// its feed server, its data directory and its programs.
pub fn test_env(cluster: &Cluster, feed_port: u16) -> Vec<(String, String)> {
    vec![
        ("PULLSYNC_TEST_DSN".into(), cluster.dsn()),
        (
            "PULLSYNC_TEST_PGDATA".into(),
            cluster.pgdata().display().to_string(),
        ),
        (
            "PULLSYNC_TEST_PG_BIN".into(),
            cluster.tree.bin().display().to_string(),
        ),
        (
            "PULLSYNC_UPGRADE_FEED_URL".into(),
            format!("http://127.0.0.1:{feed_port}"),
        ),
    ]
}
