//! A REST source's requests: its HTTP client, limits and credentials (the secret, an
//! OAuth 2 token), one page's request in any listing style, and what an answer means
//! (its records, where the next page is). Used by every kind of run (pull, prefetch,
//! backfill, fanout, preview); no transaction is needed, except to renew a token.

use super::store::Stored;
use crate::config::{self, HttpOverrides};
use crate::error::Result;
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use pullsync_core::http::{
    self, throttle, Failure, FailureClass, HttpClient, RateLimiter, Request, RequestAuth,
    RetryPolicy, Secrets,
};
use pullsync_core::rest::config::{Auth, RestConfig};
use pullsync_core::rest::incremental;
use pullsync_core::rest::paging::{self, Answer, PageRows, Position, RowMaker};
use pullsync_core::rest::responses::{self, Action};
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How much of a JSON error answer a message shows.
const ERROR_BODY_CHARS: usize = 200;

/// An API's error answers → the HTTP layer's classes. The message shows the start of a
/// JSON body (with the source's secret already taken out by the HTTP layer); any other
/// body is not shown: whatever answered was not the API, and its text is not the caller's
/// to read.
fn classify(status: u16, body: &[u8]) -> (FailureClass, String) {
    let class = match status {
        401 | 403 => FailureClass::Auth,
        429 => FailureClass::Throttled,
        500..=599 => FailureClass::Transient,
        _ => FailureClass::Refused,
    };
    let text = match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) => String::from_utf8_lossy(body)
            .chars()
            .take(ERROR_BODY_CHARS)
            .collect(),
        Err(_) if body.is_empty() => "no body".to_string(),
        Err(_) => "the answer is not JSON (not shown)".to_string(),
    };
    (class, text)
}

/// The source's HTTP client, limits and credentials: owned, so that requests made ahead
/// on the background runtime share them (`Arc<Api>`).
pub struct Api {
    source: Stored,
    http: HttpClient,
    limiter: Option<RateLimiter>,
    /// The secret in every form the requests send it.
    secrets: Secrets,
    /// An OAuth 2 source's access token.
    oauth: Option<super::oauth::Session>,
    pub calls: AtomicU32,
    /// Pages a `skip` rule of `config.responses` left out.
    pub skipped: AtomicU32,
}

impl Api {
    pub fn new(source: &Stored) -> Result<Self> {
        let c = &source.config;
        let delay = Duration::from_millis(500);
        let http = config::http_client(HttpOverrides {
            timeout: Some(Duration::from_millis(c.timeout_ms)),
            retry: Some(RetryPolicy {
                max_retries: c.retries,
                base_delay: delay,
                max_delay: Duration::from_secs(30),
            }),
            concurrency: Some(c.concurrency),
            max_response: Some((
                super::settings::max_response_bytes(),
                "pullsync.rest_max_response_size",
            )),
        })?;
        config::check_destination(&c.base_url)?;
        let oauth = match &c.auth {
            Auth::OAuth2(client) => {
                // The token endpoint may be another origin: it is checked as the API is.
                config::check_destination(&client.token_url)?;
                let secret = source.secret.as_deref();
                Some(super::oauth::Session::new(
                    &source.name,
                    client,
                    secret,
                    Duration::from_millis(c.timeout_ms),
                ))
            }
            _ => None,
        };
        let limiter = (c.rate_limit > 0.0).then(|| RateLimiter::new(c.rate_limit, 1));
        let mut secrets = Secrets::default();
        if let Some(secret) = &source.secret {
            match &c.auth {
                Auth::Basic { username } => secrets.add_basic(username, secret),
                _ => secrets.add(secret),
            }
        }
        Ok(Api {
            source: source.clone(),
            http,
            limiter,
            secrets,
            oauth,
            calls: AtomicU32::new(0),
            skipped: AtomicU32::new(0),
        })
    }

    /// The message of a failure with the secret, in any form an API echoed it, removed.
    pub fn redacted(&self, message: &str) -> String {
        let message = self.secrets.redact(message);
        match &self.oauth {
            Some(session) => session.redact(&message),
            None => message,
        }
    }

    /// An OAuth 2 source's access token had before requests are made: the committed one
    /// while it is good, else a new one. Nothing for other sources.
    pub fn authorize(&self, txn: Txn, cancel: Cancel) -> Result<std::result::Result<(), Failure>> {
        match &self.oauth {
            Some(session) => session.ensure(&self.http, &self.calls, txn, cancel),
            None => Ok(Ok(())),
        }
    }

    /// The access token an OAuth 2 source's requests send now.
    pub fn access_token(&self) -> Option<String> {
        self.oauth
            .as_ref()
            .and_then(|session| session.access_token())
    }

