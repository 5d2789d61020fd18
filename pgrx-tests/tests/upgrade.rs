//! Upgrade from a released version as it landed: `cargo xtask test` builds each release
//! from its commit and starts a cluster on it (xtask/src/upgrade.rs, xtask/src/releases.rs),
//! then runs this test once per release. It fills every table through real syncs of every
//! source that version has, installs this build's package over the running server,
//! restarts, sees the workers wait for the update, runs `ALTER EXTENSION pg_pullsync
//! UPDATE` along the chain of upgrade scripts (from 0.1.0 one database steps through
//! 0.2.0 explicitly, the other takes the whole chain at once), and checks that the
//! upgraded catalog equals a fresh install, that no row changed, and that syncs go on.

use pullsync_tests::catalog::{describe, differences, sequence_values, table_digests};
use pullsync_tests::db::{connect, fresh_extension_database};
use pullsync_tests::fill::{env, fill, json, older, version, DATA, PROVIDER};
use pullsync_tests::server;
use pullsync_tests::threads::count;
use pullsync_tests::workers::wait_for;
use std::process::Command;
use std::time::{Duration, Instant};

/// What each version added, oldest first: columns (`column` or `table.column`) and tables
/// that start empty or derived, so the row comparison leaves them out, and sequences.
struct Added {
    version: &'static str,
    columns: &'static [&'static str],
    tables: &'static [&'static str],
    sequences: &'static [&'static str],
}

const ADDED: &[Added] = &[
    Added {
        version: "0.2.0",
        columns: &[
            "posts_listing_resume_after",
            "posts_listing_completed_at",
            "invalidated_at",
            "deleted_at",
            "notes",
            "feed_source",
            "workspace_threads_post_metrics.workspace_threads_account_id",
            "workspace_threads_post_metrics_deltas.workspace_threads_account_id",
        ],
        tables: &[
            "feed_epoch",
            "feed_quarantine",
            "rest_quarantine",
            "rest_sources",
        ],
        sequences: &["feed_quarantine_id_seq", "rest_quarantine_id_seq"],
    },
    Added {
        version: "0.3.0",
        columns: &[
            "rate_limited_until",
            "other_fields",
            "subject",
            "rest_sources.refresh_token_encrypted",
            "rest_sources.access_token_encrypted",
            "rest_sources.access_token_expires_at",
            "rest_sources.needs_reauth_at",
            "rest_sources.needs_reauth_reason",
        ],
        tables: &[
            "workspace_threads_account_links",
            "workspace_threads_account_link_clicks",
            "workspace_threads_account_link_clicks_deltas",
            "workspace_threads_follower_demographics",
            "rest_parent_state",
        ],
        sequences: &[
            "workspace_threads_account_link_clicks_id_seq",
            "workspace_threads_account_link_clicks_deltas_id_seq",
        ],
    },
];

fn log_contains(needle: &str) -> bool {
    std::fs::read_to_string(server::server_log()).is_ok_and(|log| log.contains(needle))
}

