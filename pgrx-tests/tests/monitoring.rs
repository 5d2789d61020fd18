//! Monitoring and retention against a real cluster: sync metrics, alerts that open,
//! deduplicate and resolve with a NOTIFY, health(), metrics() in the Prometheus format,
//! and cleanup().

use postgres::Client;
use pullsync_tests::db::{connect, connect_as, fresh_extension_database, fresh_role};
use pullsync_tests::ports::feed_url;
use serde_json::Value;
use std::time::Duration;

/// The cluster's feed server (`cargo xtask test` starts it for database it_workers).
const PROVIDER: &str = "it_workers";
const KEY: &str = "monitor-key-0123456789abcdef";

fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

fn json(db: &mut Client, sql: &str) -> Value {
    db.query_one(sql, &[]).unwrap().get(0)
}

fn pull(db: &mut Client) -> Value {
    json(db, "SELECT pullsync.feed_pull('monitor')")
}

/// The payloads that arrive until the connection has been quiet for two seconds.
fn notifications(listener: &mut Client) -> Vec<Value> {
    use postgres::fallible_iterator::FallibleIterator;
    let mut payloads = Vec::new();
    let mut pending = listener.notifications();
    let mut arriving = pending.timeout_iter(Duration::from_secs(2));
    while let Some(n) = arriving.next().unwrap() {
        payloads.push(serde_json::from_str(n.payload()).unwrap());
    }
    payloads
}

#[test]
fn alerts_open_once_notify_listeners_and_resolve_when_healthy() {
    let mut provider = connect(PROVIDER);
    provider
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_pullsync")
        .unwrap();
    provider
        .execute(
            "SELECT pullsync.feed_add_consumer('monitor', $1, 100000)",
            &[&KEY],
        )
        .unwrap();
    let mut db = fresh_extension_database("it_monitoring");
    db.batch_execute("ALTER DATABASE it_monitoring SET pullsync.alert_error_runs = 3")
        .unwrap();
    let mut db = connect("it_monitoring");
    let mut listener = connect("it_monitoring");
    listener.batch_execute("LISTEN pullsync_alerts").unwrap();
    // Any role that may connect may listen, whatever it may read.
    fresh_role(&mut db, "it_alert_eavesdropper");
    let mut eavesdropper = connect_as("it_monitoring", "it_alert_eavesdropper");
    eavesdropper
        .batch_execute("LISTEN pullsync_alerts")
        .unwrap();

    // A source that cannot be reached: every pull fails.
    db.execute(
        "SELECT pullsync.feed_add_source('monitor', 'http://127.0.0.1:9', $1, max_retries => 0, timeout => '1 s')",
        &[&KEY],
    )
    .unwrap();
    assert_eq!(
        json(&mut db, "SELECT pullsync.health()")["status"],
        "healthy"
    );
    for _ in 0..3 {
        assert_eq!(pull(&mut db)["status"], "failed");
    }
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM pullsync.sync_metrics WHERE source = 'feed:monitor' AND errors = 1"),
        3
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.alerts WHERE alert_type = 'error_rate'"
        ),
        1,
        "one alert for a breach that persists"
    );
    let alert = db
        .query_one(
            "SELECT source, severity, resolved_at IS NULL FROM pullsync.alerts WHERE alert_type = 'error_rate'",
            &[],
        )
        .unwrap();
    assert_eq!(alert.get::<_, String>(0), "feed:monitor");
    assert_eq!(alert.get::<_, String>(1), "critical");
    assert!(alert.get::<_, bool>(2));
    let health = json(&mut db, "SELECT pullsync.health()");
    assert_eq!(health["status"], "failing", "{health}");
    assert_eq!(health["reasons"][0]["alert_type"], "error_rate");

    let mut notified = notifications(&mut listener);
    assert_eq!(notified.len(), 1, "exactly one NOTIFY for the opened alert");
    let opened = notified.remove(0);
    assert_eq!(opened["event"], "opened");
    assert_eq!(opened["alert_type"], "error_rate");
    // The payload names the alert, not the tenant's source, message or details: those
    // are read from pullsync.alerts by who may.
    let keys: Vec<&String> = opened.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["alert_type", "created_at", "event", "id", "severity"],
        "{opened}"
    );
    let source: String = db
        .query_one(
            "SELECT source FROM pullsync.alerts WHERE id = $1",
            &[&opened["id"].as_i64().unwrap()],
        )
        .unwrap()
        .get(0);
    assert_eq!(source, "feed:monitor");
    let overheard = notifications(&mut eavesdropper);
    assert_eq!(overheard.len(), 1, "{overheard:?}");
    assert!(
        !overheard[0].to_string().contains("monitor"),
        "a role without grants learns no source from the payload: {}",
        overheard[0]
    );

    // The source is fixed; three good pulls bring the error rate back to zero.
    db.execute(
        "SELECT pullsync.feed_add_source('monitor', $1, $2, batch_size => 5000, max_retries => 0)",
        &[&feed_url(), &KEY],
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(pull(&mut db)["status"], "completed");
    }
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.alerts WHERE resolved_at IS NULL"
        ),
        0
    );
    assert_eq!(
        json(&mut db, "SELECT pullsync.health()")["status"],
        "healthy"
    );
    let resolved = notifications(&mut listener);
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["event"], "resolved");
    assert_eq!(resolved[0]["alert_type"], "error_rate");

    // Lag: a source not pulled successfully for longer than the threshold.
    db.batch_execute(
        "SET pullsync.alert_lag = 60;
         UPDATE pullsync.sync_metric_totals SET last_success_at = now() - interval '10 minutes'
          WHERE source = 'feed:monitor';",
    )
    .unwrap();
    let checked = json(&mut db, "SELECT pullsync.check_alerts()");
    assert_eq!(checked["opened"], 1, "{checked}");
    assert_eq!(
        json(&mut db, "SELECT pullsync.check_alerts()")["opened"],
        0,
        "no second alert"
    );
    let lag = db
        .query_one(
            "SELECT severity, message FROM pullsync.alerts WHERE alert_type = 'lag' AND resolved_at IS NULL",
            &[],
        )
        .unwrap();
    assert_eq!(lag.get::<_, String>(0), "critical");
    assert!(lag
        .get::<_, String>(1)
        .contains("no successful pull for 10min"));
    assert_eq!(pull(&mut db)["status"], "completed");
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM pullsync.alerts WHERE alert_type = 'lag' AND resolved_at IS NOT NULL"),
        1
    );
    provider
        .batch_execute("DELETE FROM pullsync.feed_consumers WHERE consumer_id = 'monitor'")
        .unwrap();
}

