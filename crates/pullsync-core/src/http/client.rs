//! The HTTP client: bounded concurrency, timeouts, retries of transient failures, and the
//! rules on where requests go: the destination policy (`destination`), redirects within
//! the request's origin only, secrets out of every message. GETs, and POSTs of a JSON body
//! (a listing read by search or GraphQL), both under those rules.

use super::destination::{DestinationRefused, Destinations, GuardedResolver};
use super::quota::{Budget, Quota};
use super::redirect::{same_origin_post_redirects, same_origin_redirects, RedirectRefused};
use super::usage::{Usage, APP_USAGE, BUSINESS_USAGE};
use super::{redact_url, Failure, FailureClass, RateLimiter, RetryPolicy, Secrets};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// What precedes the status in the message of a failed answer (`GET <url>: HTTP 404: …`).
pub(super) const HTTP_STATUS: &str = ": HTTP ";

/// Reads a non-2xx answer of one API: its class and a message without secrets.
pub type Classifier = fn(status: u16, body: &[u8]) -> (FailureClass, String);

/// Consulted around each request while it holds its connection slot, so a request
/// waiting for the slot sees what the one before it learned (e.g. that the whole
/// application is rate limited).
pub trait Gate: Sync {
    /// Just before the request goes out: an error stops it unsent.
    fn admit(&self) -> Result<(), Failure>;
    /// What came back, before the slot is given up.
    fn answered(&self, outcome: &Result<Answer, Failure>);
    /// What the caller's own rules make of an answer, before its status is classified.
    fn judge(&self, _status: u16, _body: &[u8]) -> Verdict {
        Verdict::Usual
    }
}

/// A caller's ruling on an answer (`Gate::judge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// As its status says: 2xx an answer, else the classifier's failure.
    Usual,
    /// An answer whatever its status: the caller reads it (`Answer::status`).
    Answer,
    /// A failure of this class with this message (retried when transient).
    Failure(FailureClass, String),
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Requests in flight at once through this client.
    pub concurrency: usize,
    /// PEM file of CA certificates trusted besides the public roots.
    pub ca_file: Option<String>,
    /// An answer larger than this is refused as it is read, before it is held whole.
    pub max_response_bytes: usize,
    /// The setting that says so, for the message.
    pub max_response_setting: &'static str,
    /// Where requests may go (`pullsync.http_allowed_hosts`).
    pub destinations: Arc<Destinations>,
}

pub struct HttpClient {
    client: reqwest::Client,
    /// For POSTs, made at the first: its redirects keep the method and body, or stop.
    post_client: tokio::sync::OnceCell<reqwest::Client>,
    settings: HttpSettings,
    permits: Arc<Semaphore>,
    entropy: AtomicU64,
    /// The rate limit the API announced: requests wait for its reset once it is spent.
    budget: Budget,
}

impl HttpClient {
    pub fn new(settings: HttpSettings) -> Result<Self, Failure> {
        Ok(HttpClient {
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            entropy: AtomicU64::new(seed_entropy()),
            budget: Budget::default(),
            client: build(&settings, same_origin_redirects())?,
            post_client: tokio::sync::OnceCell::new(),
            settings,
        })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// GETs `url` and parses its JSON. Transient failures are retried per the policy;
    /// `calls` counts every request made.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        bearer: Option<&str>,
        limiter: Option<&RateLimiter>,
        classify: Classifier,
        calls: &AtomicU32,
    ) -> Result<T, Failure> {
        let request = Request {
            url,
            auth: bearer.map(RequestAuth::Bearer),
            header: None,
            query_secret: None,
        };
        let answer = self.get(&request, limiter, classify, calls).await?;
        answer.json()
    }

    /// GETs a request, its transient failures retried per the policy.
    pub async fn get(
        &self,
        request: &Request<'_>,
        limiter: Option<&RateLimiter>,
        classify: Classifier,
        calls: &AtomicU32,
    ) -> Result<Answer, Failure> {
        self.get_gated(request, limiter, classify, calls, None)
            .await
    }

    /// `get`, each attempt first asking `gate` whether it may go out.
    pub async fn get_gated(
        &self,
        request: &Request<'_>,
        limiter: Option<&RateLimiter>,
        classify: Classifier,
        calls: &AtomicU32,
        gate: Option<&dyn Gate>,
    ) -> Result<Answer, Failure> {
        self.exchange(request, Verb::Get, limiter, classify, calls, gate)
            .await
    }

