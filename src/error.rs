//! Typed errors inside the extension. Each maps to a SQLSTATE and, where it helps, a hint
//! that says what to do instead. The pgrx glue that raises them lives in `pg_error`.

use pullsync_core::crypto::CryptoError;
pub use pullsync_core::error::{InputError, SqlState};

#[derive(Debug, thiserror::Error)]
pub enum PullsyncError {
    #[error("{name} must not be null")]
    NullArgument { name: &'static str },

    #[error("{message}")]
    InvalidArgument { message: String, hint: String },

    #[error("{message}")]
    Conflict { message: String, hint: String },

    #[error("{message}")]
    NotFound { message: String, hint: String },

    /// The role a write would run as may not do it.
    #[error("{message}")]
    Forbidden { message: String, hint: String },

    #[error("no encryption key is configured for pg_pullsync")]
    KeyNotConfigured,

    #[error("the configured pg_pullsync encryption key is unusable: {0}")]
    KeyUnusable(String),

    #[error(transparent)]
    KeyFile(#[from] pullsync_core::key_file::KeyFileError),

    #[error("{what} does not open with the configured encryption key ({reason})")]
    Unsealable { what: String, reason: CryptoError },

    /// A feed cursor this provider cannot read: malformed, expired, of another stream.
    #[error("invalid cursor: {0}")]
    InvalidCursor(pullsync_core::feed::cursor::CursorError),

    /// A feed cursor of another provider identity (restored, recovered, promoted).
    #[error("invalid cursor: {0}")]
    CursorFromOtherProvider(pullsync_core::feed::cursor::CursorError),

    /// A Postgres ERROR caught in a unit of work, with the SQLSTATE it was raised with.
    #[error("{message}")]
    Postgres {
        sqlstate: SqlState,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },

    /// A function that writes, called on a server in recovery.
    #[error("pullsync.{function}() writes, and this server is a standby (in recovery), which is read-only")]
    Standby { function: &'static str },

    #[error("interrupted: the work was stopped before it finished")]
    Interrupted,

    #[error("internal error: {0}")]
    Internal(String),
}

impl PullsyncError {
    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Self {
        PullsyncError::InvalidArgument {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn sqlstate(&self) -> SqlState {
        match self {
            PullsyncError::NullArgument { .. } => SqlState::NULL_VALUE_NOT_ALLOWED,
            PullsyncError::InvalidArgument { .. } | PullsyncError::InvalidCursor(_) => {
                SqlState::INVALID_PARAMETER_VALUE
            }
            PullsyncError::Conflict { .. } => SqlState::UNIQUE_VIOLATION,
            PullsyncError::NotFound { .. } => SqlState::UNDEFINED_OBJECT,
            PullsyncError::Forbidden { .. } => SqlState::INSUFFICIENT_PRIVILEGE,
            PullsyncError::KeyNotConfigured
            | PullsyncError::KeyUnusable(_)
            | PullsyncError::KeyFile(_)
            | PullsyncError::Unsealable { .. }
            | PullsyncError::CursorFromOtherProvider(_) => {
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            PullsyncError::Postgres { sqlstate, .. } => *sqlstate,
            // As Postgres' own refusal of a write on a standby.
            PullsyncError::Standby { .. } => SqlState::READ_ONLY_SQL_TRANSACTION,
            PullsyncError::Interrupted => SqlState::QUERY_CANCELED,
            PullsyncError::Internal(_) => SqlState::INTERNAL_ERROR,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            PullsyncError::NullArgument { name } => Some(format!("Pass a value for {name}.")),
            PullsyncError::InvalidArgument { hint, .. }
            | PullsyncError::Conflict { hint, .. }
            | PullsyncError::NotFound { hint, .. }
            | PullsyncError::Forbidden { hint, .. } => Some(hint.clone()),
            PullsyncError::KeyNotConfigured => Some(
                "Write base64 of 32 random bytes (e.g. `openssl rand -base64 32`) into a file only the server's \
                 operating-system user can read (mode 0600), set pullsync.encryption_key_file to its path in \
                 postgresql.conf, then reload."
                    .into(),
            ),
            PullsyncError::KeyUnusable(_) => Some(
                "The content of pullsync.encryption_key_file must be base64 of exactly 32 bytes.".into(),
            ),
            PullsyncError::KeyFile(_) => Some(
                "Make the file private to the server, e.g. `chown postgres: FILE && chmod 0600 FILE`, \
                 then retry; no reload is needed."
                    .into(),
            ),
            PullsyncError::Unsealable { .. } => Some(
                "The value was sealed with another key, or was altered. Configure the key it was sealed with, \
                 or store the secret again."
                    .into(),
            ),
            PullsyncError::InvalidCursor(_) => Some(
                "Start over with a null cursor (and an updated_after bound); cursors live 30 days and belong to one stream."
                    .into(),
            ),
            PullsyncError::CursorFromOtherProvider(_) => Some(
                "Rows written since may lie behind it. Start the stream over with updated_after set to the newest \
                 updated_at you hold less a margin, then reconcile; pg_pullsync consumers do so by themselves."
                    .into(),
            ),
            PullsyncError::Standby { .. } => Some(
                "Call it on the primary. When this server is promoted it takes writes, and its \
                 background workers start working by themselves."
                    .into(),
            ),
            PullsyncError::Postgres { hint, .. } => hint.clone(),
            PullsyncError::Interrupted | PullsyncError::Internal(_) => None,
        }
    }
}

impl From<InputError> for PullsyncError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Null { name } => PullsyncError::NullArgument { name },
            InputError::Invalid { message, hint } => {
                PullsyncError::InvalidArgument { message, hint }
            }
        }
    }
}

pub type Result<T, E = PullsyncError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_sqlstate() {
        let errors = [
            (
                PullsyncError::NullArgument { name: "x" },
                SqlState::NULL_VALUE_NOT_ALLOWED,
            ),
            (
                PullsyncError::invalid("m", "h"),
                SqlState::INVALID_PARAMETER_VALUE,
            ),
            (
                PullsyncError::KeyNotConfigured,
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            ),
            (
                PullsyncError::Unsealable {
                    what: "token 1".into(),
                    reason: CryptoError::WrongKeyOrTampered,
                },
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            ),
            (
                PullsyncError::Standby { function: "f" },
                SqlState::READ_ONLY_SQL_TRANSACTION,
            ),
            (
                PullsyncError::Postgres {
                    sqlstate: SqlState::UNIQUE_VIOLATION,
                    message: "m".into(),
                    detail: None,
                    hint: None,
                },
                SqlState::UNIQUE_VIOLATION,
            ),
            (PullsyncError::Interrupted, SqlState::QUERY_CANCELED),
            (
                PullsyncError::Internal("boom".into()),
                SqlState::INTERNAL_ERROR,
            ),
        ];
        for (e, state) in errors {
            assert_eq!(e.sqlstate(), state, "{e}");
        }
    }

    #[test]
    fn missing_key_hint_says_how_to_set_one() {
        let hint = PullsyncError::KeyNotConfigured.hint().unwrap();
        assert!(hint.contains("pullsync.encryption_key_file"));
    }
}
