//! The feed server's network side, on its own thread and never touching Postgres:
//! connections (capped, with slots strangers cannot take from known consumers), TLS, header
//! and idle timeouts, request size limits, throttling of failed authentication per client
//! address, and the bounded queue to the worker's main thread. A request that passes all of
//! these becomes a `Call`.

use super::auth_throttle::{Admission, AuthThrottle, CredentialDigest, ThrottleSettings};
use super::connection_slots::{ConnectionId, Opened, SlotSettings, Slots};
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hmac::{Hmac, Mac};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, Semaphore};
use tokio_rustls::rustls;

/// Requests waiting for the main thread; beyond this a request is answered 503 at once.
pub const QUEUE_CAPACITY: usize = 64;
/// Request line plus headers; `/items` with its largest id list fits well within.
pub const MAX_HEAD_BYTES: usize = 128 * 1024;
/// How long a throttled address waits for its `429` (at most until its next attempt).
const THROTTLED_ANSWER_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Conversations,
    ConversationMessages(String),
    Messages,
    Stats,
    Ids,
    Items,
}

pub fn route(path: &str) -> Option<Route> {
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

/// One authenticated-looking request for the main thread.
pub struct Call {
    pub route: Route,
    pub consumer_id: String,
    pub api_key: String,
    pub params: HashMap<String, String>,
    pub reply: tokio::sync::oneshot::Sender<Answer>,
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<u64>,
    /// Whether the consumer's key was checked and matched; unknown when not checked.
    pub authenticated: Option<bool>,
}

pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Answer {
    Answer {
        status,
        body: json!({ "error": { "code": code, "message": message.into() } }),
        retry_after: None,
        authenticated: None,
    }
}

fn retry_later(status: StatusCode, code: &str, message: &str, secs: u64) -> Answer {
    Answer {
        retry_after: Some(secs.max(1)),
        ..error(status, code, message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontSettings {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The certificate in use; replaced on reload without dropping connections.
pub type TlsConfig = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// Loads a PEM certificate chain and its private key (which must be private to the server).
pub fn load_tls(cert_file: &str, key_file: &str) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem = std::fs::read(cert_file)
        .map_err(|e| format!("cannot read pullsync.feed_tls_cert_file \"{cert_file}\": {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("pullsync.feed_tls_cert_file \"{cert_file}\" is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "pullsync.feed_tls_cert_file \"{cert_file}\" holds no certificate"
        ));
    }
    let key_pem =
        crate::key_file::read("pullsync.feed_tls_key_file", key_file).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        format!("pullsync.feed_tls_key_file \"{key_file}\" holds no PEM private key")
    })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the feed server's certificate and key do not go together: {e}"))
}

/// Shared by every connection of the HTTP thread.
struct Front {
    settings: FrontSettings,
    calls: mpsc::SyncSender<Call>,
    throttle: Mutex<AuthThrottle>,
    /// Per-process secret for credential digests.
    digest_key: [u8; 32],
    /// The connections within the cap, each with the sender that closes it when shed.
    slots: Mutex<Slots<oneshot::Sender<()>>>,
    /// Connections beyond the cap that shed no other, each answered 503 and closed.
    overflow: Arc<Semaphore>,
}

impl Front {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots<oneshot::Sender<()>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn digest(&self, consumer_id: &str, api_key: &str) -> CredentialDigest {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.digest_key)
            .expect("HMAC takes any key length");
        mac.update(consumer_id.as_bytes());
        mac.update(&[0]);
        mac.update(api_key.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Time since the connection last moved a byte, and whether a request is being answered.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicU32,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Returns once the connection has been idle for `limit`.
    async fn idle_past(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep((limit - idle).max(Duration::from_millis(50))).await;
        }
    }
}

/// A stream that notes every byte it moves in its `Activity`.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn respond(answer: Answer, close: bool) -> Response<Body> {
    let mut response = Response::new(Body::from(answer.body.to_string()));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = answer.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Everything a request must pass before it reaches the main thread.
async fn handle(
    front: Arc<Front>,
    peer: IpAddr,
    slot: ConnectionId,
    request: Request<Incoming>,
) -> Response<Body> {
    let (route, params) = match read_head(&request) {
        Ok(head) => head,
        Err((refusal, close)) => return respond(refusal, close),
    };
    let (consumer_id, api_key) = credentials(request.headers(), &params);
    let credential = match (&consumer_id, &api_key) {
        (Some(c), Some(k)) => Some(front.digest(c, k)),
        _ => None,
    };
    let admission = {
        let mut throttle = front.throttle.lock().unwrap_or_else(|e| e.into_inner());
        throttle.admit(peer, credential.as_ref(), Instant::now())
    };
    let admission = match admission {
        Ok(a) => a,
        Err(wait) => return throttled(&front, slot, wait).await,
    };
    let (Some(consumer_id), Some(api_key)) = (consumer_id, api_key) else {
        settle(&front, peer, None, admission, false);
        return respond(
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "pass consumer_id and Authorization: Bearer <api key>",
            ),
            false,
        );
    };
    let answer = ask(&front, route, consumer_id, api_key, params).await;
    settle_answered(&front, peer, slot, credential.as_ref(), admission, &answer);
    respond(answer, false)
}