    /// After the API refused the access token `refused`: a good one again (another run's,
    /// or a new one). Nothing for other sources.
    pub fn renew(
        &self,
        refused: Option<String>,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<std::result::Result<(), Failure>> {
        match &self.oauth {
            Some(session) => session.renew(&self.http, &self.calls, refused, txn, cancel),
            None => Ok(Ok(())),
        }
    }

    /// `page` for an OAuth 2 source: an access token had first (the committed one while
    /// it is good, else a new one), and a new one asked for once when the API refuses it.
    pub fn authorized_page(
        &self,
        position: &Position,
        since: Option<&str>,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<std::result::Result<http::Answer, Failure>> {
        if let Err(failure) = self.authorize(txn, cancel)? {
            return Ok(Err(failure));
        }
        let Some(session) = &self.oauth else {
            return self.page(position, since, cancel);
        };
        match self.page(position, since, cancel)? {
            Err(failure) if failure.class == FailureClass::Auth => {}
            answered => return Ok(answered),
        }
        // Refused (revoked, or expired early): one new token, one more try.
        if let Err(failure) = self.renew(session.access_token(), txn, cancel)? {
            return Ok(Err(failure));
        }
        self.page(position, since, cancel)
    }

    /// One page at `position` (a GET, or a POST of the body the position makes), waiting
    /// out throttling as the API asks (Retry-After).
    pub fn page(
        &self,
        position: &Position,
        since: Option<&str>,
        cancel: Cancel,
    ) -> Result<std::result::Result<http::Answer, Failure>> {
        runtime::block_on_until(
            self.request(&self.source.config, position, since, None),
            cancel,
        )
    }

    /// The request of the page at `position` of the listing `c` (the source's own, or a
    /// fan-out parent's) as a future of its own (a backfill waits for several windows'
    /// pages at once, a fan-out for several parents'), with a window's end (`until`: its
    /// parameter and value) when it has one; throttling waited out, the failure's message
    /// without the secret.
    pub async fn request(
        &self,
        c: &RestConfig,
        position: &Position,
        since: Option<&str>,
        until: Option<(&str, &str)>,
    ) -> std::result::Result<http::Answer, Failure> {
        let secret = self.source.secret.as_deref();
        let query_key = matches!(c.auth, Auth::QueryKey { .. })
            .then_some(secret)
            .flatten();
        let mut url = paging::request_url(c, position, since, query_key);
        if let (Some((param, value)), false) = (until, matches!(position, Position::Url { .. })) {
            url = incremental::with_param(url, param, value);
        }
        let access = self.oauth.as_ref().and_then(|o| o.access_token());
        let (auth, header) = match (&c.auth, secret) {
            (Auth::OAuth2(_), _) => (access.as_deref().map(RequestAuth::Bearer), None),
            (Auth::Bearer, Some(s)) => (Some(RequestAuth::Bearer(s)), None),
            (Auth::Basic { username }, Some(s)) => (Some(RequestAuth::Basic(username, s)), None),
            (Auth::HeaderKey { header }, Some(s)) => (None, Some((header.as_str(), s))),
            _ => (None, None),
        };
        let request = Request {
            url: &url,
            auth,
            header,
            query_secret: query_key,
        };
        let body = paging::request_body(c, position, since);
        let gate = Some(&c.responses as &dyn http::Gate);
        let send = || async {
            let (limiter, calls) = (self.limiter.as_ref(), &self.calls);
            match &body {
                Some(body) => {
                    self.http
                        .post(&request, body.as_bytes(), limiter, classify, calls, gate)
                        .await
                }
                None => {
                    self.http
                        .get_gated(&request, limiter, classify, calls, gate)
                        .await
                }
            }
        };
        throttle::waiting_out(send).await.map_err(|mut failure| {
            failure.message = self.redacted(&failure.message);
            failure
        })
    }

    pub fn source(&self) -> &Stored {
        &self.source
    }

    pub fn config(&self) -> &RestConfig {
        &self.source.config
    }

    /// Whether the source authenticates with OAuth 2 (its requests need a token had first).
    pub fn has_oauth(&self) -> bool {
        self.oauth.is_some()
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// A page's rows as `maker` makes them of its records, and where the next page is (the
/// error: why the listing stops there, without the secret).
pub fn page_rows(
    api: &Api,
    config: &RestConfig,
    position: &Position,
    fetched: std::result::Result<http::Answer, Failure>,
    mut maker: RowMaker,
) -> std::result::Result<(PageRows, Option<Position>), String> {
    let next = walk_answer(api, config, position, fetched, |r, of| maker.add(r, of))?;
    Ok((maker.finish(), next))
}

/// The records of a page of the listing `config` (the source's own, or a fan-out
/// parent's) fetched at `position` to `each`, and where the next page is (the error: why
/// the listing stops there, without the secret).
pub fn walk_answer(
    api: &Api,
    config: &RestConfig,
    position: &Position,
    fetched: std::result::Result<http::Answer, Failure>,
    each: impl FnMut(&RawValue, usize),
) -> std::result::Result<Option<Position>, String> {
    let fetched = fetched.map_err(|f| f.message)?;
    match config.responses.action(fetched.status, &fetched.body) {
        Some(Action::End) => return Ok(None),
        Some(Action::Skip) => {
            api.skipped.fetch_add(1, Ordering::Relaxed);
            let next = responses::after_skip(config, position, fetched.link.as_deref());
            return next.map_err(|e| api.redacted(&e.to_string()));
        }
        _ => {}
    }
    let body = fetched
        .json_borrowed::<&RawValue>()
        .map_err(|f| api.redacted(&f.message))?;
    let answer = Answer {
        body,
        link: fetched.link.as_deref(),
    };
    let next = paging::check_answer(config, body)
        .and_then(|()| paging::each_record(config, body, each))
        .and_then(|walked| paging::next(config, position, &answer, &walked));
    next.map_err(|e| api.redacted(&e.to_string()))
}
