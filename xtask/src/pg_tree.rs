//! PostgreSQL installation trees: the system's, and private copies of it under target/pg/
//! that test runs and benchmarks install their builds into, so no server started from the
//! system installation ever sees a library change under it.
//!
//! Debian's PostgreSQL finds its share, lib and include directories relative to its own
//! binaries, so a copy of the three directories under a new root is a working
//! installation with its own `pg_config`.

use crate::run::{cmd, output_of, workspace_root, Result, StatusOk};
use std::path::{Path, PathBuf};

pub const MAJOR: &str = "15";
/// The directories of a Debian PostgreSQL installation, relative to its root.
const DIRECTORIES: [&str; 3] = [
    "usr/lib/postgresql/15",
    "usr/share/postgresql/15",
    "usr/include/postgresql",
];
/// Written last into a private tree: which system build it copies.
const STAMP: &str = "xtask-copy-of";

#[derive(Clone, Debug)]
pub struct PgTree {
    /// `/` for the system installation.
    pub root: PathBuf,
}

impl PgTree {
    pub fn system() -> PgTree {
        PgTree { root: "/".into() }
    }

    /// A private tree named `name` (`target/pg/<name>`); `ensure_copied` fills it.
    pub fn private(name: &str) -> PgTree {
        PgTree {
            root: workspace_root().join("target/pg").join(name),
        }
    }

    pub fn bin(&self) -> PathBuf {
        self.root.join("usr/lib/postgresql").join(MAJOR).join("bin")
    }

    pub fn pg_config(&self) -> PathBuf {
        self.bin().join("pg_config")
    }

    pub fn libdir(&self) -> PathBuf {
        self.root.join("usr/lib/postgresql").join(MAJOR).join("lib")
    }

    pub fn is_system(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Copies the system installation into this private tree, unless it already holds a
    /// copy of the same system build (a Debian update of PostgreSQL makes a new copy).
    pub fn ensure_copied(&self) -> Result<()> {
        assert!(!self.is_system(), "the system tree is not a copy");
        let wanted = system_version()?;
        let stamp = self.root.join(STAMP);
        if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
            return Ok(());
        }
        println!(
            "xtask: copying the system PostgreSQL {MAJOR} into {}",
            self.root.display()
        );
        if self.root.exists() {
            std::fs::remove_dir_all(&self.root)?;
        }
        for dir in DIRECTORIES {
            let to = self.root.join(dir);
            std::fs::create_dir_all(to.parent().expect("a nested directory"))?;
            cmd("cp")
                .arg("-a")
                .arg(Path::new("/").join(dir))
                .arg(&to)
                .status_ok()?;
        }
        std::fs::write(stamp, wanted)?;
        Ok(())
    }
}

fn system_version() -> Result<String> {
    output_of(cmd(PgTree::system().pg_config().to_str().expect("utf-8")).arg("--version"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| "cannot run the system pg_config".into())
}
