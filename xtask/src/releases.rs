//! The released versions of pg_pullsync and the files they shipped. A release is a
//! promise to the people who installed it: its install script and every upgrade script
//! that led to it never change again. `cargo xtask test` checks the digests below (the
//! upgrade scripts in sql/, the install scripts of every release rebuilt from its commit)
//! and runs the upgrade test from every release. docs/OPERATIONS.md says how a new
//! version is cut.

use crate::install::Package;
use crate::pg_tree::Major;
use crate::process::Result;
use crate::workspace::workspace_root;

pub struct Release {
    pub version: &'static str,
    /// The commit it landed as; the upgrade test rebuilds it from there.
    pub commit: &'static str,
    /// The PostgreSQL versions it was released for.
    pub majors: &'static [Major],
    /// The digest of its install script (`pg_pullsync--<version>.sql`, which pgrx generates
    /// from sql/*.sql and the Rust functions; the same for every PostgreSQL version), as
    /// `install_script_digest` computes it.
    pub install_digest: &'static str,
}

pub const RELEASES: &[Release] = &[
    Release {
        version: "0.1.0",
        commit: "4a0883ea7e13b651e388d14ec609a59eaa495150",
        majors: &[Major::Pg15],
        install_digest: "ac1989f2ab9d11d32f945bb54d0df4447557677eff8868574b981ea082f7acdb",
    },
    Release {
        version: "0.2.0",
        commit: "e1e6da2d984b249ccb93f2a14b1388a3bc6e79c2",
        majors: &[Major::Pg15, Major::Pg18],
        install_digest: "95e07d35629539143223a682aaa68670e3b998f1d36c213bed79e96f3a1b79af",
    },
];

/// Upgrade scripts that shipped in a release, with their SHA-256.
pub const FROZEN_UPGRADE_SCRIPTS: &[(&str, &str)] = &[(
    "pg_pullsync--0.1.0--0.2.0.sql",
    "7c6e9d2056abea481529ca13b2cf8967c7fe8beb5be523d3d2fbf72d72e6e1f7",
)];

/// The releases made for `major`, oldest first: where its upgrade tests start.
pub fn released_for(major: Major) -> impl Iterator<Item = &'static Release> {
    RELEASES.iter().filter(move |r| r.majors.contains(&major))
}

/// Looks a release up by version (for `cargo xtask soak --against`).
pub fn release(version: &str) -> Result<&'static Release> {
    RELEASES
        .iter()
        .find(|r| r.version == version)
        .ok_or_else(|| {
            let known: Vec<&str> = RELEASES.iter().map(|r| r.version).collect();
            format!("{version} is no release; released: {}", known.join(", ")).into()
        })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What differs between sql/ and the released upgrade scripts: an edited, missing or
/// renamed one, or a new script that leads into a released version.
pub fn check_frozen_upgrade_scripts() -> Vec<String> {
    let sql = workspace_root().join("sql");
    let mut problems = Vec::new();
    for (name, wanted) in FROZEN_UPGRADE_SCRIPTS {
        match std::fs::read(sql.join(name)) {
            Ok(bytes) if sha256_hex(&bytes) == *wanted => {}
            Ok(bytes) => problems.push(format!(
                "sql/{name} shipped in a release and was edited (SHA-256 {} instead of {wanted}); \
                 put the change into the next version's upgrade script instead",
                sha256_hex(&bytes)
            )),
            Err(e) => problems.push(format!("sql/{name} shipped in a release and is gone: {e}")),
        }
    }
    for script in crate::package::upgrade_scripts() {
        let released_target = RELEASES
            .iter()
            .any(|r| script.ends_with(&format!("--{}.sql", r.version)));
        let frozen = FROZEN_UPGRADE_SCRIPTS.iter().any(|(n, _)| *n == script);
        if released_target && !frozen {
            problems.push(format!(
                "sql/{script} leads into a released version but is not in xtask's frozen list"
            ));
        }
    }
    problems
}

/// SHA-256 of an install script pgrx generated, taken over its blocks of connected objects
/// in sorted order: pgrx orders blocks that do not depend on each other differently from
/// build to build, never their text.
pub fn install_script_digest(script: &str) -> String {
    let mut blocks: Vec<&str> = script
        .split("/* <begin connected objects> */")
        .map(str::trim)
        .collect();
    blocks.sort_unstable();
    sha256_hex(blocks.join("\n").as_bytes())
}

/// Whether `package`, rebuilt from `release`'s commit, holds the install script that
/// was released (None when it does).
pub fn check_install_script(release: &Release, package: &Package) -> Result<Option<String>> {
    let name = format!("pg_pullsync--{}.sql", release.version);
    let script = crate::install::files_below(&package.root)?
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        .ok_or_else(|| format!("the rebuilt {} package has no {name}", release.version))?;
    let digest = install_script_digest(&std::fs::read_to_string(package.root.join(&script))?);
    let wanted = release.install_digest;
    Ok((digest != wanted).then(|| {
        format!(
            "{name} rebuilt from {} for PostgreSQL {} has digest {digest}, not the released \
             {wanted}: the rebuild is not the release",
            release.commit,
            package.major.number()
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_scripts_are_frozen() {
        let problems = check_frozen_upgrade_scripts();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn every_release_names_a_full_commit_and_its_digest() {
        for r in RELEASES {
            assert_eq!(r.commit.len(), 40, "{}", r.version);
            assert!(!r.majors.is_empty(), "{}", r.version);
            assert_eq!(r.install_digest.len(), 64, "{}", r.version);
        }
    }

    #[test]
    fn an_install_script_digest_ignores_block_order_but_not_text() {
        let block = |text: &str| {
            format!("/* <begin connected objects> */\n{text}\n/* </end connected objects> */\n")
        };
        let head = "-- generated\n";
        let one = format!(
            "{head}{}{}",
            block("CREATE TABLE a ();"),
            block("CREATE TABLE b ();")
        );
        let swapped = format!(
            "{head}{}{}",
            block("CREATE TABLE b ();"),
            block("CREATE TABLE a ();")
        );
        let edited = format!(
            "{head}{}{}",
            block("CREATE TABLE a (x int);"),
            block("CREATE TABLE b ();")
        );
        assert_eq!(install_script_digest(&one), install_script_digest(&swapped));
        assert_ne!(install_script_digest(&one), install_script_digest(&edited));
    }

    #[test]
    fn sha256_of_a_known_text() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