    /// POSTs `body` (JSON) as a request that reads: under the rules of a GET (destination,
    /// size cap, secrets out of messages), its transient failures retried as a GET's are. A
    /// redirect is followed only when it keeps the method and body (307, 308) and the
    /// origin; a 301, 302 or 303, which would turn it into a GET without its body, ends it
    /// with an error.
    pub async fn post(
        &self,
        request: &Request<'_>,
        body: &[u8],
        limiter: Option<&RateLimiter>,
        classify: Classifier,
        calls: &AtomicU32,
        gate: Option<&dyn Gate>,
    ) -> Result<Answer, Failure> {
        self.exchange(request, Verb::Post(body), limiter, classify, calls, gate)
            .await
    }

    async fn exchange(
        &self,
        request: &Request<'_>,
        verb: Verb<'_>,
        limiter: Option<&RateLimiter>,
        classify: Classifier,
        calls: &AtomicU32,
        gate: Option<&dyn Gate>,
    ) -> Result<Answer, Failure> {
        let mut retry = 0;
        loop {
            if let Err(mut failure) = self
                .budget
                .admit(verb.name(), redact_url(request.url))
                .await
            {
                failure.attempts = retry;
                return Err(failure);
            }
            let outcome = self
                .attempt(request, verb, limiter, classify, calls, gate)
                .await;
            match outcome {
                Err(mut failure)
                    if failure.class == FailureClass::Transient
                        && retry < self.settings.retry.max_retries =>
                {
                    retry += 1;
                    failure.attempts = retry + 1;
                    let entropy = next_entropy(&self.entropy);
                    tokio::time::sleep(self.settings.retry.delay(retry, entropy)).await;
                }
                Err(mut failure) => {
                    failure.attempts = retry + 1;
                    return Err(failure);
                }
                Ok(answer) => return Ok(answer),
            }
        }
    }

    async fn attempt(
        &self,
        req: &Request<'_>,
        verb: Verb<'_>,
        limiter: Option<&RateLimiter>,
        classify: Classifier,
        calls: &AtomicU32,
        gate: Option<&dyn Gate>,
    ) -> Result<Answer, Failure> {
        if let Some(limiter) = limiter {
            limiter.acquire().await;
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closes");
        if let Some(gate) = gate {
            gate.admit()?;
        }
        let outcome = self.send(req, verb, classify, calls, gate).await;
        if let Some(gate) = gate {
            gate.answered(&outcome);
        }
        outcome
    }

    /// POSTs a form (an OAuth 2 token request) once, under the same rules as a GET: a
    /// request that changes the server's state (a rotating refresh token spent) is not
    /// sent again blindly.
    pub async fn post_form(
        &self,
        request: &Request<'_>,
        form: &Form<'_>,
        classify: Classifier,
        calls: &AtomicU32,
    ) -> Result<Answer, Failure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closes");
        self.send(request, Verb::Form(form), classify, calls, None)
            .await
    }

    /// The client POSTs go through, made at the first: its redirects keep the method and
    /// body, or stop.
    async fn post_client(&self) -> Result<&reqwest::Client, Failure> {
        self.post_client
            .get_or_try_init(|| async { build(&self.settings, same_origin_post_redirects()) })
            .await
    }

    /// One request (a GET, or a POST of a JSON body or a form), sent and its answer read;
    /// the caller holds its connection slot.
    async fn send(
        &self,
        req: &Request<'_>,
        verb: Verb<'_>,
        classify: Classifier,
        calls: &AtomicU32,
        gate: Option<&dyn Gate>,
    ) -> Result<Answer, Failure> {
        let shown = redact_url(req.url);
        let method = verb.name();
        self.check_address_literal(req.url, method, shown)?;
        calls.fetch_add(1, Ordering::Relaxed);
        let response = self
            .builder(req, verb)
            .await?
            .send()
            .await
            .map_err(|e| transport_failure(method, shown, &e))?;
        let status = response.status().as_u16();
        let heads = self.heads(&response);
        let body = read_capped(response, &self.settings, method, shown).await?;
        let verdict = gate.map_or(Verdict::Usual, |g| g.judge(status, &body));
        if verdict == Verdict::Answer || (verdict == Verdict::Usual && (200..300).contains(&status))
        {
            return Ok(Answer {
                status,
                body,
                link: heads.link,
                date: heads.date,
                usage: heads.usage,
                method,
                shown: shown.to_string(),
            });
        }
        let (class, message) = match verdict {
            Verdict::Failure(class, message) => (class, message),
            _ => {
                // Before the classifier cuts the body short, so no secret is cut in half.
                let mut body = req.secrets().redact(&String::from_utf8_lossy(&body));
                if let Verb::Form(form) = verb {
                    body = form.secrets.redact(&body);
                }
                classify(status, body.as_bytes())
            }
        };
        Err(Failure {
            class,
            message: format!("{method} {shown}{HTTP_STATUS}{status}: {message}"),
            retry_after: heads.retry_after,
            attempts: 1,
        })
    }