/// The route and query of a request, or its refusal before any credential is looked at:
/// the answer and whether the connection must close.
fn read_head<B>(request: &Request<B>) -> Result<(Route, HashMap<String, String>), (Answer, bool)> {
    let Some(route) = route(request.uri().path()) else {
        return Err((
            error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
            false,
        ));
    };
    if request.method() != Method::GET {
        return Err((
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET",
            ),
            true,
        ));
    }
    if has_body(request.headers()) {
        // Not read, so the connection cannot be reused.
        return Err((
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_not_allowed",
                "feed requests carry no body",
            ),
            true,
        ));
    }
    match axum::extract::Query::<HashMap<String, String>>::try_from_uri(request.uri()) {
        Ok(q) => Ok((route, q.0)),
        Err(_) => Err((
            error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the query string is not valid",
            ),
            false,
        )),
    }
}

fn has_body(headers: &header::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// The consumer id (query before header) and the bearer key, each if given.
fn credentials(
    headers: &header::HeaderMap,
    params: &HashMap<String, String>,
) -> (Option<String>, Option<String>) {
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
    (consumer_id, api_key)
}

/// Answered late, the connection sheddable meanwhile: a throttled address that asks again
/// as soon as it is answered would otherwise keep this thread busy.
async fn throttled(front: &Front, slot: ConnectionId, wait: Duration) -> Response<Body> {
    front.slots().request_finished(slot);
    tokio::time::sleep(wait.min(THROTTLED_ANSWER_DELAY)).await;
    respond(
        retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failed_authentications",
            "too many failed authentications from this address; retry later",
            wait.as_secs_f64().ceil() as u64,
        ),
        false,
    )
}

/// Queues the call for the main thread and waits for its answer; a full queue is busy.
async fn ask(
    front: &Front,
    route: Route,
    consumer_id: String,
    api_key: String,
    params: HashMap<String, String>,
) -> Answer {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let call = Call {
        route,
        consumer_id,
        api_key,
        params,
        reply,
    };
    match front.calls.try_send(call) {
        Err(mpsc::TrySendError::Full(_)) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the feed server is busy; retry shortly",
            1,
        ),
        Err(mpsc::TrySendError::Disconnected(_)) => stopping(),
        Ok(()) => answer.await.unwrap_or_else(|_| stopping()),
    }
}