#[test]
fn metrics_are_valid_prometheus_text() {
    let mut db = fresh_extension_database("it_metrics");
    db.batch_execute(
        "INSERT INTO pullsync.feed_sources (consumer_id, base_url, api_key_encrypted)
         VALUES ('partner.eu-1', 'http://127.0.0.1:9', 'v1:unused');
         INSERT INTO pullsync.sync_metric_totals (source, runs, items, attempts, errors, last_run_at, last_success_at, last_duration_ms)
         VALUES ('feed:partner.eu-1', 4, 1234, 10, 1, now(), now() - interval '90 s', 2500),
                ('maintenance', 1, 7, 1, 0, now(), NULL, 12);",
    )
    .unwrap();
    let text: String = db
        .query_one("SELECT pullsync.metrics()", &[])
        .unwrap()
        .get(0);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |name: &str, source: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("source") == Some(source))
            .unwrap_or_else(|| panic!("{name}{{source={source}}} missing in\n{text}"))
            .value
            .clone()
    };
    use prometheus_parse::Value::{Counter, Gauge};
    assert_eq!(
        sample("pullsync_items_total", "feed:partner.eu-1"),
        Counter(1234.0)
    );
    assert_eq!(
        sample("pullsync_errors_total", "feed:partner.eu-1"),
        Counter(1.0)
    );
    assert_eq!(sample("pullsync_runs_total", "maintenance"), Counter(1.0));
    assert_eq!(
        sample("pullsync_jobs_running", "feed:partner.eu-1"),
        Gauge(0.0)
    );
    assert_eq!(
        sample("pullsync_last_run_duration_seconds", "feed:partner.eu-1"),
        Gauge(2.5)
    );
    match sample("pullsync_lag_seconds", "feed:partner.eu-1") {
        Gauge(lag) => assert!((89.0..600.0).contains(&lag), "lag {lag}"),
        other => panic!("lag is {other:?}"),
    }
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.metric == "pullsync_lag_seconds"
                && s.labels.get("source") == Some("maintenance")),
        "maintenance has no lag"
    );
    for s in &scrape.samples {
        assert!(
            matches!(s.value, Counter(_) | Gauge(_)),
            "{} is typed: {:?}",
            s.metric,
            s.value
        );
        assert!(scrape.docs.contains_key(&s.metric), "{} has HELP", s.metric);
    }
    // Every line is a comment or `name{labels} value`.
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP pullsync_")
                || line.starts_with("# TYPE pullsync_")
                || line.starts_with("pullsync_"),
            "{line}"
        );
    }
}

