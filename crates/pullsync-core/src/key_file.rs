//! Private files: the sealing key's (`pullsync.encryption_key_file`) and the feed server's
//! TLS key (`pullsync.feed_tls_key_file`), accepted only when no other operating-system user
//! can read them, the rule PostgreSQL applies to `ssl_key_file`. Settings are no place for
//! a key: members of `pg_read_all_settings` read every one.

use std::os::unix::fs::MetadataExt;

/// Why a key file is refused, in words an operator can act on. Never holds the file's content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFileError {
    #[error("cannot read {setting} \"{path}\": {reason}")]
    Unreadable {
        setting: &'static str,
        path: String,
        reason: String,
    },
    #[error("{setting} \"{path}\" is not a regular file")]
    NotAFile { setting: &'static str, path: String },
    #[error(
        "{setting} \"{path}\" must be owned by the database server's operating-system user or by root"
    )]
    WrongOwner { setting: &'static str, path: String },
    #[error(
        "{setting} \"{path}\" has group or world access (mode {mode:04o}); it must be u=rw (0600) \
         or less if owned by the server's user, u=rw,g=r (0640) or less if owned by root"
    )]
    TooOpen {
        setting: &'static str,
        path: String,
        mode: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Private,
    TooOpen,
    WrongOwner,
}

/// The ownership and mode rule on its own, so it can be tested without files.
pub fn check_access(uid: u32, mode: u32, server_uid: u32) -> Access {
    let allowed_group_bits: u32 = if uid == server_uid {
        0
    } else if uid == 0 {
        0o040
    } else {
        return Access::WrongOwner;
    };
    if mode & 0o077 & !allowed_group_bits != 0 {
        Access::TooOpen
    } else {
        Access::Private
    }
}

/// Reads the file `setting` names after checking it is private to the server.
pub fn read(setting: &'static str, path: &str) -> Result<String, KeyFileError> {
    let unreadable = |e: std::io::Error| KeyFileError::Unreadable {
        setting,
        path: path.to_string(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile {
            setting,
            path: path.into(),
        });
    }
    // SAFETY: geteuid has no preconditions.
    let server_uid = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o7777;
    match check_access(meta.uid(), mode, server_uid) {
        Access::Private => {}
        Access::TooOpen => {
            return Err(KeyFileError::TooOpen {
                setting,
                path: path.into(),
                mode,
            })
        }
        Access::WrongOwner => {
            return Err(KeyFileError::WrongOwner {
                setting,
                path: path.into(),
            })
        }
    }
    std::fs::read_to_string(path).map_err(unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn verdict(uid: u32, mode: u32, server: u32) -> &'static str {
        match check_access(uid, mode, server) {
            Access::Private => "ok",
            Access::TooOpen => "too open",
            Access::WrongOwner => "wrong owner",
        }
    }

    #[test]
    fn the_servers_own_file_must_be_private() {
        assert_eq!(verdict(70, 0o600, 70), "ok");
        assert_eq!(verdict(70, 0o400, 70), "ok");
        assert_eq!(verdict(70, 0o640, 70), "too open");
        assert_eq!(verdict(70, 0o604, 70), "too open");
        assert_eq!(verdict(70, 0o660, 70), "too open");
    }

    #[test]
    fn a_root_file_may_be_group_readable_but_no_more() {
        assert_eq!(verdict(0, 0o640, 70), "ok");
        assert_eq!(verdict(0, 0o600, 70), "ok");
        assert_eq!(verdict(0, 0o660, 70), "too open");
        assert_eq!(verdict(0, 0o644, 70), "too open");
    }

    #[test]
    fn another_users_file_is_refused() {
        assert_eq!(verdict(1000, 0o600, 70), "wrong owner");
    }

    #[test]
    fn reading_checks_the_mode_and_never_shows_the_content() {
        let dir = std::env::temp_dir().join(format!("pullsync-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "c2VjcmV0LWtleS1tYXRlcmlhbA==\n").unwrap();
        let text = path.to_str().unwrap();
        let read = |path: &str| read("pullsync.encryption_key_file", path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(text).unwrap_err();
        assert!(
            matches!(err, KeyFileError::TooOpen { mode: 0o644, .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("c2Vj"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(text).unwrap().trim(), "c2VjcmV0LWtleS1tYXRlcmlhbA==");
        assert!(matches!(
            read(dir.to_str().unwrap()),
            Err(KeyFileError::NotAFile { .. })
        ));
        assert!(matches!(
            read(dir.join("absent").to_str().unwrap()),
            Err(KeyFileError::Unreadable { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
