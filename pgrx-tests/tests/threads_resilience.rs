//! The Threads sync when a listing is cut short, posts vanish, Meta sends what this version
//! does not know, tokens are refreshed or refused: nothing is lost and nothing gets stuck.
//! Each test has its own database and simulator; runs go through `run_jobs()`.

use pullsync_tests::sim::faults::{Endpoint, FaultKind, FaultSpec, Malformation};
use pullsync_tests::sim::SimConfig;
use pullsync_tests::threads::{run_token_refresh, threads_fixture, ThreadsFixture};
use serde_json::Value;

fn fault(kind: FaultKind, account: &str, endpoint: Endpoint) -> FaultSpec {
    FaultSpec {
        kind,
        account: Some(account.to_string()),
        endpoint: Some(endpoint),
        times: None,
        probability: None,
        page: None,
    }
}

fn stored_posts(f: &mut ThreadsFixture) -> i64 {
    f.count("SELECT count(*) FROM pullsync.workspace_threads_posts")
}

fn admin(f: &ThreadsFixture, path: &str, body: Value) {
    let status = reqwest::blocking::Client::new()
        .post(format!("{}{path}", f.sim.base_url))
        .json(&body)
        .send()
        .unwrap()
        .status();
    assert!(status.is_success(), "{path}: {status}");
}

#[test]
fn a_listing_cut_short_on_page_two_is_completed_by_the_next_run() {
    // A throttled page (the account waits for the next run: skipped, the run partial), a
    // 5xx that outlives the retries, a malformed page.
    let cases = [
        (
            "throttled",
            FaultKind::Throttle {
                code: 4,
                status: 403,
            },
            1,
            "partial",
        ),
        (
            "server_error",
            FaultKind::ServerError { status: 500 },
            4,
            "failed",
        ),
        ("malformed", FaultKind::MalformedJson, 1, "failed"),
    ];
    for (name, kind, times, first_status) in cases {
        let mut f = threads_fixture(&format!("it_cut_{name}"), &SimConfig::small(1, 230));
        let user = f.accounts[0].1.clone();
        f.sim.add_fault(FaultSpec {
            page: Some(2),
            times: Some(times),
            ..fault(kind, &user, Endpoint::Threads)
        });
        let first = f.scheduled_sync();
        assert_eq!(first["status"], first_status, "{name}: {first}");
        assert_eq!(stored_posts(&mut f), 100, "{name}: page 1 is kept");
        let gap: Option<String> =
            f.db.query_one(
                "SELECT posts_listing_resume_after FROM pullsync.workspace_threads_accounts",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(
            gap.is_some(),
            "{name}: the listing records where it stopped"
        );

        f.sim.reset_counters();
        let second = f.scheduled_sync();
        assert_eq!(second["status"], "completed", "{name}: {second}");
        assert_eq!(
            stored_posts(&mut f),
            230,
            "{name}: every post after the next run"
        );
        // Page 1 (to see what is new), then the two pages from where the listing stopped.
        assert_eq!(f.sim.calls(Endpoint::Threads, &user), 3, "{name}");

        f.sim.reset_counters();
        let third = f.scheduled_sync();
        assert_eq!(third["status"], "completed", "{name}: {third}");
        assert_eq!(
            f.sim.calls(Endpoint::Threads, &user),
            1,
            "{name}: a complete listing stops at page 1 again"
        );
        assert_eq!(stored_posts(&mut f), 230);
        assert_eq!(f.layer_violations(), 0);
    }
}

#[test]
fn a_post_deleted_on_threads_is_marked_and_its_account_completes() {
    let mut f = threads_fixture("it_deleted_post", &SimConfig::small(1, 30));
    assert_eq!(f.scheduled_sync()["status"], "completed");
    // The newest post with insights goes away on Threads.
    let gone: String =
        f.db.query_one(
            "SELECT threads_post_id FROM pullsync.workspace_threads_posts
              WHERE media_type <> 'REPOST_FACADE' ORDER BY published_at DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    admin(&f, &format!("/admin/posts/{gone}/delete"), Value::Null);
    // A day on: every post but the oldest is due for metrics again.
    f.sim.advance(25 * 3600);
    f.sim.reset_counters();
    let run = f.scheduled_sync();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        f.sim.calls(Endpoint::MediaInsights, "unknown"),
        1,
        "asked once"
    );
    let deleted = f.count(&format!(
        "SELECT count(*) FROM pullsync.workspace_threads_posts WHERE threads_post_id = '{gone}' AND deleted_at IS NOT NULL"
    ));
    assert_eq!(deleted, 1, "marked deleted, history kept");
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM pullsync.threads_post_stats WHERE threads_post_id = '{gone}'"
        )),
        0,
        "left out of the stats view"
    );
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_accounts WHERE last_sync_status = 'completed'"),
        1
    );
    f.sim.advance(25 * 3600);
    f.sim.reset_counters();
    assert_eq!(f.scheduled_sync()["status"], "completed");
    assert_eq!(
        f.sim.calls(Endpoint::MediaInsights, "unknown"),
        0,
        "no more calls for a deleted post"
    );
}

