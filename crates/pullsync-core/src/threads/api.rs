//! The Threads Graph API client, over the shared HTTP layer. No pgrx.

use crate::http::{Failure, FailureClass, HttpClient, RateLimiter, Request, RequestAuth};
use chrono::{DateTime, Utc};
use std::sync::atomic::AtomicU32;
use threads_model::error::{classify, ErrorClass, ErrorEnvelope};
use threads_model::{AccountInsights, Page, Post, PostMetrics, TokenResponse};

/// Values of one insights answer (see `threads_model::Readings`) and when it came.
#[derive(Debug, Clone)]
pub struct Answer<const N: usize> {
    pub values: [Option<i64>; N],
    pub unknown: Vec<String>,
    pub fetched_at: DateTime<Utc>,
}

pub type MetricsAnswer = Answer<6>;
pub type InsightsAnswer = Answer<7>;

/// Longer than any token Threads issues (60 days): an `expires_in` beyond it is bad data.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 10 * 365 * 86_400;

pub struct ThreadsApi {
    pub http: HttpClient,
    /// Versioned base, e.g. `https://graph.threads.net/v1.0`.
    base: String,
}

/// One token's view of the API: its rate limiter and a count of the calls it made.
pub struct TokenSession<'a> {
    pub api: &'a ThreadsApi,
    pub token: &'a str,
    pub limiter: RateLimiter,
    pub calls: AtomicU32,
}

/// Graph API errors → the HTTP layer's classes. Messages carry the API's text, which never
/// contains the token.
fn classify_threads(status: u16, body: &[u8]) -> (FailureClass, String) {
    let envelope = serde_json::from_slice::<ErrorEnvelope>(body).ok();
    let class = match classify(status, envelope.as_ref().map(|e| &e.error)) {
        ErrorClass::Auth => FailureClass::Auth,
        ErrorClass::Throttled => FailureClass::Throttled,
        ErrorClass::Transient => FailureClass::Transient,
        ErrorClass::Permission | ErrorClass::BadRequest => FailureClass::Refused,
        ErrorClass::NotFound => FailureClass::Gone,
    };
    let message = match envelope {
        Some(e) => format!(
            "code {}{}: {}",
            e.error.code,
            e.error
                .error_subcode
                .map(|s| format!("/{s}"))
                .unwrap_or_default(),
            e.error.message
        ),
        None => "no error envelope".into(),
    };
    (class, message)
}

