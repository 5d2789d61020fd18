//! A fault-injecting HTTP proxy for the feed. Put in front of a provider's feed server, it
//! answers some requests itself — a 5xx, a 429 with Retry-After, a hang past the consumer's
//! timeout, a malformed body — by a seeded draw, and passes the others through.

use crate::local_server::LocalServer;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Probabilities per request.
#[derive(Debug, Clone, Copy)]
pub struct FeedFaults {
    pub server_error: f64,
    pub throttled: f64,
    pub hang: f64,
    pub malformed: f64,
}

struct Shared {
    upstream: String,
    faults: FeedFaults,
    seed: u64,
    requests: AtomicU64,
    fired: AtomicU64,
    client: reqwest::Client,
}

pub struct FaultProxy {
    /// e.g. `http://127.0.0.1:40123`
    pub url: String,
    shared: Arc<Shared>,
    _server: LocalServer,
}

/// A draw in [0, 1) from the seed and the request's number.
fn draw(seed: u64, n: u64) -> f64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % 1_000_000) as f64 / 1_000_000.0
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let f = shared.faults;
    let d = draw(shared.seed, n);
    let json = [(header::CONTENT_TYPE, "application/json")];
    let fault = if d < f.server_error {
        Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"code":"internal","message":"injected"}}"#,
        ))
    } else if d < f.server_error + f.throttled {
        Some((
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":{"code":"rate_limited","message":"injected"}}"#,
        ))
    } else if d < f.server_error + f.throttled + f.hang {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Some((StatusCode::GATEWAY_TIMEOUT, "{}"))
    } else if d < f.server_error + f.throttled + f.hang + f.malformed {
        Some((StatusCode::OK, r#"{"items": [{"id": "#))
    } else {
        None
    };
    if let Some((status, body)) = fault {
        shared.fired.fetch_add(1, Ordering::Relaxed);
        let mut response = (status, json, body).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().expect("a header value"));
        }
        return response;
    }
    let target = format!(
        "{}{}",
        shared.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = shared.client.get(target);
    for name in [header::AUTHORIZATION.as_str(), "x-consumer-id"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let retry_after = answer.headers().get(header::RETRY_AFTER).cloned();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, json, body).into_response();
            if let Some(value) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(_) => (StatusCode::BAD_GATEWAY, json, "{}").into_response(),
    }
}

impl FaultProxy {
    pub fn start(upstream: &str, faults: FeedFaults, seed: u64) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            faults,
            seed,
            requests: AtomicU64::new(0),
            fired: AtomicU64::new(0),
            // A ceiling for the upstream's answer, which the consumer has long given up on.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let server = LocalServer::start(app, 0, 1, "fault-proxy").expect("a free port");
        FaultProxy {
            url: server.base_url.clone(),
            shared,
            _server: server,
        }
    }

    /// Requests answered with a fault so far.
    pub fn fired(&self) -> u64 {
        self.shared.fired.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::draw;

    #[test]
    fn draws_are_uniform_enough_and_repeatable() {
        let below: usize = (0..10_000).filter(|&n| draw(7, n) < 0.05).count();
        assert!((400..600).contains(&below), "{below}");
        assert_eq!(draw(7, 42), draw(7, 42));
        assert_ne!(draw(7, 42), draw(8, 42));
    }
}
