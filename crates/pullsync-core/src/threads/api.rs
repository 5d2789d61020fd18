//! The Threads Graph API client, over the shared HTTP layer. No pgrx.

use super::lenient;
use crate::http::{Failure, FailureClass, Gate, HttpClient, RateLimiter, Request, RequestAuth};
use chrono::{DateTime, Utc};
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use threads_model::demographics::{follower_demographics, link_clicks};
use threads_model::error::{classify, ErrorClass, ErrorEnvelope, APPLICATION_LIMIT};
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

/// An account insights answer: its values, and the clicks per link when it gave them.
#[derive(Debug, Clone)]
pub struct AccountAnswer {
    pub insights: InsightsAnswer,
    pub link_clicks: Option<Vec<(String, i64)>>,
}

/// Longer than any token Threads issues (60 days): an `expires_in` beyond it is bad data.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 10 * 365 * 86_400;

/// How long the application's calls wait after an application-level limit (or usage
/// near it) when Meta does not say: longer than a run, so the run's remaining accounts
/// are deferred to the next one.
pub const APP_HOLD: Duration = Duration::from_secs(15 * 60);

struct Hold {
    until: Instant,
    why: String,
    told: bool,
}

pub struct ThreadsApi {
    pub http: HttpClient,
    /// Versioned base, e.g. `https://graph.threads.net/v1.0`.
    base: String,
    /// Set when the whole application must wait: until when, why, and whether Meta said
    /// how long (else the wait is our own guess, APP_HOLD).
    hold: Mutex<Option<Hold>>,
}

/// One token's view of the API: its rate limiter, a count of the calls it made, the
/// API's clock as its answers gave it, and what it noted on the way.
pub struct TokenSession<'a> {
    pub api: &'a ThreadsApi,
    pub token: &'a str,
    pub limiter: RateLimiter,
    pub calls: AtomicU32,
    /// The `Date` of the latest answer, and when it arrived.
    clock: Mutex<Option<(DateTime<Utc>, Instant)>>,
    notes: Mutex<Vec<String>>,
    /// Listed posts that could not be read (and were skipped), by id.
    unreadable: Mutex<Vec<String>>,
}

