//! The feed server against hostile clients: slow clients holding connections, floods of
//! wrong keys, too many connections, oversized or malformed requests; and TLS with a private
//! CA. The provider is the test cluster's `it_workers` database and its feed server on
//! the address `cargo xtask test` chose for it. Tests that change the server's settings restore them before they end;
//! all run one at a time.

use postgres::Client;
use pullsync_tests::db::connect;
use pullsync_tests::feed::{consumer, provider, rows};
use pullsync_tests::ports::{feed_addr, feed_url};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "attack-test-key-0123456789abcdef";

/// A TCP connection to the feed server from `source` (any 127.0.0.0/8 address works on
/// Linux), so attackers and the consumer have distinct client addresses.
async fn connect_from(source: IpAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(feed_addr()).await
}

/// What the slow clients saw: connections made, and connections the server closed.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    closed: AtomicU64,
}

/// Sends a request line and one header, then a byte every second, never finishing the
/// headers. Counts its connections and how often the server closes them.
async fn slow_client(source: IpAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_from(source).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tally.opened.fetch_add(1, Ordering::Relaxed);
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = stream
            .write_all(b"GET /conversations HTTP/1.1\r\nHost: feed\r\n")
            .await;
        let mut buf = [0u8; 512];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if stream.write_all(b"X").await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
        tally.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wrong keys as fast as the server answers, from `source`. Returns (401s, 429s, other).
async fn wrong_key_flood(source: IpAddr, stop: Arc<AtomicBool>) -> (u64, u64, u64) {
    let http = reqwest::Client::builder()
        .local_address(source)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (mut unauthorized, mut throttled, mut other) = (0, 0, 0);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let consumer = if n.is_multiple_of(2) {
            "partner"
        } else {
            "nobody"
        };
        let r = http
            .get(format!("{}/conversations", feed_url()))
            .query(&[("consumer_id", consumer)])
            .bearer_auth(format!("wrong-key-{n:08}"))
            .send()
            .await;
        match r.map(|r| r.status().as_u16()) {
            Ok(401) => unauthorized += 1,
            Ok(429) => throttled += 1,
            _ => other += 1,
        }
    }
    (unauthorized, throttled, other)
}

fn pull_to_the_end(c: &mut Client) -> Value {
    c.query_one("SELECT pullsync.feed_pull('partner', 'incremental')", &[])
        .unwrap()
        .get(0)
}

