//! OAuth 2 for REST sources (RFC 6749): the token request's form, the token endpoint's
//! answer read, and whether a cached access token is still used. The client secret,
//! refresh token and access token are sealed apart; nothing here keeps them.

use crate::http::{urlencode, FailureClass};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    /// A refresh token given by whoever authorised the app; the server may rotate it.
    RefreshToken,
}

/// How the client proves itself to the token endpoint (RFC 6749 2.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)`, each form-encoded first.
    Basic,
    /// `client_id` and `client_secret` in the form.
    Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    pub grant: Grant,
    pub token_url: String,
    pub client_id: String,
    pub scope: Option<String>,
    pub client_auth: ClientAuth,
}

/// A token request: its `application/x-www-form-urlencoded` body, and the Basic
/// credentials when the client authenticates so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub form: String,
    pub basic: Option<(String, String)>,
}

impl OAuth2 {
    /// The request for a new access token; `refresh_token` is the refresh grant's.
    pub fn request(&self, client_secret: &str, refresh_token: Option<&str>) -> TokenRequest {
        let mut form: Vec<(&str, &str)> = Vec::new();
        match self.grant {
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
            Grant::RefreshToken => {
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", refresh_token.unwrap_or_default()));
            }
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let basic = match self.client_auth {
            ClientAuth::Basic => Some((urlencode(&self.client_id), urlencode(client_secret))),
            ClientAuth::Body => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", client_secret));
                None
            }
        };
        let form = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        TokenRequest { form, basic }
    }
}

/// A token endpoint's successful answer (RFC 6749 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub access_token: String,
    /// When it expires, from `expires_in`; None: until the API refuses it.
    pub expires_at: Option<DateTime<Utc>>,
    /// A new refresh token: the server rotated it, and only this one is valid now.
    pub refresh_token: Option<String>,
}

/// Reads a 2xx answer of the token endpoint received at `now`. The error names what is
/// wrong, never a value (the answer is full of secrets).
pub fn parse_token(body: &[u8], now: DateTime<Utc>) -> Result<Token, String> {
    let answer: Value = serde_json::from_slice(body)
        .map_err(|_| "the token endpoint's answer is not JSON".to_string())?;
    let text = |key: &str| {
        answer
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let access_token = text("access_token")
        .ok_or_else(|| "the token endpoint's answer has no access_token".to_string())?;
    if let Some(kind) = text("token_type") {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "the token endpoint gave a token of type {:?}; only bearer tokens are sent",
                kind.chars().take(20).collect::<String>()
            ));
        }
    }
    // A number, or (some servers) a number as a string.
    let expires_in = match answer.get("expires_in") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let expires_at = expires_in
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| now + Duration::seconds(s.min(10.0 * 365.0 * 86_400.0) as i64));
    Ok(Token {
        access_token: access_token.to_string(),
        expires_at,
        refresh_token: text("refresh_token").map(str::to_string),
    })
}

/// What a token endpoint's error answer means: `invalid_grant` (the refresh token, or the
/// grant, is no longer valid: only a new authorisation helps) is `Auth`; 5xx and 429 are
/// worth another run; any other error is the request's fault. The message holds the
/// RFC 6749 5.2 `error` code and the start of its description.
pub fn classify_token_error(status: u16, body: &[u8]) -> (FailureClass, String) {
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let field = |key: &str| {
        answer
            .as_ref()
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(120).collect::<String>())
    };
    let code = field("error");
    let class = match (status, code.as_deref()) {
        (_, Some("invalid_grant")) => FailureClass::Auth,
        (429, _) => FailureClass::Throttled,
        (500..=599, _) => FailureClass::Transient,
        _ => FailureClass::Refused,
    };
    let message = match (code, field("error_description")) {
        (Some(code), Some(description)) => format!("{code}: {description}"),
        (Some(code), None) => code,
        (None, _) => "no OAuth 2 error in the answer".to_string(),
    };
    (class, message)
}

/// A cached access token is used until this long before it expires, so no request goes
/// out with a token that expires on the way.
pub const EXPIRY_MARGIN_SECONDS: i64 = 60;

