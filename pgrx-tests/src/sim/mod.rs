//! A simulator of the Threads Graph API (facts: shared/threads-api.md) with fault
//! injection, request counters and a simulated clock, served by axum on loopback.
//!
//! Use it in-process (`SimServer::start`) or as the `threads-sim` binary; tests, the demo
//! and the benchmarks drive it through its admin API (`/admin/...`).

mod admin;
mod api;
pub mod faults;
pub mod world;

use crate::local_server::LocalServer;
use faults::{Endpoint, FaultKind, FaultSpec, Faults};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use world::{World, WorldConfig};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub world: WorldConfig,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub faults: Vec<FaultSpec>,
}

impl SimConfig {
    /// `accounts` × `posts` with seed 1, the clock at the current minute, no latency.
    pub fn small(accounts: usize, posts: usize) -> Self {
        SimConfig {
            world: WorldConfig {
                seed: 1,
                accounts,
                posts_per_account: posts,
                start: chrono::Utc::now().timestamp() / 60 * 60,
            },
            latency_ms: 0,
            jitter_ms: 0,
            faults: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Counters {
    pub total: u64,
    pub by_endpoint: BTreeMap<String, u64>,
    pub by_account: BTreeMap<String, u64>,
    /// `<endpoint>:<threads user id>` → requests.
    pub by_endpoint_account: BTreeMap<String, u64>,
    /// Most API requests in flight at once since the last reset.
    pub max_in_flight: u64,
}

/// Everything the handlers share.
pub struct Sim {
    pub world: RwLock<World>,
    pub faults: Mutex<Faults>,
    pub counters: Mutex<Counters>,
    /// (fixed, jitter) in milliseconds
    pub latency: Mutex<(u64, u64)>,
    /// The most posts a listing page holds, whatever its limit asks (Meta's may be lower
    /// than the documented 100).
    pub listing_cap: std::sync::atomic::AtomicUsize,
    in_flight: std::sync::atomic::AtomicU64,
}

/// Counts a request as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Sim);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Sim {
    pub fn new(config: &SimConfig) -> Sim {
        let mut faults = Faults::new(config.world.seed);
        for spec in &config.faults {
            faults.add(spec.clone());
        }
        Sim {
            world: RwLock::new(World::generate(&config.world)),
            faults: Mutex::new(faults),
            counters: Mutex::new(Counters::default()),
            latency: Mutex::new((config.latency_ms, config.jitter_ms)),
            listing_cap: std::sync::atomic::AtomicUsize::new(threads_model::MAX_PAGE_LIMIT),
            in_flight: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn enter(&self) -> InFlight<'_> {
        let now = self
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let mut c = self.counters.lock().unwrap();
        c.max_in_flight = c.max_in_flight.max(now);
        InFlight(self)
    }

    fn count(&self, endpoint: Endpoint, account: Option<&str>) {
        let mut c = self.counters.lock().unwrap();
        c.total += 1;
        *c.by_endpoint
            .entry(endpoint.name().to_string())
            .or_default() += 1;
        *c.by_account
            .entry(account.unwrap_or("unknown").to_string())
            .or_default() += 1;
        *c.by_endpoint_account
            .entry(format!(
                "{}:{}",
                endpoint.name(),
                account.unwrap_or("unknown")
            ))
            .or_default() += 1;
    }

    fn fire(
        &self,
        endpoint: Endpoint,
        account: Option<&str>,
        page: Option<u32>,
        wanted: impl Fn(&FaultKind) -> bool,
    ) -> Option<FaultKind> {
        self.faults
            .lock()
            .unwrap()
            .fire(endpoint, account, page, wanted)
    }
}

/// A simulator serving on 127.0.0.1 from its own thread and tokio runtime.
pub struct SimServer {
    /// e.g. `http://127.0.0.1:40123`
    pub base_url: String,
    pub sim: Arc<Sim>,
    _server: LocalServer,
}

impl SimServer {
    /// Starts on an ephemeral port (or `port`), with `threads` runtime worker threads.
    pub fn start_on(config: &SimConfig, port: u16, threads: usize) -> std::io::Result<SimServer> {
        let sim = Arc::new(Sim::new(config));
        let server = LocalServer::start(router(sim.clone()), port, threads, "threads-sim")?;
        Ok(SimServer {
            base_url: server.base_url.clone(),
            sim,
            _server: server,
        })
    }

    pub fn start(config: &SimConfig) -> SimServer {
        Self::start_on(config, 0, 2).expect("start threads simulator")
    }

    /// The versioned API base, what `pullsync.threads_api_url` points at.
    pub fn api_url(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }

    /// Every account as (user id, username, current token), in world order.
    pub fn accounts(&self) -> Vec<(String, String, String)> {
        self.sim
            .world
            .read()
            .unwrap()
            .accounts
            .iter()
            .map(|a| (a.user_id.clone(), a.username.clone(), a.token.text.clone()))
            .collect()
    }

    pub fn advance(&self, seconds: i64) {
        self.sim.world.write().unwrap().advance(seconds);
    }

    pub fn add_fault(&self, spec: FaultSpec) -> u64 {
        self.sim.faults.lock().unwrap().add(spec)
    }

    pub fn clear_faults(&self) {
        self.sim.faults.lock().unwrap().clear();
    }

    /// Requests to `endpoint` for the account `user_id` since the last reset.
    pub fn calls(&self, endpoint: Endpoint, user_id: &str) -> u64 {
        let key = format!("{}:{user_id}", endpoint.name());
        self.counters()
            .by_endpoint_account
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    pub fn counters(&self) -> Counters {
        self.sim.counters.lock().unwrap().clone()
    }

    pub fn reset_counters(&self) {
        *self.sim.counters.lock().unwrap() = Counters::default();
    }
}

pub fn router(sim: Arc<Sim>) -> axum::Router {
    api::routes()
        .merge(admin::routes())
        .layer(axum::middleware::map_response_with_state(
            sim.clone(),
            stamp_date,
        ))
        .with_state(sim)
}

/// Every answer's `Date` is the simulated clock, as Meta's is its own: a test can set it
/// behind the database's (`SimConfig::world.start`).
async fn stamp_date(
    axum::extract::State(sim): axum::extract::State<Arc<Sim>>,
    mut response: axum::response::Response,
) -> axum::response::Response {
    let now = sim.world.read().unwrap().now;
    if let Some(date) = chrono::DateTime::from_timestamp(now, 0) {
        let text = date.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(value) = axum::http::HeaderValue::from_str(&text) {
            response
                .headers_mut()
                .insert(axum::http::header::DATE, value);
        }
    }
    response
}
