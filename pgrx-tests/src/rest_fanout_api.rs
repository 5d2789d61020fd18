//! A GitHub-style API with a listing per parent, for the REST source's fan-out tests:
//! `GET /repos/{repo}/issues?since=&page=&per_page=` answers the repo's issues (a bare
//! array in `number` order, `updated_at` after `since`), numbered from 1 in every repo so
//! that children of different parents share ids. Each request is logged with its path as
//! sent (still percent-encoded); any other path is logged and answered 404. Answers can be
//! slowed down (to see parents pulled in parallel) and one repo can be made to fail.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Issue {
    pub number: i64,
    pub title: String,
    /// RFC 3339, UTC, one format: text order is time order.
    pub updated_at: String,
}

#[derive(Default)]
pub struct Data {
    /// Issues by repo, as the path names it (decoded).
    pub repos: BTreeMap<String, Vec<Issue>>,
    /// (path as sent, query) of every request.
    pub requests: Vec<(String, String)>,
    /// A repo whose listing answers 400.
    pub failing: Option<String>,
    pub delay: Duration,
    in_flight: usize,
    /// The most requests answered at once.
    pub max_in_flight: usize,
}

pub struct FanoutApi {
    pub server: crate::local_server::LocalServer,
    pub data: Arc<Mutex<Data>>,
}

/// `n` issues, numbered 1..=n, titled after the repo, a minute apart from 2024-01-01.
pub fn issues(repo: &str, n: i64) -> Vec<Issue> {
    (1..=n)
        .map(|number| Issue {
            number,
            title: format!("{repo} #{number}"),
            updated_at: format!("2024-01-01T00:{number:02}:00Z"),
        })
        .collect()
}

impl FanoutApi {
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    pub fn set_repo(&self, repo: &str, issues: Vec<Issue>) {
        self.data.lock().unwrap().repos.insert(repo.into(), issues);
    }

    /// Changes an issue's title and time (or adds it).
    pub fn upsert(&self, repo: &str, number: i64, title: &str, updated_at: &str) {
        let mut d = self.data.lock().unwrap();
        let issues = d.repos.entry(repo.into()).or_default();
        issues.retain(|i| i.number != number);
        issues.push(Issue {
            number,
            title: title.into(),
            updated_at: updated_at.into(),
        });
        issues.sort_by_key(|i| i.number);
    }

    pub fn requests(&self) -> Vec<(String, String)> {
        self.data.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.data.lock().unwrap().requests.clear();
    }

    pub fn fail(&self, repo: Option<&str>) {
        self.data.lock().unwrap().failing = repo.map(String::from);
    }

    pub fn slow_down(&self, delay: Duration) {
        self.data.lock().unwrap().delay = delay;
    }

    pub fn max_in_flight(&self) -> usize {
        self.data.lock().unwrap().max_in_flight
    }
}

type Shared = Arc<Mutex<Data>>;

fn number(query: &HashMap<String, String>, key: &str, default: usize) -> usize {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn repo_issues(
    State(data): State<Shared>,
    Path(repo): Path<String>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let delay = {
        let mut d = data.lock().unwrap();
        d.requests.push((
            uri.path().to_string(),
            uri.query().unwrap_or("").to_string(),
        ));
        d.in_flight += 1;
        d.max_in_flight = d.max_in_flight.max(d.in_flight);
        d.delay
    };
    tokio::time::sleep(delay).await;
    let mut d = data.lock().unwrap();
    d.in_flight -= 1;
    if d.failing.as_deref() == Some(repo.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "message": "this repo is refused" })),
        )
            .into_response();
    }
    let Some(all) = d.repos.get(&repo) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "message": "Not Found" })),
        )
            .into_response();
    };
    let since = query.get("since").cloned().unwrap_or_default();
    let size = number(&query, "per_page", 30);
    let page = number(&query, "page", 1).max(1);
    let issues: Vec<Value> = all
        .iter()
        .filter(|i| i.updated_at > since)
        .skip((page - 1) * size)
        .take(size)
        .map(|i| json!({ "number": i.number, "title": i.title, "updated_at": i.updated_at }))
        .collect();
    axum::Json(Value::Array(issues)).into_response()
}

async fn elsewhere(State(data): State<Shared>, uri: Uri) -> Response {
    data.lock().unwrap().requests.push((
        uri.path().to_string(),
        uri.query().unwrap_or("").to_string(),
    ));
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "message": "Not Found" })),
    )
        .into_response()
}

/// The API with no repos yet.
pub fn start() -> FanoutApi {
    let data: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/repos/{repo}/issues", get(repo_issues))
        .fallback(elsewhere)
        .with_state(data.clone());
    let server =
        crate::local_server::LocalServer::start(app, 0, 2, "rest-fanout-api").expect("REST API");
    FanoutApi { server, data }
}
