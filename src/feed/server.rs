//! The built-in HTTP feed server: a background worker, started only when
//! `pullsync.feed_listen` is set. The network side (`front`) runs on its own thread and
//! never touches Postgres; each request that passes it is handed to the worker's main
//! thread, which authenticates the consumer, applies its rate limit and serves the page in
//! one short transaction.

use super::serve::{self, Stream};
use crate::error::PullsyncError;
use crate::plumbing::bgworker::{self, SchemaWatch};
use crate::plumbing::signals;
use crate::plumbing::txn::Txn;
use crate::secrets::Secrets;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pullsync_core::feed::front::{self, error, Answer, Call, FrontSettings, Route, TlsConfig};
use pullsync_core::http::RateLimiter;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

pub const SERVER_TYPE: &str = "pg_pullsync feed server";

pub fn register() {
    bgworker::register(SERVER_TYPE, SERVER_TYPE, "pullsync_feed_server_main");
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

/// The consumer's rate (requests per minute) when its key matches. The work is the same
/// whether the consumer exists or not, and the comparison of keys (as HMAC tags of one
/// length) takes the same time wherever they differ: timing reveals neither.
fn authenticate(consumer_id: &str, api_key: &str) -> Result<Option<i32>, PullsyncError> {
    use hmac::{Hmac, Mac};
    let row = Spi::get_two_with_args::<String, i32>(
        "SELECT api_key_encrypted, rate_limit_per_minute FROM pullsync.feed_consumers
          WHERE consumer_id = $1 AND is_active",
        &[consumer_id.into()],
    );
    let found = match row {
        Ok((Some(sealed), Some(rate))) => Some((sealed, rate)),
        Ok(_) | Err(pgrx::spi::SpiError::InvalidPosition) => None,
        Err(e) => return Err(e.into()),
    };
    let secrets = Secrets::load()?;
    let (sealed, rate) = match &found {
        Some((sealed, rate)) => (sealed.clone(), *rate),
        None => (stand_in_sealed(secrets.key()), 0),
    };
    let stored = secrets.open(&sealed, || {
        format!("API key of feed consumer {consumer_id}")
    })?;
    let compare_key = secrets.key().derive("feed api key comparison");
    let tag = |text: &str| {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&compare_key)
            .expect("HMAC takes any key length");
        mac.update(text.as_bytes());
        mac
    };
    let stored_tag = tag(&stored).finalize().into_bytes();
    let same = tag(api_key).verify_slice(&stored_tag).is_ok();
    Ok((same && found.is_some()).then_some(rate))
}

/// A sealed value of a typical key's length, opened in place of a missing consumer's key.
fn stand_in_sealed(key: &pullsync_core::crypto::SealingKey) -> String {
    thread_local! {
        static STAND_IN: std::cell::RefCell<Option<([u8; 32], String)>> = const { std::cell::RefCell::new(None) };
    }
    let id = key.derive("feed stand-in key");
    STAND_IN.with(|cell| {
        let mut cell = cell.borrow_mut();
        match &*cell {
            Some((seen, sealed)) if *seen == id => sealed.clone(),
            _ => {
                let sealed = key.seal("stand-in-api-key-of-typical-length-00");
                *cell = Some((id, sealed.clone()));
                sealed
            }
        }
    })
}