/// Tells the throttle (and, for a valid key, the slots) what the main thread made of the key.
fn settle_answered(
    front: &Front,
    peer: IpAddr,
    slot: ConnectionId,
    credential: Option<&CredentialDigest>,
    admission: Admission,
    answer: &Answer,
) {
    if let Some(accepted) = answer.authenticated {
        settle(front, peer, credential, admission, accepted);
        if accepted {
            front
                .slots()
                .presented_valid_key(slot, peer, Instant::now());
        }
    } else if admission == Admission::Charged {
        // Not checked (busy, not ready): the attempt is given back.
        settle(front, peer, None, admission, true);
    }
}

fn stopping() -> Answer {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the feed server is restarting",
        5,
    )
}

fn settle(
    front: &Front,
    peer: IpAddr,
    credential: Option<&CredentialDigest>,
    admission: Admission,
    accepted: bool,
) {
    let mut throttle = front.throttle.lock().unwrap_or_else(|e| e.into_inner());
    throttle.settle(peer, credential, admission, accepted, Instant::now());
}

/// Where a connection stands: in a slot, which a newcomer may shed, or beyond the cap.
enum Place {
    Slot(ConnectionId, oneshot::Receiver<()>),
    Overflow,
}

/// Frees the connection's slot however its task ends.
struct SlotGuard {
    front: Arc<Front>,
    id: ConnectionId,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.front.slots().close(self.id);
    }
}

