//! Builds the extension into a package directory and installs packages atomically.
//!
//! `cargo pgrx install` copies the library over the installed one in place; a server that
//! has it mapped then crashes (SIGSEGV) on its next page fault into it. Here every file is
//! written beside its destination and renamed over it, so a running server keeps the
//! library it loaded and new backends load the new one.

use crate::pg_tree::{Major, PgTree};
use crate::process::{cmd, Result, StatusOk};
use crate::workspace::workspace_root;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// An extension package for one PostgreSQL version: files laid out as below the root of
/// one of that version's trees.
pub struct Package {
    pub major: Major,
    pub root: PathBuf,
}

impl Package {
    /// Every file, relative to the root (`usr/lib/postgresql/15/lib/pg_pullsync.so`, …).
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        files_below(&self.root)
    }
}

/// Every file below `root`, relative to it, sorted.
pub fn files_below(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    collect_files(root, Path::new(""), &mut files)?;
    files.sort();
    Ok(files)
}

fn collect_files(root: &Path, relative: &Path, into: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, into)?;
        } else {
            into.push(path);
        }
    }
    Ok(())
}

/// Builds the extension of the workspace at `source` (this one, or an older version's
/// sources) for `major` with `cargo pgrx package` into `target/xtask/<label>/`.
///
/// Every build shares the workspace's target directory, so the crates they have in common
/// compile once. Their libraries do not: each variant (PostgreSQL version, extension
/// version, test build) links the same `deps/libpg_pullsync.so`, and cargo would take
/// the last variant's file for this one's when its own build is fresh. Removing the file
/// first makes cargo link this variant again (only the last step).
///
/// The build compiles against the version's build tree, whose layout every tree of that
/// version shares, so the package installs into any of them by swapping the root.
pub fn build_package(
    source: &Path,
    major: Major,
    label: &str,
    profile: Profile,
) -> Result<Package> {
    let target_dir = workspace_root().join("target");
    remove_linked_library(&target_dir, profile)?;
    let out = workspace_root().join("target/xtask").join(label);
    if out.exists() {
        // Files of an earlier build (an older version's SQL) must not ship again.
        std::fs::remove_dir_all(&out)?;
    }
    let mut build = crate::workspace::cargo();
    build
        .current_dir(source)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["pgrx", "package", "--pg-config"])
        .arg(major.build_tree().pg_config())
        .arg("--out-dir")
        .arg(&out);
    if profile == Profile::Debug {
        build.arg("--debug");
    }
    println!(
        "xtask: building the {} package of {} ({label})",
        profile.name(),
        source.display()
    );
    build.status_ok()?;
    let relative = major
        .build_tree()
        .root
        .strip_prefix("/")
        .expect("an absolute path")
        .to_path_buf();
    Ok(Package {
        major,
        root: out.join(relative),
    })
}

/// Removes the linked extension library of `profile`, so the next build links its own.
pub fn remove_linked_library(target_dir: &Path, profile: Profile) -> Result<()> {
    let dir = target_dir.join(profile.name());
    for file in [
        dir.join("libpg_pullsync.so"),
        dir.join("deps/libpg_pullsync.so"),
    ] {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// Installs `package` into `tree`, each file renamed over its destination.
pub fn install_atomically(package: &Package, tree: &PgTree) -> Result<()> {
    assert_eq!(
        package.major, tree.major,
        "a package installs into its own version"
    );
    let files = package.files()?;
    for file in &files {
        let destination = tree.root.join(file);
        let directory = destination.parent().expect("a file inside a directory");
        std::fs::create_dir_all(directory)?;
        let name = destination
            .file_name()
            .expect("a file name")
            .to_string_lossy();
        let staged = directory.join(format!(".{name}.xtask-{}", std::process::id()));
        let bytes = std::fs::read(package.root.join(file))?;
        let mut out = std::fs::File::create(&staged)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        drop(out);
        cmd("chmod")
            .arg(if name.ends_with(".so") { "755" } else { "644" })
            .arg(&staged)
            .status_ok()?;
        std::fs::rename(&staged, &destination)?;
    }
    println!(
        "xtask: installed {} files into {} (each renamed into place)",
        files.len(),
        tree.root.display()
    );
    Ok(())
}

/// Builds this workspace's extension for the tree's version and installs it there.
pub fn build_and_install(tree: &PgTree, profile: Profile) -> Result<Package> {
    let package = build_package(
        &workspace_root(),
        tree.major,
        &format!("package-{}-{}", tree.major.pgrx_name(), profile.name()),
        profile,
    )?;
    install_atomically(&package, tree)?;
    Ok(package)
}
