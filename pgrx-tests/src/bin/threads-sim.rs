//! `threads-sim`: serves a simulated Threads Graph API on 127.0.0.1.

use pullsync_tests::sim::faults::FaultSpec;
use pullsync_tests::sim::{SimConfig, SimServer};

const HELP: &str = "threads-sim: a simulated Threads Graph API with fault injection

usage: threads-sim [--port P] [--accounts N] [--posts M] [--seed S] [--latency-ms L]
                   [--jitter-ms J] [--start UNIX] [--threads T] [--fault JSON]...

  --port P        port on 127.0.0.1 (default 8788; 0 = any free port)
  --accounts N    accounts in the world (default 20)
  --posts M       posts per account at start (default 200)
  --seed S        world seed (default 1): the same seed gives the same world
  --latency-ms L  fixed latency per API request (default 0)
  --jitter-ms J   extra random latency, 0..J ms (default 0)
  --start UNIX    simulated time at start (default: now)
  --threads T     server threads (default 2)
  --fault JSON    a fault active from the start, e.g. '{\"type\":\"server_error\",\"status\":503,\"times\":3}'

API under /v1.0 (me, {user-id}/threads, {media-id}/insights, {user-id}/threads_insights) and
/refresh_access_token. Admin API: GET /admin/accounts (ids and tokens), POST /admin/clock/advance
{\"seconds\":N}, GET|POST|DELETE /admin/faults, GET /admin/counters, POST /admin/counters/reset,
POST /admin/latency {\"fixed_ms\":L,\"jitter_ms\":J}, POST /admin/accounts/{id}/token
{\"age_secs\":A,\"lifetime_secs\":T}.

On start it prints one line per account: user id, username and access token.
";

fn main() {
    let mut config = SimConfig::small(20, 200);
    let (mut port, mut threads) = (8788u16, 2usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            print!("{HELP}");
            return;
        }
        let value = args
            .next()
            .unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| fail(&format!("{flag}: not a number: {value}")))
        };
        match flag.as_str() {
            "--port" => port = number() as u16,
            "--accounts" => config.world.accounts = number() as usize,
            "--posts" => config.world.posts_per_account = number() as usize,
            "--seed" => config.world.seed = number(),
            "--latency-ms" => config.latency_ms = number(),
            "--jitter-ms" => config.jitter_ms = number(),
            "--start" => config.world.start = number() as i64,
            "--threads" => threads = number() as usize,
            "--fault" => config.faults.push(
                serde_json::from_str::<FaultSpec>(&value)
                    .unwrap_or_else(|e| fail(&format!("--fault: {e}"))),
            ),
            _ => fail(&format!("unknown option {flag}")),
        }
    }
    let server = SimServer::start_on(&config, port, threads)
        .unwrap_or_else(|e| fail(&format!("cannot listen: {e}")));
    println!(
        "threads-sim listening on {} (API {})",
        server.base_url,
        server.api_url()
    );
    for a in &server.sim.world.read().unwrap().accounts {
        println!("account {} {} {}", a.user_id, a.username, a.token.text);
    }
    loop {
        std::thread::park();
    }
}

fn fail(message: &str) -> ! {
    eprintln!("threads-sim: {message}\n\n{HELP}");
    std::process::exit(2)
}