#[test]
#[ignore = "needs the cluster of the previous version that `cargo xtask test` prepares"]
fn upgrade_from_the_previous_version_keeps_every_row_and_matches_a_fresh_install() {
    let from = env("PULLSYNC_UPGRADE_FROM");
    let feed_url = env("PULLSYNC_UPGRADE_FEED_URL");

    // The previous version, filled as a user would fill it.
    let mut filled = fill(&from, &feed_url);
    let (before, provider_before) = filled.digests();
    let sequences_before = sequence_values(&mut filled.fx.db);
    let rows: i64 = before
        .values()
        .chain(provider_before.values())
        .map(|(n, _)| n)
        .sum();

    // The new library, installed by rename while the old one runs: the server stays up.
    let install = env("PULLSYNC_UPGRADE_INSTALL");
    let mut words = install.split_whitespace();
    let status = pullsync_tests::wait::status(
        Command::new(words.next().expect("a command")).args(words),
        &format!("the install of the new library ({install})"),
        Duration::from_secs(600),
    );
    assert!(status.success(), "{install}: {status}");
    assert_eq!(count(&mut connect("postgres"), "SELECT 1::bigint"), 1);
    server::restart("fast");

    // Workers on the new library wait, saying why, until the update has run.
    let mut provider = connect(PROVIDER);
    wait_for(
        &mut provider,
        "the workers' wait for the update",
        Duration::from_secs(60),
        |_| log_contains("waiting for ALTER EXTENSION pg_pullsync UPDATE"),
    );
    assert_eq!(
        table_digests(&mut provider, &[]),
        provider_before,
        "the new library and the restart change no row"
    );
    // A run queued in this window (pg_cron goes on calling) waits for the update too.
    let waiting = json(&mut provider, "SELECT pullsync.threads_scheduled_sync()");
    let waiting = waiting["job_id"].as_i64().expect("a queued run");
    std::thread::sleep(Duration::from_secs(3));
    let state: String = provider
        .query_one("SELECT state FROM pullsync.jobs WHERE id = $1", &[&waiting])
        .unwrap()
        .get(0);
    assert_eq!(state, "queued", "no job runs before the update");
    let mut data = connect(DATA);
    let target: String = data
        .query_one(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_pullsync'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_ne!(target, from);

    let started = Instant::now();
    // From 0.1.0 the data database steps through 0.2.0 as its own update did; the provider
    // below takes the whole chain in one command.
    if older(&from, "0.2.0") {
        data.batch_execute("ALTER EXTENSION pg_pullsync UPDATE TO '0.2.0'")
            .unwrap();
        assert_eq!(version(&mut data), "0.2.0");
    }
    data.batch_execute("ALTER EXTENSION pg_pullsync UPDATE")
        .unwrap();
    let data_took = started.elapsed();
    provider
        .batch_execute("ALTER EXTENSION pg_pullsync UPDATE")
        .unwrap();
    assert_eq!(version(&mut data), target);
    assert_eq!(version(&mut provider), target);
    println!(
        "upgrade: ALTER EXTENSION pg_pullsync UPDATE ({from} → {target}) took {} ms on {rows} rows",
        data_took.as_millis()
    );

    // (a) The upgraded catalog is a fresh install's, object for object.
    let mut fresh = fresh_extension_database("upgrade_fresh");
    let fresh_catalog = describe(&mut fresh);
    for (name, db) in [
        ("upgrade_data", &mut data),
        ("upgrade_provider", &mut provider),
    ] {
        let upgraded = describe(db);
        let (only_upgraded, only_fresh) = differences(&upgraded, &fresh_catalog);
        assert!(
            only_upgraded.is_empty() && only_fresh.is_empty(),
            "{name}: the upgraded catalog differs from a fresh install\n only after the upgrade:\n  {}\n only in a fresh install:\n  {}",
            only_upgraded.join("\n  "),
            only_fresh.join("\n  ")
        );
    }
    println!(
        "upgrade: {} catalog objects equal a fresh install's",
        fresh_catalog.len()
    );

    // (b) No row lost or changed (the provider's were checked before its run was queued).
    // The columns and tables later versions add start empty or derived; they are left out
    // of the comparison (a table.column only there).
    let added: Vec<&Added> = ADDED.iter().filter(|a| older(&from, a.version)).collect();
    let added_columns: Vec<&str> = added.iter().flat_map(|a| a.columns).copied().collect();
    // Snapshots and deltas carry their post's account.
    for table in [
        "workspace_threads_post_metrics",
        "workspace_threads_post_metrics_deltas",
    ] {
        let total = count(&mut data, &format!("SELECT count(*) FROM pullsync.{table}"));
        assert!(total > 0, "{table}: the 0.1.0 sync wrote none");
        assert_eq!(
            count(
                &mut data,
                &format!(
                    "SELECT count(*) FROM pullsync.{table} m JOIN pullsync.workspace_threads_posts p
                         ON p.id = m.workspace_threads_post_id
                        AND p.workspace_threads_account_id = m.workspace_threads_account_id"
                )
            ),
            total,
            "{table}"
        );
    }
    let mut after = table_digests(&mut data, &added_columns);
    let mut added_tables: Vec<String> = after
        .keys()
        .filter(|t| !before.contains_key(*t))
        .cloned()
        .collect();
    added_tables.sort();
    let mut expected_tables: Vec<&str> = added.iter().flat_map(|a| a.tables).copied().collect();
    expected_tables.sort();
    assert_eq!(added_tables, expected_tables);
    for table in &added_tables {
        // An epoch starts with the update; the other added tables start empty.
        let rows = after.remove(table).map(|(rows, _)| rows);
        let wanted = if table == "feed_epoch" { 1 } else { 0 };
        assert_eq!(rows, Some(wanted), "{table}");
    }
    // The consumer's rows came from its one source that stored items, and say so; the
    // provider's stay its own.
    assert_eq!(
        count(
            &mut data,
            "SELECT count(*) FROM pullsync.conversations WHERE feed_source = 'partner'"
        ),
        300
    );
    assert_eq!(
        count(
            &mut provider,
            "SELECT count(*) FROM pullsync.conversations WHERE feed_source = ''"
        ),
        300
    );
    assert_eq!(after, before);
    // Every log and reconciliation row names its subject, taken from 0.2.0's columns (a
    // REST reconciliation's from its details).
    assert_eq!(
        count(
            &mut data,
            "SELECT count(*) FROM pullsync.sync_logs
              WHERE subject IS DISTINCT FROM coalesce(workspace_threads_account_id::text, consumer_id)"
        ),
        0
    );
    assert_eq!(
        count(
            &mut data,
            "SELECT count(*) FROM pullsync.reconciliation_runs WHERE subject = ''"
        ),
        0
    );
    let mut sequences_after = sequence_values(&mut data);
    for sequence in added.iter().flat_map(|a| a.sequences) {
        assert_eq!(sequences_after.remove(*sequence), Some(None), "{sequence}");
    }
    assert_eq!(sequences_after, sequences_before);
    println!("upgrade: {rows} rows unchanged");

    // (c) Syncs go on: an incremental Threads run, the feed from its checkpoint, REST, and
    // the provider's worker back at work.
    filled.fx.db = data;
    filled.provider = provider;
    filled.assert_syncs_go_on();
    wait_for(
        &mut filled.provider,
        "the provider's workers to run the run that waited",
        Duration::from_secs(90),
        |p| pullsync_tests::workers::finished(p, waiting),
    );
}
