//! `cargo xtask <command>`: the project's own tooling. It installs what a fresh Debian
//! machine lacks, builds, runs the tests, and runs the demo cluster.

mod args;
mod bench;
mod cluster;
mod demo;
mod install;
mod layering;
mod package;
mod pg_tree;
mod pg_upgrade;
mod ports;
mod prereqs;
mod process;
mod releases;
mod run;
mod sentinel;
mod simulator;
mod source_names;
mod upgrade;
mod workspace;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test    install what is missing, then run every test (unit, pgrx, integration, soak,
          upgrade, package) on PostgreSQL 15 and 18, and pg_upgrade from 15 to 18, against
          private trees under target/pg/;
          --pg 15|18: one version; --only <name>: just pgrx-tests/tests/<name>.rs on a
          fresh test cluster (upgrade, soak, failover_soak, package and pg_upgrade run their own
          phase; pg_upgrade, PostgreSQL 15 → 18, needs both versions)
  demo    build and install the extension, start the demo cluster (port 28815; with
          --pg 18 port 28915, a private tree, no pg_cron) and the Threads simulator, sync it
          twice and print a report
  stop    stop the demo clusters and the simulator
  package build the Debian package of the extension (target/*.deb); --pg 15|18
  soak    the long fault soak: 50 seeded runs with API faults, kill -9 and restarts; --pg;
          --against 0.1.0: on the version that landed first, to see what it loses;
          --failover: the failover soak instead, 20 seeds of a primary killed while it
          syncs and its streaming standby promoted
  bench   run the benchmarks (about an hour) and write docs/BENCHMARKS.md and its charts;
          --quick: small sizes, written under target/bench/; --only attack: just the feed
          server under attack, figures printed; --only rest-memory: what a REST page costs
          the backend that pulls it; --only threads --accounts N[,N…]
          [--posts N]: pg_pullsync's two cycles at those sizes, printed; --only rest
          [--records N] [--page-sizes 100,1000]: a paged JSON API (20 ms a page) read by
          the REST source, by dlt's rest_api and by COPY, and a fan-out, printed
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => run::test(&args[1..]),
        Some("demo") => demo::demo(&args[1..]),
        Some("stop") => run::stop(),
        Some("soak") => run::soak(&args[1..]),
        Some("package") => package::package(&args[1..]),
        // For tests/upgrade.rs: an install by rename while the old version's server runs.
        Some("install-package") => upgrade::install_package(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
