//! `paged-api`: the REST benchmark's paged JSON API (`pullsync_tests::paged_api`) on
//! 127.0.0.1, for `cargo xtask bench --only rest`.
//!
//! usage: paged-api --port P [--latency-ms L] [--threads T]

use std::time::Duration;

fn main() {
    let (mut port, mut latency_ms, mut threads) = (0u64, 0u64, 2u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| fail(&format!("{flag} needs a number")));
        match flag.as_str() {
            "--port" => port = value,
            "--latency-ms" => latency_ms = value,
            "--threads" => threads = value,
            _ => fail(&format!("unknown option {flag}")),
        }
    }
    let port = u16::try_from(port).unwrap_or_else(|_| fail("--port: not a port"));
    let server =
        pullsync_tests::paged_api::start(port, Duration::from_millis(latency_ms), threads as usize)
            .unwrap_or_else(|e| fail(&format!("cannot listen: {e}")));
    println!("paged-api listening on {}", server.base_url);
    loop {
        std::thread::park();
    }
}

fn fail(message: &str) -> ! {
    eprintln!("paged-api: {message}\n\nusage: paged-api --port P [--latency-ms L] [--threads T]");
    std::process::exit(2)
}
