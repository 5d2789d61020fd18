//! JSON APIs shaped like real ones, for the REST source's tests, over one set of records
//! that tests change between runs:
//! - GitHub-style `GET /repos/acme/widgets/issues?since=&per_page=&page=`: a bare array
//!   in `updated_at` order, RFC 8288 `Link: <…>; rel="next"`, `Authorization: Bearer`;
//! - Stripe-style `GET /v1/customers?limit=&starting_after=`: `{"object": "list", "data",
//!   "has_more"}` in id order, `Authorization: Bearer`;
//! - a page-number API `GET /api/v2/tickets?page=&page_size=`: `{"results", "page"}`, the
//!   key in `X-Api-Key`.
//!
//! Every request is logged (path and query); a test can make one page fail.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const GITHUB_TOKEN: &str = "ghp_rest-test-token-0123456789";
pub const STRIPE_KEY: &str = "sk_test_rest-0123456789abcdef";
pub const TICKETS_KEY: &str = "tickets-key-0123456789";

#[derive(Debug, Clone)]
pub struct Record {
    pub id: i64,
    pub title: String,
    /// RFC 3339, UTC, one format: text order is time order.
    pub updated_at: String,
}

impl Record {
    fn json(&self) -> Value {
        json!({ "id": self.id, "title": self.title, "updated_at": self.updated_at, "labels": ["x"] })
    }
}

#[derive(Default)]
pub struct Data {
    pub records: Vec<Record>,
    /// (path, query) of every request answered.
    pub requests: Vec<(String, String)>,
    /// Answer this status instead, once, to the request whose query contains this text.
    pub fail_once: Option<(String, u16)>,
    /// How long each answer takes (a slow API).
    pub delay: std::time::Duration,
}

pub struct RestApi {
    pub server: crate::local_server::LocalServer,
    pub data: Arc<Mutex<Data>>,
}

impl RestApi {
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    pub fn set(&self, records: Vec<Record>) {
        self.data.lock().unwrap().records = records;
    }

    /// Changes a record's title and time (or adds it).
    pub fn upsert(&self, id: i64, title: &str, updated_at: &str) {
        let mut d = self.data.lock().unwrap();
        d.records.retain(|r| r.id != id);
        d.records.push(Record {
            id,
            title: title.into(),
            updated_at: updated_at.into(),
        });
    }

    pub fn requests(&self) -> Vec<(String, String)> {
        self.data.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.data.lock().unwrap().requests.clear();
    }

    pub fn fail_once(&self, query_contains: &str, status: u16) {
        self.data.lock().unwrap().fail_once = Some((query_contains.into(), status));
    }

    /// Makes every answer take `delay`.
    pub fn slow_down(&self, delay: std::time::Duration) {
        self.data.lock().unwrap().delay = delay;
    }
}

/// `n` records, ids 1..=n, updated a minute apart from 2024-01-01.
pub fn records(n: i64) -> Vec<Record> {
    (1..=n)
        .map(|id| Record {
            id,
            title: format!("record {id}"),
            updated_at: format!("2024-01-01T{:02}:{:02}:00Z", id / 60, id % 60),
        })
        .collect()
}

type Shared = Arc<Mutex<Data>>;

fn authorised(headers: &HeaderMap, name: &str, value: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == value)
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "message": "Bad credentials" })),
    )
        .into_response()
}

/// Logs the request and answers the injected failure, if it is this one's.
fn note(data: &Shared, path: &str, query: &HashMap<String, String>) -> Option<Response> {
    let mut q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    q.sort();
    let q = q.join("&");
    let mut d = data.lock().unwrap();
    d.requests.push((path.to_string(), q.clone()));
    if !d.delay.is_zero() {
        let delay = d.delay;
        drop(d);
        // The handlers answer one request at a time per connection; a blocking sleep on the
        // server's own runtime thread is what a slow API looks like from outside.
        std::thread::sleep(delay);
        d = data.lock().unwrap();
    }
    match d.fail_once.clone() {
        Some((needle, status)) if q.contains(&needle) => {
            d.fail_once = None;
            let mut r = (
                StatusCode::from_u16(status).unwrap(),
                axum::Json(json!({ "error": "injected" })),
            )
                .into_response();
            if status == 429 {
                r.headers_mut().insert("retry-after", "1".parse().unwrap());
            }
            Some(r)
        }
        _ => None,
    }
}

fn number(query: &HashMap<String, String>, key: &str, default: usize) -> usize {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn issues(
    State(data): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = note(&data, "/repos/acme/widgets/issues", &query) {
        return r;
    }
    if !authorised(&headers, "authorization", &format!("Bearer {GITHUB_TOKEN}")) {
        return unauthorised();
    }
    let per_page = number(&query, "per_page", 30);
    let page = number(&query, "page", 1).max(1);
    let mut records: Vec<Record> = data.lock().unwrap().records.clone();
    if let Some(since) = query.get("since") {
        records.retain(|r| r.updated_at.as_str() >= since.as_str());
    }
    records.sort_by(|a, b| (&a.updated_at, a.id).cmp(&(&b.updated_at, b.id)));
    let items: Vec<Value> = records
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(Record::json)
        .collect();
    let mut response = axum::Json(Value::Array(items)).into_response();
    if page * per_page < records.len() {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let mut params: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.push(("page".into(), (page + 1).to_string()));
        let encoded = serde_urlencoded::to_string(&params).unwrap();
        let link = format!(
            "<http://{host}/repos/acme/widgets/issues?{encoded}>; rel=\"next\", <http://{host}/repos/acme/widgets/issues?page=999>; rel=\"last\""
        );
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

async fn customers(
    State(data): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = note(&data, "/v1/customers", &query) {
        return r;
    }
    if !authorised(&headers, "authorization", &format!("Bearer {STRIPE_KEY}")) {
        return unauthorised();
    }
    let limit = number(&query, "limit", 10);
    let after: i64 = query
        .get("starting_after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut records: Vec<Record> = data.lock().unwrap().records.clone();
    records.sort_by_key(|r| r.id);
    let rest: Vec<&Record> = records.iter().filter(|r| r.id > after).collect();
    let page: Vec<Value> = rest.iter().take(limit).map(|r| r.json()).collect();
    axum::Json(json!({
        "object": "list",
        "url": "/v1/customers",
        "data": page,
        "has_more": rest.len() > limit,
    }))
    .into_response()
}

async fn tickets(
    State(data): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = note(&data, "/api/v2/tickets", &query) {
        return r;
    }
    if !authorised(&headers, "x-api-key", TICKETS_KEY) {
        return unauthorised();
    }
    let size = number(&query, "page_size", 25);
    let page = number(&query, "page", 1).max(1);
    let mut records: Vec<Record> = data.lock().unwrap().records.clone();
    records.sort_by_key(|r| r.id);
    let results: Vec<Value> = records
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(Record::json)
        .collect();
    axum::Json(json!({ "results": results, "page": page })).into_response()
}

/// The three APIs over `records`.
pub fn start(records: Vec<Record>) -> RestApi {
    let data: Shared = Arc::new(Mutex::new(Data {
        records,
        ..Data::default()
    }));
    let app = axum::Router::new()
        .route("/repos/acme/widgets/issues", get(issues))
        .route("/v1/customers", get(customers))
        .route("/api/v2/tickets", get(tickets))
        .with_state(data.clone());
    let server = crate::local_server::LocalServer::start(app, 0, 2, "rest-api").expect("REST API");
    RestApi { server, data }
}
