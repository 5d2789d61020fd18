//! The simulator's admin API: accounts and tokens, clock, faults, counters, latency.

use super::faults::FaultSpec;
use super::Sim;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/admin/accounts", get(accounts))
        .route("/admin/accounts/{user_id}/token", post(issue_token))
        .route("/admin/clock", get(clock))
        .route("/admin/clock/advance", post(advance))
        .route(
            "/admin/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/admin/counters", get(counters))
        .route("/admin/counters/reset", post(reset_counters))
        .route("/admin/latency", post(set_latency))
        .route("/admin/posts/{id}/delete", post(delete_post))
        .route("/admin/posts/{id}/media_type", post(set_media_type))
}

/// The post is gone from Threads: unlisted, and its insights answer 100/33.
async fn delete_post(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> StatusCode {
    if sim.world.write().unwrap().remove_post(&id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[derive(Deserialize)]
struct MediaTypeChange {
    media_type: String,
}

/// Gives a post a media type, known or one Meta might add later.
async fn set_media_type(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    Json(change): Json<MediaTypeChange>,
) -> StatusCode {
    let mut world = sim.world.write().unwrap();
    let found = world
        .accounts
        .iter_mut()
        .flat_map(|a| a.posts.iter_mut())
        .find(|p| p.id == id);
    match found {
        Some(post) => {
            post.media_type = threads_model::MediaType::parse(&change.media_type);
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn accounts(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let world = sim.world.read().unwrap();
    let now = world.now;
    Json(Value::Array(
        world
            .accounts
            .iter()
            .map(|a| {
                json!({
                    "user_id": a.user_id,
                    "username": a.username,
                    "token": a.token.text,
                    "token_issued_at": a.token.issued_at,
                    "token_expires_at": a.token.expires_at,
                    "posts": a.visible_posts(now).len(),
                })
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct TokenRequest {
    /// How old the new token is, in seconds.
    #[serde(default)]
    age_secs: i64,
    /// Its whole lifetime from issue, in seconds (default 60 days).
    lifetime_secs: Option<i64>,
}

async fn issue_token(
    State(sim): State<Arc<Sim>>,
    Path(user_id): Path<String>,
    Json(request): Json<TokenRequest>,
) -> Response {
    let mut world = sim.world.write().unwrap();
    let Some(index) = world.account_by_user(&user_id).map(|a| a.index) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such account"})),
        )
            .into_response();
    };
    let lifetime = request
        .lifetime_secs
        .unwrap_or(threads_model::TOKEN_LIFETIME_SECS);
    let token = world.issue_token(index, request.age_secs, lifetime);
    Json(json!({
        "token": token.text,
        "issued_at": token.issued_at,
        "expires_at": token.expires_at,
    }))
    .into_response()
}

async fn clock(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(json!({ "now": sim.world.read().unwrap().now }))
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn advance(State(sim): State<Arc<Sim>>, Json(a): Json<Advance>) -> Json<Value> {
    let mut world = sim.world.write().unwrap();
    world.advance(a.seconds);
    Json(json!({ "now": world.now }))
}

async fn list_faults(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(serde_json::to_value(sim.faults.lock().unwrap().list()).expect("faults"))
}

async fn add_fault(State(sim): State<Arc<Sim>>, Json(spec): Json<FaultSpec>) -> Json<Value> {
    Json(json!({ "id": sim.faults.lock().unwrap().add(spec) }))
}

async fn clear_faults(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.faults.lock().unwrap().clear();
    StatusCode::NO_CONTENT
}

async fn counters(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(serde_json::to_value(sim.counters.lock().unwrap().clone()).expect("counters"))
}

async fn reset_counters(State(sim): State<Arc<Sim>>) -> StatusCode {
    *sim.counters.lock().unwrap() = Default::default();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Latency {
    fixed_ms: u64,
    #[serde(default)]
    jitter_ms: u64,
}

async fn set_latency(State(sim): State<Arc<Sim>>, Json(l): Json<Latency>) -> StatusCode {
    *sim.latency.lock().unwrap() = (l.fixed_ms, l.jitter_ms);
    StatusCode::NO_CONTENT
}