/// Graph API errors → the HTTP layer's classes. Messages carry the API's text, which never
/// contains the token.
fn classify_threads(status: u16, body: &[u8]) -> (FailureClass, String) {
    let envelope = serde_json::from_slice::<ErrorEnvelope>(body).ok();
    let class = match classify(status, envelope.as_ref().map(|e| &e.error)) {
        ErrorClass::Auth => FailureClass::Auth,
        ErrorClass::Throttled
            if envelope
                .as_ref()
                .is_some_and(|e| e.error.code == APPLICATION_LIMIT) =>
        {
            FailureClass::AppThrottled
        }
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

/// The application's hold, around every request of every token.
impl Gate for ThreadsApi {
    fn admit(&self) -> Result<(), Failure> {
        self.may_call()
    }

    fn answered(&self, outcome: &Result<crate::http::Answer, Failure>) {
        match outcome {
            Err(failure) if failure.class == FailureClass::AppThrottled => {
                self.hold(failure.retry_after, &failure.message);
            }
            Ok(answer) => {
                if let Some(usage) = answer.usage.filter(|u| u.near_limit()) {
                    self.hold(
                        usage.regain,
                        &format!("the API reported {}% of its rate limit used", usage.percent),
                    );
                }
            }
            Err(_) => {}
        }
    }
}

impl ThreadsApi {
    pub fn new(http: HttpClient, base: &str) -> Self {
        ThreadsApi {
            http,
            base: base.trim_end_matches('/').to_string(),
            hold: Mutex::new(None),
        }
    }

    /// Stops every call of the application for the time Meta gave (`APP_HOLD` when it
    /// gave none): the run's remaining accounts are deferred without a request.
    pub fn hold(&self, told: Option<Duration>, why: &str) {
        let until = Instant::now() + told.unwrap_or(APP_HOLD);
        let mut held = self.hold.lock().expect("hold lock");
        if held.as_ref().is_none_or(|h| h.until < until) {
            *held = Some(Hold {
                until,
                why: why.to_string(),
                told: told.is_some(),
            });
        }
    }

    /// Whether the application may call now: an error while it is held, with the time
    /// left when Meta gave it (which later runs honour too).
    pub fn may_call(&self) -> Result<(), Failure> {
        let mut held = self.hold.lock().expect("hold lock");
        match &*held {
            Some(hold) => {
                let left = hold.until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    *held = None;
                    return Ok(());
                }
                Err(Failure {
                    class: FailureClass::AppThrottled,
                    message: format!("deferred without a request: {}", hold.why),
                    retry_after: hold.told.then_some(left),
                    attempts: 0,
                })
            }
            None => Ok(()),
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
            clock: Mutex::new(None),
            notes: Mutex::new(Vec::new()),
            unreadable: Mutex::new(Vec::new()),
        }
    }
}

impl TokenSession<'_> {
    /// One GET, every Threads answer through here: none goes out while the application is
    /// held; an application-level limit, or usage near one, holds it; the body comes back
    /// repaired (`lenient::repair`), so listings and insights are read alike.
    async fn get_answer(&self, url: &str) -> Result<crate::http::Answer, Failure> {
        let request = Request {
            url,
            auth: Some(RequestAuth::Bearer(self.token)),
            header: None,
            query_secret: None,
        };
        let mut answer = self
            .api
            .http
            .get_gated(
                &request,
                Some(&self.limiter),
                classify_threads,
                &self.calls,
                Some(self.api),
            )
            .await?;
        if let Some(date) = answer.date {
            *self.clock.lock().expect("clock lock") = Some((date, Instant::now()));
        }
        let repaired = lenient::repair(&answer.body);
        if repaired.replaced > 0 {
            self.note(format!(
                "{} unreadable characters replaced with U+FFFD (GET {})",
                repaired.replaced,
                answer.shown()
            ));
        }
        if let std::borrow::Cow::Owned(body) = repaired.json {
            answer.body = body;
        }
        Ok(answer)
    }

    fn note(&self, note: String) {
        let mut notes = self.notes.lock().expect("notes lock");
        if !notes.contains(&note) {
            notes.push(note);
        }
    }

    /// What the session noted (repaired answers, unreadable posts), each once.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().expect("notes lock"))
    }

    /// Listed posts that could not be read, by id: they exist though they were skipped.
    pub fn unreadable_posts(&self) -> Vec<String> {
        self.unreadable.lock().expect("unreadable lock").clone()
    }

    /// The API's clock now, from the `Date` of its latest answer; None before one came.
    pub fn api_now(&self) -> Option<DateTime<Utc>> {
        let (date, at) = (*self.clock.lock().expect("clock lock"))?;
        chrono::Duration::from_std(at.elapsed())
            .ok()
            .map(|elapsed| date + elapsed)
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
        let answer = self.get_answer(&url).await?;
        let read = lenient::read_page::<Post>(&answer.body).map_err(|e| {
            Failure::new(
                FailureClass::BadData,
                format!("GET {}: malformed answer: {e}", answer.shown()),
            )
        })?;
        for item in read.unreadable {
            self.note(item.note);
            if let Some(id) = item.id {
                self.unreadable.lock().expect("unreadable lock").push(id);
            }
        }
        Ok(read.page)
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
    ) -> Result<AccountAnswer, Failure> {
        let url = format!(
            "{}/{user_id}/threads_insights?metric={}&since={}&until={}",
            self.api.base,
            threads_model::ACCOUNT_METRICS,
            since.timestamp(),
            until.timestamp()
        );
        let answer = self.get_answer(&url).await?;
        let fetched_at = Utc::now();
        let bad = |e: threads_model::InsightsError| {
            Failure::new(
                FailureClass::BadData,
                format!("account insights of {user_id}: {e}"),
            )
        };
        let r = AccountInsights::read(&answer.body).map_err(bad)?;
        let link_clicks = link_clicks(&answer.body).map_err(bad)?;
        Ok(AccountAnswer {
            insights: Answer {
                values: r.values,
                unknown: r.unknown,
                fetched_at,
            },
            link_clicks,
        })
    }

    /// Followers per value of one demographics breakdown (country, city, age or gender).
    pub async fn follower_demographics(
        &self,
        user_id: &str,
        breakdown: &str,
    ) -> Result<Vec<(String, i64)>, Failure> {
        let url = format!(
            "{}/{user_id}/threads_insights?metric=follower_demographics&breakdown={}",
            self.api.base,
            crate::http::urlencode(breakdown)
        );
        let answer = self.get_answer(&url).await?;
        follower_demographics(&answer.body, breakdown).map_err(|e| {
            Failure::new(
                FailureClass::BadData,
                format!("follower demographics ({breakdown}) of {user_id}: {e}"),
            )
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
        let request = Request {
            url: &url,
            auth: None,
            header: None,
            query_secret: Some(self.token),
        };
        let answer: TokenResponse = self
            .api
            .http
            .get(&request, Some(&self.limiter), classify_threads, &self.calls)
            .await?
            .json()?;
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
        let limit = |code: i64, status| {
            let body = format!(r#"{{"error":{{"message":"limit","code":{code}}}}}"#);
            classify_threads(status, body.as_bytes()).0
        };
        assert_eq!(limit(4, 403), FailureClass::AppThrottled);
        assert_eq!(limit(4, 429), FailureClass::AppThrottled);
        for code in [17, 32, 613] {
            assert_eq!(limit(code, 400), FailureClass::Throttled, "{code}");
        }
        assert_eq!(classify_threads(404, b"").0, FailureClass::Refused);
    }

    fn quiet_client() -> HttpClient {
        crate::http::test_client(std::time::Duration::from_secs(1), "")
    }

    #[test]
    fn token_endpoints_are_unversioned() {
        let http = quiet_client();
        let api = ThreadsApi::new(http, "https://graph.threads.net/v1.0/");
        assert_eq!(api.root(), "https://graph.threads.net");
    }

    #[test]
    fn an_application_hold_refuses_calls_until_it_ends() {
        let api = ThreadsApi::new(quiet_client(), "https://graph.threads.net/v1.0");
        assert!(api.may_call().is_ok());
        api.hold(Some(Duration::from_secs(60)), "code 4");
        let refused = api.may_call().unwrap_err();
        assert_eq!(refused.class, FailureClass::AppThrottled);
        assert_eq!(refused.attempts, 0, "no request was made");
        assert!(refused.retry_after.unwrap() > Duration::from_secs(50));
        api.hold(Some(Duration::ZERO), "a shorter hold does not shorten it");
        assert!(api.may_call().is_err());
        let guessed = ThreadsApi::new(quiet_client(), "https://graph.threads.net/v1.0");
        guessed.hold(None, "code 4 without a time");
        assert_eq!(
            guessed.may_call().unwrap_err().retry_after,
            None,
            "a wait Meta did not give is not passed on as if it had"
        );
        let brief = ThreadsApi::new(quiet_client(), "https://graph.threads.net/v1.0");
        brief.hold(Some(Duration::from_millis(1)), "over at once");
        std::thread::sleep(Duration::from_millis(5));
        assert!(brief.may_call().is_ok());
    }
}
