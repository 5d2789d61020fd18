//! What the pure code can say is wrong with its input, and the SQLSTATEs pg_pullsync
//! raises. The extension's error type wraps these and raises them at the SQL boundary.

/// The SQLSTATEs pg_pullsync raises, named as in the PostgreSQL manual (Appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// 22004
    NullValueNotAllowed,
    /// 22023
    InvalidParameterValue,
    /// 23505
    UniqueViolation,
    /// 42501
    InsufficientPrivilege,
    /// 42704
    UndefinedObject,
    /// 55000
    ObjectNotInPrerequisiteState,
    /// 57014
    QueryCanceled,
    /// XX000
    InternalError,
    /// One Postgres raised (a constraint, a permission, a lock timeout), kept as it was.
    Other([u8; 5]),
}

impl SqlState {
    pub fn code(self) -> String {
        let known = match self {
            SqlState::NullValueNotAllowed => "22004",
            SqlState::InvalidParameterValue => "22023",
            SqlState::UniqueViolation => "23505",
            SqlState::InsufficientPrivilege => "42501",
            SqlState::UndefinedObject => "42704",
            SqlState::ObjectNotInPrerequisiteState => "55000",
            SqlState::QueryCanceled => "57014",
            SqlState::InternalError => "XX000",
            SqlState::Other(chars) => return chars.iter().map(|&c| char::from(c)).collect(),
        };
        known.to_string()
    }

    /// From Postgres' packed form (`MAKE_SQLSTATE`: six bits per character).
    pub fn from_packed(packed: i32) -> SqlState {
        let mut chars = [0u8; 5];
        for (i, c) in chars.iter_mut().enumerate() {
            *c = ((packed >> (6 * i)) & 0x3F) as u8 + b'0';
        }
        SqlState::Other(chars)
    }

    /// Postgres' packed form, for raising it again.
    pub fn packed(self) -> i32 {
        self.code()
            .bytes()
            .enumerate()
            .map(|(i, c)| (i32::from(c.wrapping_sub(b'0')) & 0x3F) << (6 * i))
            .sum()
    }
}

/// An argument that cannot be used as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{name} must not be null")]
    Null { name: &'static str },

    #[error("{message}")]
    Invalid { message: String, hint: String },
}

impl InputError {
    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Self {
        InputError::Invalid {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn sqlstate(&self) -> SqlState {
        match self {
            InputError::Null { .. } => SqlState::NullValueNotAllowed,
            InputError::Invalid { .. } => SqlState::InvalidParameterValue,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            InputError::Null { name } => format!("Pass a value for {name}."),
            InputError::Invalid { hint, .. } => hint.clone(),
        })
    }
}

pub type Result<T, E = InputError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sqlstate_has_five_characters() {
        let states = [
            SqlState::NullValueNotAllowed,
            SqlState::InvalidParameterValue,
            SqlState::UniqueViolation,
            SqlState::InsufficientPrivilege,
            SqlState::UndefinedObject,
            SqlState::ObjectNotInPrerequisiteState,
            SqlState::QueryCanceled,
            SqlState::InternalError,
            SqlState::Other(*b"40001"),
        ];
        for s in states {
            assert_eq!(s.code().len(), 5, "{s:?}");
        }
    }

    #[test]
    fn a_packed_sqlstate_round_trips() {
        // MAKE_SQLSTATE('2','3','5','0','5'), as Postgres' errcodes.h computes it.
        let unique_violation = 2 | (3 << 6) | (5 << 12) | (5 << 24);
        let state = SqlState::from_packed(unique_violation);
        assert_eq!(state.code(), "23505");
        assert_eq!(state.packed(), unique_violation);
        assert_eq!(
            SqlState::from_packed(SqlState::Other(*b"XX000").packed()).code(),
            "XX000"
        );
    }
}