/// Whether a cached access token that expires at `expires_at` (None: unknown) is used at
/// `now` rather than a new one asked for. A token that lives shorter than twice the
/// margin is used for the first half of its life.
pub fn still_usable(
    expires_at: Option<DateTime<Utc>>,
    obtained_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let Some(expires_at) = expires_at else {
        return true;
    };
    let margin = match obtained_at {
        Some(obtained) if expires_at - obtained < Duration::seconds(2 * EXPIRY_MARGIN_SECONDS) => {
            (expires_at - obtained) / 2
        }
        _ => Duration::seconds(EXPIRY_MARGIN_SECONDS),
    };
    now < expires_at - margin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(grant: Grant, client_auth: ClientAuth) -> OAuth2 {
        OAuth2 {
            grant,
            token_url: "https://auth.example.com/token".into(),
            client_id: "app 1".into(),
            scope: Some("read write".into()),
            client_auth,
        }
    }

    #[test]
    fn the_form_carries_the_grant_and_the_client_as_configured() {
        let r = client(Grant::ClientCredentials, ClientAuth::Basic).request("s&c=t", None);
        assert_eq!(r.form, "grant_type=client_credentials&scope=read%20write");
        assert_eq!(r.basic, Some(("app%201".into(), "s%26c%3Dt".into())));
        let r = client(Grant::RefreshToken, ClientAuth::Body).request("sec", Some("r/1+"));
        assert_eq!(
            r.form,
            "grant_type=refresh_token&refresh_token=r%2F1%2B&scope=read%20write&client_id=app%201&client_secret=sec"
        );
        assert_eq!(r.basic, None);
    }

    #[test]
    fn a_token_answer_is_read_with_its_expiry_and_rotated_refresh_token() {
        let now = Utc::now();
        let t = parse_token(
            br#"{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt2"}"#,
            now,
        )
        .unwrap();
        assert_eq!(t.access_token, "at");
        assert_eq!(t.expires_at, Some(now + Duration::seconds(3600)));
        assert_eq!(t.refresh_token.as_deref(), Some("rt2"));
        let t = parse_token(br#"{"access_token":"at","expires_in":"60"}"#, now).unwrap();
        assert_eq!(t.expires_at, Some(now + Duration::seconds(60)));
        assert_eq!(t.refresh_token, None);
        assert_eq!(
            parse_token(br#"{"access_token":"at"}"#, now)
                .unwrap()
                .expires_at,
            None
        );
    }

    #[test]
    fn a_bad_token_answer_is_refused_without_its_values() {
        let now = Utc::now();
        for body in [
            &b"not json secret-ish"[..],
            br#"{"token_type":"bearer","refresh_token":"rt-secret"}"#,
            br#"{"access_token":"","refresh_token":"rt-secret"}"#,
            br#"{"access_token":"at-secret","token_type":"mac"}"#,
        ] {
            let e = parse_token(body, now).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn invalid_grant_is_an_auth_failure_and_other_errors_are_not() {
        let (class, message) = classify_token_error(
            400,
            br#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#,
        );
        assert_eq!(class, FailureClass::Auth);
        assert_eq!(message, "invalid_grant: refresh token revoked");
        assert_eq!(
            classify_token_error(401, br#"{"error":"invalid_client"}"#),
            (FailureClass::Refused, "invalid_client".into())
        );
        assert_eq!(classify_token_error(503, b"").0, FailureClass::Transient);
        assert_eq!(classify_token_error(429, b"{}").0, FailureClass::Throttled);
    }

    #[test]
    fn a_cached_token_is_used_until_shortly_before_it_expires() {
        let now = Utc::now();
        let at = |s: i64| Some(now + Duration::seconds(s));
        assert!(still_usable(None, None, now));
        assert!(still_usable(at(3600), at(0), now));
        assert!(still_usable(at(61), None, now));
        assert!(!still_usable(at(60), None, now));
        assert!(!still_usable(at(-1), None, now));
        // Short-lived: the first half of its life.
        assert!(still_usable(at(30), at(-10), now));
        assert!(!still_usable(at(10), at(-10), now));
    }
}
