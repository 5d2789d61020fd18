//! The HTTP client: bounded concurrency, timeouts, retries of transient failures.

use super::{redact_url, Failure, FailureClass, RateLimiter, RetryPolicy};
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Reads a non-2xx answer of one API: its class and a message without secrets.
pub type Classifier = fn(status: u16, body: &[u8]) -> (FailureClass, String);

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
}

pub struct HttpClient {
    client: reqwest::Client,
    settings: HttpSettings,
    permits: Arc<Semaphore>,
    entropy: AtomicU64,
}

impl HttpClient {
    pub fn new(settings: HttpSettings) -> Result<Self, Failure> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("pg_pullsync/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            for certificate in extra_roots(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|e| {
            Failure::new(
                FailureClass::Refused,
                format!("cannot build HTTP client: {e}"),
            )
        })?;
        Ok(HttpClient {
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            entropy: AtomicU64::new(seed_entropy()),
            client,
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
        let mut retry = 0;
        loop {
            let outcome = self.attempt(request, limiter, classify, calls).await;
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
        limiter: Option<&RateLimiter>,
        classify: Classifier,
        calls: &AtomicU32,
    ) -> Result<Answer, Failure> {
        if let Some(limiter) = limiter {
            limiter.acquire().await;
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closes");
        calls.fetch_add(1, Ordering::Relaxed);
        let mut request = self.client.get(req.url);
        request = match req.auth {
            Some(RequestAuth::Bearer(token)) => request.bearer_auth(token),
            Some(RequestAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        };
        if let Some((name, value)) = req.header {
            request = request.header(name, value);
        }
        let shown = redact_url(req.url);
        let response = request
            .send()
            .await
            .map_err(|e| transport_failure(shown, &e))?;
        let status = response.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let link = header(reqwest::header::LINK);
        let body = read_capped(response, self.settings.max_response_bytes, shown).await?;
        if (200..300).contains(&status) {
            return Ok(Answer {
                body,
                link,
                shown: shown.to_string(),
            });
        }
        let (class, message) = classify(status, &body);
        Err(Failure {
            class,
            message: format!("GET {shown}: HTTP {status}: {message}"),
            retry_after,
            attempts: 1,
        })
    }
}

/// How a request proves who sends it.
#[derive(Debug, Clone, Copy)]
pub enum RequestAuth<'a> {
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// One GET: its URL, credentials and one extra header (an API key's).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub url: &'a str,
    pub auth: Option<RequestAuth<'a>>,
    pub header: Option<(&'a str, &'a str)>,
}

/// A successful answer: its body and its `Link` header.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub link: Option<String>,
    shown: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::new(
                FailureClass::BadData,
                format!("GET {}: malformed answer: {e}", self.shown),
            )
        })
    }
}

/// The body, refused as soon as it is known to exceed `max` bytes: from Content-Length
/// when the server sends one, else while the chunks arrive.
async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
    shown: &str,
) -> Result<Vec<u8>, Failure> {
    let too_large = || {
        Failure::new(
            FailureClass::Refused,
            format!(
                "GET {shown}: the answer is larger than pullsync.http_max_response_size ({} kB); raise it, or ask for smaller pages (a feed source's batch_size)",
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
        .map_err(|e| transport_failure(shown, &e))?
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

fn transport_failure(url: &str, e: &reqwest::Error) -> Failure {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    // The innermost cause says why (refused, certificate not trusted, reset); it never
    // holds the URL, whose query may carry a token.
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let message = if std::ptr::addr_eq(cause, e as &dyn std::error::Error) {
        format!("GET {url}: {what}")
    } else {
        format!("GET {url}: {what}: {cause}")
    };
    let class = if cause.to_string().contains("certificate") {
        FailureClass::Refused
    } else {
        FailureClass::Transient
    };
    Failure::new(class, message)
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
