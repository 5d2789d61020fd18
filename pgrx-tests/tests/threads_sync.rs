//! The Threads sync against the simulator, over a real connection.

use pullsync_tests::db::{connect, sqlstate_of};
use pullsync_tests::sim::faults::{Endpoint, FaultKind, FaultSpec};
use pullsync_tests::sim::SimConfig;
use pullsync_tests::threads::{run_scheduled_sync, threads_fixture, ThreadsFixture};
use serde_json::Value;
use std::collections::HashMap;
use threads_model::PostMetrics;

/// Post metrics the simulator serves now, by Threads post id (posts with insights only).
fn sim_metrics(f: &ThreadsFixture) -> HashMap<String, PostMetrics> {
    let world = f.sim.sim.world.read().unwrap();
    world
        .accounts
        .iter()
        .flat_map(|a| a.visible_posts(world.now).iter())
        .filter(|p| p.media_type.has_insights())
        .map(|p| (p.id.clone(), p.metrics_at(world.now)))
        .collect()
}

fn stored_metrics(f: &mut ThreadsFixture) -> HashMap<String, PostMetrics> {
    f.db.query(
        "SELECT threads_post_id, current_views, current_likes, current_replies, current_reposts, current_quotes, current_shares
           FROM pullsync.workspace_threads_posts WHERE metrics_snapshot_at IS NOT NULL",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            PostMetrics { views: r.get(1), likes: r.get(2), replies: r.get(3), reposts: r.get(4), quotes: r.get(5), shares: r.get(6) },
        )
    })
    .collect()
}

#[test]
fn first_sync_then_a_day_later_gives_the_right_deltas_and_invariants() {
    let mut f = threads_fixture("it_threads_flow", &SimConfig::small(3, 60));
    let first = f.scheduled_sync();
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["total_accounts"], 3);
    assert_eq!(first["success_count"], 3);
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_posts"),
        180
    );
    let expected = sim_metrics(&f);
    assert_eq!(
        stored_metrics(&mut f),
        expected,
        "L3 equals what the API serves"
    );
    let repost_facades = f.count(
        "SELECT count(*) FROM pullsync.workspace_threads_posts WHERE media_type = 'REPOST_FACADE'",
    );
    assert!(repost_facades > 0);
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_post_metrics"),
        180 - repost_facades,
        "one snapshot per post with insights"
    );
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_account_insights"),
        3
    );
    assert_eq!(f.layer_violations(), 0);
    let published: i64 = f.count(
        "SELECT count(*) FROM pullsync.workspace_threads_posts WHERE published_at > now() - interval '200 days' AND text IS NOT NULL",
    );
    assert!(
        published > 100,
        "published_at parsed from the +0000 format and text kept"
    );

    // A day later in the simulator: metrics grew and new posts appeared. The database's
    // clock did not move, so make every post due with the tier setting.
    f.sim.advance(86_400);
    f.db.batch_execute("SET pullsync.metrics_every_run_age = '400d'")
        .unwrap();
    let before = stored_metrics(&mut f);
    let second = f.scheduled_sync();
    assert_eq!(second["status"], "completed", "{second}");
    let after = stored_metrics(&mut f);
    let expected = sim_metrics(&f);
    assert_eq!(after, expected);
    for (id, old) in &before {
        let new = &after[id];
        let delta: (i64, i64) = {
            let row = f
                .db
                .query_one(
                    "SELECT d.views_delta, d.likes_delta FROM pullsync.workspace_threads_post_metrics_deltas d
                       JOIN pullsync.workspace_threads_posts p ON p.id = d.workspace_threads_post_id
                      WHERE p.threads_post_id = $1 ORDER BY d.period_end DESC LIMIT 1",
                    &[id],
                )
                .unwrap();
            (row.get(0), row.get(1))
        };
        if new != old {
            assert_eq!(
                delta,
                (new.views - old.views, new.likes - old.likes),
                "post {id}"
            );
        }
    }
    assert!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_posts") > 180,
        "new posts after a day"
    );
    assert_eq!(f.layer_violations(), 0);
    f.db.batch_execute("SELECT pg_stat_force_next_flush()")
        .unwrap();
    let touched = f.count(
        "SELECT coalesce(sum(n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables
          WHERE schemaname = 'pullsync' AND relname IN ('workspace_threads_post_metrics', 'workspace_threads_account_insights')",
    );
    assert_eq!(touched, 0, "no snapshot was ever updated or deleted");
    let stats = f.count("SELECT count(*) FROM pullsync.threads_post_stats WHERE views_24h > 0");
    assert!(stats > 0, "the stats view shows 24 h changes");
    assert_eq!(f.count("SELECT count(*) FROM pullsync.threads_account_stats WHERE last_sync_status = 'completed'"), 3);
}

