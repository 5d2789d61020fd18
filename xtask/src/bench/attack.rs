//! The feed server under attack: a consumer's page latency while slow clients from many
//! addresses hold more connections than the server has and wrong keys flood in from
//! another, as a ratio to the same latency on an idle server, measured side by side in each
//! run. The consumer (on 127.0.0.1) presented its key before the attack, as a consumer
//! that pulls regularly has. Uses the provider rows and consumer the feed benchmark left
//! behind.

use super::stats::Summary;
use super::{Plan, FEED_PORT};
use crate::process::Result;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests that never finish their headers, held at once (the server's cap is 256)…
pub const SLOW_CLIENTS: usize = 1_100;
/// …from this many loopback addresses, 127.0.0.2 onwards: no per-address limit helps.
pub const SLOW_ADDRESSES: usize = 50;
/// Connections sending wrong keys as fast as they are answered, from the next address.
pub const FLOODERS: usize = 32;
pub const SAMPLES: usize = 100;
const CONSUMER: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn slow_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % SLOW_ADDRESSES) as u8)
}

fn flood_address() -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + SLOW_ADDRESSES as u8)
}

/// A TCP connection to the feed server from `source` (any 127.0.0.0/8 address on Linux).
fn connect_from(source: Ipv4Addr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
    socket.connect_timeout(
        &SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), FEED_PORT).into(),
        Duration::from_secs(30),
    )?;
    Ok(socket.into())
}

pub struct Latency {
    /// Median page latency per run, idle server, milliseconds.
    pub idle_ms: Vec<f64>,
    /// The same under attack.
    pub attacked_ms: Vec<f64>,
    /// Wrong-key requests answered during the attacked runs, and how many of them were
    /// throttled before any key check.
    pub flood_requests: u64,
    pub flood_throttled: u64,
}

impl Latency {
    pub fn slowdown(&self) -> Summary {
        Summary::of_ratios(&self.attacked_ms, &self.idle_ms)
    }
}

/// One keep-alive HTTP/1.1 connection that GETs and reads whole answers; returns status.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(source: Ipv4Addr) -> Result<Connection> {
        let stream = connect_from(source)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::new(stream),
        })
    }

    fn get(&mut self, path: &str, key: &str) -> Result<u16> {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: feed\r\nAuthorization: Bearer {key}\r\n\r\n"
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no status line")?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}

/// The median of `SAMPLES` page requests, in milliseconds.
fn page_latency(key: &str) -> Result<f64> {
    let mut connection = Connection::open(CONSUMER)?;
    let path = "/messages?consumer_id=bench&limit=500";
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let status = connection.get(path, key)?;
        if status != 200 {
            return Err(format!("the consumer's page answered HTTP {status}").into());
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Summary::of(&samples).median)
}

struct Attack {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    requests: Arc<AtomicU64>,
    throttled: Arc<AtomicU64>,
    /// Connections the slow clients opened: beyond `SLOW_CLIENTS`, reopened after the
    /// server dropped them.
    slow_connections: Arc<AtomicU64>,
}

impl Attack {
    fn start() -> Result<Attack> {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let throttled = Arc::new(AtomicU64::new(0));
        let slow_connections = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        // Small stacks: these threads only sleep and write.
        let small = || std::thread::Builder::new().stack_size(64 * 1024);
        for i in 0..SLOW_CLIENTS {
            let (stop, opened) = (stop.clone(), slow_connections.clone());
            threads.push(small().spawn(move || slow_client(slow_address(i), &stop, &opened))?);
        }
        for i in 0..FLOODERS {
            let (stop, requests, throttled) = (stop.clone(), requests.clone(), throttled.clone());
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut connection) = Connection::open(flood_address()) else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let key = format!("wrong-key-{i}-{n:010}");
                        match connection.get("/messages?consumer_id=bench", &key) {
                            Ok(status) => {
                                requests.fetch_add(1, Ordering::Relaxed);
                                if status == 429 {
                                    throttled.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
            }));
        }
        Ok(Attack {
            stop,
            threads,
            requests,
            throttled,
            slow_connections,
        })
    }

    /// Wrong-key requests answered, how many of them throttled, slow connections opened.
    fn stop(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        (
            self.requests.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed),
            self.slow_connections.load(Ordering::Relaxed),
        )
    }
}

/// Opens a request from `source` and never finishes its headers; reconnects when dropped.
fn slow_client(source: Ipv4Addr, stop: &AtomicBool, opened: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_from(source) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        if stream
            .write_all(b"GET /messages HTTP/1.1\r\nHost: feed\r\n")
            .is_err()
        {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(500));
            if stream.write_all(b"X").is_err() {
                break;
            }
        }
    }
}

/// Waits until the feed server serves the consumer's page (it starts, and sees the
/// provider's extension, a few seconds after the cluster).
fn wait_until_served(key: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let served = Connection::open(CONSUMER)
            .and_then(|mut c| c.get("/messages?consumer_id=bench&limit=1", key))
            .is_ok_and(|status| status == 200);
        if served {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the feed server did not serve the bench consumer".into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn measure(plan: &Plan, key: &str) -> Result<Latency> {
    wait_until_served(key)?;
    let mut latency = Latency {
        idle_ms: Vec::new(),
        attacked_ms: Vec::new(),
        flood_requests: 0,
        flood_throttled: 0,
    };
    for rep in 1..=plan.reps {
        let idle = page_latency(key)?;
        let attack = Attack::start()?;
        std::thread::sleep(Duration::from_secs(2));
        let attacked = page_latency(key);
        let (requests, throttled, slow) = attack.stop();
        let attacked = attacked?;
        println!(
            "xtask: feed under attack, run {rep}: page {idle:.2} ms idle, {attacked:.2} ms under attack \
             ({slow} slow connections by {SLOW_CLIENTS} clients; {requests} wrong-key requests, {throttled} throttled)"
        );
        latency.idle_ms.push(idle);
        latency.attacked_ms.push(attacked);
        latency.flood_requests += requests;
        latency.flood_throttled += throttled;
    }
    Ok(latency)
}
