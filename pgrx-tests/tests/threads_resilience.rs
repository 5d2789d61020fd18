//! The Threads sync when a listing is cut short, posts vanish, Meta sends what this version
//! does not know, tokens are refreshed or refused: nothing is lost and nothing gets stuck.
//! Each test has its own database and simulator; runs go through `run_jobs()`.

use pullsync_tests::sim::faults::{Endpoint, FaultKind, FaultSpec};
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
    // A throttled page, a 5xx that outlives the retries, a malformed page.
    let cases = [
        (
            "throttled",
            FaultKind::Throttle {
                code: 4,
                status: 403,
            },
            1,
        ),
        ("server_error", FaultKind::ServerError { status: 500 }, 4),
        ("malformed", FaultKind::MalformedJson, 1),
    ];
    for (name, kind, times) in cases {
        let mut f = threads_fixture(&format!("it_cut_{name}"), &SimConfig::small(1, 230));
        let user = f.accounts[0].1.clone();
        f.sim.add_fault(FaultSpec {
            page: Some(2),
            times: Some(times),
            ..fault(kind, &user, Endpoint::Threads)
        });
        let first = f.scheduled_sync();
        assert_eq!(first["status"], "failed", "{name}: {first}");
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