#[test]
fn a_post_with_a_media_type_meta_added_later_is_stored_with_the_others() {
    let mut f = threads_fixture("it_new_media_type", &SimConfig::small(1, 30));
    let post = {
        let world = f.sim.sim.world.read().unwrap();
        world.accounts[0].visible_posts(world.now)[0].id.clone()
    };
    admin(
        &f,
        &format!("/admin/posts/{post}/media_type"),
        serde_json::json!({ "media_type": "SPATIAL_VIDEO" }),
    );
    let run = f.scheduled_sync();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(stored_posts(&mut f), 30, "every post stored");
    let media_type: String =
        f.db.query_one(
            "SELECT media_type FROM pullsync.workspace_threads_posts WHERE threads_post_id = $1",
            &[&post],
        )
        .unwrap()
        .get(0);
    assert_eq!(media_type, "SPATIAL_VIDEO", "stored as sent");
    let notes: Vec<String> =
        f.db.query_one(
            "SELECT notes FROM pullsync.sync_logs ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        notes.iter().any(|n| n.contains("SPATIAL_VIDEO")),
        "the unknown value is noted: {notes:?}"
    );
}

#[test]
fn refresh_uses_the_documented_form_and_a_later_failure_keeps_earlier_tokens() {
    let mut f = threads_fixture("it_refresh_each", &SimConfig::small(3, 5));
    // All three tokens due, in this order; Threads' answer for the second is absurd.
    for (i, (id, _)) in f.accounts.clone().iter().enumerate() {
        f.db.execute(
            "UPDATE pullsync.workspace_threads_tokens
                SET issued_at = now() - interval '50 days', expires_at = now() + make_interval(days => $2)
              WHERE workspace_threads_account_id = $1",
            &[id, &(i as i32 + 1)],
        )
        .unwrap();
    }
    let second = f.accounts[1].1.clone();
    f.sim.add_fault(FaultSpec {
        times: Some(1),
        ..fault(FaultKind::AbsurdExpiresIn, &second, Endpoint::RefreshToken)
    });
    let report = run_token_refresh(&mut f.db);
    let refreshed: Vec<String> = serde_json::from_value(report["refreshed"].clone()).unwrap();
    let (first_id, third_id) = (f.accounts[0].0.to_string(), f.accounts[2].0.to_string());
    assert_eq!(refreshed.len(), 2, "{report}");
    assert!(
        refreshed.contains(&first_id) && refreshed.contains(&third_id),
        "{report}"
    );
    assert_eq!(
        report["failed"][0]["account_id"],
        f.accounts[1].0.to_string()
    );
    assert!(
        report["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("expires_in"),
        "{report}"
    );
    assert!(
        !report.to_string().contains("THAA"),
        "no token in the report"
    );
    // The refreshed tokens were stored (the simulator retired the old ones): they work.
    assert_eq!(f.sync_account(0)["status"], "completed");
    assert_eq!(f.sync_account(2)["status"], "completed");
    let expiry_days: f64 = f
        .db
        .query_one(
            "SELECT (extract(epoch FROM expires_at - now()) / 86400)::float8 FROM pullsync.workspace_threads_tokens
              WHERE workspace_threads_account_id = $1 AND is_primary",
            &[&f.accounts[0].0],
        )
        .unwrap()
        .get(0);
    assert!((59.0..=61.0).contains(&expiry_days), "{expiry_days}");
}

#[test]
fn a_run_in_which_every_token_is_refused_fails_and_names_the_accounts() {
    let mut f = threads_fixture("it_refused_tokens", &SimConfig::small(2, 5));
    f.sim
        .add_fault(FaultSpec::everywhere(FaultKind::InvalidToken, 1.0));
    let run = f.scheduled_sync();
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_tokens WHERE invalidated_at IS NOT NULL"),
        2
    );
    let health: Value =
        f.db.query_one("SELECT pullsync.health()", &[])
            .unwrap()
            .get(0);
    assert_eq!(health["sources"]["threads"]["accounts_without_token"], 2);
    let usernames: Vec<String> =
        f.db.query(
            "SELECT username FROM pullsync.workspace_threads_accounts",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let message: String = f
        .db
        .query_one(
            "SELECT message FROM pullsync.alerts WHERE alert_type = 'token_expired' AND resolved_at IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    for name in &usernames {
        assert!(message.contains(name.as_str()), "{message}");
    }
    let metrics: String =
        f.db.query_one("SELECT pullsync.metrics()", &[])
            .unwrap()
            .get(0);
    assert!(
        metrics.contains("pullsync_accounts_without_token{source=\"threads\"} 2"),
        "{metrics}"
    );
    // Refused tokens are not tried again: the next run has nothing to pull.
    f.sim.clear_faults();
    f.sim.reset_counters();
    let next = f.scheduled_sync();
    assert_eq!(next["total_accounts"], 0, "{next}");
    assert_eq!(f.sim.counters().total, 0);
}

#[test]
fn onboarding_snapshots_do_not_count_as_the_last_24_hours() {
    let mut f = threads_fixture("it_onboarding_24h", &SimConfig::small(1, 30));
    assert_eq!(f.scheduled_sync()["status"], "completed");
    let followers_24h: i64 =
        f.db.query_one(
            "SELECT followers_24h::bigint FROM pullsync.threads_account_stats",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        followers_24h, 0,
        "a new account did not gain all its followers today"
    );
    // Posts older than a day show no change yet; posts of the last day count from zero.
    let (old_views, young_views, young_total): (i64, i64, i64) = {
        let r = f
            .db
            .query_one(
                "SELECT coalesce(sum(views_24h) FILTER (WHERE published_at < now() - interval '24 hours'), 0)::bigint,
                        coalesce(sum(views_24h) FILTER (WHERE published_at >= now() - interval '24 hours'), 0)::bigint,
                        coalesce(sum(views) FILTER (WHERE published_at >= now() - interval '24 hours'), 0)::bigint
                   FROM pullsync.threads_post_stats",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(old_views, 0);
    assert_eq!(young_views, young_total);
}

#[test]
fn reconciliation_marks_posts_threads_no_longer_lists_as_deleted() {
    let mut f = threads_fixture("it_reconcile_deleted", &SimConfig::small(1, 20));
    assert_eq!(f.scheduled_sync()["status"], "completed");
    let gone: String = f
        .db
        .query_one(
            "SELECT threads_post_id FROM pullsync.workspace_threads_posts ORDER BY published_at DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    admin(&f, &format!("/admin/posts/{gone}/delete"), Value::Null);
    let account = f.accounts[0].0;
    let report: Value =
        f.db.query_one(
            "SELECT pullsync.threads_reconcile($1, now() - interval '90 days', now())",
            &[&account],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        report["streams"]["posts"]["extra"],
        serde_json::json!([gone]),
        "{report}"
    );
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM pullsync.workspace_threads_posts WHERE threads_post_id = '{gone}' AND deleted_at IS NOT NULL"
        )),
        1
    );
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.threads_post_stats"),
        19
    );
}

