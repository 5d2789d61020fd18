//! Measures the simulator's throughput on `/{media-id}/insights` with latency 0: the server
//! on one runtime thread (one core), the load from another runtime. Prints requests/s.
//! Run through `cargo xtask bench`; a benchmark, never a timed test.

use pullsync_tests::sim::{SimConfig, SimServer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let connections = 64;
    let server = SimServer::start_on(&SimConfig::small(10, 100), 0, 1).expect("start simulator");
    let (targets, token) = {
        let world = server.sim.world.read().unwrap();
        let account = &world.accounts[0];
        let posts: Vec<String> = account
            .visible_posts(world.now)
            .iter()
            .filter(|p| p.media_type.has_insights())
            .map(|p| {
                format!(
                    "{}/{}/insights?metric={}",
                    server.api_url(),
                    p.id,
                    threads_model::POST_METRICS
                )
            })
            .collect();
        (posts, account.token.text.clone())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .build()
            .expect("client");
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let (client, targets, token) = (client.clone(), targets.clone(), token.clone());
                let (done, errors, stop) = (done.clone(), errors.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        let url = &targets[i % targets.len()];
                        i += connections;
                        let ok = match client.get(url).bearer_auth(&token).send().await {
                            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                            Err(_) => false,
                        };
                        let counter = if ok { &done } else { &errors };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "sim-bench: {n} insights requests in {elapsed:.1} s with {connections} connections: {:.0} requests/s on one server thread, {} errors",
        n as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
}