    /// An address literal never reaches the resolver, where other hosts are checked: it
    /// is checked against the destination policy here.
    fn check_address_literal(&self, url: &str, method: &str, shown: &str) -> Result<(), Failure> {
        let Ok(url) = reqwest::Url::parse(url) else {
            return Ok(());
        };
        if let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) {
            self.settings
                .destinations
                .check_target(host, port)
                .map_err(|refused| {
                    Failure::new(
                        FailureClass::Refused,
                        format!("{method} {shown}: {refused}"),
                    )
                })?;
        }
        Ok(())
    }

    /// The request as it goes out: its method and body, its credentials and header.
    async fn builder(
        &self,
        req: &Request<'_>,
        verb: Verb<'_>,
    ) -> Result<reqwest::RequestBuilder, Failure> {
        let request = match verb {
            Verb::Get => self.client.get(req.url),
            Verb::Post(body) => self
                .post_client()
                .await?
                .post(req.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
            Verb::Form(form) => self
                .post_client()
                .await?
                .post(req.url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .body(form.body.to_string()),
        };
        let mut request = authorized(request, req.auth);
        if let Some((name, value)) = req.header {
            request = request.header(name, value);
        }
        Ok(request)
    }

    /// What an answer's headers say, the rate limit it announces noted for the requests
    /// after it.
    fn heads(&self, response: &reqwest::Response) -> Heads {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let usage = Usage::from_headers(
            header(APP_USAGE).as_deref(),
            header(BUSINESS_USAGE).as_deref(),
        );
        // Retry-After, else the time Meta estimates until access is regained.
        let retry_after = header(reqwest::header::RETRY_AFTER.as_str())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .or(usage.and_then(|u| u.regain));
        let date = header(reqwest::header::DATE.as_str())
            .and_then(|v| DateTime::parse_from_rfc2822(&v).ok())
            .map(|d| d.with_timezone(&Utc));
        // An absolute reset counts from the server's clock, which set it.
        let now = date.map_or_else(
            || Utc::now().timestamp_millis() as f64 / 1000.0,
            |d| d.timestamp() as f64,
        );
        let quota = Quota::from_headers(|name| header(name), now);
        self.budget.note(quota, std::time::Instant::now());
        Heads {
            usage,
            retry_after,
            date,
            link: header(reqwest::header::LINK.as_str()),
        }
    }
}

/// What a client reads of an answer's headers.
struct Heads {
    usage: Option<Usage>,
    retry_after: Option<Duration>,
    date: Option<DateTime<Utc>>,
    link: Option<String>,
}

/// A client of `settings` with these redirect rules.
fn build(
    settings: &HttpSettings,
    redirects: reqwest::redirect::Policy,
) -> Result<reqwest::Client, Failure> {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("pg_pullsync/", env!("CARGO_PKG_VERSION")))
        .redirect(redirects)
        // The policy checks the address connected to; through a proxy that would be
        // the proxy's, so the environment's proxy settings are not used.
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            destinations: settings.destinations.clone(),
        }));
    if let Some(path) = &settings.ca_file {
        for certificate in extra_roots(path)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| {
        Failure::new(
            FailureClass::Refused,
            format!("cannot build HTTP client: {e}"),
        )
    })
}

/// What a request does: a GET, a POST of a JSON body, or a POST of a form.
#[derive(Clone, Copy)]
enum Verb<'a> {
    Get,
    Post(&'a [u8]),
    Form(&'a Form<'a>),
}

impl Verb<'_> {
    fn name(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post(_) | Verb::Form(_) => "POST",
        }
    }
}

/// How a request proves who sends it.
#[derive(Debug, Clone, Copy)]
pub enum RequestAuth<'a> {
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// `request` with its credentials: Basic with an empty password is `base64(user:)`.
fn authorized(
    request: reqwest::RequestBuilder,
    auth: Option<RequestAuth<'_>>,
) -> reqwest::RequestBuilder {
    match auth {
        Some(RequestAuth::Bearer(token)) => request.bearer_auth(token),
        Some(RequestAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
        None => request,
    }
}

/// One request: its URL, credentials and one extra header (an API key's).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub url: &'a str,
    pub auth: Option<RequestAuth<'a>>,
    pub header: Option<(&'a str, &'a str)>,
    /// A secret the URL's query carries (an API key, a token).
    pub query_secret: Option<&'a str>,
}

impl Request<'_> {
    /// Every secret the request sends, in every form an echo could show.
    pub fn secrets(&self) -> Secrets {
        let mut secrets = Secrets::default();
        match self.auth {
            Some(RequestAuth::Bearer(token)) => secrets.add(token),
            Some(RequestAuth::Basic(user, password)) => secrets.add_basic(user, password),
            None => {}
        }
        if let Some((_, value)) = self.header {
            secrets.add(value);
        }
        if let Some(secret) = self.query_secret {
            secrets.add(secret);
        }
        secrets
    }
}

