//! Listings that are not a plain GET, for the REST source's tests, over one set of records
//! that tests change between runs:
//! - a search API `POST /search`: `{"size", "search_after", "filter": {"since"}}` in the
//!   body, `{"hits", "next"}` back in id order, `next` null on the last page,
//!   `Authorization: Bearer`;
//! - a GraphQL relay connection `POST /graphql`: `variables.first` and `variables.after`,
//!   `data.repository.issues.{nodes, pageInfo}`; a query naming `issuez` is answered 200
//!   with an `errors` array that echoes the caller's token, as careless servers do;
//! - an OData collection `GET /odata/Items?$top=`: `{"value", "@odata.nextLink"}`, the
//!   link left out on the last page, the key in `X-Api-Key`;
//! - a cursor feed `GET /feed?cursor=`: `{"items", "next_cursor"}`, null on the last page;
//! - paginators that never advance: `GET /stuck?cursor=` hands out `s1` again and again,
//!   `GET /circle?cursor=` goes c1, c2, c3, then back to c1.
//!
//! Every request is logged (path, query and body).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const SEARCH_TOKEN: &str = "search-token-0123456789";
pub const GRAPHQL_TOKEN: &str = "ghp_graphql-token-0123456789";
pub const ODATA_KEY: &str = "odata-key-0123456789";

#[derive(Debug, Clone)]
pub struct Record {
    pub id: i64,
    pub title: String,
    /// RFC 3339, UTC, one format: text order is time order.
    pub updated_at: String,
}

impl Record {
    fn json(&self) -> Value {
        json!({ "id": self.id, "title": self.title, "updated_at": self.updated_at })
    }
}

/// `n` records, ids 1..=n, updated a minute apart from 2024-01-01.
pub fn records(n: i64) -> Vec<Record> {
    (1..=n)
        .map(|id| Record {
            id,
            title: format!("record {id}"),
            updated_at: format!("2024-01-01T00:{:02}:00Z", id % 60),
        })
        .collect()
}

/// A request as the API saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// The JSON body of a POST (null for a GET).
    pub body: Value,
}

#[derive(Default)]
pub struct Data {
    pub records: Vec<Record>,
    pub requests: Vec<Seen>,
}

type Shared = Arc<Mutex<Data>>;

pub struct ListingsApi {
    pub server: crate::local_server::LocalServer,
    pub data: Shared,
}

impl ListingsApi {
    pub fn base_url(&self) -> &str {
        &self.server.base_url
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

    /// The requests made to `path`, in order.
    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        let d = self.data.lock().unwrap();
        d.requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.data.lock().unwrap().requests.clear();
    }
}

fn note(data: &Shared, method: &str, path: &str, query: &HashMap<String, String>, body: &Value) {
    data.lock().unwrap().requests.push(Seen {
        method: method.into(),
        path: path.into(),
        query: query.clone(),
        body: body.clone(),
    });
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "message": "Bad credentials" })),
    )
        .into_response()
}

/// The records in id order, those updated at `since` or later when it is given.
fn sorted(data: &Shared, since: Option<&str>) -> Vec<Record> {
    let mut records = data.lock().unwrap().records.clone();
    if let Some(since) = since {
        records.retain(|r| r.updated_at.as_str() >= since);
    }
    records.sort_by_key(|r| r.id);
    records
}

/// The records after the one of id `after`, at most `size`, and whether more follow.
fn after(records: &[Record], after: i64, size: usize) -> (Vec<Record>, bool) {
    let rest: Vec<Record> = records.iter().filter(|r| r.id > after).cloned().collect();
    let more = rest.len() > size;
    (rest.into_iter().take(size).collect(), more)
}

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

async fn search(State(data): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let body = body_json(&body);
    note(&data, "POST", "/search", &HashMap::new(), &body);
    if bearer(&headers) != Some(SEARCH_TOKEN) {
        return unauthorised();
    }
    let size = body["size"].as_u64().unwrap_or(10) as usize;
    let from = body["search_after"]
        .as_str()
        .and_then(|c| c.strip_prefix("after-"))
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    let records = sorted(&data, body["filter"]["since"].as_str());
    let (page, more) = after(&records, from, size);
    let next = match page.last() {
        Some(last) if more => json!(format!("after-{}", last.id)),
        _ => Value::Null,
    };
    let hits: Vec<Value> = page.iter().map(Record::json).collect();
    axum::Json(json!({ "took": 1, "hits": hits, "next": next })).into_response()
}

