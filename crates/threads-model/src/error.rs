//! The Graph API error envelope and what each error means for a sync.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ApiError,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub message: String,
    /// `OAuthException` for auth errors, `THApiException` for other Threads errors.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

/// What the sync does about an error (DESIGN.md, error policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Token expired or invalid (190, 24): skip the account, leave it to the refresh job.
    Auth,
    /// Throttled (4, 17, 32, 613, HTTP 429): stop calling this token for the run.
    Throttled,
    /// 5xx, code 1/2 on 5xx: retry with backoff.
    Transient,
    /// Missing permission (10; 100 with subcode 10).
    Permission,
    /// A request the API refuses as malformed (other 4xx, code 100).
    BadRequest,
    /// The object does not exist (any more), or the token may no longer see it: code 100
    /// subcode 33, how a deleted post's insights answer.
    NotFound,
}

pub const THROTTLE_CODES: [i64; 4] = [4, 17, 32, 613];

/// The throttle that concerns the whole application, whatever the token: its calls wait
/// for every account alike. The other codes (and a bare HTTP 429) concern one user.
pub const APPLICATION_LIMIT: i64 = 4;

/// Classifies by the error code first: the API reports some errors with surprising HTTP
/// statuses (code 10 with 500, code 100 with 500).
pub fn classify(http_status: u16, error: Option<&ApiError>) -> ErrorClass {
    if let Some(e) = error {
        match (e.code, e.error_subcode) {
            (190, _) | (24, _) => return ErrorClass::Auth,
            (code, _) if THROTTLE_CODES.contains(&code) => return ErrorClass::Throttled,
            (10, _) | (100, Some(10)) => return ErrorClass::Permission,
            (100, Some(33)) => return ErrorClass::NotFound,
            (100, _) => return ErrorClass::BadRequest,
            _ => {}
        }
    }
    match http_status {
        429 => ErrorClass::Throttled,
        500..=599 => ErrorClass::Transient,
        _ => ErrorClass::BadRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: i64, sub: Option<i64>) -> ApiError {
        ApiError {
            message: "m".into(),
            kind: Some("OAuthException".into()),
            code,
            error_subcode: sub,
            fbtrace_id: None,
        }
    }

    #[test]
    fn classifies_every_documented_case() {
        let cases = [
            (400, Some(err(190, Some(463))), ErrorClass::Auth),
            (400, Some(err(190, Some(467))), ErrorClass::Auth),
            (400, Some(err(24, None)), ErrorClass::Auth),
            (400, Some(err(4, None)), ErrorClass::Throttled),
            (403, Some(err(17, None)), ErrorClass::Throttled),
            (400, Some(err(32, None)), ErrorClass::Throttled),
            (403, Some(err(613, None)), ErrorClass::Throttled),
            (429, None, ErrorClass::Throttled),
            (500, Some(err(10, None)), ErrorClass::Permission),
            (400, Some(err(100, Some(10))), ErrorClass::Permission),
            (500, Some(err(100, None)), ErrorClass::BadRequest),
            (400, Some(err(100, None)), ErrorClass::BadRequest),
            (400, Some(err(100, Some(33))), ErrorClass::NotFound),
            (500, Some(err(1, None)), ErrorClass::Transient),
            (503, Some(err(2, None)), ErrorClass::Transient),
            (502, None, ErrorClass::Transient),
            (400, Some(err(1, None)), ErrorClass::BadRequest),
            (404, None, ErrorClass::BadRequest),
        ];
        for (status, e, class) in cases {
            assert_eq!(classify(status, e.as_ref()), class, "{status} {e:?}");
        }
    }

    #[test]
    fn parses_the_envelope() {
        let body = r#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"Ab"}}"#;
        let e: ErrorEnvelope = serde_json::from_str(body).unwrap();
        assert_eq!(e.error.code, 190);
        assert_eq!(e.error.error_subcode, Some(463));
        assert_eq!(e.error.kind.as_deref(), Some("OAuthException"));
    }
}
