//! Validation of a Threads account and its token before they are stored. Pure.

use crate::error::{InputError, Result};
use chrono::{DateTime, Utc};

/// What `threads_add_account` stores, after validation.
#[derive(Debug)]
pub struct NewAccount {
    pub threads_user_id: String,
    pub username: String,
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
}

fn required<T>(value: Option<T>, name: &'static str) -> Result<T> {
    value.ok_or(InputError::Null { name })
}

impl NewAccount {
    /// Checks every argument; `expires_at` of None means ±infinity was passed.
    pub fn validate(
        threads_user_id: Option<String>,
        username: Option<String>,
        access_token: Option<String>,
        expires_at: Option<Option<DateTime<Utc>>>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let threads_user_id = required(threads_user_id, "threads_user_id")?
            .trim()
            .to_owned();
        let username = required(username, "username")?.trim().to_owned();
        let access_token = required(access_token, "access_token")?;
        let expires_at = required(expires_at, "expires_at")?;

        if threads_user_id.is_empty() || !threads_user_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InputError::invalid(
                "threads_user_id must be the numeric Threads user id",
                "Pass the id returned by GET /me (for example '17841400000000000'), as text.",
            ));
        }
        if username.is_empty() {
            return Err(InputError::invalid(
                "username must not be empty",
                "Pass the account's Threads username.",
            ));
        }
        let token = access_token.trim();
        if token.is_empty() {
            return Err(InputError::invalid(
                "access_token must not be empty",
                "Pass the account's long-lived Threads access token.",
            ));
        }
        if token.len() != access_token.len() || token.chars().any(char::is_whitespace) {
            return Err(InputError::invalid(
                "access_token must not contain whitespace",
                "Pass the token exactly as Threads issued it.",
            ));
        }
        let expires_at = expires_at.ok_or_else(|| {
            InputError::invalid(
                "expires_at must be a finite timestamp",
                "Pass when the token expires: issue time + expires_in seconds (60 days for long-lived tokens).",
            )
        })?;
        if expires_at <= now {
            return Err(InputError::invalid(
                "expires_at is in the past: the token has already expired",
                "Expired Threads tokens cannot be refreshed; have the user authorize again and pass the new token.",
            ));
        }
        Ok(NewAccount {
            threads_user_id,
            username,
            access_token,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SqlState;
    use chrono::Duration;

    fn call(
        id: Option<&str>,
        name: Option<&str>,
        token: Option<&str>,
        expires: Option<Option<DateTime<Utc>>>,
    ) -> Result<NewAccount> {
        NewAccount::validate(
            id.map(Into::into),
            name.map(Into::into),
            token.map(Into::into),
            expires,
            Utc::now(),
        )
    }

    fn later() -> Option<Option<DateTime<Utc>>> {
        Some(Some(Utc::now() + Duration::days(60)))
    }

    #[test]
    fn accepts_a_good_account() {
        let a = call(Some(" 123 "), Some("alice"), Some("THAA"), later()).unwrap();
        assert_eq!(a.threads_user_id, "123");
    }

    #[test]
    fn rejects_each_bad_argument_with_its_sqlstate() {
        let cases = [
            (
                call(None, Some("a"), Some("t"), later()),
                SqlState::NULL_VALUE_NOT_ALLOWED,
            ),
            (
                call(Some("1"), None, Some("t"), later()),
                SqlState::NULL_VALUE_NOT_ALLOWED,
            ),
            (
                call(Some("1"), Some("a"), None, later()),
                SqlState::NULL_VALUE_NOT_ALLOWED,
            ),
            (
                call(Some("1"), Some("a"), Some("t"), None),
                SqlState::NULL_VALUE_NOT_ALLOWED,
            ),
            (
                call(Some(""), Some("a"), Some("t"), later()),
                SqlState::INVALID_PARAMETER_VALUE,
            ),
            (
                call(Some("12a"), Some("a"), Some("t"), later()),
                SqlState::INVALID_PARAMETER_VALUE,
            ),
            (
                call(Some("1"), Some(" "), Some("t"), later()),
                SqlState::INVALID_PARAMETER_VALUE,
            ),
            (
                call(Some("1"), Some("a"), Some(""), later()),
                SqlState::INVALID_PARAMETER_VALUE,
            ),
            (
                call(Some("1"), Some("a"), Some("t t"), later()),
                SqlState::INVALID_PARAMETER_VALUE,
            ),
            (
                call(Some("1"), Some("a"), Some("t"), Some(None)),
                SqlState::INVALID_PARAMETER_VALUE,
            ),
            (
                call(
                    Some("1"),
                    Some("a"),
                    Some("t"),
                    Some(Some(Utc::now() - Duration::hours(1))),
                ),
                SqlState::INVALID_PARAMETER_VALUE,
            ),
        ];
        for (i, (result, state)) in cases.into_iter().enumerate() {
            assert_eq!(result.unwrap_err().sqlstate(), state, "case {i}");
        }
    }

    #[test]
    fn errors_never_contain_the_token() {
        let err = call(Some("1"), Some("a"), Some("secret token"), later()).unwrap_err();
        assert!(!err.to_string().contains("secret"));
        assert!(!err.hint().unwrap_or_default().contains("secret"));
    }
}