/// The newest post with text (a REPOST_FACADE has none) as the simulator holds it, for
/// account `index`: its id and text.
fn newest_text(f: &ThreadsFixture, index: usize) -> (String, String) {
    let world = f.sim.sim.world.read().unwrap();
    let post = world.accounts[index]
        .visible_posts(world.now)
        .iter()
        .find(|p| p.media_type != threads_model::MediaType::RepostFacade)
        .expect("a post with text");
    (post.id.clone(), post.text.clone())
}

fn stored_text(f: &mut ThreadsFixture, post_id: &str) -> String {
    f.db.query_one(
        "SELECT text FROM pullsync.workspace_threads_posts WHERE threads_post_id = $1",
        &[&post_id],
    )
    .unwrap()
    .get(0)
}

#[test]
fn malformed_text_is_stored_with_replacement_characters_and_the_account_completes() {
    // Each malformation in the newest post of its own account, and what its text becomes.
    let cases: Vec<(Malformation, &str)> = vec![
        (Malformation::LoneSurrogate, "\u{FFFD}"),
        (Malformation::CutEscape, "\u{FFFD}"),
        (Malformation::InvalidEscape, "\u{FFFD}41"),
        (Malformation::Nul, "\u{FFFD}"),
        (Malformation::RawControl, "\u{FFFD}\u{7}"),
        (Malformation::InvalidUtf8, "\u{FFFD}"),
    ];
    let mut f = threads_fixture("it_malformed_text", &SimConfig::small(cases.len(), 30));
    for (i, (malformation, _)) in cases.iter().enumerate() {
        let user = f.accounts[i].1.clone();
        f.sim.add_fault(FaultSpec {
            page: Some(1),
            times: Some(1),
            ..fault(
                FaultKind::MalformedText {
                    malformation: *malformation,
                },
                &user,
                Endpoint::Threads,
            )
        });
    }
    let run = f.scheduled_sync();
    assert_eq!(run["status"], "completed", "{run}");
    for (i, (malformation, tail)) in cases.iter().enumerate() {
        let (status, error, notes) = f.last_log(i);
        assert_eq!(status, "completed", "{malformation:?}: {error:?}");
        assert!(
            notes.iter().any(|n| n.contains("replaced with U+FFFD")),
            "{malformation:?}: {notes:?}"
        );
        let (id, text) = newest_text(&f, i);
        assert_eq!(
            stored_text(&mut f, &id),
            format!("{text}{tail}"),
            "{malformation:?}: the text up to the break is kept"
        );
    }
    assert_eq!(stored_posts(&mut f), 30 * cases.len() as i64);
    assert_eq!(f.layer_violations(), 0);
}