/// A form POSTed (`application/x-www-form-urlencoded`), and the secrets it carries.
#[derive(Debug, Clone, Copy)]
pub struct Form<'a> {
    pub body: &'a str,
    pub secrets: &'a Secrets,
}

/// A successful answer: its body, its `Link` and `Date` headers, and the usage of its
/// budget the API reported with it.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    /// 2xx, or any status a caller's rules took as an answer (`Verdict::Answer`).
    pub status: u16,
    pub link: Option<String>,
    /// The server's clock when it answered.
    pub date: Option<DateTime<Utc>>,
    pub usage: Option<Usage>,
    method: &'static str,
    shown: String,
}

impl Answer {
    /// The answer's URL as messages may show it (no query string).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        self.json_borrowed()
    }

    /// The body as JSON that may borrow from it: `&RawValue` slices of the body rather
    /// than a tree of it.
    pub fn json_borrowed<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::new(
                FailureClass::BadData,
                format!("{} {}: malformed answer: {e}", self.method, self.shown),
            )
        })
    }
}

/// The body, refused as soon as it is known to exceed `max` bytes: from Content-Length
/// when the server sends one, else while the chunks arrive.
async fn read_capped(
    mut response: reqwest::Response,
    settings: &HttpSettings,
    method: &str,
    shown: &str,
) -> Result<Vec<u8>, Failure> {
    let max = settings.max_response_bytes;
    let too_large = || {
        Failure::new(
            FailureClass::Refused,
            format!(
                "{method} {shown}: the answer is larger than {} ({} kB); raise it, or ask for smaller pages (a feed source's batch_size, a REST source's page size)",
                settings.max_response_setting,
                max / 1024
            ),
        )
    };
    let announced = response.content_length().unwrap_or(0);
    if announced > max as u64 {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(announced as usize);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_failure(method, shown, &e))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn extra_roots(path: &str) -> Result<Vec<reqwest::Certificate>, Failure> {
    let refused = |why: String| {
        Failure::new(
            FailureClass::Refused,
            format!("pullsync.http_ca_file \"{path}\": {why}"),
        )
    };
    let pem = std::fs::read(path).map_err(|e| refused(e.to_string()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|_| refused("not a PEM file of certificates".into()))?;
    if roots.is_empty() {
        return Err(refused("holds no certificate".into()));
    }
    Ok(roots)
}

/// A failed exchange as a message. Refused, reset and not-HTTP all read "could not reach
/// <host>": the text must not tell an open port from a closed one. A timeout (an open port
/// as well as a filtered one) and an untrusted certificate (an operator's fix) say so.
fn transport_failure(method: &str, url: &str, e: &reqwest::Error) -> Failure {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| url.to_string());
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut certificate = false;
    while let Some(inner) = cause {
        if let Some(refused) = inner.downcast_ref::<DestinationRefused>() {
            return Failure::new(FailureClass::Refused, format!("{method} {url}: {refused}"));
        }
        if let Some(refused) = inner.downcast_ref::<RedirectRefused>() {
            return Failure::new(FailureClass::Refused, format!("{method} {url}: {refused}"));
        }
        certificate |= inner.to_string().contains("certificate");
        cause = inner.source();
    }
    let (class, message) = if e.is_timeout() {
        (
            FailureClass::Transient,
            format!("could not reach {host}: timed out"),
        )
    } else if certificate {
        (
            FailureClass::Refused,
            format!("could not reach {host}: its TLS certificate is not trusted (pullsync.http_ca_file)"),
        )
    } else if e.is_body() || e.is_decode() {
        (FailureClass::Transient, "answer cut short".to_string())
    } else {
        (FailureClass::Transient, format!("could not reach {host}"))
    };
    Failure::new(class, format!("{method} {url}: {message}"))
}

fn seed_entropy() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

/// SplitMix64 step: cheap, well-spread jitter without a shared RNG.
fn next_entropy(state: &AtomicU64) -> u64 {
    let mut x = state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(auth: RequestAuth<'_>) -> String {
        let request = authorized(reqwest::Client::new().get("http://h/"), Some(auth));
        let built = request.build().unwrap();
        built.headers()["authorization"]
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn credentials_go_in_the_authorization_header() {
        use base64::{engine::general_purpose::STANDARD, Engine};
        assert_eq!(header(RequestAuth::Bearer("t")), "Bearer t");
        assert_eq!(
            header(RequestAuth::Basic("alice", "pw")),
            format!("Basic {}", STANDARD.encode("alice:pw"))
        );
        assert_eq!(
            header(RequestAuth::Basic("user", "")),
            format!("Basic {}", STANDARD.encode("user:"))
        );
    }
}
