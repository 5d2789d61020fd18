//! A feed source as this database pulls from it: its settings (the seed's SyncConfig)
//! with the key opened, and its provider over the shared HTTP layer, which classifies the
//! provider's JSON errors.

use crate::config::HttpOverrides;
use crate::error::{PullsyncError, Result};
use crate::runtime::{self, Background, Cancel};
use pgrx::prelude::*;
use pullsync_core::http::{throttle, Failure, FailureClass, HttpClient, RateLimiter, RetryPolicy};
use serde::Deserialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A configured source (the seed's SyncConfig), its key opened.
pub struct Source {
    pub consumer_id: String,
    pub base_url: String,
    api_key: String,
    pub batch_size: i32,
    pub rate_limit: i32,
    pub timeout: Duration,
    pub max_retries: i32,
    pub retry_delay: Duration,
}

/// What a provider page carries.
#[derive(Debug, Deserialize)]
pub struct FeedPage {
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
    pub checkpoint: String,
}

/// A feed source's name in sync_metrics and alerts.
pub fn metrics_source(consumer_id: &str) -> String {
    format!("feed:{consumer_id}")
}

pub fn load_source(consumer_id: &str) -> Result<Source> {
    let row = Spi::connect(|client| {
        let rows = client.select(
            "SELECT base_url, api_key_encrypted, batch_size, rate_limit,
                    (extract(epoch FROM timeout) * 1000)::bigint, max_retries,
                    (extract(epoch FROM retry_delay) * 1000)::bigint
               FROM pullsync.feed_sources WHERE consumer_id = $1",
            Some(1),
            &[consumer_id.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, PullsyncError>(None);
        }
        let r = rows.first();
        Ok(Some((
            r.get::<String>(1)?.unwrap_or_default(),
            r.get::<String>(2)?.unwrap_or_default(),
            r.get::<i32>(3)?.unwrap_or(500),
            r.get::<i32>(4)?.unwrap_or(5),
            r.get::<i64>(5)?.unwrap_or(30_000),
            r.get::<i32>(6)?.unwrap_or(3),
            r.get::<i64>(7)?.unwrap_or(5_000),
        )))
    })?;
    let Some((base_url, sealed, batch_size, rate_limit, timeout_ms, max_retries, retry_ms)) = row
    else {
        return Err(PullsyncError::NotFound {
            message: format!("feed source {consumer_id} does not exist"),
            hint: "Add it with pullsync.feed_add_source(consumer_id, base_url, api_key).".into(),
        });
    };
    let api_key =
        crate::secrets::open(&sealed, || format!("API key of feed source {consumer_id}"))?;
    Ok(Source {
        consumer_id: consumer_id.to_string(),
        base_url,
        api_key,
        batch_size,
        rate_limit,
        timeout: Duration::from_millis(timeout_ms.max(1) as u64),
        max_retries,
        retry_delay: Duration::from_millis(retry_ms.max(0) as u64),
    })
}

/// The provider's JSON errors → the HTTP layer's classes.
fn classify_feed(status: u16, body: &[u8]) -> (FailureClass, String) {
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .map(|v| v["error"].clone())
        .unwrap_or(Value::Null);
    let message = error["message"]
        .as_str()
        .unwrap_or("no error message")
        .to_string();
    let class = match (status, error["code"].as_str()) {
        (401 | 403, _) => FailureClass::Auth,
        (409, Some("cursor_from_other_provider")) => FailureClass::Stale,
        (400, Some("invalid_cursor")) => FailureClass::BadPosition,
        (429, _) => FailureClass::Throttled,
        (500..=599, _) => FailureClass::Transient,
        _ => FailureClass::Refused,
    };
    (class, message)
}

/// A source's provider over the shared HTTP layer: its timeouts, retries and rate.
/// Requests run on the background runtime, so one can be under way while this process
/// writes.
pub struct Provider {
    pub source: Source,
    http: Arc<HttpClient>,
    limiter: Arc<RateLimiter>,
    calls: Arc<AtomicU32>,
    cancel: Cancel,
}

impl Provider {
    pub fn new(source: Source, cancel: Cancel) -> Result<Self> {
        let http = crate::config::http_client(HttpOverrides {
            timeout: Some(source.timeout),
            retry: Some(RetryPolicy {
                max_retries: source.max_retries.max(0) as u32,
                base_delay: source.retry_delay,
                max_delay: source.retry_delay.max(Duration::from_secs(1)) * 8,
            }),
            concurrency: Some(1),
            max_response: None,
        })?;
        crate::config::check_destination(&source.base_url)?;
        let limiter = RateLimiter::new(f64::from(source.rate_limit), 1);
        Ok(Provider {
            source,
            http: Arc::new(http),
            limiter: Arc::new(limiter),
            calls: Arc::new(AtomicU32::new(0)),
            cancel,
        })
    }

    /// GET `path` with `query` (already encoded, without consumer_id). The outer error is
    /// an interrupt; the inner one the request's failure.
    pub fn get<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: &str,
    ) -> Result<std::result::Result<T, Failure>> {
        self.request(path, query, false).wait(self.cancel)
    }

    /// Starts the GET of a page of a listing and returns at once; `wait` on the result.
    /// Throttling is waited out as the provider asks (the HTTP layer's throttle waits).
    pub fn start_page<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: &str,
    ) -> Background<std::result::Result<T, Failure>> {
        self.request(path, query, true)
    }

    fn request<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: &str,
        wait_out_throttling: bool,
    ) -> Background<std::result::Result<T, Failure>> {
        let url = format!(
            "{}{path}?consumer_id={}{}{query}",
            self.source.base_url,
            self.source.consumer_id,
            if query.is_empty() { "" } else { "&" }
        );
        let key = self.source.api_key.clone();
        let (http, limiter, calls) = (self.http.clone(), self.limiter.clone(), self.calls.clone());
        runtime::spawn(async move {
            let get =
                || http.get_json::<T>(&url, Some(&key), Some(&limiter), classify_feed, &calls);
            if wait_out_throttling {
                throttle::waiting_out(get).await
            } else {
                get().await
            }
        })
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Creates or updates a source to pull from.
#[allow(clippy::too_many_arguments)]
pub fn add_source(
    consumer_id: &str,
    base_url: &str,
    api_key: &str,
    batch_size: i32,
    rate_limit: i32,
    timeout: pgrx::datum::Interval,
    max_retries: i32,
    retry_delay: pgrx::datum::Interval,
) -> Result<()> {
    pullsync_core::feed::validate::consumer_id(consumer_id)?;
    let base_url = pullsync_core::feed::validate::base_url(base_url)?;
    pullsync_core::feed::validate::api_key(api_key)?;
    let bounds = [
        (batch_size, 1, super::serve::MAX_PAGE, "batch_size"),
        (rate_limit, 1, 10_000, "rate_limit"),
        (max_retries, 0, 20, "max_retries"),
    ];
    for (value, low, high, name) in bounds {
        if !(low..=high).contains(&value) {
            return Err(PullsyncError::invalid(
                format!("{name} must be between {low} and {high}, not {value}"),
                format!("Pass {name} within {low}..{high}."),
            ));
        }
    }
    let sealed = crate::config::sealing_key()?.seal(api_key);
    let ok = Spi::get_one_with_args::<bool>(
        "SELECT $1::interval > '0' AND $1::interval <= '10 min' AND $2::interval >= '0' AND $2::interval <= '10 min'",
        &[timeout.into(), retry_delay.into()],
    )?
    .unwrap_or(false);
    if !ok {
        return Err(PullsyncError::invalid(
            "timeout must be in (0, 10 min] and retry_delay in [0, 10 min]",
            "Pass intervals such as '30 s' and '5 s'.",
        ));
    }
    Spi::run_with_args(
        "INSERT INTO pullsync.feed_sources (consumer_id, base_url, api_key_encrypted, batch_size, rate_limit, timeout, max_retries, retry_delay)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (consumer_id) DO UPDATE SET base_url = EXCLUDED.base_url, api_key_encrypted = EXCLUDED.api_key_encrypted,
                batch_size = EXCLUDED.batch_size, rate_limit = EXCLUDED.rate_limit, timeout = EXCLUDED.timeout,
                max_retries = EXCLUDED.max_retries, retry_delay = EXCLUDED.retry_delay, is_active = true, updated_at = now()",
        &[
            consumer_id.into(),
            base_url.into(),
            sealed.into(),
            batch_size.into(),
            rate_limit.into(),
            timeout.into(),
            max_retries.into(),
            retry_delay.into(),
        ],
    )?;
    Ok(())
}
