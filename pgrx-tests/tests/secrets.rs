//! No plaintext token or API key reaches the server log, any table, an error message or
//! pg_stat_activity — after a run full of failures, when secrets are most often echoed.

use postgres::Client;
use pullsync_tests::db::connect;
use pullsync_tests::ports::feed_url;
use pullsync_tests::sim::faults::{FaultKind, FaultSpec};
use pullsync_tests::sim::SimConfig;
use pullsync_tests::threads::{run_scheduled_sync, threads_fixture};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The feed server of the test cluster (tests/feed.rs) and its database.
const PROVIDER: &str = "it_workers";
const CONSUMER_KEY: &str = "secret-consumer-key-71d3a9";
const WRONG_KEY: &str = "secret-wrong-key-0c55e2";

/// Every row of every table of the database's own schemas, as text.
fn all_rows(db: &mut Client) -> String {
    let tables: Vec<String> = db
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
              WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .iter()
        .map(|t| {
            db.query_one(
                &format!("SELECT coalesce(string_agg(x::text, E'\\n'), '') FROM {t} x"),
                &[],
            )
            .unwrap()
            .get::<_, String>(0)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn error_text(e: postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {:?} {:?}", db.message(), db.detail(), db.hint()),
        None => e.to_string(),
    }
}

#[test]
fn no_plaintext_secret_reaches_logs_tables_errors_or_activity() {
    let mut config = SimConfig::small(4, 40);
    config.faults = vec![
        FaultSpec::everywhere(FaultKind::ServerError { status: 500 }, 0.05),
        FaultSpec::everywhere(FaultKind::MalformedJson, 0.02),
        FaultSpec::everywhere(FaultKind::TooManyRequests { retry_after: 1 }, 0.02),
    ];
    let mut f = threads_fixture("it_secrets", &config);
    f.sim.add_fault(FaultSpec {
        kind: FaultKind::InvalidToken,
        account: Some(f.sim.accounts()[1].0.clone()),
        endpoint: None,
        times: None,
        probability: None,
        page: None,
    });
    let tokens: Vec<String> = f.sim.accounts().into_iter().map(|a| a.2).collect();

    // Watch pg_stat_activity from another session for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut watch = connect("postgres");
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for row in watch
                    .query(
                        "SELECT coalesce(query, '') || ' ' || coalesce(application_name, '') FROM pg_stat_activity",
                        &[],
                    )
                    .unwrap()
                {
                    seen.push(row.get::<_, String>(0));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            seen
        })
    };

    let mut errors = Vec::new();
    for _ in 0..2 {
        errors.push(run_scheduled_sync(&mut f.db).to_string());
    }
    let account = f.accounts[1].0;
    errors.push(
        f.db.query_one(
            "SELECT pullsync.threads_sync_account($1)::text",
            &[&account],
        )
        .unwrap()
        .get::<_, String>(0),
    );
    // A token refused for being expired, passed as a parameter as the docs say.
    let refused = f.db.query_one(
        "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', '777', 'eve', $1, now() - interval '1 day')",
        &[&tokens[0]],
    );
    errors.push(error_text(
        refused.expect_err("an expired token is refused"),
    ));

    // The feed: a source with the right key and one with a wrong key.
    let mut provider = connect(PROVIDER);
    provider
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_pullsync")
        .unwrap();
    provider
        .execute(
            "DELETE FROM pullsync.feed_consumers WHERE consumer_id = 'secrets'",
            &[],
        )
        .unwrap();
    provider
        .execute(
            "SELECT pullsync.feed_add_consumer('secrets', $1)",
            &[&CONSUMER_KEY],
        )
        .unwrap();
    for (source, key) in [("secrets", CONSUMER_KEY), ("secrets-wrong", WRONG_KEY)] {
        f.db.execute(
            "SELECT pullsync.feed_add_source($1, $2, $3, timeout => '5 s', max_retries => 0)",
            &[&source, &feed_url(), &key],
        )
        .unwrap();
        match f.db.query_one(
            "SELECT pullsync.feed_pull($1, 'incremental')::text",
            &[&source],
        ) {
            Ok(row) => errors.push(row.get::<_, String>(0)),
            Err(e) => errors.push(error_text(e)),
        }
    }
    assert!(
        errors
            .iter()
            .any(|e| e.contains("401") || e.contains("nauthorized") || e.contains("key")),
        "the wrong key was refused: {errors:?}"
    );

    stop.store(true, Ordering::Relaxed);
    let activity = watcher.join().unwrap();
    let log_path =
        std::path::Path::new(&std::env::var("PULLSYNC_TEST_PGDATA").expect("PULLSYNC_TEST_PGDATA"))
            .parent()
            .unwrap()
            .join("server.log");
    let log = std::fs::read_to_string(&log_path)
        .unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
    assert!(!log.is_empty());
    let rows = all_rows(&mut f.db) + &all_rows(&mut provider);

    let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    secrets.extend([CONSUMER_KEY, WRONG_KEY]);
    let (errors, sampled) = (errors.join("\n"), activity.join("\n"));
    let places: [(&str, &str); 4] = [
        ("server log", &log),
        ("tables", &rows),
        ("errors", &errors),
        ("pg_stat_activity", &sampled),
    ];
    let mut hits = Vec::new();
    for secret in &secrets {
        for (place, text) in &places {
            if text.contains(secret) {
                hits.push(format!("{place} contains {}…", &secret[..6]));
            }
        }
    }
    assert!(activity.len() > 10, "pg_stat_activity was sampled");
    assert!(hits.is_empty(), "{hits:?}");
}

