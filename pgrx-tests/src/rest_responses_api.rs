//! A page-number API (`GET /items?page=&page_size=`, `{"results": [...]}`, ids 1..=n) that
//! answers the way APIs do when response actions matter, one way per server:
//! - `Shape::EndsWith404`: a page past the last is a 404, not an empty page;
//! - `Shape::BusyOnce(page)`: that page's first request answers 200 with an error body;
//! - `Shape::Broken(page)`: that page always answers 500 with `{"error": "broken page"}`;
//! - `Shape::Suspended(page)`: that page answers 200 with `{"error": "account suspended"}`;
//! - `Shape::Limited(budget)`: `budget` requests per window, each answer carrying
//!   `X-RateLimit-Remaining` and `X-RateLimit-Reset` (a Unix time); the answer that spends
//!   the budget opens a window 2 s long, and every request before its reset is a 429
//!   (counted).
//!
//! Every request is counted.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub enum Shape {
    EndsWith404,
    BusyOnce(usize),
    Broken(usize),
    Suspended(usize),
    Limited(u32),
}

#[derive(Debug, Default)]
struct Data {
    records: usize,
    shape: Option<Shape>,
    requests: u32,
    throttled: u32,
    busy_answered: bool,
    remaining: u32,
    /// Unix time (whole seconds) before which every request is refused.
    reset_at: u64,
}

pub struct ResponsesApi {
    pub server: crate::local_server::LocalServer,
    data: Arc<Mutex<Data>>,
}

impl ResponsesApi {
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Requests answered, 429s included.
    pub fn requests(&self) -> u32 {
        self.data.lock().unwrap().requests
    }

    /// Requests refused with 429.
    pub fn throttled(&self) -> u32 {
        self.data.lock().unwrap().throttled
    }
}

type Shared = Arc<Mutex<Data>>;

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn items(
    State(data): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let number = |key: &str, default: usize| {
        query
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (page, size) = (number("page", 1).max(1), number("page_size", 10).max(1));
    let mut d = data.lock().unwrap();
    d.requests += 1;
    let mut quota = None;
    match d.shape {
        Some(Shape::Limited(budget)) => {
            let now = epoch();
            if now < d.reset_at as f64 {
                d.throttled += 1;
                let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
                r.headers_mut().insert("retry-after", "1".parse().unwrap());
                return r;
            }
            if d.reset_at > 0 {
                d.remaining = budget;
                d.reset_at = 0;
            }
            d.remaining = d.remaining.saturating_sub(1);
            if d.remaining == 0 {
                d.reset_at = (now + 2.0).ceil() as u64;
            }
            let reset = if d.reset_at > 0 {
                d.reset_at
            } else {
                (now + 60.0) as u64
            };
            quota = Some((d.remaining, reset));
        }
        Some(Shape::BusyOnce(p)) if p == page && !d.busy_answered => {
            d.busy_answered = true;
            return error(StatusCode::OK, "busy, try again");
        }
        Some(Shape::Broken(p)) if p == page => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "broken page")
        }
        Some(Shape::Suspended(p)) if p == page => {
            return error(StatusCode::OK, "account suspended")
        }
        _ => {}
    }
    let first = (page - 1) * size;
    if matches!(d.shape, Some(Shape::EndsWith404)) && first >= d.records {
        return error(StatusCode::NOT_FOUND, "no such page");
    }
    let results: Vec<Value> = (first + 1..=(first + size).min(d.records))
        .map(|id| json!({ "id": id, "title": format!("record {id}") }))
        .collect();
    let mut r = axum::Json(json!({ "results": results, "page": page })).into_response();
    if let Some((remaining, reset)) = quota {
        let headers = r.headers_mut();
        headers.insert("x-ratelimit-remaining", remaining.into());
        headers.insert("x-ratelimit-reset", reset.into());
    }
    r
}

/// The API over `records` records, answering as `shape` says.
pub fn start(records: usize, shape: Shape) -> ResponsesApi {
    let remaining = match shape {
        Shape::Limited(budget) => budget,
        _ => 0,
    };
    let data: Shared = Arc::new(Mutex::new(Data {
        records,
        shape: Some(shape),
        remaining,
        ..Data::default()
    }));
    let app = axum::Router::new()
        .route("/items", get(items))
        .with_state(data.clone());
    let server = crate::local_server::LocalServer::start(app, 0, 2, "rest-responses-api")
        .expect("REST responses API");
    ResponsesApi { server, data }
}
