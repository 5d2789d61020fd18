//! The upgrade test's cluster: pg_pullsync 0.1.0 as it landed, rebuilt from its commit and
//! installed into a tree of its own; pgrx-tests/tests/upgrade.rs fills it through real
//! syncs, installs this build's package over it and runs `ALTER EXTENSION … UPDATE`.

use crate::cluster::Cluster;
use crate::install::{build_package, install_atomically, Package, Profile};
use crate::pg_tree::{Major, PgTree};
use crate::run::{cmd, workspace_root, Result, StatusOk};
use std::path::{Path, PathBuf};

/// The version every upgrade starts from, and the commit it landed as.
pub const BASE_VERSION: &str = "0.1.0";
const BASE_COMMIT: &str = "4a0883ea7e13b651e388d14ec609a59eaa495150";
const PORT: u16 = 28824;
const FEED_PORT: u16 = 28825;
const KEY: &str = "dXBncmFkZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGU=";

/// The sources of the base version for `major`, exported from git (once). 0.1.0 was
/// released for PostgreSQL 15 only: for 18 its manifest gains the `pg18` feature and its
/// calls of `proc_exit`, which PostgreSQL 18's binding no longer marks as not returning,
/// are followed by `unreachable!()` (what src/pg_compat.rs does since). Its copy of
/// threads-model is renamed to version `0.1.0-base`: the two builds share one target
/// directory, where cargo keys a path crate by name, version and path relative to its
/// workspace, so an unrenamed copy would be taken for this tree's threads-model (and
/// the other way round). Nothing else changes.
fn base_sources(major: Major) -> Result<PathBuf> {
    let dir = workspace_root().join(format!(
        "target/xtask/src-{BASE_VERSION}-{}",
        major.pgrx_name()
    ));
    let stamp = dir.join(".xtask-exported-from");
    let exported = format!("{BASE_COMMIT} with threads-model 0.1.0-base");
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
        .arg(&partial)
        .status_ok()?;
    patch(
        &partial.join("crates/threads-model/Cargo.toml"),
        "\nversion = \"0.1.0\"\n",
        "\nversion = \"0.1.0-base\"\n",
    )?;
    patch(
        &partial.join("Cargo.lock"),
        "name = \"threads-model\"\nversion = \"0.1.0\"\n",
        "name = \"threads-model\"\nversion = \"0.1.0-base\"\n",
    )?;
    if major == Major::Pg18 {
        patch(
            &partial.join("Cargo.toml"),
            "\npg15 = [\"pgrx/pg15\", \"pgrx-tests/pg15\"]\n",
            "\npg15 = [\"pgrx/pg15\", \"pgrx-tests/pg15\"]\npg18 = [\"pgrx/pg18\", \"pgrx-tests/pg18\"]\n",
        )?;
        for file in ["src/feed/server.rs", "src/jobs/worker.rs"] {
            patch(
                &partial.join(file),
                "unsafe { pg_sys::proc_exit(1) };",
                "unsafe { pg_sys::proc_exit(1) };\nunreachable!();",
            )?;
        }
    }
    std::fs::write(partial.join(".xtask-exported-from"), exported)?;
    std::fs::rename(&partial, &dir)?;
    Ok(dir)
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

/// The base version's package for `major`, built from its commit (once).
pub fn base_package(major: Major) -> Result<Package> {
    build_package(
        &base_sources(major)?,
        major,
        &format!("package-{BASE_VERSION}-{}", major.pgrx_name()),
        Profile::Debug,
    )
}

/// Builds the base version for `major`, installs it into a fresh upgrade tree and starts
/// its cluster. Returns the cluster and the environment the upgrade test reads.
pub fn prepare(major: Major, new_package: &Package) -> Result<(Cluster, Vec<(String, String)>)> {
    let old = base_package(major)?;
    let tree = PgTree::private(major, &format!("{}-upgrade", major.number()));
    let cluster = Cluster::new("/tmp/pullsync-up", PORT, tree.clone());
    cluster.remove()?;
    // A fresh copy: the last run left the new version in it.
    if tree.root.exists() {
        std::fs::remove_dir_all(&tree.root)?;
    }
    tree.ensure_copied()?;
    install_atomically(&old, &tree)?;
    cluster.create(
        KEY,
        &format!(
            "{}pullsync.database = 'upgrade_provider'\n\
             pullsync.http_retry_delay = 5\n\
             pullsync.feed_listen = '127.0.0.1:{FEED_PORT}'\n",
            crate::run::cluster_settings(major)
        ),
    )?;
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
            "PULLSYNC_UPGRADE_INSTALL".into(),
            install_command(new_package, &tree)?,
        ),
        (
            "PULLSYNC_UPGRADE_FEED_URL".into(),
            format!("http://127.0.0.1:{FEED_PORT}"),
        ),
        ("PULLSYNC_UPGRADE_FROM".into(), BASE_VERSION.into()),
    ];
    Ok((cluster, env))
}
