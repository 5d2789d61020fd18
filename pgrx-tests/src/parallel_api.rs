//! A listing API that counts how many of its requests are in flight at once: records
//! `{"id": n, "title": "item n"}` (n from 1), each answer after a fixed latency, read by
//! `GET /items` with `page` and `page_size` (pages from 1), `offset` and `limit`, or
//! `cursor` (the last id read) and `limit`; `{"results": [...], "next": "<cursor>"}`,
//! `next` null on the last page. A page made to fail answers 500 until told otherwise.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Data {
    records: u64,
    latency: Duration,
    requests: AtomicU64,
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
    /// The page that starts after this many records answers 500.
    failing: Mutex<Option<u64>>,
}

pub struct ParallelApi {
    pub server: crate::local_server::LocalServer,
    data: Arc<Data>,
}

impl ParallelApi {
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    pub fn requests(&self) -> u64 {
        self.data.requests.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at one time.
    pub fn most_in_flight(&self) -> u64 {
        self.data.most_in_flight.load(Ordering::SeqCst)
    }

    /// The page starting after `after` records fails from now on (None: none does).
    pub fn fail_after(&self, after: Option<u64>) {
        *self.data.failing.lock().unwrap() = after;
    }
}

fn number(query: &HashMap<String, String>, key: &str) -> Option<u64> {
    query.get(key).and_then(|v| v.parse().ok())
}

async fn items(
    State(data): State<Arc<Data>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    data.requests.fetch_add(1, Ordering::SeqCst);
    let now = data.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    data.most_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(data.latency).await;
    data.in_flight.fetch_sub(1, Ordering::SeqCst);
    let limit = number(&query, "page_size")
        .or_else(|| number(&query, "limit"))
        .unwrap_or(10)
        .max(1);
    let after = match (number(&query, "page"), number(&query, "offset")) {
        (Some(page), _) => page.saturating_sub(1) * limit,
        (None, Some(offset)) => offset,
        (None, None) => number(&query, "cursor").unwrap_or(0),
    };
    if *data.failing.lock().unwrap() == Some(after) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "broken page"})),
        )
            .into_response();
    }
    let last = (after + limit).min(data.records);
    let results: Vec<_> = (after + 1..=last)
        .map(|n| json!({"id": n, "title": format!("item {n}")}))
        .collect();
    let next = (last < data.records).then(|| last.to_string());
    Json(json!({"results": results, "next": next})).into_response()
}

/// The API with `records` records, each answer `latency` late, on a free port.
pub fn start(records: u64, latency: Duration) -> ParallelApi {
    let data = Arc::new(Data {
        records,
        latency,
        requests: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        most_in_flight: AtomicU64::new(0),
        failing: Mutex::new(None),
    });
    let app = axum::Router::new()
        .route("/items", get(items))
        .with_state(data.clone());
    let server = crate::local_server::LocalServer::start(app, 0, 4, "parallel-api")
        .expect("the parallel API starts");
    ParallelApi { server, data }
}
