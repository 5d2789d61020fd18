//! An OAuth 2 authorization server and an API that takes its access tokens, for the REST
//! source's OAuth tests (tests/rest_oauth.rs), on one local server:
//! - `POST /oauth/token` (form-encoded): the `client_credentials` and `refresh_token`
//!   grants, the client by HTTP Basic or in the form; every refresh rotates the refresh
//!   token, and the spent one is refused with `invalid_grant` from then on; a test can
//!   make it slow;
//! - `GET /v1/items`: `{"data": [...]}` for an access token it issued, 401 otherwise; a
//!   test can make it fail (500), as an API that breaks right after the token exchange;
//! - `GET /v1/groups/{group}/items`: the same for one group (a fan-out's children), the
//!   ids numbered from the group's.
//!
//! Every secret it knows or issues holds `oauth-test`, so a test can look for any of them.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "pullsync-app";
pub const CLIENT_SECRET: &str = "cs-oauth-test-secret-0123456789";
/// What every secret of this server holds.
pub const MARK: &str = "oauth-test";

/// A token request as the server saw it.
#[derive(Debug, Clone)]
pub struct Grant {
    pub grant_type: String,
    /// The refresh token sent, for the refresh grant.
    pub refresh_token: Option<String>,
    /// "basic" or "body".
    pub client_auth: String,
    pub status: u16,
}

#[derive(Default)]
pub struct Data {
    /// The only refresh token accepted.
    pub refresh_token: String,
    /// Access tokens accepted by the API.
    pub access_tokens: Vec<String>,
    /// Tokens issued so far (numbers them).
    pub issued: u32,
    /// `expires_in` of every access token.
    pub expires_in: u64,
    /// Whether a refresh hands out a new refresh token.
    pub rotate: bool,
    pub grants: Vec<Grant>,
    /// The access token of every API request.
    pub api_requests: Vec<Option<String>>,
    /// The API answers 500.
    pub api_fails: bool,
    /// How long the token endpoint takes before it looks at a request.
    pub token_delay: std::time::Duration,
}

pub struct OAuthApi {
    pub server: crate::local_server::LocalServer,
    pub data: Arc<Mutex<Data>>,
}

impl OAuthApi {
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.server.base_url)
    }

    /// The refresh token the server accepts now.
    pub fn refresh_token(&self) -> String {
        self.data.lock().unwrap().refresh_token.clone()
    }

    pub fn grants(&self) -> Vec<Grant> {
        self.data.lock().unwrap().grants.clone()
    }

    pub fn api_requests(&self) -> Vec<Option<String>> {
        self.data.lock().unwrap().api_requests.clone()
    }

    pub fn set_api_fails(&self, fails: bool) {
        self.data.lock().unwrap().api_fails = fails;
    }

    pub fn set_expires_in(&self, seconds: u64) {
        self.data.lock().unwrap().expires_in = seconds;
    }

    pub fn set_token_delay(&self, delay: std::time::Duration) {
        self.data.lock().unwrap().token_delay = delay;
    }

    /// Forgets every access token issued: the API refuses them (401) from now on.
    pub fn revoke_access_tokens(&self) {
        self.data.lock().unwrap().access_tokens.clear();
    }
}

/// The records `/v1/items` lists.
pub fn items() -> Vec<Value> {
    (1..=5)
        .map(|id| json!({ "id": id, "name": format!("item {id}") }))
        .collect()
}

/// Starts the server; the first refresh token is `rt-oauth-test-0-…`.
pub fn start() -> OAuthApi {
    let data = Arc::new(Mutex::new(Data {
        refresh_token: issue("rt", 0),
        expires_in: 3600,
        rotate: true,
        ..Data::default()
    }));
    let app = axum::Router::new()
        .route("/oauth/token", post(token))
        .route("/v1/items", get(list))
        .route("/v1/groups/{group}/items", get(group_list))
        .with_state(data.clone());
    let server =
        crate::local_server::LocalServer::start(app, 0, 2, "oauth-api").expect("OAuth API");
    OAuthApi { server, data }
}

fn issue(kind: &str, n: u32) -> String {
    format!("{kind}-{MARK}-{n}-abcdefghij")
}

type Shared = Arc<Mutex<Data>>;

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": format!("{error} (simulated)") })),
    )
        .into_response()
}

/// The client's credentials, from HTTP Basic or the form, and how they came.
fn client(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String, String)> {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if let Some(pair) = basic {
        let (id, secret) = pair.split_once(':')?;
        return Some((id.into(), secret.into(), "basic".into()));
    }
    Some((
        form.get("client_id")?.clone(),
        form.get("client_secret")?.clone(),
        "body".into(),
    ))
}

async fn token(State(data): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let form_encoded = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    let sent_refresh = form.get("refresh_token").cloned();
    let who = client(&headers, &form);
    // Slow, as a remote authorization server is: two requests sent at once both wait
    // here, and the second is judged after the first rotated the refresh token.
    let delay = data.lock().unwrap().token_delay;
    tokio::time::sleep(delay).await;
    let mut d = data.lock().unwrap();
    let (status, answer) = match who {
        _ if !form_encoded => (400, oauth_error(StatusCode::BAD_REQUEST, "invalid_request")),
        Some((id, secret, _)) if id != CLIENT_ID || secret != CLIENT_SECRET => {
            (401, oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"))
        }
        None => (401, oauth_error(StatusCode::UNAUTHORIZED, "invalid_client")),
        Some(_) => match grant_type.as_str() {
            "client_credentials" => {
                d.issued += 1;
                let access = issue("at", d.issued);
                d.access_tokens.push(access.clone());
                let answer = json!({ "access_token": access, "token_type": "Bearer", "expires_in": d.expires_in });
                (200, axum::Json(answer).into_response())
            }
            "refresh_token" if sent_refresh.as_deref() == Some(d.refresh_token.as_str()) => {
                d.issued += 1;
                let access = issue("at", d.issued);
                d.access_tokens.push(access.clone());
                let mut answer = json!({ "access_token": access, "token_type": "bearer", "expires_in": d.expires_in });
                if d.rotate {
                    d.refresh_token = issue("rt", d.issued);
                    answer["refresh_token"] = json!(d.refresh_token);
                }
                (200, axum::Json(answer).into_response())
            }
            "refresh_token" => (400, oauth_error(StatusCode::BAD_REQUEST, "invalid_grant")),
            _ => (
                400,
                oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            ),
        },
    };
    let client_auth = client(&headers, &form).map(|c| c.2).unwrap_or_default();
    d.grants.push(Grant {
        grant_type,
        refresh_token: sent_refresh,
        client_auth,
        status,
    });
    answer
}

async fn list(State(data): State<Shared>, headers: HeaderMap) -> Response {
    listed(&data, &headers, items())
}

async fn group_list(
    State(data): State<Shared>,
    Path(group): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let records = (1..=5)
        .map(|n| json!({ "id": group * 100 + n, "name": format!("group {group} item {n}") }))
        .collect();
    listed(&data, &headers, records)
}

/// `records` for an access token the server issued; 401 otherwise, 500 while it fails.
fn listed(data: &Shared, headers: &HeaderMap, records: Vec<Value>) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let mut d = data.lock().unwrap();
    d.api_requests.push(bearer.clone());
    if d.api_fails {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "message": "down" })),
        )
            .into_response();
    }
    match bearer {
        Some(token) if d.access_tokens.contains(&token) => {
            axum::Json(json!({ "data": records })).into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "message": "Bad credentials" })),
        )
            .into_response(),
    }
}