fn answer(call: &Call, limiters: &mut HashMap<String, (i32, RateLimiter)>) -> Answer {
    let consumer_id = &call.consumer_id;
    let rate = match Txn::Transaction.run(|| authenticate(consumer_id, &call.api_key)) {
        Ok(Some(rate)) => rate,
        Ok(None) => {
            return Answer {
                authenticated: Some(false),
                ..error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "unknown consumer or wrong API key",
                )
            }
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    Answer {
        authenticated: Some(true),
        ..serve_authenticated(call, consumer_id, rate, limiters)
    }
}

fn serve_authenticated(
    call: &Call,
    consumer_id: &str,
    rate: i32,
    limiters: &mut HashMap<String, (i32, RateLimiter)>,
) -> Answer {
    // One bucket per consumer, replaced when its configured rate changes.
    let (limit, limiter) = limiters.entry(consumer_id.to_string()).or_insert_with(|| {
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
    match Txn::Transaction.run(|| serve_call(consumer_id, call)) {
        Ok(body) => Answer {
            status: StatusCode::OK,
            body,
            retry_after: None,
            authenticated: None,
        },
        Err(
            e @ (PullsyncError::InvalidArgument { .. }
            | PullsyncError::NullArgument { .. }
            | PullsyncError::InvalidCursor(_)),
        ) => {
            let code = match e {
                PullsyncError::InvalidCursor(_) => "invalid_cursor",
                _ => "bad_request",
            };
            let mut a = error(StatusCode::BAD_REQUEST, code, e.to_string());
            if let Some(hint) = e.hint() {
                a.body["error"]["hint"] = json!(hint);
            }
            a
        }
        Err(e @ PullsyncError::CursorFromOtherProvider(_)) => {
            let mut a = error(
                StatusCode::CONFLICT,
                "cursor_from_other_provider",
                e.to_string(),
            );
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

/// Starts the HTTP thread, which never takes Postgres' signals.
fn spawn_http(
    listener: std::net::TcpListener,
    settings: FrontSettings,
    tls: Option<TlsConfig>,
    calls: mpsc::SyncSender<Call>,
) -> std::io::Result<()> {
    signals::spawn_without_signals("pullsync-feed-http", move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            front::serve(listener, settings, tls, calls).await;
        });
    })
}

/// What the server was started with: a change of any of it restarts the server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Startup {
    front: FrontSettings,
    tls_files: Option<(String, String)>,
}

impl Startup {
    fn from_settings() -> Result<Startup, String> {
        let tls_files = match (
            super::settings::tls_cert_file(),
            super::settings::tls_key_file(),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(
                "set both pullsync.feed_tls_cert_file and pullsync.feed_tls_key_file, or neither"
                    .into(),
            ),
        };
        Ok(Startup {
            front: super::settings::front_settings(),
            tls_files,
        })
    }
}

fn fail_start(message: &str) -> ! {
    warning!("{SERVER_TYPE}: {message}");
    // The postmaster retries after the restart time.
    bgworker::exit_for_restart();
}

/// On reload: a new certificate in the same files is taken in place; any other change
/// restarts the server (the postmaster starts it again after its restart time).
fn reload(startup: &Startup, tls: Option<&TlsConfig>) {
    match Startup::from_settings() {
        Ok(now) if now == *startup => {
            if let (Some((cert, key)), Some(cell)) = (&startup.tls_files, tls) {
                match front::load_tls(cert, key) {
                    Ok(config) => {
                        *cell.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                    }
                    Err(e) => warning!("{SERVER_TYPE}: keeping the current certificate: {e}"),
                }
            }
        }
        Ok(_) => {
            log!("{SERVER_TYPE}: settings changed; restarting to apply them");
            bgworker::exit_for_restart();
        }
        Err(e) => warning!("{SERVER_TYPE}: keeping the current settings: {e}"),
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pullsync_feed_server_main(_arg: pg_sys::Datum) {
    let database = bgworker::start();
    let listen = super::settings::listen().unwrap_or_default();
    let startup = Startup::from_settings().unwrap_or_else(|e| fail_start(&e));
    let tls: Option<TlsConfig> = startup.tls_files.as_ref().map(|(cert, key)| {
        let config = front::load_tls(cert, key).unwrap_or_else(|e| fail_start(&e));
        Arc::new(RwLock::new(Arc::new(config)))
    });
    let listener = std::net::TcpListener::bind(&listen)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .unwrap_or_else(|e| fail_start(&format!("cannot listen on {listen}: {e}")));
    let scheme = if tls.is_some() { "https" } else { "http" };
    if tls.is_none() && listener.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
        warning!(
            "{SERVER_TYPE}: listening on {listen} without TLS: API keys and rows cross the network in clear"
        );
    }
    let (calls, requests) = mpsc::sync_channel::<Call>(front::QUEUE_CAPACITY);
    if let Err(e) = spawn_http(listener, startup.front.clone(), tls.clone(), calls) {
        fail_start(&format!("cannot start: {e}"));
    }
    log!("{SERVER_TYPE}: serving database \"{database}\" on {scheme}://{listen}");
    let mut limiters: HashMap<String, (i32, RateLimiter)> = HashMap::new();
    let mut schema = SchemaWatch::default();
    while !bgworker::stopping() {
        if bgworker::chores() {
            limiters.clear();
            reload(&startup, tls.as_ref());
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
    bgworker::exit_for_restart();
}

#[cfg(test)]
mod tests {
    use super::*;

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
