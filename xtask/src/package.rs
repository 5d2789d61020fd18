//! `cargo xtask package [--pg 15|18]`: a Debian package of the extension, built with
//! dpkg-deb from the files `cargo pgrx package` lays out in pg_config's paths, placed where
//! Debian's (and PGDG's) PostgreSQL of that version looks for them.

use crate::install::{build_package, Package, Profile};
use crate::pg_tree::Major;
use crate::process::{cmd, output_of, Result, StatusOk};
use crate::workspace::{cargo, workspace_root};
use std::path::{Path, PathBuf};

/// The extension's version: the root crate's, from `cargo metadata` (xtask's own version
/// is another crate's).
pub fn extension_version() -> Result<String> {
    let metadata = output_of(cargo().args(["metadata", "--no-deps", "--format-version", "1"]))
        .ok_or("cargo metadata failed")?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
    metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == "pg_pullsync"))
        .and_then(|p| p["version"].as_str())
        .map(str::to_string)
        .ok_or_else(|| "cargo metadata names no pg_pullsync version".into())
}

/// The machine's Debian architecture (amd64, arm64, …).
fn architecture() -> Result<String> {
    output_of(cmd("dpkg").arg("--print-architecture"))
        .map(|a| a.trim().to_string())
        .ok_or_else(|| "dpkg --print-architecture failed".into())
}

pub fn package_name(major: Major) -> String {
    format!("postgresql-{}-pg-pullsync", major.number())
}

/// Where a file of the version's build tree goes in a Debian system.
fn debian_path(major: Major, file: &Path) -> Result<PathBuf> {
    let tree = major.build_tree();
    let pg = major.number();
    for (dir, debian) in [
        (tree.libdir(), format!("usr/lib/postgresql/{pg}/lib")),
        (
            tree.extension_dir(),
            format!("usr/share/postgresql/{pg}/extension"),
        ),
    ] {
        let relative = dir.strip_prefix(&tree.root)?;
        if let Ok(rest) = file.strip_prefix(relative) {
            return Ok(Path::new(&debian).join(rest));
        }
    }
    Err(format!(
        "{} is neither a library nor an extension file",
        file.display()
    )
    .into())
}

fn control_file(major: Major, version: &str, architecture: &str, installed_kib: u64) -> String {
    let pg = major.number();
    format!(
        "Package: {}\n\
         Version: {version}\n\
         Architecture: {architecture}\n\
         Maintainer: pg_pullsync developers <pg_pullsync@localhost>\n\
         Depends: postgresql-{pg}, libc6\n\
         Recommends: postgresql-{pg}-cron\n\
         Section: database\n\
         Priority: optional\n\
         Installed-Size: {installed_kib}\n\
         Description: pull data from HTTP APIs into PostgreSQL {pg}\n \
         pg_pullsync syncs Threads analytics and conversation feeds into the database it\n \
         runs in, with background workers and pg_cron, complete and correct.\n",
        package_name(major)
    )
}