/// The cluster's sealing key, read from its key file beside pgdata (as root, like an
/// operator would).
fn sealing_key_text() -> String {
    let path =
        std::path::Path::new(&pullsync_tests::server::pgdata()).with_file_name("pullsync.key");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Everything a role can learn about settings and files through SQL, each answer as text
/// (an error counts as its message).
fn key_probes(db: &mut Client) -> Vec<(String, String)> {
    let probes = [
        "SHOW pullsync.encryption_key",
        "SHOW pullsync.encryption_key_file",
        "SELECT current_setting('pullsync.encryption_key', true)",
        "SELECT string_agg(name || '=' || coalesce(setting, '') || coalesce(reset_val, '') || coalesce(boot_val, ''), ',') FROM pg_settings",
        "SELECT string_agg(name || '=' || coalesce(setting, ''), ',') FROM pg_file_settings",
        "SELECT pg_read_file(current_setting('pullsync.encryption_key_file'))",
        "SELECT pg_read_file(current_setting('config_file'))",
        "SELECT pg_read_file(current_setting('data_directory') || '/postgresql.auto.conf')",
        "SELECT pg_read_file('postgresql.conf')",
        "SELECT pullsync.health()::text",
        "SELECT pullsync.metrics()::text",
        "SELECT pullsync.rotate_encryption_key('MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=')::text",
    ];
    probes
        .iter()
        .map(|sql| {
            let answer = match db.query_one(*sql, &[]) {
                Ok(row) => row
                    .try_get::<_, Option<String>>(0)
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                Err(e) => error_text(e),
            };
            (sql.to_string(), answer)
        })
        .collect()
}

#[test]
fn monitoring_and_settings_roles_get_no_key_material() {
    let key = sealing_key_text();
    assert_eq!(key.len(), 44, "a base64 key of 32 bytes");
    let database = "it_key_readers";
    let mut admin = pullsync_tests::db::fresh_extension_database(database);
    for (role, grant) in [
        ("it_monitor", "pg_monitor"),
        ("it_settings_reader", "pg_read_all_settings"),
        ("it_stats_reader", "pg_read_all_stats"),
    ] {
        pullsync_tests::db::fresh_role(&mut admin, role);
        admin
            .batch_execute(&format!("GRANT {grant} TO {role}"))
            .unwrap();
        let mut db = pullsync_tests::db::connect_as(database, role);
        let answers = key_probes(&mut db);
        for (sql, answer) in &answers {
            assert!(
                !answer.contains(&key) && !answer.contains(key.trim_end_matches('=')),
                "{role} ({grant}) reads key material with: {sql}"
            );
        }
        // The paths exist and answer: the probes are not vacuous.
        let settings = &answers[3].1;
        assert!(
            settings.contains("pullsync.http_timeout="),
            "{role}: {settings}"
        );
        let file_read = &answers[5].1;
        assert!(
            file_read.contains("permission denied"),
            "{role}: {file_read}"
        );
    }
}

#[test]
fn the_key_cannot_be_a_setting_and_its_file_must_be_private() {
    let mut db = pullsync_tests::db::fresh_extension_database("it_key_file");
    let key = sealing_key_text();
    let err = db
        .batch_execute(&format!("SET pullsync.encryption_key = '{key}'"))
        .unwrap_err();
    let db_err = err.as_db_error().expect("a server error");
    assert_eq!(db_err.code().code(), "22023");
    assert!(db_err
        .hint()
        .unwrap_or_default()
        .contains("pullsync.encryption_key_file"));
    assert!(!error_text(err).contains(key.trim_end_matches('=')));

    // A copy of the key file that the group may read is refused, naming the file and mode.
    let open_copy = std::env::temp_dir().join("pullsync-open-key");
    std::fs::write(&open_copy, &key).unwrap();
    std::process::Command::new("chmod")
        .arg("0644")
        .arg(&open_copy)
        .status()
        .unwrap();
    std::process::Command::new("chown")
        .arg("postgres:postgres")
        .arg(&open_copy)
        .status()
        .unwrap();
    db.batch_execute(&format!(
        "SET pullsync.encryption_key_file = '{}'",
        open_copy.display()
    ))
    .unwrap();
    let err = db
        .batch_execute(
            "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', '1', 'a', 't', now() + interval '1 day')",
        )
        .unwrap_err();
    let db_err = err.as_db_error().expect("a server error");
    assert_eq!(db_err.code().code(), "55000");
    assert!(db_err.message().contains("0644"), "{}", db_err.message());
    assert!(!db_err.message().contains(&key));
    std::process::Command::new("chmod")
        .arg("0600")
        .arg(&open_copy)
        .status()
        .unwrap();
    db.batch_execute(
        "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', '1', 'a', 't', now() + interval '1 day')",
    )
    .unwrap();
    std::fs::remove_file(&open_copy).unwrap();
}
