//! Where the servers of a test run listen. `cargo xtask test` asks the OS for free ports
//! and passes them in the environment, so a test never reaches a server it did not start
//! (a user's demo cluster on a port an earlier version of the tests used, say).

use std::net::{SocketAddr, TcpListener};

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests with `cargo xtask test`")
    })
}

/// The test cluster's feed server (`pullsync.feed_listen`).
pub fn feed_addr() -> SocketAddr {
    let addr = required("PULLSYNC_TEST_FEED_ADDR");
    addr.parse()
        .unwrap_or_else(|e| panic!("PULLSYNC_TEST_FEED_ADDR={addr}: {e}"))
}

/// `http://` + the feed server's address.
pub fn feed_url() -> String {
    format!("http://{}", feed_addr())
}

/// The port the test cluster's `pullsync.threads_api_url` names: the workers' simulator.
pub fn worker_sim_port() -> u16 {
    let port = required("PULLSYNC_TEST_WORKER_SIM_PORT");
    port.parse()
        .unwrap_or_else(|e| panic!("PULLSYNC_TEST_WORKER_SIM_PORT={port}: {e}"))
}

/// `n` distinct ports no one listens on now, from the OS (for servers that bind them
/// themselves, such as a scratch cluster's postmaster and feed server).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)).expect("a free port from the OS"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect()
}