impl ThreadsApi {
    pub fn new(http: HttpClient, base: &str) -> Self {
        ThreadsApi {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// Token endpoints are unversioned: the base without its `/vX.Y` segment.
    fn root(&self) -> &str {
        match self.base.rsplit_once('/') {
            Some((root, version)) if version.starts_with('v') && version[1..].contains('.') => root,
            _ => &self.base,
        }
    }

    pub fn session<'a>(&'a self, token: &'a str, rate_per_sec: f64) -> TokenSession<'a> {
        TokenSession {
            api: self,
            token,
            limiter: RateLimiter::new(rate_per_sec, 1),
            calls: AtomicU32::new(0),
        }
    }
}

impl TokenSession<'_> {
    async fn get<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, Failure> {
        self.get_answer(url).await?.json()
    }

    /// The answer's body as it came: insights answers are read metric by metric from it.
    async fn get_answer(&self, url: &str) -> Result<crate::http::Answer, Failure> {
        let request = Request {
            url,
            auth: Some(RequestAuth::Bearer(self.token)),
            header: None,
        };
        self.api
            .http
            .get(&request, Some(&self.limiter), classify_threads, &self.calls)
            .await
    }

    /// One page of the account's posts, newest first.
    pub async fn posts_page(
        &self,
        user_id: &str,
        after: Option<&str>,
    ) -> Result<Page<Post>, Failure> {
        self.posts_page_within(user_id, None, after).await
    }

    /// One page of the account's posts published in [since, until] (Unix seconds).
    pub async fn posts_page_within(
        &self,
        user_id: &str,
        window: Option<(i64, i64)>,
        after: Option<&str>,
    ) -> Result<Page<Post>, Failure> {
        let mut url = format!(
            "{}/{user_id}/threads?fields={}&limit={}",
            self.api.base,
            threads_model::POST_FIELDS,
            threads_model::MAX_PAGE_LIMIT
        );
        if let Some((since, until)) = window {
            url.push_str(&format!("&since={since}&until={until}"));
        }
        if let Some(after) = after {
            url.push_str("&after=");
            url.push_str(&crate::http::urlencode(after));
        }
        self.get(&url).await
    }

    /// Lifetime metrics of a post; None when the API has none (REPOST_FACADE).
    pub async fn post_metrics(&self, media_id: &str) -> Result<Option<MetricsAnswer>, Failure> {
        let url = format!(
            "{}/{media_id}/insights?metric={}",
            self.api.base,
            threads_model::POST_METRICS
        );
        let answer = self.get_answer(&url).await?;
        let fetched_at = Utc::now();
        let readings = PostMetrics::read(&answer.body).map_err(|e| {
            Failure::new(
                FailureClass::BadData,
                format!("insights of post {media_id}: {e}"),
            )
        })?;
        Ok(readings.map(|r| Answer {
            values: r.values,
            unknown: r.unknown,
            fetched_at,
        }))
    }

    /// Account insights for [since, until], plus the current follower count.
    pub async fn account_insights(
        &self,
        user_id: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<InsightsAnswer, Failure> {
        let url = format!(
            "{}/{user_id}/threads_insights?metric={}&since={}&until={}",
            self.api.base,
            threads_model::ACCOUNT_METRICS,
            since.timestamp(),
            until.timestamp()
        );
        let answer = self.get_answer(&url).await?;
        let fetched_at = Utc::now();
        let r = AccountInsights::read(&answer.body).map_err(|e| {
            Failure::new(
                FailureClass::BadData,
                format!("account insights of {user_id}: {e}"),
            )
        })?;
        Ok(Answer {
            values: r.values,
            unknown: r.unknown,
            fetched_at,
        })
    }

    /// `GET /refresh_access_token?grant_type=th_refresh_token&access_token=<token>`, the one
    /// form Meta documents: the token goes in the query (which never reaches a message:
    /// the HTTP layer drops query strings from them), not in a header.
    pub async fn refresh(&self) -> Result<TokenResponse, Failure> {
        let url = format!(
            "{}/refresh_access_token?grant_type=th_refresh_token&access_token={}",
            self.api.root(),
            crate::http::urlencode(self.token)
        );
        let answer: TokenResponse = self
            .api
            .http
            .get_json(
                &url,
                None,
                Some(&self.limiter),
                classify_threads,
                &self.calls,
            )
            .await?;
        if !(1..=MAX_TOKEN_LIFETIME_SECS).contains(&answer.expires_in) {
            return Err(Failure::new(
                FailureClass::BadData,
                format!(
                    "the refresh answered expires_in = {}, which no token lives for",
                    answer.expires_in
                ),
            ));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_graph_errors_without_leaking() {
        let body = br#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190,"error_subcode":463}}"#;
        let (class, message) = classify_threads(400, body);
        assert_eq!(class, FailureClass::Auth);
        assert_eq!(message, "code 190/463: Error validating access token");
        assert_eq!(classify_threads(503, b"<html>").0, FailureClass::Transient);
        assert_eq!(classify_threads(429, b"").0, FailureClass::Throttled);
        assert_eq!(classify_threads(404, b"").0, FailureClass::Refused);
    }

    #[test]
    fn token_endpoints_are_unversioned() {
        let http = HttpClient::new(crate::http::HttpSettings {
            timeout: std::time::Duration::from_secs(1),
            retry: crate::http::RetryPolicy {
                max_retries: 0,
                base_delay: std::time::Duration::ZERO,
                max_delay: std::time::Duration::ZERO,
            },
            concurrency: 1,
            ca_file: None,
            max_response_bytes: 1 << 20,
        })
        .unwrap();
        let api = ThreadsApi::new(http, "https://graph.threads.net/v1.0/");
        assert_eq!(api.root(), "https://graph.threads.net");
    }
}
