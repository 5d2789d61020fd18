//! The built-in HTTP feed server: a background worker, started only when
//! `pullsync.feed_listen` is set. HTTP (axum) runs on its own thread and never touches
//! Postgres; each request is handed to the worker's main thread, which authenticates the
//! consumer, applies its rate limit and serves the page in one short transaction.

use super::serve::{self, Stream};
use crate::config;
use crate::error::PullsyncError;
use crate::http::RateLimiter;
use crate::jobs::runner::Txn;
use crate::jobs::worker::{stopping, Transactions};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, Utc};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const SERVER_TYPE: &str = "pg_pullsync feed server";

pub fn register() {
    BackgroundWorkerBuilder::new("pg_pullsync feed server")
        .set_type(SERVER_TYPE)
        .set_library("pg_pullsync")
        .set_function("pullsync_feed_server_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Conversations,
    ConversationMessages(String),
    Messages,
    Stats,
    Ids,
    Items,
}

fn route(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["conversations"] => Some(Route::Conversations),
        ["conversations", id, "messages"] if !id.is_empty() => {
            Some(Route::ConversationMessages(id.to_string()))
        }
        ["messages"] => Some(Route::Messages),
        ["stats"] => Some(Route::Stats),
        ["ids"] => Some(Route::Ids),
        ["items"] => Some(Route::Items),
        _ => None,
    }
}

struct Call {
    route: Route,
    consumer_id: Option<String>,
    api_key: Option<String>,
    params: HashMap<String, String>,
    reply: tokio::sync::oneshot::Sender<Answer>,
}

struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Answer {
    Answer {
        status,
        body: json!({ "error": { "code": code, "message": message.into() } }),
        retry_after: None,
    }
}

async fn handle(
    State(calls): State<mpsc::Sender<Call>>,
    Query(params): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let answer = match route(request.uri().path()) {
        None => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
        Some(_) if request.method() != axum::http::Method::GET => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        ),
        Some(route) => {
            let headers: &HeaderMap = request.headers();
            let api_key = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|k| k.trim().to_string());
            let consumer_id = params.get("consumer_id").cloned().or_else(|| {
                headers
                    .get("x-consumer-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
            let (reply, answer) = tokio::sync::oneshot::channel();
            let call = Call {
                route,
                consumer_id,
                api_key,
                params,
                reply,
            };
            if calls.send(call).is_err() {
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the feed server is stopping",
                )
            } else {
                answer.await.unwrap_or_else(|_| {
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the feed server is stopping",
                    )
                })
            }
        }
    };
    let mut response = (answer.status, axum::Json(answer.body)).into_response();
    if let Some(secs) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// `updated_after`, `start`, `end`: RFC 3339, or microseconds since the Unix epoch.
fn time_param(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, PullsyncError> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    if let Ok(micros) = text.parse::<i64>() {
        return DateTime::from_timestamp_micros(micros)
            .map(Some)
            .ok_or_else(|| {
                PullsyncError::invalid(
                    format!("{name} is out of range"),
                    "Pass RFC 3339 or Unix microseconds.",
                )
            });
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            PullsyncError::invalid(
                format!("{name} is not a timestamp"),
                "Pass RFC 3339 or Unix microseconds.",
            )
        })
}

fn required_time(
    params: &HashMap<String, String>,
    name: &'static str,
) -> Result<DateTime<Utc>, PullsyncError> {
    time_param(params, name)?.ok_or(PullsyncError::NullArgument { name })
}

fn serve_call(consumer_id: &str, call: &Call) -> Result<Value, PullsyncError> {
    let p = &call.params;
    let limit = match p.get("limit") {
        None => 500,
        Some(l) => l.parse::<i32>().map_err(|_| {
            PullsyncError::invalid("limit is not a number", "Pass a page size such as 500.")
        })?,
    };
    let cursor = p.get("cursor").map(String::as_str);
    match &call.route {
        Route::Conversations => serve::page(
            consumer_id,
            Stream::Conversations {
                updated_after: time_param(p, "updated_after")?,
                user_id: p.get("user_id").map(String::as_str),
            },
            cursor,
            limit,
        ),
        Route::ConversationMessages(id) => serve::page(
            consumer_id,
            Stream::ConversationMessages {
                conversation_id: id,
            },
            cursor,
            limit,
        ),
        Route::Messages => serve::page(
            consumer_id,
            Stream::AllMessages {
                updated_after: time_param(p, "updated_after")?,
            },
            cursor,
            limit,
        ),
        Route::Stats => serve::stats(required_time(p, "start")?, required_time(p, "end")?),
        Route::Ids => serve::ids(
            p.get("kind").map(String::as_str).unwrap_or(""),
            required_time(p, "start")?,
            required_time(p, "end")?,
            cursor,
        ),
        Route::Items => {
            let ids: Vec<String> = serde_json::from_str(p.get("ids").map_or("[]", String::as_str))
                .map_err(|_| {
                    PullsyncError::invalid(
                        "ids is not a JSON array of strings",
                        "Pass ids as a URL-encoded JSON array, e.g. [\"c1\",\"c2\"].",
                    )
                })?;
            serve::items(
                consumer_id,
                p.get("kind").map(String::as_str).unwrap_or(""),
                &ids,
            )
        }
    }
}