#[test]
fn a_consumer_pulls_exactly_while_slow_clients_hold_connections_and_wrong_keys_flood() {
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(300, 1500, KEY);
    // No retries: a single refused or timed-out request of the consumer fails its pull.
    let mut c = consumer("it_attack_consumer", &feed_url(), KEY, 50);
    c.batch_execute("UPDATE pullsync.feed_sources SET max_retries = 0")
        .unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    for i in 0..200u32 {
        let source = IpAddr::from([127, 0, 0, 2 + (i % 4) as u8]);
        runtime.spawn(slow_client(source, stop.clone(), tally.clone()));
    }
    let floods: Vec<_> = (0..4u8)
        .map(|i| {
            runtime.spawn(wrong_key_flood(
                IpAddr::from([127, 0, 1, 1 + i]),
                stop.clone(),
            ))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let started = Instant::now();
    let result = pull_to_the_end(&mut c);
    assert_eq!(result["status"], "completed", "{result}");
    // New rows while the attack goes on arrive too.
    p.batch_execute(
        "UPDATE pullsync.conversations SET updated_at = updated_at + interval '1 day' WHERE id IN ('c1', 'c2', 'c3')",
    )
    .unwrap();
    let again = pull_to_the_end(&mut c);
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(
        rows(&mut c),
        rows(&mut p),
        "the consumer has every row, exactly"
    );

    // Hold the attack until the server has dropped the slow clients once: they never
    // finished their headers.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.closed.load(Ordering::Relaxed) < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let mut totals = (0, 0, 0);
    for flood in floods {
        let (u, t, o) = runtime.block_on(flood).unwrap();
        totals = (totals.0 + u, totals.1 + t, totals.2 + o);
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    let closed = tally.closed.load(Ordering::Relaxed);
    assert!(
        closed >= 200,
        "the server closes connections that never finish their headers ({closed} closed)"
    );
    let (unauthorized, throttled, other) = totals;
    assert!(throttled > 0, "wrong keys get throttled: {totals:?}");
    // Each flooding address gets its burst, then one attempt per two seconds.
    let elapsed = started.elapsed().as_secs() + 2;
    assert!(
        unauthorized <= 4 * (20 + elapsed),
        "at most the burst and the refill reach the key check: {totals:?} in {elapsed} s"
    );
    assert_eq!(other, 0, "every flood request was answered: {totals:?}");
}

/// Half-sent requests from more addresses than any per-address limit catches, more of them
/// than the server holds connections, and a wrong-key flood from yet another address: a
/// consumer whose address presented a valid key before the attack still gets every page.
#[test]
fn a_known_consumer_gets_every_page_while_many_addresses_hold_half_sent_requests() {
    const SLOW_CLIENTS: u32 = 1_100;
    const ADDRESSES: u32 = 50;
    const FLOODERS: usize = 32;
    let _serial = pullsync_tests::feed::serial();
    let mut p = provider(300, 1500, KEY);
    // No retries: a single refused or dropped request of the consumer fails its pull.
    let mut c = consumer("it_distributed_attack", &feed_url(), KEY, 50);
    c.batch_execute("UPDATE pullsync.feed_sources SET max_retries = 0")
        .unwrap();
    // The consumer's address (127.0.0.1, the pull's own) presents its key before the attack.
    assert!(present_key());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    for i in 0..SLOW_CLIENTS {
        let source = IpAddr::from([127, 0, 0, 2 + (i % ADDRESSES) as u8]);
        runtime.spawn(slow_client(source, stop.clone(), tally.clone()));
    }
    let flooder = IpAddr::from([127, 0, 0, 2 + ADDRESSES as u8]);
    let floods: Vec<_> = (0..FLOODERS)
        .map(|_| runtime.spawn(wrong_key_flood(flooder, stop.clone())))
        .collect();
    wait_for("every slow client to connect", || {
        tally.opened.load(Ordering::Relaxed) >= u64::from(SLOW_CLIENTS)
    });
    std::thread::sleep(Duration::from_secs(1));

    let result = pull_to_the_end(&mut c);
    p.batch_execute(
        "UPDATE pullsync.conversations SET updated_at = updated_at + interval '1 day' WHERE id IN ('c1', 'c2', 'c3')",
    )
    .unwrap();
    let again = pull_to_the_end(&mut c);
    stop.store(true, Ordering::Relaxed);
    let mut totals = (0, 0, 0);
    for flood in floods {
        let (u, t, o) = runtime.block_on(flood).unwrap();
        totals = (totals.0 + u, totals.1 + t, totals.2 + o);
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(
        rows(&mut c),
        rows(&mut p),
        "the consumer has every row, exactly"
    );
    assert!(
        totals.0 + totals.1 > 0,
        "the flood was answered: {totals:?}"
    );
}

/// Sets feed server settings with ALTER SYSTEM and reloads; `wait_until` tells when the
/// restarted server has them. Dropping it resets them and waits for the plain server again.
struct FeedSettings {
    names: Vec<&'static str>,
}

impl FeedSettings {
    fn apply(settings: &[(&'static str, &str)], wait_until: impl Fn() -> bool) -> FeedSettings {
        let mut admin = connect("postgres");
        for (name, value) in settings {
            admin
                .batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'"))
                .unwrap();
        }
        admin.batch_execute("SELECT pg_reload_conf()").unwrap();
        let applied = FeedSettings {
            names: settings.iter().map(|(n, _)| *n).collect(),
        };
        wait_for("the feed server with the new settings", wait_until);
        applied
    }
}

impl Drop for FeedSettings {
    fn drop(&mut self) {
        let mut admin = connect("postgres");
        for name in &self.names {
            admin
                .batch_execute(&format!("ALTER SYSTEM RESET {name}"))
                .unwrap();
        }
        admin.batch_execute("SELECT pg_reload_conf()").unwrap();
        std::thread::sleep(Duration::from_secs(1));
        wait_for("the plain feed server again", || {
            status_of(&format!("{}/conversations", feed_url())) == Some(401)
                && open_connections(25).1.is_none()
        });
    }
}

fn wait_for(what: &str, ready: impl Fn() -> bool) {
    pullsync_tests::wait::until(what, Duration::from_secs(90), ready);
}

fn status_of(url: &str) -> Option<u16> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(url)
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

/// Opens `n` idle connections, then asks one more request; returns the idle ones and the
/// refusal the extra one got, if any (its status line and body).
fn open_connections(n: usize) -> (Vec<TcpStream>, Option<String>) {
    let held: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect(feed_addr()).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let answer = raw_request(b"GET /conversations HTTP/1.1\r\nHost: feed\r\n\r\n");
    let refused = answer.filter(|a| a.starts_with("HTTP/1.1 503"));
    (held, refused)
}

/// Sends raw bytes and reads the answer until the server closes or goes quiet.
fn raw_request(bytes: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(feed_addr()).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream.write_all(bytes).ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

/// A request with the consumer's valid key from 127.0.0.1, the tests' own address: from
/// then on the server counts the address as a known consumer's.
fn present_key() -> bool {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{}/conversations", feed_url()))
        .query(&[("consumer_id", "partner"), ("limit", "1")])
        .bearer_auth(KEY)
        .send()
        .is_ok_and(|r| r.status().as_u16() == 200)
}

/// A plain connection to the feed server from `source`.
fn std_connect_from(source: IpAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime
        .block_on(connect_from(source))
        .unwrap()
        .into_std()
        .unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

#[test]
fn connection_cap_timeouts_and_size_limits_hold() {
    let _serial = pullsync_tests::feed::serial();
    let _p = provider(1, 1, KEY);
    // The cap is filled by connections of a known consumer's address, which are never shed.
    let _settings = FeedSettings::apply(
        &[
            ("pullsync.feed_max_connections", "20"),
            ("pullsync.feed_header_timeout", "1s"),
            ("pullsync.feed_idle_timeout", "3s"),
        ],
        || present_key() && open_connections(20).1.is_some(),
    );
    // Beyond the cap: 503 with Retry-After, at once. (A try may race the server's release
    // of the previous try's connections.)
    let (held, refused) = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(500));
            open_connections(20)
        })
        .find(|(_, refused)| refused.is_some())
        .unwrap_or_default();
    let refused = refused.expect("the 21st connection is refused");
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    drop(held);
    // The server has closed them before the strangers come.
    std::thread::sleep(Duration::from_millis(300));

    // Strangers' half-sent requests do not keep a newcomer out: the oldest is shed for it.
    let mut half_sent: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = std_connect_from(IpAddr::from([127, 0, 0, 9]));
            stream
                .write_all(b"GET /conversations HTTP/1.1\r\n")
                .unwrap();
            stream
        })
        .collect();
    // Well within the header timeout (1 s): none of them has been dropped for it yet.
    std::thread::sleep(Duration::from_millis(100));
    let mut newcomer = std_connect_from(IpAddr::from([127, 0, 0, 10]));
    newcomer
        .write_all(b"GET /conversations HTTP/1.1\r\nHost: feed\r\n\r\n")
        .unwrap();
    newcomer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = [0u8; 12];
    newcomer.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 401", "the newcomer is served");
    let oldest = &mut half_sent[0];
    oldest
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let shed = match oldest.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(shed, "the oldest half-sent request was shed");
    drop(half_sent);

    // A connection that never finishes its headers is closed after the header timeout.
    let mut silent = TcpStream::connect(feed_addr()).unwrap();
    silent
        .write_all(b"GET /conversations HTTP/1.1\r\n")
        .unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1024];
    match silent.read(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("a stalled request head must be dropped: {e}"),
    }

    // Oversized heads, bodies and other methods are refused before any key check.
    let huge = format!(
        "GET /conversations?pad={} HTTP/1.1\r\nHost: feed\r\n\r\n",
        "x".repeat(200 * 1024)
    );
    let answer = raw_request(huge.as_bytes()).unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let answer =
        raw_request(b"GET /conversations HTTP/1.1\r\nHost: feed\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let answer =
        raw_request(b"POST /conversations HTTP/1.1\r\nHost: feed\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    // An idle keep-alive connection is closed after the idle timeout.
    let mut idle = TcpStream::connect(feed_addr()).unwrap();
    idle.write_all(b"GET /nowhere HTTP/1.1\r\nHost: feed\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut answer = Vec::new();
    let closed = loop {
        match idle.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(closed, "an idle connection is closed by the server");
}

/// A private CA, a server certificate from it for 127.0.0.1, and an unrelated CA; PEM
/// files readable by the server (the key private to it).
struct Pki {
    dir: std::path::PathBuf,
}

impl Pki {
    fn create() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let dir = std::env::temp_dir().join("pullsync-feed-tls");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let mut server_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        server_params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
        let rogue_key = KeyPair::generate().unwrap();
        let mut rogue_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        rogue_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let rogue = rogue_params.self_signed(&rogue_key).unwrap();
        let files = [
            ("ca.pem", ca.pem(), 0o644),
            ("rogue-ca.pem", rogue.pem(), 0o644),
            ("server.pem", server.pem(), 0o644),
            ("server.key", server_key.serialize_pem(), 0o600),
        ];
        for (name, pem, mode) in files {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let chown = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chown.success());
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn client(&self) -> reqwest::blocking::Client {
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(self.path("ca.pem")).unwrap()).unwrap();
        reqwest::blocking::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }
}

#[test]
fn a_consumer_pulls_over_tls_with_a_private_ca_and_refuses_a_wrong_certificate() {
    let _serial = pullsync_tests::feed::serial();
    let pki = Pki::create();
    let https = feed_url().replace("http://", "https://");
    let client = pki.client();
    let _settings = FeedSettings::apply(
        &[
            ("pullsync.feed_tls_cert_file", &pki.path("server.pem")),
            ("pullsync.feed_tls_key_file", &pki.path("server.key")),
        ],
        || {
            client
                .get(format!("{https}/conversations"))
                .send()
                .is_ok_and(|r| r.status().as_u16() == 401)
        },
    );
    let mut p = provider(40, 120, KEY);
    // Plain HTTP to the TLS port gets nothing served.
    assert_ne!(
        status_of(&format!("{}/conversations", feed_url())),
        Some(401)
    );

    let mut c = consumer("it_tls_consumer", &https, KEY, 25);
    c.batch_execute(&format!(
        "SET pullsync.http_ca_file = '{}'",
        pki.path("ca.pem")
    ))
    .unwrap();
    let result = pull_to_the_end(&mut c);
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(rows(&mut c), rows(&mut p));

    // Trusting only another CA, the same pull is refused with the reason.
    let mut wrong = consumer("it_tls_wrong_ca", &https, KEY, 25);
    wrong
        .batch_execute(&format!(
            "SET pullsync.http_ca_file = '{}'",
            pki.path("rogue-ca.pem")
        ))
        .unwrap();
    let refused = pull_to_the_end(&mut wrong);
    assert_eq!(refused["status"], "failed", "{refused}");
    let reason = refused["error"].to_string();
    assert!(reason.contains("certificate"), "{reason}");
    let stored: i64 = wrong
        .query_one("SELECT count(*) FROM pullsync.conversations", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    // A CA file that is not there is a setting to fix, with its SQLSTATE.
    wrong
        .batch_execute("SET pullsync.http_ca_file = '/nonexistent/ca.pem'")
        .unwrap();
    let err = wrong
        .query_one("SELECT pullsync.feed_pull('partner', 'incremental')", &[])
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("22023"), "{err}");
}