/// Builds the .deb of `package` into target/deb/ (replacing that version's older ones);
/// returns its path.
pub fn build_deb(package: &Package) -> Result<PathBuf> {
    let major = package.major;
    let pg = major.number();
    let version = extension_version()?;
    let staging = workspace_root().join(format!("target/xtask/deb-root-{pg}"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(staging.join("DEBIAN"))?;
    let mut bytes = 0;
    for file in package.files()? {
        let to = staging.join(debian_path(major, &file)?);
        std::fs::create_dir_all(to.parent().expect("a file inside a directory"))?;
        bytes += std::fs::copy(package.root.join(&file), &to)?;
    }
    std::fs::write(
        staging.join("DEBIAN/control"),
        control_file(major, &version, &architecture()?, bytes.div_ceil(1024)),
    )?;
    let debs = workspace_root().join("target/deb");
    std::fs::create_dir_all(&debs)?;
    for old in std::fs::read_dir(&debs)?.flatten() {
        if old
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{}_", package_name(major)))
        {
            std::fs::remove_file(old.path())?;
        }
    }
    let deb = debs.join(format!(
        "{}_{version}_{}.deb",
        package_name(major),
        architecture()?
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
fn expected_files(major: Major, version: &str) -> Vec<String> {
    let pg = major.number();
    let ext = format!("usr/share/postgresql/{pg}/extension");
    let mut files = vec![
        format!("usr/lib/postgresql/{pg}/lib/pg_pullsync.so"),
        format!("{ext}/pg_pullsync.control"),
        format!("{ext}/pg_pullsync--{version}.sql"),
    ];
    for script in upgrade_scripts() {
        files.push(format!("{ext}/{script}"));
    }
    files
}

/// Whether some upgrade script leads to `version`: without one, servers of the previous
/// version cannot `ALTER EXTENSION … UPDATE`, and their workers would wait forever.
fn reaches(scripts: &[String], version: &str) -> bool {
    scripts
        .iter()
        .any(|s| s.ends_with(&format!("--{version}.sql")))
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
pub fn check_deb(major: Major, deb: &Path) -> Result<Vec<String>> {
    let pg = major.number();
    let version = extension_version()?;
    let scratch = workspace_root().join(format!("target/xtask/deb-check-{pg}"));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    cmd("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&scratch)
        .status_ok()?;
    let mut problems = Vec::new();
    let field = |name: &str| {
        output_of(cmd("dpkg-deb").arg("-f").arg(deb).arg(name)).map(|v| v.trim().to_string())
    };
    for (name, wanted) in [
        ("Package", package_name(major)),
        ("Version", version.clone()),
        ("Architecture", architecture()?),
    ] {
        if field(name).as_deref() != Some(wanted.as_str()) {
            problems.push(format!(
                "control field {name} is {:?}, not {wanted}",
                field(name)
            ));
        }
    }
    let listed = crate::install::files_below(&scratch)?;
    let listed: Vec<String> = listed
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for file in expected_files(major, &version) {
        if !listed.contains(&file) {
            problems.push(format!("missing {file}"));
        }
    }
    for file in &listed {
        if !expected_files(major, &version).contains(file) {
            problems.push(format!("unexpected {file}"));
        }
    }
    let library = scratch.join(format!("usr/lib/postgresql/{pg}/lib/pg_pullsync.so"));
    // ELF magic, 64-bit, little-endian, and e_type ET_DYN: a shared object.
    let head: Vec<u8> = std::fs::read(&library)
        .unwrap_or_default()
        .into_iter()
        .take(18)
        .collect();
    if head.len() < 18 || &head[..6] != b"\x7fELF\x02\x01" || head[16..18] != [3, 0] {
        problems.push("pg_pullsync.so is not a 64-bit shared object".into());
    }
    let control = std::fs::read_to_string(scratch.join(format!(
        "usr/share/postgresql/{pg}/extension/pg_pullsync.control"
    )))
    .unwrap_or_default();
    if !control.contains(&format!("default_version = '{version}'")) {
        problems.push("pg_pullsync.control does not name this version".into());
    }
    if !reaches(&upgrade_scripts(), &version) {
        problems.push(format!(
            "no sql/pg_pullsync--<previous>--{version}.sql: the previous version cannot upgrade"
        ));
    }
    Ok(problems)
}

/// `cargo xtask package [--pg 15|18]`.
pub fn package(args: &[String]) -> Result<()> {
    let majors = crate::args::versions(args)?;
    crate::prereqs::ensure(&majors)?;
    for major in majors {
        let files = build_package(
            &workspace_root(),
            major,
            &format!("deb-files-{}", major.pgrx_name()),
            Profile::Release,
        )?;
        let deb = build_deb(&files)?;
        let problems = check_deb(major, &deb)?;
        if !problems.is_empty() {
            return Err(format!("the package is wrong: {}", problems.join("; ")).into());
        }
        println!("Install it with: apt install {}", deb.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_build_tree_files_to_debian_paths() {
        let tree = Major::Pg18.build_tree();
        let library = tree.libdir().join("pg_pullsync.so");
        let relative = library.strip_prefix(&tree.root).unwrap();
        assert_eq!(
            debian_path(Major::Pg18, relative).unwrap(),
            Path::new("usr/lib/postgresql/18/lib/pg_pullsync.so")
        );
        let control = Major::Pg15
            .build_tree()
            .extension_dir()
            .join("pg_pullsync.control");
        let relative = control
            .strip_prefix(&Major::Pg15.build_tree().root)
            .unwrap();
        assert_eq!(
            debian_path(Major::Pg15, relative).unwrap(),
            Path::new("usr/share/postgresql/15/extension/pg_pullsync.control")
        );
        assert!(debian_path(Major::Pg15, Path::new("etc/passwd")).is_err());
    }

    #[test]
    fn an_upgrade_script_must_lead_to_the_version() {
        let scripts = ["pg_pullsync--0.1.0--0.2.0.sql".to_string()];
        assert!(reaches(&scripts, "0.2.0"));
        assert!(!reaches(&scripts, "0.3.0"));
    }

    #[test]
    fn reads_the_extension_version() {
        let version = extension_version().unwrap();
        assert_eq!(version.split('.').count(), 3, "{version}");
    }
}