#[test]
fn a_post_that_cannot_be_read_is_skipped_with_a_note_and_its_page_kept() {
    let mut f = threads_fixture("it_unreadable_post", &SimConfig::small(1, 30));
    let user = f.accounts[0].1.clone();
    // The first post listed: its timestamp is broken.
    let unreadable = {
        let world = f.sim.sim.world.read().unwrap();
        world.accounts[0].visible_posts(world.now)[0].id.clone()
    };
    f.sim.add_fault(FaultSpec {
        times: Some(1),
        ..fault(
            FaultKind::MalformedText {
                malformation: Malformation::Unreadable,
            },
            &user,
            Endpoint::Threads,
        )
    });
    let first = f.sync_account(0);
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(stored_posts(&mut f), 29, "the rest of the page is stored");
    let (_, _, notes) = f.last_log(0);
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("post {unreadable} could not be read"))),
        "{notes:?}"
    );
    // Meta sends it readable again: the next run stores it.
    let second = f.sync_account(0);
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(stored_posts(&mut f), 30);
}

/// Requests the simulator answered, every endpoint and account together.
fn requests(f: &ThreadsFixture) -> u64 {
    f.sim.counters().total
}

#[test]
fn an_application_limit_defers_the_rest_of_the_run_without_a_request() {
    let mut f = threads_fixture("it_app_limit", &SimConfig::small(4, 10));
    // One request at a time, so "the first answer" is well defined.
    f.db.batch_execute("SET pullsync.http_concurrency = 1")
        .unwrap();
    f.sim.add_fault(FaultSpec {
        kind: FaultKind::Throttle {
            code: 4,
            status: 403,
        },
        account: None,
        endpoint: None,
        times: Some(1),
        probability: None,
        page: None,
    });
    f.sim.reset_counters();
    let run = f.scheduled_sync();
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(run["rate_limited_count"], 4, "{run}");
    assert_eq!(run["error_count"], 0, "{run}");
    assert_eq!(
        requests(&f),
        1,
        "after code 4 no account makes a request: {:?}",
        f.sim.counters()
    );
    for i in 0..4 {
        let (status, error, _) = f.last_log(i);
        assert_eq!(status, "skipped", "{error:?}");
        assert!(
            error
                .as_deref()
                .unwrap_or_default()
                .starts_with("rate_limited (application limit)"),
            "{error:?}"
        );
    }
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_tokens WHERE invalidated_at IS NOT NULL"),
        0,
        "a rate limit refuses no token"
    );
    assert_eq!(
        f.count("SELECT coalesce(sum(errors), 0)::bigint FROM pullsync.sync_metrics WHERE source = 'threads'"),
        0,
        "a rate limit is no error"
    );
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.alerts WHERE alert_type = 'error_rate'"),
        0
    );
    assert_eq!(
        f.count(
            "SELECT accounts_rate_limited FROM pullsync.source_metrics WHERE source = 'threads'"
        ),
        4
    );
    // The next run goes on as if nothing happened.
    let next = f.scheduled_sync();
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(stored_posts(&mut f), 40);
    assert_eq!(
        f.count(
            "SELECT accounts_rate_limited FROM pullsync.source_metrics WHERE source = 'threads'"
        ),
        0
    );
}

