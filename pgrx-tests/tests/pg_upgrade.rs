//! PostgreSQL 15 → 18 with pg_upgrade under pg_pullsync. `cargo xtask test` starts a
//! PostgreSQL 15 cluster on this build and initdb's two PostgreSQL 18 clusters with the
//! same settings and sealing key, on the same ports (xtask/src/pg_upgrade.rs). The test
//! fills the 15 cluster through real syncs of every source (the fill of tests/upgrade.rs),
//! stops it, and pg_upgrades it into the first 18 cluster by copying, then into the
//! second by linking (which leaves the old cluster unusable, so it comes last). For each:
//! pg_pullsync started nothing while pg_upgrade ran the servers in binary-upgrade mode,
//! and on the upgraded server every row and sequence is kept, the catalog equals a fresh
//! 18 install, the sealed tokens open with the same key, and the syncs and workers go on.

use postgres::Client;
use pullsync_tests::catalog::{describe, differences, sequence_values, table_digests};
use pullsync_tests::db::{connect, fresh_extension_database};
use pullsync_tests::fill::{env, fill, DATA, PROVIDER};
use pullsync_tests::pg_upgrade::{binary_upgrade_problems, pg_upgrade, Mode, Side};
use pullsync_tests::server::pg_ctl;
use pullsync_tests::workers::{finished, queue, status, wait_for};
use std::path::PathBuf;
use std::time::Duration;

const OLD_MAJOR: u32 = 15;
const NEW_MAJOR: u32 = 18;

fn server_version_num(db: &mut Client) -> i32 {
    let text: String = db.query_one("SHOW server_version_num", &[]).unwrap().get(0);
    text.parse().unwrap()
}

/// Waits until the started cluster in `pgdata` has its feed server serving the provider
/// on `feed_url`, as its log says, and the port takes connections.
fn wait_for_feed_server(pgdata: &std::path::Path, feed_url: &str) {
    let log = pgdata.with_file_name("server.log");
    let serving = format!("serving database \"{PROVIDER}\" on {feed_url}");
    let address = feed_url.trim_start_matches("http://").to_string();
    pullsync_tests::wait::until(
        &format!("the feed server {serving} (see {})", log.display()),
        Duration::from_secs(60),
        || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&serving))
                && std::net::TcpStream::connect(&address).is_ok()
        },
    );
}

#[test]
#[ignore = "needs the PostgreSQL 15 and 18 clusters that `cargo xtask test` prepares"]
fn pg_upgrade_from_15_to_18_keeps_every_row_and_the_syncs_go_on() {
    let old = Side {
        bin: env("PULLSYNC_TEST_PG_BIN").into(),
        pgdata: env("PULLSYNC_TEST_PGDATA").into(),
    };
    let new_bin: PathBuf = env("PULLSYNC_PG_UPGRADE_NEW_BIN").into();
    let feed_url = env("PULLSYNC_UPGRADE_FEED_URL");
    let targets = [
        (Mode::Copy, env("PULLSYNC_PG_UPGRADE_COPY_PGDATA")),
        (Mode::Link, env("PULLSYNC_PG_UPGRADE_LINK_PGDATA")),
    ];

    let mut postgres = connect("postgres");
    assert_eq!(server_version_num(&mut postgres) / 10_000, OLD_MAJOR as i32);
    let version: String = postgres
        .query_one(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_pullsync'",
            &[],
        )
        .unwrap()
        .get(0);
    drop(postgres);
    let mut filled = fill(&version, &feed_url);
    let (before, provider_before) = filled.digests();
    let sequences_before = [
        sequence_values(&mut filled.fx.db),
        sequence_values(&mut filled.provider),
    ];
    let rows: i64 = before
        .values()
        .chain(provider_before.values())
        .map(|(n, _)| n)
        .sum();
    println!("pg_upgrade: PostgreSQL {OLD_MAJOR} filled, {rows} pg_pullsync rows");
    pg_ctl(
        &old.bin,
        &old.pgdata,
        &["-m", "fast", "-w", "-t", "120", "stop"],
    );

    for (mode, pgdata) in targets {
        let new = Side {
            bin: new_bin.clone(),
            pgdata: pgdata.into(),
        };
        // (a) While pg_upgrade runs the old and the new server, nothing of ours starts.
        let upgraded = pg_upgrade(&old, &new, mode);
        let problems = binary_upgrade_problems(&upgraded.server_log, [OLD_MAJOR, NEW_MAJOR]);
        assert!(
            problems.is_empty(),
            "pg_upgrade {}: {problems:?}\nthe servers' log:\n{}",
            mode.flag(),
            upgraded.server_log
        );
        println!(
            "pg_upgrade: {} took {} ms; pg_pullsync said it is in binary-upgrade mode {} times, \
             no worker or feed server started",
            mode.flag(),
            upgraded.took.as_millis(),
            upgraded
                .server_log
                .matches(pullsync_tests::pg_upgrade::BINARY_UPGRADE_LINE)
                .count()
        );

        pg_ctl(&new.bin, &new.pgdata, &["-w", "-t", "120", "start"]);
        wait_for_feed_server(&new.pgdata, &feed_url);
        let mut data = connect(DATA);
        let mut provider = connect(PROVIDER);
        assert_eq!(server_version_num(&mut data) / 10_000, NEW_MAJOR as i32);

        // (b) Every row and sequence kept.
        assert_eq!(
            table_digests(&mut data, &[]),
            before,
            "{}: rows",
            mode.flag()
        );
        assert_eq!(
            table_digests(&mut provider, &[]),
            provider_before,
            "{}: the provider's rows",
            mode.flag()
        );
        assert_eq!(
            [sequence_values(&mut data), sequence_values(&mut provider)],
            sequences_before,
            "{}: sequences",
            mode.flag()
        );

        // (c) The catalog equals a fresh install on the new server, object for object.
        let fresh_catalog = describe(&mut fresh_extension_database("upgrade_fresh"));
        for (name, db) in [(DATA, &mut data), (PROVIDER, &mut provider)] {
            let (only_upgraded, only_fresh) = differences(&describe(db), &fresh_catalog);
            assert!(
                only_upgraded.is_empty() && only_fresh.is_empty(),
                "{} {name}: the upgraded catalog differs from a fresh install\n only after pg_upgrade:\n  {}\n only in a fresh install:\n  {}",
                mode.flag(),
                only_upgraded.join("\n  "),
                only_fresh.join("\n  ")
            );
        }
        println!(
            "pg_upgrade: {}: {rows} rows kept, {} catalog objects equal a fresh install's",
            mode.flag(),
            fresh_catalog.len()
        );

        // (d) The syncs go on (the Threads run opens the tokens sealed on 15), and the
        // workers of the provider run a queued job.
        filled.fx.db = data;
        filled.provider = provider;
        let pulled = filled.assert_syncs_go_on();
        println!(
            "pg_upgrade: {}: Threads, feed (provider_moved: {}) and REST syncs go on",
            mode.flag(),
            pulled["provider_moved"]
        );
        let job = queue(&mut filled.provider);
        wait_for(
            &mut filled.provider,
            "the upgraded server's workers to run a queued job",
            Duration::from_secs(90),
            |p| finished(p, job),
        );
        let done = status(&mut filled.provider, job);
        assert_eq!(done["state"], "completed", "{done}");
        pg_ctl(
            &new.bin,
            &new.pgdata,
            &["-m", "fast", "-w", "-t", "120", "stop"],
        );
    }
}
