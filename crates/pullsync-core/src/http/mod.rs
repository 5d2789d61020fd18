//! The one HTTP layer every source uses: client with timeouts, retries with exponential
//! backoff and jitter, rate limiting, throttling waited out between pages, the API's
//! announced rate limit honoured before it is reached, and classification of failures. No pgrx here: it runs on a tokio runtime and never touches
//! Postgres.

mod client;
pub mod destination;
pub mod quota;
pub mod rate;
pub mod redact;
pub mod redirect;
pub mod retry;
pub mod throttle;
pub mod usage;

pub use client::{
    Answer, Classifier, Form, Gate, HttpClient, HttpSettings, Request, RequestAuth, Verdict,
};

/// A client for unit tests: no retries, one request at a time, a 1 MB answer cap, requests
/// only where `allowed` (`pullsync.http_allowed_hosts`' grammar) lets them go.
#[cfg(test)]
pub(crate) fn test_client(timeout: std::time::Duration, allowed: &str) -> HttpClient {
    HttpClient::new(HttpSettings {
        timeout,
        retry: RetryPolicy {
            max_retries: 0,
            base_delay: std::time::Duration::ZERO,
            max_delay: std::time::Duration::ZERO,
        },
        concurrency: 1,
        ca_file: None,
        max_response_bytes: 1 << 20,
        max_response_setting: "pullsync.http_max_response_size",
        destinations: std::sync::Arc::new(Destinations::parse(allowed).expect("a valid list")),
    })
    .expect("a test client")
}
pub use destination::{DestinationRefused, Destinations};
pub use rate::RateLimiter;
pub use redact::Secrets;
pub use retry::RetryPolicy;
pub use usage::Usage;

use std::time::Duration;

/// What the caller should do about a failed request (DESIGN.md, error policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Credentials expired or invalid: skip, leave it to the token refresh.
    Auth,
    /// Rate limited: stop calling with this credential for the run.
    Throttled,
    /// Rate limited for the whole application, whatever the credential: stop every call
    /// of the run.
    AppThrottled,
    /// 5xx, timeout, connection reset: retried; failed after the retries.
    Transient,
    /// The request itself is refused (4xx, permissions): not retried.
    Refused,
    /// The answer could not be read (malformed JSON, missing fields).
    BadData,
    /// The object asked about does not exist any more: not retried, and no failure of
    /// the run (the caller records that it is gone).
    Gone,
    /// A position the caller sent belongs to a state the server no longer has (a provider
    /// restored or promoted since): not retried; the caller starts over from what it holds.
    Stale,
    /// A position the caller sent is not accepted (expired, malformed, of another
    /// stream): not retried; the caller starts that listing over from its beginning.
    BadPosition,
}

impl FailureClass {
    /// Whether a failure of this class stops every further call with the credential in
    /// this run: it is refused, or rate limited.
    pub fn stops_the_account(self) -> bool {
        matches!(
            self,
            FailureClass::Auth | FailureClass::Throttled | FailureClass::AppThrottled
        )
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub class: FailureClass,
    /// Never contains a credential: URLs lose their query strings.
    pub message: String,
    /// From Retry-After, when the server sent one.
    pub retry_after: Option<Duration>,
    /// Requests made, retries included.
    pub attempts: u32,
}

impl Failure {
    /// The HTTP status of the answer that failed; None when none came (refused, not
    /// reached, timed out, too large). Read from the message, which names it first.
    pub fn status(&self) -> Option<u16> {
        let (_, after) = self.message.split_once(client::HTTP_STATUS)?;
        let (status, _) = after.split_once(':')?;
        status.parse().ok()
    }

    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
            retry_after: None,
            attempts: 1,
        }
    }
}

/// A URL as it may appear in messages: no query string, so no token.
pub fn redact_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_status_of_its_answer() {
        let answered = Failure::new(
            FailureClass::Refused,
            "GET http://h/x: HTTP 404: {\"error\": \"HTTP 500: no\"}",
        );
        assert_eq!(answered.status(), Some(404));
        let unreachable =
            Failure::new(FailureClass::Transient, "GET http://h/x: could not reach h");
        assert_eq!(unreachable.status(), None);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(urlencode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(urlencode("[\"c 1\"]"), "%5B%22c%201%22%5D");
    }

    #[test]
    fn urls_lose_their_query_in_messages() {
        assert_eq!(
            redact_url("https://graph.threads.net/v1.0/me?access_token=SECRET"),
            "https://graph.threads.net/v1.0/me"
        );
    }
}