#[test]
fn a_user_limit_stops_only_that_account() {
    let mut f = threads_fixture("it_user_limit", &SimConfig::small(3, 10));
    let limited = f.accounts[1].1.clone();
    f.sim.add_fault(FaultSpec {
        kind: FaultKind::Throttle {
            code: 17,
            status: 400,
        },
        account: Some(limited.clone()),
        endpoint: None,
        times: None,
        probability: None,
        page: None,
    });
    f.sim.reset_counters();
    let run = f.scheduled_sync();
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(run["success_count"], 2, "{run}");
    assert_eq!(run["rate_limited_count"], 1, "{run}");
    assert_eq!(run["error_count"], 0, "{run}");
    let (status, error, _) = f.last_log(1);
    assert_eq!(status, "skipped");
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .starts_with("rate_limited (user limit)"),
        "{error:?}"
    );
    assert_eq!(f.sim.counters().by_account[&limited], 1);
    for i in [0, 2] {
        assert_eq!(f.last_log(i).0, "completed");
    }
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_tokens WHERE invalidated_at IS NOT NULL"),
        0
    );
    // Its own alert and figures, not error_rate's.
    let open = |f: &mut ThreadsFixture, kind: &str| {
        f.count(&format!(
            "SELECT count(*) FROM pullsync.alerts WHERE alert_type = '{kind}' AND resolved_at IS NULL"
        ))
    };
    assert_eq!(open(&mut f, "throttled"), 1);
    assert_eq!(open(&mut f, "error_rate"), 0);
    let health: Value =
        f.db.query_one("SELECT pullsync.health()", &[])
            .unwrap()
            .get(0);
    assert_eq!(
        health["sources"]["threads"]["accounts_rate_limited"], 1,
        "{health}"
    );
    let metrics: String =
        f.db.query_one("SELECT pullsync.metrics()", &[])
            .unwrap()
            .get(0);
    assert!(
        metrics.contains("pullsync_accounts_rate_limited{source=\"threads\"} 1"),
        "{metrics}"
    );
    // The limit is over: the next run gets through and the alert resolves.
    f.sim.clear_faults();
    let next = f.scheduled_sync();
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(open(&mut f, "throttled"), 0);
}

#[test]
fn usage_near_the_limit_defers_the_remaining_accounts_before_the_limit() {
    let mut f = threads_fixture("it_usage_headers", &SimConfig::small(3, 10));
    f.db.batch_execute("SET pullsync.http_concurrency = 1")
        .unwrap();
    f.sim.add_fault(FaultSpec {
        kind: FaultKind::Usage {
            percent: 95,
            regain_minutes: None,
        },
        account: None,
        endpoint: None,
        times: Some(1),
        probability: None,
        page: None,
    });
    f.sim.reset_counters();
    let run = f.scheduled_sync();
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(run["error_count"], 0, "{run}");
    assert_eq!(
        requests(&f),
        1,
        "the answer at 95% is the last request of the run: {:?}",
        f.sim.counters()
    );
    // Its page was used.
    assert_eq!(stored_posts(&mut f), 10);
}

#[test]
fn insights_near_midnight_ask_for_the_day_meta_is_in() {
    // Meta's clock is still before midnight UTC while the database's is past it.
    let midnight = chrono::Utc::now().timestamp() / 86_400 * 86_400;
    let mut config = SimConfig::small(1, 10);
    config.world.start = midnight - 30;
    let mut f = threads_fixture("it_clock_ahead", &config);
    let synced = f.sync_account(0);
    assert_eq!(synced["status"], "completed", "{synced}");
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_account_insights"),
        1
    );
}
