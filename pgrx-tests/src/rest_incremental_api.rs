//! A JSON API for the REST source's incremental runs: `GET /{inclusive|exclusive}/events
//! ?since=&until=&page=&per_page=` answers `{"data": [...]}` in `(updated_at, id)` order,
//! numbered pages (a shorter one is the last). Under `/inclusive` `since` takes records at
//! the value sent (`>=`), under `/exclusive` only after it (`>`); `until` excludes its
//! value (`<`). Records share timestamps at will; a test removes one, makes requests whose
//! query holds a text fail until told otherwise, and reads how many requests were in
//! flight at once (each answer takes `delay`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub title: String,
    /// RFC 3339, UTC, one format: text order is time order.
    pub updated_at: String,
}

#[derive(Default)]
pub struct Data {
    pub events: Vec<Event>,
    /// The query (sorted `k=v` joined by `&`) of every request answered.
    pub requests: Vec<String>,
    /// Requests whose query contains this text are answered 400 until cleared.
    pub failing: Option<String>,
    pub delay: std::time::Duration,
    in_flight: usize,
    pub most_in_flight: usize,
}

pub struct EventsApi {
    pub server: crate::local_server::LocalServer,
    pub data: Arc<Mutex<Data>>,
}

impl EventsApi {
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Changes an event's title and time, or adds it.
    pub fn upsert(&self, id: i64, title: &str, updated_at: &str) {
        let mut d = self.data.lock().unwrap();
        d.events.retain(|e| e.id != id);
        d.events.push(Event {
            id,
            title: title.into(),
            updated_at: updated_at.into(),
        });
    }

    pub fn remove(&self, id: i64) {
        self.data.lock().unwrap().events.retain(|e| e.id != id);
    }

    /// The queries answered since the last call.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut self.data.lock().unwrap().requests)
    }

    /// Requests whose query contains `text` fail (400) until `None`.
    pub fn fail(&self, text: Option<&str>) {
        self.data.lock().unwrap().failing = text.map(str::to_string);
    }

    pub fn slow_down(&self, delay: std::time::Duration) {
        self.data.lock().unwrap().delay = delay;
    }

    pub fn most_in_flight(&self) -> usize {
        self.data.lock().unwrap().most_in_flight
    }
}

type Shared = Arc<Mutex<Data>>;

fn number(query: &HashMap<String, String>, key: &str, default: usize) -> usize {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn events(
    State(data): State<Shared>,
    Path(boundary): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    q.sort();
    let q = q.join("&");
    let delay = {
        let mut d = data.lock().unwrap();
        d.requests.push(q.clone());
        d.in_flight += 1;
        d.most_in_flight = d.most_in_flight.max(d.in_flight);
        d.delay
    };
    tokio::time::sleep(delay).await;
    let mut d = data.lock().unwrap();
    d.in_flight -= 1;
    if d.failing.as_ref().is_some_and(|f| q.contains(f.as_str())) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "injected" })),
        )
            .into_response();
    }
    let exclusive = match boundary.as_str() {
        "inclusive" => false,
        "exclusive" => true,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut events: Vec<Event> = d.events.clone();
    drop(d);
    if let Some(since) = query.get("since") {
        events.retain(|e| {
            if exclusive {
                e.updated_at.as_str() > since.as_str()
            } else {
                e.updated_at.as_str() >= since.as_str()
            }
        });
    }
    if let Some(until) = query.get("until") {
        events.retain(|e| e.updated_at.as_str() < until.as_str());
    }
    events.sort_by(|a, b| (&a.updated_at, a.id).cmp(&(&b.updated_at, b.id)));
    let per_page = number(&query, "per_page", 5).max(1);
    let page = number(&query, "page", 1).max(1);
    let data: Vec<Value> = events
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|e| json!({ "id": e.id, "title": e.title, "updated_at": e.updated_at }))
        .collect();
    axum::Json(json!({ "data": data })).into_response()
}

/// The API over `events`.
pub fn start(initial: Vec<Event>) -> EventsApi {
    let data: Shared = Arc::new(Mutex::new(Data {
        events: initial,
        ..Data::default()
    }));
    let app = axum::Router::new()
        .route("/{boundary}/events", get(events))
        .with_state(data.clone());
    let server =
        crate::local_server::LocalServer::start(app, 0, 2, "rest-events-api").expect("events API");
    EventsApi { server, data }
}
