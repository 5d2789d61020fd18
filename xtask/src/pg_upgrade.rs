//! The pg_upgrade test's clusters (pgrx-tests/tests/pg_upgrade.rs): a PostgreSQL 15
//! cluster on this build, started as the upgrade test's is (xtask/src/upgrade.rs), and two
//! PostgreSQL 18 clusters initdb'd beside it with the same settings, key and ports, never
//! started: the test pg_upgrades the 15 cluster into one by copying, into the other by
//! linking.

use crate::cluster::Cluster;
use crate::install::{install_atomically, Package};
use crate::pg_tree::{cluster_home, Major, PgTree};
use crate::process::{cmd, Result, StatusOk};
use crate::workspace::workspace_root;

pub const OLD: Major = Major::Pg15;
pub const NEW: Major = Major::Pg18;

/// The PostgreSQL 15 the old cluster runs: Debian's package of 15.18. From 15.20 on,
/// PostgreSQL 15 keeps an attribute version in every column's options (`pg_attver`),
/// which the PostgreSQL 18.6 of the wheel does not know: its pg_upgrade stops at
/// restoring the first table with `unrecognized parameter "pg_attver"`, with or without
/// pg_pullsync. An upgrade needs a new version released no earlier than the old one.
const OLD_DEBIAN_PACKAGE: &str = "postgresql-15=15.18-0+deb12u1";

/// The old cluster's tree: the system's PostgreSQL 15 (for pg_cron) with the programs and
/// files of `OLD_DEBIAN_PACKAGE` over it, downloaded once into target/xtask/.
fn old_tree() -> Result<PgTree> {
    let tree = PgTree::private(OLD, &format!("{}-pgupgrade", OLD.number()));
    tree.ensure_copied()?;
    // Written last: a tree copied again (after an update of the system's) lacks it.
    let stamp = tree.root.join("xtask-overlay-of");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == OLD_DEBIAN_PACKAGE) {
        return Ok(tree);
    }
    let (name, version) = OLD_DEBIAN_PACKAGE.split_once('=').expect("package=version");
    let downloads = workspace_root().join("target/xtask/debs");
    std::fs::create_dir_all(&downloads)?;
    let find = || -> Result<Option<std::path::PathBuf>> {
        Ok(std::fs::read_dir(&downloads)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|f| {
                    f.to_string_lossy()
                        .starts_with(&format!("{name}_{version}_"))
                })
            }))
    };
    let deb = match find()? {
        Some(deb) => deb,
        None => {
            println!("xtask: downloading {OLD_DEBIAN_PACKAGE} for the pg_upgrade test");
            cmd("apt-get")
                .args(["download", "-q", OLD_DEBIAN_PACKAGE])
                .current_dir(&downloads)
                .status_ok()
                .map_err(|e| {
                    format!(
                        "cannot download {OLD_DEBIAN_PACKAGE} (the PostgreSQL 15 the pg_upgrade \
                         test starts from; see xtask/src/pg_upgrade.rs): {e}"
                    )
                })?;
            find()?.ok_or("apt-get download left no package file")?
        }
    };
    cmd("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tree.root)
        .status_ok()?;
    std::fs::write(stamp, OLD_DEBIAN_PACKAGE)?;
    Ok(tree)
}

/// The clusters of the test, the old one first, and the environment it reads.
pub struct Prepared {
    pub clusters: [Cluster; 3],
    pub env: Vec<(String, String)>,
}

/// Starts the old cluster and creates the new ones; `packages` (one per version) go into
/// the trees they run from.
pub fn prepare(packages: &[&Package]) -> Result<Prepared> {
    let old_tree = old_tree()?;
    for package in packages {
        let tree = if package.major == OLD {
            old_tree.clone()
        } else {
            package.major.build_tree()
        };
        install_atomically(package, &tree)?;
    }
    let home = cluster_home("pgupgrade");
    let [port, feed_port] = crate::ports::free_ports::<2>()?;
    // Never up at once: each takes the old one's ports, so the feed source the test's
    // consumer holds stays right.
    let old = Cluster::new(home.join(OLD.number().to_string()), port, old_tree);
    let copy = Cluster::new(
        home.join(format!("{}-copy", NEW.number())),
        port,
        NEW.build_tree(),
    );
    let link = Cluster::new(
        home.join(format!("{}-link", NEW.number())),
        port,
        NEW.build_tree(),
    );
    // What an interrupted run left, a server too.
    for cluster in [&old, &copy, &link] {
        cluster.remove()?;
    }
    crate::upgrade::start_cluster(&old, feed_port)?;
    for new in [&copy, &link] {
        // pg_upgrade wants checksums as the old cluster has them: initdb of 15 leaves them
        // off, of 18 turns them on.
        new.create_with(
            crate::upgrade::KEY,
            &crate::upgrade::settings(NEW, feed_port),
            &["--no-data-checksums"],
        )?;
    }
    let mut env = crate::upgrade::test_env(&old, feed_port);
    env.extend([
        (
            "PULLSYNC_PG_UPGRADE_NEW_BIN".into(),
            NEW.build_tree().bin().display().to_string(),
        ),
        (
            "PULLSYNC_PG_UPGRADE_COPY_PGDATA".into(),
            copy.pgdata().display().to_string(),
        ),
        (
            "PULLSYNC_PG_UPGRADE_LINK_PGDATA".into(),
            link.pgdata().display().to_string(),
        ),
    ]);
    Ok(Prepared {
        clusters: [old, copy, link],
        env,
    })
}