#[test]
fn a_second_run_without_clock_change_calls_far_less() {
    let mut f = threads_fixture("it_threads_tiers", &SimConfig::small(2, 150));
    f.sim.reset_counters();
    f.scheduled_sync();
    let first = f.sim.counters();
    // 2 pages of posts + insights per post with insights + account insights, per account.
    assert!(first.total >= 2 * (2 + 100 + 1), "{first:?}");
    f.sim.reset_counters();
    let second = f.scheduled_sync();
    assert_eq!(second["status"], "completed");
    let calls = f.sim.counters();
    let young = f.count(
        "SELECT count(*) FROM pullsync.workspace_threads_posts
          WHERE published_at > now() - interval '1 day' AND media_type <> 'REPOST_FACADE'",
    ) as u64;
    // Per account: one page (stops at known posts) and one insights call, plus the posts
    // younger than a day (refreshed every run).
    assert_eq!(calls.by_endpoint.get("threads").copied().unwrap_or(0), 2);
    assert_eq!(
        calls
            .by_endpoint
            .get("account_insights")
            .copied()
            .unwrap_or(0),
        2
    );
    assert_eq!(
        calls
            .by_endpoint
            .get("media_insights")
            .copied()
            .unwrap_or(0),
        young
    );
    assert!(
        calls.total * 10 < first.total,
        "second {calls:?} vs first {first:?}"
    );
}

#[test]
fn seed_style_settings_call_one_post_at_a_time_and_pause_between_batches() {
    let config = SimConfig {
        latency_ms: 20,
        ..SimConfig::small(4, 30)
    };
    let mut f = threads_fixture("it_threads_pacing", &config);
    f.db.batch_execute(
        "SET pullsync.http_concurrency = 8; SET pullsync.batch_size = 2;
         SET pullsync.account_concurrency = 1; SET pullsync.batch_delay = '300ms';",
    )
    .unwrap();
    f.sim.reset_counters();
    let started = std::time::Instant::now();
    assert_eq!(f.scheduled_sync()["status"], "completed");
    // Two batches of two accounts, each account one request at a time.
    assert!(
        f.sim.counters().max_in_flight <= 2,
        "{:?}",
        f.sim.counters()
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));

    // A day later, with every post due: the default lets an account's calls overlap.
    f.db.batch_execute(
        "RESET pullsync.account_concurrency; RESET pullsync.batch_delay; SET pullsync.batch_size = 4;
         SET pullsync.metrics_every_run_age = '400d';",
    )
    .unwrap();
    f.sim.advance(86_400);
    f.sim.reset_counters();
    assert_eq!(f.scheduled_sync()["status"], "completed");
    assert!(f.sim.counters().max_in_flight > 2, "{:?}", f.sim.counters());
}

fn fault(
    kind: FaultKind,
    account: &str,
    endpoint: Option<Endpoint>,
    times: Option<u64>,
) -> FaultSpec {
    FaultSpec {
        kind,
        account: Some(account.to_string()),
        endpoint,
        times,
        probability: None,
        page: None,
    }
}