/// The consumer's rate (requests per minute) when its key matches.
fn authenticate(consumer_id: &str, api_key: &str) -> Result<Option<i32>, PullsyncError> {
    let row = Spi::get_two_with_args::<String, i32>(
        "SELECT (SELECT api_key_encrypted FROM pullsync.feed_consumers WHERE consumer_id = $1 AND is_active),
                (SELECT rate_limit_per_minute FROM pullsync.feed_consumers WHERE consumer_id = $1 AND is_active)",
        &[consumer_id.into()],
    )?;
    let (Some(sealed), Some(rate)) = row else {
        return Ok(None);
    };
    let stored =
        config::sealing_key()?
            .open(&sealed)
            .map_err(|reason| PullsyncError::Unsealable {
                what: format!("API key of feed consumer {consumer_id}"),
                reason,
            })?;
    let same = stored.len() == api_key.len()
        && stored
            .bytes()
            .zip(api_key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    Ok(same.then_some(rate))
}

fn answer(call: &Call, limiters: &mut HashMap<String, (i32, RateLimiter)>) -> Answer {
    let (Some(consumer_id), Some(api_key)) = (&call.consumer_id, &call.api_key) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "pass consumer_id and Authorization: Bearer <api key>",
        );
    };
    let rate = match Transactions.run(|| authenticate(consumer_id, api_key)) {
        Ok(Some(rate)) => rate,
        Ok(None) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown consumer or wrong API key",
            )
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    // One bucket per consumer, replaced when its configured rate changes.
    let (limit, limiter) = limiters.entry(consumer_id.clone()).or_insert_with(|| {
        (
            rate,
            RateLimiter::new(f64::from(rate) / 60.0, (rate / 10).max(1) as u32),
        )
    });
    if *limit != rate {
        *limit = rate;
        *limiter = RateLimiter::new(f64::from(rate) / 60.0, (rate / 10).max(1) as u32);
    }
    if let Err(wait) = limiter.try_take(Instant::now()) {
        let mut a = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("at most {rate} requests per minute"),
        );
        a.retry_after = Some(wait.as_secs().max(1));
        return a;
    }
    match Transactions.run(|| serve_call(consumer_id, call)) {
        Ok(body) => Answer {
            status: StatusCode::OK,
            body,
            retry_after: None,
        },
        Err(e @ (PullsyncError::InvalidArgument { .. } | PullsyncError::NullArgument { .. })) => {
            let code = if e.to_string().starts_with("invalid cursor") {
                "invalid_cursor"
            } else {
                "bad_request"
            };
            let mut a = error(StatusCode::BAD_REQUEST, code, e.to_string());
            if let Some(hint) = e.hint() {
                a.body["error"]["hint"] = json!(hint);
            }
            a
        }
        Err(e @ PullsyncError::NotFound { .. }) => {
            error(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Starts the HTTP thread with every signal blocked, so Postgres' handlers run only on the
/// main thread.
fn spawn_http(listener: std::net::TcpListener, calls: mpsc::Sender<Call>) -> std::io::Result<()> {
    // SAFETY: plain signal-mask calls around the thread spawn.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
        let spawned = std::thread::Builder::new()
            .name("pullsync-feed-http".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let app = Router::new().fallback(handle).with_state(calls);
                    let _ = axum::serve(listener, app).await;
                });
            });
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned.map(|_| ())
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pullsync_feed_server_main(_arg: pg_sys::Datum) {
    let database = crate::jobs::worker::start_background_process();
    let listen = config::feed_listen().unwrap_or_default();
    let listener = match std::net::TcpListener::bind(&listen)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
    {
        Ok(l) => l,
        Err(e) => {
            warning!("{SERVER_TYPE}: cannot listen on {listen}: {e}");
            // The postmaster retries after the restart time.
            crate::pg_compat::exit_process(1);
        }
    };
    let (calls, requests) = mpsc::channel::<Call>();
    if let Err(e) = spawn_http(listener, calls) {
        warning!("{SERVER_TYPE}: cannot start: {e}");
        crate::pg_compat::exit_process(1);
    }
    log!("{SERVER_TYPE}: serving database \"{database}\" on http://{listen}");
    let mut limiters: HashMap<String, (i32, RateLimiter)> = HashMap::new();
    let mut schema = crate::jobs::worker::SchemaWatch::default();
    while !stopping() {
        crate::jobs::worker::absorb_barriers();
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a worker to reload its configuration.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            limiters.clear();
        }
        match requests.recv_timeout(Duration::from_millis(100)) {
            Ok(call) => {
                let reply = if schema.ready_within(&database, Duration::from_secs(1)) {
                    answer(&call, &mut limiters)
                } else {
                    let mut a = error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not_ready",
                        "pg_pullsync is not installed or not yet updated in the provider database; retry later",
                    );
                    a.retry_after = Some(30);
                    a
                };
                let _ = call.reply.send(reply);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    log!("{SERVER_TYPE}: stopping");
    // Restarted after its restart time unless the server stops.
    crate::pg_compat::exit_process(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/conversations"), Some(Route::Conversations));
        assert_eq!(
            route("/conversations/c-1/messages"),
            Some(Route::ConversationMessages("c-1".into()))
        );
        assert_eq!(route("/messages/"), Some(Route::Messages));
        assert_eq!(route("/stats"), Some(Route::Stats));
        assert_eq!(route("/ids"), Some(Route::Ids));
        assert_eq!(route("/items"), Some(Route::Items));
        assert_eq!(route("/conversations//messages"), None);
        assert_eq!(route("/admin"), None);
    }

    #[test]
    fn time_params_take_rfc3339_or_micros() {
        let mut p = HashMap::new();
        p.insert("a".to_string(), "2026-01-02T03:04:05Z".to_string());
        p.insert("b".to_string(), "1700000000000000".to_string());
        p.insert("c".to_string(), "yesterday".to_string());
        assert_eq!(
            time_param(&p, "a").unwrap().unwrap().timestamp(),
            1_767_323_045
        );
        assert_eq!(
            time_param(&p, "b").unwrap().unwrap().timestamp(),
            1_700_000_000
        );
        assert!(time_param(&p, "c").is_err());
        assert_eq!(time_param(&p, "d").unwrap(), None);
    }
}