async fn graphql(State(data): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let body = body_json(&body);
    note(&data, "POST", "/graphql", &HashMap::new(), &body);
    let Some(token) = bearer(&headers).map(str::to_string) else {
        return unauthorised();
    };
    if token != GRAPHQL_TOKEN {
        return unauthorised();
    }
    let query = body["query"].as_str().unwrap_or("");
    if query.contains("issuez") {
        return axum::Json(json!({
            "data": null,
            "errors": [{
                "message": format!("Field 'issuez' doesn't exist on type 'Repository' (caller {token})"),
                "locations": [{ "line": 1, "column": 30 }]
            }]
        }))
        .into_response();
    }
    let variables = &body["variables"];
    let first = variables["first"].as_u64().unwrap_or(10) as usize;
    let from = variables["after"]
        .as_str()
        .and_then(|c| c.strip_prefix("Y3Vyc29y:"))
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    let (page, more) = after(&sorted(&data, variables["since"].as_str()), from, first);
    let end = page.last().map(|r| format!("Y3Vyc29y:{}", r.id));
    let nodes: Vec<Value> = page.iter().map(Record::json).collect();
    axum::Json(json!({ "data": { "repository": { "issues": {
        "nodes": nodes,
        "pageInfo": { "hasNextPage": more, "endCursor": end }
    } } } }))
    .into_response()
}

async fn odata(
    State(data): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    note(&data, "GET", "/odata/Items", &query, &Value::Null);
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(ODATA_KEY) {
        return unauthorised();
    }
    let top = query.get("$top").and_then(|v| v.parse().ok()).unwrap_or(10);
    let skip: i64 = query
        .get("$skiptoken")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (page, more) = after(&sorted(&data, None), skip, top);
    let mut answer = json!({
        "@odata.context": "$metadata#Items",
        "value": page.iter().map(Record::json).collect::<Vec<_>>()
    });
    if let (Some(last), true) = (page.last(), more) {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        answer["@odata.nextLink"] = json!(format!(
            "http://{host}/odata/Items?$top={top}&$skiptoken={}",
            last.id
        ));
    }
    axum::Json(answer).into_response()
}

async fn feed(
    State(data): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    note(&data, "GET", "/feed", &query, &Value::Null);
    let from = query
        .get("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (page, more) = after(&sorted(&data, None), from, 3);
    let next = match page.last() {
        Some(last) if more => json!(last.id.to_string()),
        _ => Value::Null,
    };
    let items: Vec<Value> = page.iter().map(Record::json).collect();
    axum::Json(json!({ "items": items, "next_cursor": next })).into_response()
}

/// One record a page, whatever the cursor; the next cursor from `step`.
fn going_nowhere(
    data: &Shared,
    path: &str,
    query: &HashMap<String, String>,
    step: fn(Option<&str>) -> &'static str,
) -> Response {
    note(data, "GET", path, query, &Value::Null);
    let cursor = query.get("cursor").map(String::as_str);
    let records = sorted(data, None);
    let record = records.first().map(Record::json).unwrap_or(Value::Null);
    axum::Json(json!({ "items": [record], "next_cursor": step(cursor) })).into_response()
}

async fn stuck(
    State(data): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    going_nowhere(&data, "/stuck", &query, |_| "s1")
}

async fn circle(
    State(data): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    going_nowhere(&data, "/circle", &query, |cursor| match cursor {
        Some("c1") => "c2",
        Some("c2") => "c3",
        _ => "c1",
    })
}

/// The listings over `records`.
pub fn start(records: Vec<Record>) -> ListingsApi {
    let data: Shared = Arc::new(Mutex::new(Data {
        records,
        ..Data::default()
    }));
    let app = axum::Router::new()
        .route("/search", post(search))
        .route("/graphql", post(graphql))
        .route("/odata/Items", get(odata))
        .route("/feed", get(feed))
        .route("/stuck", get(stuck))
        .route("/circle", get(circle))
        .with_state(data.clone());
    let server =
        crate::local_server::LocalServer::start(app, 0, 2, "rest-listings").expect("listings API");
    ListingsApi { server, data }
}
