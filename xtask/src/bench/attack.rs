//! The feed server under attack: a consumer's page latency while 200 slow clients hold
//! connections and wrong keys flood in, as a ratio to the same latency on an idle server,
//! measured side by side in each run. Uses the provider rows and consumer the feed
//! benchmark left behind.

use super::stats::Summary;
use super::{Plan, FEED_PORT};
use crate::run::Result;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLOW_CLIENTS: usize = 200;
const FLOODERS: usize = 4;
pub const SAMPLES: usize = 100;

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
    fn open() -> Result<Connection> {
        let stream = TcpStream::connect(("127.0.0.1", FEED_PORT))?;
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
    let mut connection = Connection::open()?;
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
}

impl Attack {
    fn start() -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let throttled = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for _ in 0..SLOW_CLIENTS {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || slow_client(&stop)));
        }
        for i in 0..FLOODERS {
            let (stop, requests, throttled) = (stop.clone(), requests.clone(), throttled.clone());
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut connection) = Connection::open() else {
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
        Attack {
            stop,
            threads,
            requests,
            throttled,
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        (
            self.requests.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed),
        )
    }
}

/// Opens a request and never finishes its headers; reconnects when dropped.
fn slow_client(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", FEED_PORT)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
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
        let served = Connection::open()
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
        let attack = Attack::start();
        std::thread::sleep(Duration::from_secs(2));
        let attacked = page_latency(key);
        let (requests, throttled) = attack.stop();
        let attacked = attacked?;
        println!(
            "xtask: feed under attack, run {rep}: page {idle:.2} ms idle, {attacked:.2} ms under attack \
             ({requests} wrong-key requests, {throttled} throttled)"
        );
        latency.idle_ms.push(idle);
        latency.attacked_ms.push(attacked);
        latency.flood_requests += requests;
        latency.flood_throttled += throttled;
    }
    Ok(latency)
}