#[test]
fn cleanup_removes_only_what_is_due() {
    let mut db = fresh_extension_database("it_cleanup");
    db.batch_execute(
        "SELECT pullsync.feed_add_source('src', 'http://127.0.0.1:9', 'cleanup-key-0123456789');
         INSERT INTO pullsync.system_job_logs (job_type, status, started_at, finished_at) VALUES
             ('old', 'completed', now() - interval '40 days', now() - interval '40 days'),
             ('new', 'completed', now() - interval '1 day', now() - interval '1 day'),
             ('old-running', 'running', now() - interval '40 days', NULL);
         INSERT INTO pullsync.sync_logs (job_type, source, consumer_id, status, started_at, finished_at) VALUES
             ('feed_incremental', 'feed', 'src', 'completed', now() - interval '31 days', now() - interval '31 days'),
             ('feed_incremental', 'feed', 'src', 'completed', now() - interval '29 days', now() - interval '29 days');
         INSERT INTO pullsync.jobs (kind, state, created_at, finished_at) VALUES
             ('feed_pull', 'completed', now() - interval '40 days', now() - interval '40 days'),
             ('feed_pull', 'completed', now() - interval '2 days', now() - interval '2 days'),
             ('threads_sync', 'running', now() - interval '40 days', NULL);
         INSERT INTO pullsync.jobs (parent_id, kind, state, finished_at)
             SELECT id, 'threads_account', 'completed', finished_at FROM pullsync.jobs WHERE created_at < now() - interval '39 days' AND state = 'completed';
         INSERT INTO pullsync.feed_quarantine (consumer_id, stream, item_id, reason, item, quarantined_at, resolved_at) VALUES
             ('src', 'messages', 'q1', 'resolved long ago', '{}', now() - interval '41 days', now() - interval '40 days'),
             ('src', 'messages', 'q2', 'resolved lately', '{}', now() - interval '41 days', now() - interval '1 day'),
             ('src', 'messages', 'q3', 'still waiting', '{}', now() - interval '41 days', NULL);
         INSERT INTO pullsync.sync_checkpoints (consumer_id, stream, mode, items, created_at) VALUES
             ('src', 'messages', 'incremental', 1, now() - interval '10 days'),
             ('src', 'messages', 'incremental', 1, now() - interval '1 day'),
             ('src', 'conversations', 'incremental', 1, now() - interval '10 days'),
             ('src', 'conversations', 'incremental', 1, now() - interval '9 days');
         INSERT INTO pullsync.alerts (alert_type, source, severity, message, created_at, resolved_at) VALUES
             ('lag', 'a', 'warning', 'old, resolved', now() - interval '41 days', now() - interval '40 days'),
             ('lag', 'b', 'warning', 'recent, resolved', now() - interval '2 days', now() - interval '1 day'),
             ('lag', 'c', 'warning', 'old, open', now() - interval '40 days', NULL);
         INSERT INTO pullsync.reconciliation_runs (source, consumer_id, window_start, window_end, status, started_at) VALUES
             ('feed', 'src', now() - interval '41 days', now() - interval '40 days', 'success', now() - interval '40 days'),
             ('feed', 'src', now() - interval '2 days', now() - interval '1 day', 'success', now() - interval '1 day');
         INSERT INTO pullsync.sync_metrics (source, job_type, status, duration_ms, recorded_at) VALUES
             ('feed:src', 'feed_incremental', 'completed', 1, now() - interval '40 days'),
             ('feed:src', 'feed_incremental', 'completed', 1, now() - interval '1 day');",
    )
    .unwrap();
    let account: uuid::Uuid = db
        .query_one(
            "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', '9001', 'keeper',
                                                 'token-cleanup-0123456789', now() + interval '30 days')",
            &[],
        )
        .unwrap()
        .get(0);
    db.execute(
        "WITH p AS (
             INSERT INTO pullsync.workspace_threads_posts (workspace_threads_account_id, threads_post_id, media_type, published_at)
             VALUES ($1, 'p1', 'TEXT_POST', now() - interval '300 days'), ($1, 'p2', 'TEXT_POST', now() - interval '300 days')
             RETURNING id, threads_post_id)
         INSERT INTO pullsync.workspace_threads_post_metrics
                (workspace_threads_account_id, workspace_threads_post_id, views, likes, replies, reposts, quotes, shares, captured_at)
         SELECT $1, p.id, a.age, 0, 0, 0, 0, 0, now() - make_interval(days => a.age)
           FROM p JOIN (VALUES ('p1', 100), ('p1', 50), ('p1', 10), ('p2', 200)) a(post, age) ON a.post = p.threads_post_id",
        &[&account],
    )
    .unwrap();
    // Link clicks (two old snapshots of one link, one old of another) and demographics
    // (an old and a newest day of one breakdown, an old only of another).
    db.execute(
        "WITH l AS (
             INSERT INTO pullsync.workspace_threads_account_links
                    (workspace_threads_account_id, link_url, current_clicks, clicks_snapshot_at)
             VALUES ($1, 'https://a', 7, now() - interval '40 days'), ($1, 'https://b', 9, now() - interval '90 days')
             RETURNING link_url)
         INSERT INTO pullsync.workspace_threads_account_link_clicks
                (workspace_threads_account_id, link_url, clicks, captured_at)
         VALUES ($1, 'https://a', 3, now() - interval '60 days'), ($1, 'https://a', 7, now() - interval '40 days'),
                ($1, 'https://b', 9, now() - interval '90 days')",
        &[&account],
    )
    .unwrap();
    db.execute(
        "INSERT INTO pullsync.workspace_threads_follower_demographics
                (workspace_threads_account_id, snapshot_date, breakdown, followers, captured_at)
         VALUES ($1, current_date - 60, 'age', '{\"18-24\": 1}', now() - interval '60 days'),
                ($1, current_date - 40, 'age', '{\"18-24\": 2}', now() - interval '40 days'),
                ($1, current_date - 50, 'gender', '{\"F\": 2}', now() - interval '50 days')",
        &[&account],
    )
    .unwrap();
    let totals_before = count(&mut db, "SELECT count(*) FROM pullsync.sync_metric_totals");

    let first = json(&mut db, "SELECT pullsync.cleanup()");
    let removed = &first["removed"];
    let expected = [
        ("system_job_logs", 1),
        ("sync_logs", 1),
        ("jobs", 1),
        ("sync_checkpoints", 2),
        ("alerts", 1),
        ("reconciliation_runs", 1),
        ("sync_metrics", 1),
        ("post_snapshots", 0),
        ("feed_quarantine", 1),
    ];
    for (key, n) in expected {
        assert_eq!(removed[key], n, "{key}: {first}");
    }
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM pullsync.jobs"),
        2,
        "the old run's unit went with it"
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM pullsync.feed_quarantine"),
        2,
        "an item still waiting stays however old"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.system_job_logs WHERE job_type = 'old-running'"
        ),
        1
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.sync_checkpoints WHERE stream = 'conversations'"
        ),
        1,
        "a stream's newest checkpoint stays however old"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.workspace_threads_post_metrics"
        ),
        4
    );
    assert!(
        count(&mut db, "SELECT count(*) FROM pullsync.sync_metric_totals") >= totals_before,
        "totals are never removed"
    );

    db.batch_execute("SET pullsync.snapshot_retention = '30d'")
        .unwrap();
    let second = json(&mut db, "SELECT pullsync.cleanup()");
    assert_eq!(second["removed"]["post_snapshots"], 2, "{second}");
    assert_eq!(
        second["removed"]["link_click_snapshots"], 1,
        "each link's newest stays: {second}"
    );
    assert_eq!(
        second["removed"]["demographics_snapshots"], 1,
        "each breakdown's newest day stays: {second}"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.threads_follower_demographics WHERE followers = 2"
        ),
        2,
        "the view shows each breakdown's newest day"
    );
    let kept: Vec<i64> = db
        .query(
            "SELECT views FROM pullsync.workspace_threads_post_metrics ORDER BY views",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept, [10, 200], "recent ones and each post's newest stay");
    assert_eq!(second["total"], 4);
    assert!(
        db.batch_execute("DELETE FROM pullsync.workspace_threads_post_metrics")
            .is_err(),
        "outside cleanup(), snapshots still refuse deletion"
    );
}
