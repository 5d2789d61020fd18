//! A paged JSON API for the REST benchmark: records made from their number on each
//! request (no data held, so a listing of millions costs the server nothing to keep), a
//! fixed latency per page slept asynchronously (concurrent clients wait side by side, not
//! one after another), and a count of the requests answered.
//!
//! - `GET /records?total=N&limit=L&cursor=C`: `{"data": [records C+1 ..= C+L], "next_cursor":
//!   "C+L"}`, `next_cursor` null on the last page; `page=P` (from 1) instead of the cursor
//!   reads records (P-1)·L+1 ..= P·L, an empty page past the last;
//! - `GET /parents/{parent}/children?per_parent=K`: the parent's K children, one page;
//! - `GET /admin/requests`: the API requests answered so far.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Record `n` (from 1): a flat object of the shape most listings have.
pub fn record(n: u64) -> Value {
    let updated = chrono::DateTime::from_timestamp(1_704_067_200 + n as i64, 0)
        .expect("a time within range")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    json!({
        "id": n,
        "title": format!("record {n}"),
        "status": if n.is_multiple_of(3) { "closed" } else { "open" },
        "amount": (n * 37 % 100_000) as f64 / 100.0,
        "updated_at": updated,
    })
}

/// Child `k` (from 1) of `parent`: its id is unique over all parents.
pub fn child(parent: u64, k: u64) -> Value {
    json!({
        "id": parent * 1_000_000 + k,
        "parent_id": parent,
        "title": format!("child {k} of {parent}"),
    })
}

struct Api {
    latency: Duration,
    requests: AtomicU64,
}

type Shared = Arc<Api>;

fn number(query: &HashMap<String, String>, key: &str, default: u64) -> u64 {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn answered(api: &Api) {
    api.requests.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(api.latency).await;
}

async fn records(
    State(api): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    answered(&api).await;
    let total = number(&query, "total", 1_000);
    let limit = number(&query, "limit", 100).max(1);
    let after = match query.get("page").and_then(|p| p.parse::<u64>().ok()) {
        Some(page) => page.saturating_sub(1) * limit,
        None => number(&query, "cursor", 0),
    };
    let last = (after + limit).min(total).max(after);
    let data: Vec<Value> = (after + 1..=last).map(record).collect();
    let next = (last < total).then(|| last.to_string());
    Json(json!({ "data": data, "next_cursor": next }))
}

async fn children(
    State(api): State<Shared>,
    Path(parent): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    answered(&api).await;
    let per_parent = number(&query, "per_parent", 100);
    let data: Vec<Value> = (1..=per_parent).map(|k| child(parent, k)).collect();
    Json(json!({ "data": data, "next_cursor": null }))
}

async fn requests(State(api): State<Shared>) -> Json<Value> {
    Json(json!({ "requests": api.requests.load(Ordering::Relaxed) }))
}

/// The API on `port` of 127.0.0.1 (0: any free one), `threads` runtime threads.
pub fn start(
    port: u16,
    latency: Duration,
    threads: usize,
) -> std::io::Result<crate::local_server::LocalServer> {
    let api = Arc::new(Api {
        latency,
        requests: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/records", get(records))
        .route("/parents/{parent}/children", get(children))
        .route("/admin/requests", get(requests))
        .with_state(api);
    crate::local_server::LocalServer::start(app, port, threads, "paged-api")
}
