//! `cargo xtask package`: a Debian package of the extension for PostgreSQL 15, built with
//! dpkg-deb from the files `cargo pgrx package` lays out in pg_config's paths.

use crate::install::{build_package, Profile};
use crate::pg_tree::MAJOR;
use crate::run::{cmd, output_of, workspace_root, Result, StatusOk};
use std::path::{Path, PathBuf};

pub const EXTENSION_VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn package_name() -> String {
    format!("postgresql-{MAJOR}-pg-pullsync")
}

fn control_file(installed_kib: u64) -> String {
    format!(
        "Package: {}\n\
         Version: {EXTENSION_VERSION}\n\
         Architecture: amd64\n\
         Maintainer: pg_pullsync developers <pg_pullsync@localhost>\n\
         Depends: postgresql-{MAJOR}, libc6\n\
         Recommends: postgresql-{MAJOR}-cron\n\
         Section: database\n\
         Priority: optional\n\
         Installed-Size: {installed_kib}\n\
         Description: pull data from HTTP APIs into PostgreSQL {MAJOR}\n \
         pg_pullsync syncs Threads analytics and conversation feeds into the database it\n \
         runs in, with background workers and pg_cron, complete and correct.\n",
        package_name()
    )
}

/// Builds the .deb from a fresh `cargo pgrx package`; returns its path.
pub fn build_deb(profile: Profile) -> Result<PathBuf> {
    let package = build_package(
        &workspace_root(),
        &workspace_root().join("target"),
        "deb-files",
        profile,
    )?;
    let staging = workspace_root().join("target/xtask/deb-root");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(staging.join("DEBIAN"))?;
    let mut bytes = 0;
    for file in package.files()? {
        let to = staging.join(&file);
        std::fs::create_dir_all(to.parent().expect("a file inside a directory"))?;
        bytes += std::fs::copy(package.root.join(&file), &to)?;
    }
    std::fs::write(
        staging.join("DEBIAN/control"),
        control_file(bytes.div_ceil(1024)),
    )?;
    let deb = workspace_root().join(format!(
        "target/{}_{EXTENSION_VERSION}_amd64.deb",
        package_name()
    ));
    cmd("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&staging)
        .arg(&deb)
        .status_ok()?;
    println!("xtask: built {}", deb.display());
    Ok(deb)
}

/// The files the package must hold, relative to the root.
fn expected_files() -> Vec<String> {
    let ext = format!("usr/share/postgresql/{MAJOR}/extension");
    let mut files = vec![
        format!("usr/lib/postgresql/{MAJOR}/lib/pg_pullsync.so"),
        format!("{ext}/pg_pullsync.control"),
        format!("{ext}/pg_pullsync--{EXTENSION_VERSION}.sql"),
    ];
    for script in upgrade_scripts() {
        files.push(format!("{ext}/{script}"));
    }
    files
}

/// The upgrade scripts in sql/ (`pg_pullsync--<old>--<new>.sql`).
pub fn upgrade_scripts() -> Vec<String> {
    let mut scripts: Vec<String> = std::fs::read_dir(workspace_root().join("sql"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pg_pullsync--") && n.matches("--").count() == 2)
                .collect()
        })
        .unwrap_or_default();
    scripts.sort();
    scripts
}

/// Extracts `deb` into a scratch root and checks what it holds: the control fields, every
/// expected file at pg_config's paths, nothing else, a shared object, the right
/// default_version. Returns the problems found (none when it is right).
pub fn check_deb(deb: &Path) -> Result<Vec<String>> {
    let scratch = workspace_root().join("target/xtask/deb-check");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    cmd("dpkg-deb").arg("-x").arg(deb).arg(&scratch).status_ok()?;
    let mut problems = Vec::new();
    let field = |name: &str| {
        output_of(cmd("dpkg-deb").arg("-f").arg(deb).arg(name)).map(|v| v.trim().to_string())
    };
    for (name, wanted) in [
        ("Package", package_name()),
        ("Version", EXTENSION_VERSION.to_string()),
        ("Architecture", "amd64".to_string()),
    ] {
        if field(name).as_deref() != Some(wanted.as_str()) {
            problems.push(format!("control field {name} is {:?}, not {wanted}", field(name)));
        }
    }
    let listed = crate::install::Package {
        root: scratch.clone(),
    }
    .files()?;
    let listed: Vec<String> = listed
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for file in expected_files() {
        if !listed.contains(&file) {
            problems.push(format!("missing {file}"));
        }
    }
    for file in &listed {
        if !expected_files().contains(file) {
            problems.push(format!("unexpected {file}"));
        }
    }
    let library = scratch.join(format!("usr/lib/postgresql/{MAJOR}/lib/pg_pullsync.so"));
    let kind = output_of(cmd("file").arg("-b").arg(&library)).unwrap_or_default();
    if !kind.contains("ELF 64-bit LSB shared object") {
        problems.push(format!("pg_pullsync.so is not a shared object: {kind}"));
    }
    let control = std::fs::read_to_string(
        scratch.join(format!("usr/share/postgresql/{MAJOR}/extension/pg_pullsync.control")),
    )
    .unwrap_or_default();
    if !control.contains(&format!("default_version = '{EXTENSION_VERSION}'")) {
        problems.push("pg_pullsync.control does not name this version".into());
    }
    Ok(problems)
}

/// `cargo xtask package [--pg 15]`.
pub fn package(args: &[String]) -> Result<()> {
    if let Some(pg) = args
        .iter()
        .position(|a| a == "--pg")
        .and_then(|i| args.get(i + 1))
    {
        if pg != MAJOR {
            return Err(format!("this machine packages for PostgreSQL {MAJOR}, not {pg}").into());
        }
    }
    crate::prereqs::ensure()?;
    let deb = build_deb(Profile::Release)?;
    let problems = check_deb(&deb)?;
    if !problems.is_empty() {
        return Err(format!("the package is wrong: {}", problems.join("; ")).into());
    }
    println!(
        "Install it with: apt install {}  (then see README: Install on your own server)",
        deb.display()
    );
    Ok(())
}
