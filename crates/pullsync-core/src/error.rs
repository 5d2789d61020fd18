//! What the pure code can say is wrong with its input, and the SQLSTATEs pg_pullsync
//! raises. The extension's error type wraps these and raises them at the SQL boundary.

/// A SQLSTATE in Postgres' packed form (`MAKE_SQLSTATE`: six bits per character, the first
/// character lowest), the form Postgres raises and catches errors with: any SQLSTATE, with
/// names for those pg_pullsync raises or looks for (as in the PostgreSQL manual, Appendix A).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState(i32);

impl SqlState {
    pub const NULL_VALUE_NOT_ALLOWED: SqlState = SqlState::make(*b"22004");
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState::make(*b"22023");
    pub const UNIQUE_VIOLATION: SqlState = SqlState::make(*b"23505");
    pub const READ_ONLY_SQL_TRANSACTION: SqlState = SqlState::make(*b"25006");
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState::make(*b"42501");
    pub const UNDEFINED_OBJECT: SqlState = SqlState::make(*b"42704");
    pub const INSUFFICIENT_RESOURCES: SqlState = SqlState::make(*b"53000");
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState::make(*b"55000");
    pub const QUERY_CANCELED: SqlState = SqlState::make(*b"57014");
    pub const INTERNAL_ERROR: SqlState = SqlState::make(*b"XX000");

    /// `MAKE_SQLSTATE` of five characters already known to be a SQLSTATE's.
    const fn make(chars: [u8; 5]) -> SqlState {
        let mut packed = 0;
        let mut i = 0;
        while i < 5 {
            packed |= ((chars[i].wrapping_sub(b'0') & 0x3F) as i32) << (6 * i);
            i += 1;
        }
        SqlState(packed)
    }

    /// From Postgres' packed form (an `ErrorData`'s `sqlerrcode`).
    pub fn from_packed(packed: i32) -> SqlState {
        // Five characters take the low 30 bits.
        SqlState(packed & 0x3FFF_FFFF)
    }

    /// Postgres' packed form, for raising it.
    pub fn packed(self) -> i32 {
        self.0
    }

    /// The five characters, e.g. `23505`.
    pub fn code(self) -> String {
        self.chars().iter().map(|&c| char::from(c)).collect()
    }

    fn chars(self) -> [u8; 5] {
        let mut chars = [0u8; 5];
        for (i, c) in chars.iter_mut().enumerate() {
            *c = ((self.0 >> (6 * i)) & 0x3F) as u8 + b'0';
        }
        chars
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.code())
    }
}

impl std::fmt::Debug for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlState({})", self.code())
    }
}

/// Text that is not a SQLSTATE: five digits or upper-case ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a SQLSTATE (five digits or upper-case letters)")]
pub struct NotASqlState(pub String);

impl std::str::FromStr for SqlState {
    type Err = NotASqlState;

    fn from_str(text: &str) -> Result<SqlState, NotASqlState> {
        match <[u8; 5]>::try_from(text.as_bytes()) {
            Ok(chars)
                if chars
                    .iter()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()) =>
            {
                Ok(SqlState::make(chars))
            }
            _ => Err(NotASqlState(text.to_string())),
        }
    }
}

/// As its five characters (a session call's answer carries it between processes).
impl serde::Serialize for SqlState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.code())
    }
}

impl<'de> serde::Deserialize<'de> for SqlState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SqlState, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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
            InputError::Null { .. } => SqlState::NULL_VALUE_NOT_ALLOWED,
            InputError::Invalid { .. } => SqlState::INVALID_PARAMETER_VALUE,
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
    fn a_sqlstate_packs_as_postgres_packs_it() {
        // MAKE_SQLSTATE('4','2','5','0','1'), as Postgres' errcodes.h computes it.
        let insufficient_privilege = 4 | (2 << 6) | (5 << 12) | (1 << 24);
        let state: SqlState = "42501".parse().unwrap();
        assert_eq!(state, SqlState::INSUFFICIENT_PRIVILEGE);
        assert_eq!(state.packed(), insufficient_privilege);
        assert_eq!(SqlState::from_packed(insufficient_privilege), state);
        assert_eq!(state.code(), "42501");
        // 'X' is 40 above '0'.
        assert_eq!(SqlState::INTERNAL_ERROR.packed(), 40 | (40 << 6));
    }

    #[test]
    fn every_named_sqlstate_round_trips_through_its_text_and_packed_form() {
        let named = [
            (SqlState::NULL_VALUE_NOT_ALLOWED, "22004"),
            (SqlState::INVALID_PARAMETER_VALUE, "22023"),
            (SqlState::UNIQUE_VIOLATION, "23505"),
            (SqlState::READ_ONLY_SQL_TRANSACTION, "25006"),
            (SqlState::INSUFFICIENT_PRIVILEGE, "42501"),
            (SqlState::UNDEFINED_OBJECT, "42704"),
            (SqlState::INSUFFICIENT_RESOURCES, "53000"),
            (SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, "55000"),
            (SqlState::QUERY_CANCELED, "57014"),
            (SqlState::INTERNAL_ERROR, "XX000"),
        ];
        for (state, text) in named {
            assert_eq!(state.to_string(), text);
            assert_eq!(text.parse::<SqlState>(), Ok(state));
            assert_eq!(SqlState::from_packed(state.packed()), state);
        }
        let canceled: SqlState = "57014".parse().unwrap();
        assert_eq!(canceled, SqlState::QUERY_CANCELED);
        assert_ne!(canceled, SqlState::INTERNAL_ERROR);
    }

    #[test]
    fn any_sqlstate_is_kept_not_only_the_named_ones() {
        let custom: SqlState = "PT0A1".parse().unwrap();
        assert_eq!(SqlState::from_packed(custom.packed()).code(), "PT0A1");
        assert_eq!(format!("{custom:?}"), "SqlState(PT0A1)");
    }

    #[test]
    fn text_that_is_no_sqlstate_is_refused() {
        for bad in [
            "",
            "2350",
            "235050",
            "2350a",
            "23 05",
            "2500\u{e9}",
            "-----",
        ] {
            assert!(bad.parse::<SqlState>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_sqlstate_travels_as_its_text() {
        let json = serde_json::to_string(&SqlState::READ_ONLY_SQL_TRANSACTION).unwrap();
        assert_eq!(json, "\"25006\"");
        assert_eq!(
            serde_json::from_str::<SqlState>(&json).unwrap(),
            SqlState::READ_ONLY_SQL_TRANSACTION
        );
        assert!(serde_json::from_str::<SqlState>("\"bad\"").is_err());
    }
}