fn logged_status(f: &mut ThreadsFixture, index: usize) -> (String, Vec<String>, Option<String>) {
    let id = f.accounts[index].0;
    let row =
        f.db.query_one(
            "SELECT status, steps_completed, error FROM pullsync.sync_logs
              WHERE workspace_threads_account_id = $1 ORDER BY id DESC LIMIT 1",
            &[&id],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn each_fault_gives_the_documented_outcome_and_leaves_the_others_synced() {
    let mut f = threads_fixture("it_threads_faults", &SimConfig::small(3, 30));
    f.db.batch_execute("SET pullsync.http_timeout = '1s'; SET pullsync.http_max_retries = 2")
        .unwrap();
    let a = f.accounts[0].1.clone();
    // (fault, expected status of account 0, words the error must contain)
    let cases: Vec<(FaultSpec, &str, &str)> = vec![
        (
            fault(FaultKind::ExpiredToken, &a, None, None),
            "skipped",
            "190/463",
        ),
        (
            fault(FaultKind::InvalidToken, &a, None, None),
            "skipped",
            "190/467",
        ),
        (
            fault(FaultKind::TokenNotFound, &a, None, None),
            "skipped",
            "code 24",
        ),
        (
            fault(
                FaultKind::Throttle {
                    code: 613,
                    status: 403,
                },
                &a,
                None,
                None,
            ),
            "skipped",
            "rate_limited (user limit): GET",
        ),
        (
            fault(
                FaultKind::Throttle {
                    code: 17,
                    status: 400,
                },
                &a,
                Some(Endpoint::AccountInsights),
                None,
            ),
            "skipped",
            "rate_limited (user limit): GET",
        ),
        (
            fault(
                FaultKind::TooManyRequests { retry_after: 30 },
                &a,
                None,
                None,
            ),
            "skipped",
            "rate_limited (user limit): GET",
        ),
        (
            fault(
                FaultKind::ServerError { status: 503 },
                &a,
                Some(Endpoint::Threads),
                Some(2),
            ),
            "completed",
            "",
        ),
        (
            fault(
                FaultKind::ServerError { status: 500 },
                &a,
                Some(Endpoint::AccountInsights),
                None,
            ),
            "partial",
            "HTTP 500",
        ),
        (
            fault(FaultKind::MalformedJson, &a, Some(Endpoint::Threads), None),
            "partial",
            "malformed answer",
        ),
        (
            fault(FaultKind::Hang, &a, Some(Endpoint::AccountInsights), None),
            "partial",
            "timed out",
        ),
        (
            fault(
                FaultKind::TruncatedBody,
                &a,
                Some(Endpoint::Threads),
                Some(1),
            ),
            "completed",
            "",
        ),
        (
            fault(FaultKind::DuplicateItems, &a, None, None),
            "completed",
            "",
        ),
        (
            fault(FaultKind::DisappearingPost, &a, None, Some(1)),
            "completed",
            "",
        ),
    ];
    for (spec, status, words) in cases {
        f.sim.clear_faults();
        f.sim.add_fault(spec.clone());
        f.sim.reset_counters();
        let run = f.scheduled_sync();
        let (logged, steps, error) = logged_status(&mut f, 0);
        assert_eq!(logged, status, "{spec:?}: {run} {error:?}");
        if !words.is_empty() {
            let error = error.unwrap_or_default();
            assert!(error.contains(words), "{spec:?}: {error}");
        }
        if status == "partial" {
            assert!(!steps.is_empty(), "partial names the steps that completed");
        }
        // A rate limit is no refusal: the token stays, the next run retries.
        let rate_limited = words.starts_with("rate_limited");
        if rate_limited {
            // The wait Meta asked for (Retry-After) holds across runs; each case here
            // starts without it.
            f.db.batch_execute(
                "UPDATE pullsync.workspace_threads_accounts SET rate_limited_until = NULL",
            )
            .unwrap();
            assert_eq!(
                f.count(&format!(
                    "SELECT count(*) FROM pullsync.workspace_threads_tokens
                      WHERE workspace_threads_account_id = '{}' AND is_primary AND invalidated_at IS NOT NULL",
                    f.accounts[0].0
                )),
                0,
                "{spec:?}"
            );
        }
        if status == "skipped" && !rate_limited {
            // The refused token is marked invalid and not used again; the user authorises
            // the app anew.
            let invalidated = f.count(&format!(
                "SELECT count(*) FROM pullsync.workspace_threads_tokens
                  WHERE workspace_threads_account_id = '{}' AND is_primary AND invalidated_at IS NOT NULL",
                f.accounts[0].0
            ));
            assert_eq!(invalidated, 1, "{spec:?}");
            let (user, name, token) = f.sim.accounts()[0].clone();
            f.db.execute(
                "SELECT pullsync.threads_add_account('11111111-1111-1111-1111-111111111111', $1, $2, $3, now() + interval '58 days')",
                &[&user, &name, &token],
            )
            .unwrap();
        }
        if matches!(
            spec.kind,
            FaultKind::Throttle { .. } | FaultKind::TooManyRequests { .. }
        ) && spec.endpoint.is_none()
        {
            assert_eq!(
                f.sim.counters().by_account[&a],
                1,
                "{spec:?}: a throttled token is not called again this run"
            );
        }
        if matches!(spec.kind, FaultKind::ExpiredToken | FaultKind::InvalidToken) {
            assert_eq!(
                f.sim.counters().by_account[&a],
                1,
                "{spec:?}: no retry loop on auth errors"
            );
        }
        for other in 1..3 {
            assert_eq!(
                logged_status(&mut f, other).0,
                "completed",
                "{spec:?}: other accounts sync"
            );
        }
        let expected_job = if rate_limited {
            "partial"
        } else if status == "completed" || status == "skipped" {
            "completed"
        } else {
            "partial"
        };
        assert_eq!(run["status"], expected_job, "{spec:?}: {run}");
    }
    assert_eq!(
        f.count("SELECT count(*) - count(DISTINCT threads_post_id) FROM pullsync.workspace_threads_posts"),
        0,
        "duplicates across pages stored once"
    );
    assert_eq!(f.layer_violations(), 0);
}

#[test]
fn two_sessions_at_once_one_runs_and_the_other_is_skipped() {
    let mut f = threads_fixture("it_threads_lock", &SimConfig::small(1, 5));
    f.db.batch_execute("BEGIN").unwrap();
    let first: Value =
        f.db.query_one("SELECT pullsync.threads_scheduled_sync()", &[])
            .unwrap()
            .get(0);
    assert!(first.get("skipped").is_none(), "{first}");
    let mut other = connect("it_threads_lock");
    other
        .batch_execute(&format!(
            "SET pullsync.threads_api_url = '{}'",
            f.sim.api_url()
        ))
        .unwrap();
    let second: Value = other
        .query_one("SELECT pullsync.threads_scheduled_sync()", &[])
        .unwrap()
        .get(0);
    assert_eq!(second["skipped"], true, "{second}");
    f.db.batch_execute("COMMIT").unwrap();
    // Committed and queued: a further call is skipped while the run is queued or running.
    let third: Value = other
        .query_one("SELECT pullsync.threads_scheduled_sync()", &[])
        .unwrap()
        .get(0);
    assert_eq!(third["skipped"], true, "{third}");
    assert_eq!(third["job_id"], first["job_id"], "{third}");
    other.batch_execute("SELECT pullsync.run_jobs()").unwrap();
    let fourth = run_scheduled_sync(&mut other);
    assert_eq!(fourth["status"], "completed", "{fourth}");
}

#[test]
fn a_lock_left_by_a_dead_or_expired_holder_is_taken_over() {
    let mut f = threads_fixture("it_threads_stale_lock", &SimConfig::small(1, 5));
    let holder = connect("it_threads_stale_lock");
    let pid: i32 = {
        let mut h = holder;
        let pid = h.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        // A live holder with time left keeps the lock.
        f.db.execute(
            "INSERT INTO pullsync.system_job_locks (name, holder_pid, holder_start, expires_at)
             SELECT 'scheduled_sync', pid, backend_start, now() + interval '10 minutes' FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .unwrap();
        assert_eq!(f.scheduled_sync()["skipped"], true);
        // The same live holder after its TTL: taken over.
        f.db.batch_execute("UPDATE pullsync.system_job_locks SET acquired_at = now() - interval '1 hour', expires_at = now() - interval '1 second'")
            .unwrap();
        assert_eq!(f.scheduled_sync()["status"], "completed");
        drop(h);
        pid
    };
    // A killed backend's lock with TTL left: its holder is gone, so it is taken over.
    f.db.execute(
        "INSERT INTO pullsync.system_job_locks (name, holder_pid, holder_start, expires_at)
         VALUES ('scheduled_sync', $1, now() - interval '1 minute', now() + interval '10 minutes')",
        &[&pid],
    )
    .unwrap();
    assert_eq!(f.scheduled_sync()["status"], "completed");
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.system_job_locks"),
        0,
        "released after the run"
    );
    let logs = f.count("SELECT count(*) FROM pullsync.system_job_logs WHERE status = 'completed' AND metadata ? 'success_count'");
    assert_eq!(logs, 2);
}

#[test]
fn token_refresh_respects_age_and_expiry_and_reseals() {
    let mut f = threads_fixture("it_threads_refresh", &SimConfig::small(3, 3));
    let (young, due, expired) = (f.accounts[0].0, f.accounts[1].0, f.accounts[2].0);
    f.db.execute(
        "UPDATE pullsync.workspace_threads_tokens SET issued_at = now() - interval '50 days', expires_at = now() + interval '3 days'
          WHERE workspace_threads_account_id = $1",
        &[&due],
    )
    .unwrap();
    f.db.execute(
        "UPDATE pullsync.workspace_threads_tokens SET issued_at = now() - interval '61 days', expires_at = now() - interval '1 day'
          WHERE workspace_threads_account_id = $1",
        &[&expired],
    )
    .unwrap();
    f.db.execute(
        "UPDATE pullsync.workspace_threads_tokens SET expires_at = now() + interval '2 days' WHERE workspace_threads_account_id = $1",
        &[&young],
    )
    .unwrap();
    let old_sealed: String = f
        .db
        .query_one("SELECT access_token_encrypted FROM pullsync.workspace_threads_tokens WHERE workspace_threads_account_id = $1", &[&due])
        .unwrap()
        .get(0);
    let old_plain = f.sim.sim.world.read().unwrap().accounts[1]
        .token
        .text
        .clone();
    let report = pullsync_tests::threads::run_token_refresh(&mut f.db);
    assert_eq!(
        report["refreshed"],
        serde_json::json!([due.to_string()]),
        "{report}"
    );
    assert_eq!(
        report["expired"],
        serde_json::json!([expired.to_string()]),
        "{report}"
    );
    assert_eq!(
        report["not_yet_refreshable"],
        serde_json::json!([young.to_string()]),
        "{report}"
    );
    assert!(
        !report.to_string().contains("THAA"),
        "no token text in the report"
    );
    let new_plain = f.sim.sim.world.read().unwrap().accounts[1]
        .token
        .text
        .clone();
    assert_ne!(new_plain, old_plain, "the simulator issued a new token");
    let (primary, revoked): (i64, i64) = {
        let r = f
            .db
            .query_one(
                "SELECT count(*) FILTER (WHERE is_primary), count(*) FILTER (WHERE revoked_at IS NOT NULL)
                   FROM pullsync.workspace_threads_tokens WHERE workspace_threads_account_id = $1",
                &[&due],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((primary, revoked), (1, 1));
    let new_sealed: String = f
        .db
        .query_one(
            "SELECT access_token_encrypted FROM pullsync.workspace_threads_tokens WHERE workspace_threads_account_id = $1 AND is_primary",
            &[&due],
        )
        .unwrap()
        .get(0);
    assert!(
        new_sealed.starts_with("v1:")
            && new_sealed != old_sealed
            && !new_sealed.contains(&new_plain)
    );
    // The re-sealed token works: the account syncs with it.
    assert_eq!(f.sync_account(1)["status"], "completed");
    assert_eq!(f.count("SELECT count(*) FROM pullsync.workspace_threads_tokens WHERE expired_reported_at IS NOT NULL"), 1);
    // The expired account is not synced by the scheduled run at all.
    let run = f.scheduled_sync();
    assert_eq!(run["total_accounts"], 2, "{run}");
}

#[test]
fn sync_account_arguments_are_checked() {
    let mut f = threads_fixture("it_threads_args", &SimConfig::small(1, 2));
    assert_eq!(
        sqlstate_of(&mut f.db, "SELECT pullsync.threads_sync_account(NULL)").as_deref(),
        Some("22004")
    );
    assert_eq!(
        sqlstate_of(
            &mut f.db,
            "SELECT pullsync.threads_sync_account('00000000-0000-0000-0000-000000000000')"
        )
        .as_deref(),
        Some("42704")
    );
    let summary = f.sync_account(0);
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(summary["posts_new"], 2);
    assert!(summary["api_calls"].as_i64().unwrap() >= 3);
}

#[test]
fn reconcile_finds_exactly_the_deleted_posts_and_writes_them_back() {
    let mut f = threads_fixture("it_threads_reconcile", &SimConfig::small(2, 40));
    assert_eq!(f.scheduled_sync()["status"], "completed");
    let account = f.accounts[0].0;
    for (sql, state) in [
        (
            "SELECT pullsync.threads_reconcile(NULL, now() - interval '1 day', now())",
            "22004",
        ),
        (
            "SELECT pullsync.threads_reconcile(gen_random_uuid(), now() - interval '1 day', now())",
            "42704",
        ),
    ] {
        assert_eq!(sqlstate_of(&mut f.db, sql).as_deref(), Some(state), "{sql}");
    }
    let reversed =
        format!("SELECT pullsync.threads_reconcile('{account}', now(), now() - interval '1 day')");
    assert_eq!(sqlstate_of(&mut f.db, &reversed).as_deref(), Some("22023"));
    let too_wide = format!(
        "SELECT pullsync.threads_reconcile('{account}', now() - interval '91 days', now())"
    );
    assert_eq!(sqlstate_of(&mut f.db, &too_wide).as_deref(), Some("22023"));
    // The simulator's posts span 180 days.
    f.db.batch_execute("SET pullsync.reconcile_max_window = '400d'")
        .unwrap();
    let window = |db: &mut postgres::Client| -> Value {
        db.query_one(
            "SELECT pullsync.threads_reconcile($1, now() - interval '400 days', now())",
            &[&account],
        )
        .unwrap()
        .get(0)
    };
    let clean = window(&mut f.db);
    assert_eq!(clean["status"], "success", "{clean}");
    let before = stored_metrics(&mut f);

    let deleted: Vec<String> =
        f.db.query(
            "DELETE FROM pullsync.workspace_threads_posts WHERE id IN (
                 SELECT id FROM pullsync.workspace_threads_posts
                  WHERE workspace_threads_account_id = $1 AND metrics_snapshot_at IS NOT NULL
                  ORDER BY threads_post_id LIMIT 3)
             RETURNING threads_post_id",
            &[&account],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(deleted.len(), 3);
    let mut expected = deleted.clone();
    expected.sort();

    let repaired = window(&mut f.db);
    assert_eq!(repaired["status"], "repaired", "{repaired}");
    let missing: Vec<String> =
        serde_json::from_value(repaired["streams"]["posts"]["missing"].clone()).unwrap();
    assert_eq!(missing, expected);
    assert_eq!(repaired["streams"]["posts"]["extra"], serde_json::json!([]));
    assert_eq!(stored_metrics(&mut f), before, "metrics written back too");
    assert_eq!(f.layer_violations(), 0);
    let recorded: (String, i32, Vec<String>) = {
        let r =
            f.db.query_one(
                "SELECT status, discrepancies, missing_ids FROM pullsync.reconciliation_runs
                  WHERE workspace_threads_account_id = $1 ORDER BY id DESC LIMIT 1",
                &[&account],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(recorded.0, "repaired");
    assert_eq!(recorded.1, 3);
    assert_eq!(
        recorded.2,
        expected
            .iter()
            .map(|id| format!("posts:{id}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(window(&mut f.db)["status"], "success");
}