/// Serves one connection: TLS first when configured, then HTTP/1.1 until it closes, goes
/// idle past the limit, stalls in its headers, or is shed for a newcomer.
async fn connection(
    front: Arc<Front>,
    tls: Option<TlsConfig>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    place: Place,
) {
    let activity = Arc::new(Activity::new());
    let watched = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    let settings = front.settings.clone();
    let (slot, shed) = match place {
        Place::Slot(id, shed) => (Some(id), Some(shed)),
        Place::Overflow => (None, None),
    };
    let serve = async {
        match tls {
            Some(config) => {
                let config = config.read().unwrap_or_else(|e| e.into_inner()).clone();
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let handshake =
                    tokio::time::timeout(settings.header_timeout, acceptor.accept(watched));
                if let Ok(Ok(tls_stream)) = handshake.await {
                    http(front, tls_stream, peer, activity.clone(), slot).await
                }
            }
            None => http(front, watched, peer, activity.clone(), slot).await,
        }
    };
    let shed = async {
        match shed {
            // A dropped sender means the slot is gone too.
            Some(shed) => {
                let _ = shed.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = serve => {}
        () = activity.idle_past(settings.idle_timeout) => {}
        () = shed => {}
    }
}

/// HTTP/1.1 on one connection; `slot` is `None` beyond the cap, where every request is
/// answered 503.
async fn http<S>(
    front: Arc<Front>,
    io: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
    slot: Option<ConnectionId>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = front.settings.header_timeout;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let front = front.clone();
        let activity = activity.clone();
        async move {
            let Some(slot) = slot else {
                return Ok::<_, Infallible>(respond(
                    retry_later(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too_many_connections",
                        "the feed server has too many connections; retry shortly",
                        1,
                    ),
                    true,
                ));
            };
            activity.in_flight.fetch_add(1, Ordering::Relaxed);
            front.slots().request_started(slot);
            let response = handle(front.clone(), peer.ip(), slot, request).await;
            front.slots().request_finished(slot);
            activity.in_flight.fetch_sub(1, Ordering::Relaxed);
            activity.touch();
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(slot.is_some())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// A thread of its own for known consumers' connections, so that the work strangers make
/// on this one (accepting, shedding, throttling) never queues before theirs. Started from
/// the HTTP thread, it inherits its blocked signals. Without it (no thread to be had), known
/// consumers are served here with the rest.
fn quiet_runtime() -> Option<tokio::runtime::Handle> {
    let (handle, runtime) = mpsc::channel();
    std::thread::Builder::new()
        .name("pullsync-feed-known".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let _ = handle.send(rt.handle().clone());
            rt.block_on(std::future::pending::<()>());
        })
        .ok()?;
    runtime.recv().ok()
}

/// Accepts connections until the process ends. Runs on the HTTP thread's runtime.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: FrontSettings,
    tls: Option<TlsConfig>,
    calls: mpsc::SyncSender<Call>,
) {
    let mut digest_key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut digest_key);
    let front = Arc::new(Front {
        slots: Mutex::new(Slots::new(SlotSettings::for_cap(settings.max_connections))),
        overflow: Arc::new(Semaphore::new(settings.max_connections.clamp(16, 1024))),
        settings,
        calls,
        throttle: Mutex::new(AuthThrottle::new(ThrottleSettings::default())),
        digest_key,
    });
    let quiet = quiet_runtime();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors or similar: let connections finish first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (close, closed) = oneshot::channel();
        let opened = front.slots().open(peer.ip(), Instant::now(), close);
        let tls = tls.clone();
        match opened {
            Ok(Opened { id, known, shed }) => {
                if let Some(shed) = shed {
                    let _ = shed.send(());
                }
                let guard = SlotGuard {
                    front: front.clone(),
                    id,
                };
                let serve = move |stream| async move {
                    connection(
                        guard.front.clone(),
                        tls,
                        stream,
                        peer,
                        Place::Slot(id, closed),
                    )
                    .await;
                    drop(guard);
                };
                match (&quiet, known) {
                    (Some(quiet), true) => {
                        // Moved to the other thread's reactor.
                        let Ok(stream) = stream.into_std() else {
                            continue;
                        };
                        quiet.spawn(async move {
                            if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
                                serve(stream).await;
                            }
                        });
                    }
                    _ => {
                        tokio::spawn(serve(stream));
                    }
                }
            }
            Err(_) => {
                // Full, and no connection may be shed: answered 503 while the overflow
                // lasts, beyond it closed unanswered.
                let Ok(permit) = front.overflow.clone().try_acquire_owned() else {
                    continue;
                };
                let front = front.clone();
                tokio::spawn(async move {
                    connection(front, tls, stream, peer, Place::Overflow).await;
                    drop(permit);
                });
            }
        }
    }
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
    fn a_connection_is_idle_only_between_requests() {
        let activity = Activity::new();
        activity.touch();
        std::thread::sleep(Duration::from_millis(20));
        assert!(activity.idle_for() >= Duration::from_millis(20));
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        assert_eq!(activity.idle_for(), Duration::ZERO);
    }

    fn head(method: Method, uri: &str, headers: &[(&str, &str)]) -> Result<Route, (u16, bool)> {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match read_head(&request.body(()).unwrap()) {
            Ok((route, _)) => Ok(route),
            Err((refusal, close)) => Err((refusal.status.as_u16(), close)),
        }
    }

    #[test]
    fn the_head_is_refused_by_route_first_then_by_method_then_by_body() {
        assert_eq!(head(Method::POST, "/admin", &[]), Err((404, false)));
        assert_eq!(head(Method::POST, "/stats", &[]), Err((405, true)));
        assert_eq!(
            head(Method::GET, "/stats", &[("content-length", "3")]),
            Err((413, true))
        );
        assert_eq!(
            head(Method::GET, "/stats", &[("transfer-encoding", "chunked")]),
            Err((413, true))
        );
        assert_eq!(
            head(Method::GET, "/stats?x=1", &[("content-length", " 0 ")]),
            Ok(Route::Stats)
        );
    }

    #[test]
    fn credentials_take_the_query_consumer_first_and_only_a_bearer_key() {
        let mut headers = header::HeaderMap::new();
        headers.insert("x-consumer-id", HeaderValue::from_static("from-header"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  k-1 "),
        );
        let query = HashMap::from([("consumer_id".to_string(), "from-query".to_string())]);
        assert_eq!(
            credentials(&headers, &query),
            (Some("from-query".into()), Some("k-1".into()))
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k-1"));
        assert_eq!(
            credentials(&headers, &HashMap::new()),
            (Some("from-header".into()), None)
        );
    }
}
