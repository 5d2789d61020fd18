//! The released versions of pg_pullsync and the files they shipped. A release is a
//! promise to the people who installed it: its install script and every upgrade script
//! that led to it never change again. `cargo xtask test` checks the digests below (the
//! upgrade scripts in sql/, the install scripts of every release rebuilt from its commit)
//! and runs the upgrade test from every release. docs/OPERATIONS.md says how a new
//! version is cut.

use crate::install::Package;
use crate::pg_tree::Major;
use crate::run::{workspace_root, Result};

pub struct Release {
    pub version: &'static str,
    /// The commit it landed as; the upgrade test rebuilds it from there.
    pub commit: &'static str,
    /// SHA-256 of its install script (`pg_pullsync--<version>.sql`, which pgrx generates
    /// from sql/*.sql and the Rust functions) for each PostgreSQL version it was released for.
    pub install_sha256: &'static [(Major, &'static str)],
}

pub const RELEASES: &[Release] = &[
    Release {
        version: "0.1.0",
        commit: "4a0883ea7e13b651e388d14ec609a59eaa495150",
        install_sha256: &[(
            Major::Pg15,
            "57372af9e04bfe95d249e62a47445ab04504c1a014d428682f15463841e4e687",
        )],
    },
    Release {
        version: "0.2.0",
        commit: "e1e6da2d984b249ccb93f2a14b1388a3bc6e79c2",
        install_sha256: &[
            (
                Major::Pg15,
                "0c14cca6407fca542bde5a2ae749c9dc8ae62708a0774c7cf3e3a5bd1d271f81",
            ),
            (
                Major::Pg18,
                "4fd598cbb371a62644e8fbecc3cd0b6a7fec644a2feded15b462f2a8f997ad51",
            ),
        ],
    },
];

/// Upgrade scripts that shipped in a release, with their SHA-256.
pub const FROZEN_UPGRADE_SCRIPTS: &[(&str, &str)] = &[(
    "pg_pullsync--0.1.0--0.2.0.sql",
    "7c6e9d2056abea481529ca13b2cf8967c7fe8beb5be523d3d2fbf72d72e6e1f7",
)];

/// The releases made for `major`, oldest first: where its upgrade tests start.
pub fn released_for(major: Major) -> impl Iterator<Item = &'static Release> {
    RELEASES
        .iter()
        .filter(move |r| r.install_sha256.iter().any(|(m, _)| *m == major))
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

/// Whether `package`, rebuilt from `release`'s commit, holds the install script that
/// was released (None when it does).
pub fn check_install_script(release: &Release, package: &Package) -> Result<Option<String>> {
    let Some((_, wanted)) = release
        .install_sha256
        .iter()
        .find(|(m, _)| *m == package.major)
    else {
        return Ok(None);
    };
    let name = format!("pg_pullsync--{}.sql", release.version);
    let script = crate::install::files_below(&package.root)?
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        .ok_or_else(|| format!("the rebuilt {} package has no {name}", release.version))?;
    let digest = sha256_hex(&std::fs::read(package.root.join(&script))?);
    Ok((digest != *wanted).then(|| {
        format!(
            "{name} rebuilt from {} for PostgreSQL {} has SHA-256 {digest}, not the released \
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
    fn every_release_names_a_full_commit_and_its_digests() {
        for r in RELEASES {
            assert_eq!(r.commit.len(), 40, "{}", r.version);
            assert!(!r.install_sha256.is_empty(), "{}", r.version);
            for (_, digest) in r.install_sha256 {
                assert_eq!(digest.len(), 64, "{}", r.version);
            }
        }
    }

    #[test]
    fn sha256_of_a_known_text() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
