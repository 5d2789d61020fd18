//! What Threads added to its insights and posts (issue 37), against the simulator over a
//! real connection: clicks per link in three layers, follower demographics once a day per
//! breakdown, the newer post fields, and a Retry-After honoured across runs.

use pullsync_tests::db::sqlstate_of;
use pullsync_tests::sim::faults::{Endpoint, FaultKind, FaultSpec};
use pullsync_tests::sim::SimConfig;
use pullsync_tests::threads::{threads_fixture, ThreadsFixture};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

fn fault(kind: FaultKind, account: &str, endpoint: Option<Endpoint>, times: u64) -> FaultSpec {
    FaultSpec {
        kind,
        account: Some(account.to_string()),
        endpoint,
        times: Some(times),
        probability: None,
        page: None,
    }
}

/// Each link of account `index` in L3: link URL → current clicks.
fn links(f: &mut ThreadsFixture, index: usize) -> BTreeMap<String, i64> {
    f.db.query(
        "SELECT link_url, current_clicks FROM pullsync.workspace_threads_account_links
          WHERE workspace_threads_account_id = $1",
        &[&f.accounts[index].0],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn current_clicks(f: &mut ThreadsFixture, index: usize) -> i64 {
    f.db.query_one(
        "SELECT current_clicks FROM pullsync.workspace_threads_accounts WHERE id = $1",
        &[&f.accounts[index].0],
    )
    .unwrap()
    .get(0)
}

#[test]
fn link_clicks_keep_three_layers_per_link_that_add_up_to_the_account() {
    const ACCOUNTS: usize = 4;
    // Meta's clock six hours behind the database's, so moving it on moves the end of the
    // insights window (the sync asks up to the earlier of the two clocks).
    let mut config = SimConfig::small(ACCOUNTS, 10);
    config.world.start -= 6 * 3600;
    let mut f = threads_fixture("it_link_clicks", &config);
    let first = f.scheduled_sync();
    assert_eq!(first["status"], "completed", "{first}");
    let mut before = Vec::new();
    for i in 0..ACCOUNTS {
        let stored = links(&mut f, i);
        let total = current_clicks(&mut f, i);
        // The simulator splits an account's clicks over two links: a third to the landing
        // page, the rest to the profile's own link.
        let expected = BTreeMap::from([
            (
                format!("https://example.com/sim_user_{i}"),
                total - total / 3,
            ),
            ("https://example.org/landing".to_string(), total / 3),
        ]);
        assert_eq!(stored, expected, "account {i}: L3 is what the answer gave");
        before.push(stored);
    }
    assert!(
        before.iter().flat_map(|l| l.values()).any(|&c| c > 0),
        "some link was clicked: {before:?}"
    );
    // One snapshot and one delta (from zero) per link after the first run.
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_account_link_clicks"),
        2 * ACCOUNTS as i64
    );
    assert_eq!(
        f.count(
            "SELECT count(*) FROM pullsync.workspace_threads_account_link_clicks_deltas
              WHERE period_start IS NULL"
        ),
        2 * ACCOUNTS as i64
    );
    assert_eq!(f.layer_violations(), 0);
    // The view: every link with its clicks; a first snapshot is no change in 24 hours.
    assert_eq!(
        f.count(
            "SELECT count(*) FROM pullsync.threads_link_clicks v
               JOIN pullsync.workspace_threads_account_links l USING (workspace_threads_account_id, link_url)
              WHERE v.clicks = l.current_clicks AND v.clicks_24h = 0 AND v.username LIKE 'sim_user_%'"
        ),
        2 * ACCOUNTS as i64
    );

    // Three hours on in Meta's day: clicks grow, links change.
    f.sim.advance(3 * 3600);
    let second = f.scheduled_sync();
    assert_eq!(second["status"], "completed", "{second}");
    let mut changed = 0;
    for (i, earlier) in before.iter().enumerate() {
        let stored = links(&mut f, i);
        let total = current_clicks(&mut f, i);
        assert_eq!(
            stored.values().sum::<i64>(),
            total,
            "account {i}: the links add up to the account's clicks"
        );
        for (url, clicks) in &stored {
            if clicks != &earlier[url] {
                changed += 1;
                let (snapshots, deltas, day): (i64, i64, i64) = {
                    let r = f
                        .db
                        .query_one(
                            "SELECT (SELECT count(*) FROM pullsync.workspace_threads_account_link_clicks
                                      WHERE workspace_threads_account_id = $1 AND link_url = $2),
                                    (SELECT count(*) FROM pullsync.workspace_threads_account_link_clicks_deltas
                                      WHERE workspace_threads_account_id = $1 AND link_url = $2),
                                    (SELECT clicks_24h::bigint FROM pullsync.threads_link_clicks
                                      WHERE workspace_threads_account_id = $1 AND link_url = $2)",
                            &[&f.accounts[i].0, url],
                        )
                        .unwrap();
                    (r.get(0), r.get(1), r.get(2))
                };
                assert_eq!((snapshots, deltas), (2, 2), "{url}");
                assert_eq!(
                    day,
                    clicks - earlier[url],
                    "{url}: the change since the first run"
                );
            }
        }
    }
    assert!(changed > 0, "some link's clicks changed");
    assert_eq!(f.layer_violations(), 0);

    // The check every Threads test runs sees a link whose current value left its layers:
    // no longer the newest snapshot, nor the sum of its deltas, nor part of its account's.
    f.db.batch_execute(
        "UPDATE pullsync.workspace_threads_account_links SET current_clicks = current_clicks + 1
          WHERE link_url = 'https://example.org/landing' AND workspace_threads_account_id =
                (SELECT id FROM pullsync.workspace_threads_accounts WHERE username = 'sim_user_0')",
    )
    .unwrap();
    assert_eq!(f.layer_violations(), 3);
}

/// Followers of account `index` as the simulator counts them now.
fn sim_followers(f: &ThreadsFixture, index: usize) -> i64 {
    let world = f.sim.sim.world.read().unwrap();
    world.accounts[index].followers_at(world.seed, world.now)
}

/// Account `index`'s demographics rows of the current UTC day: breakdown → (followers,
/// error).
fn demographics_today(
    f: &mut ThreadsFixture,
    index: usize,
) -> BTreeMap<String, (Option<Value>, Option<String>)> {
    f.db.query(
        "SELECT breakdown, followers, error FROM pullsync.workspace_threads_follower_demographics
          WHERE workspace_threads_account_id = $1 AND snapshot_date = (now() AT TIME ZONE 'UTC')::date",
        &[&f.accounts[index].0],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect()
}

fn demographics_requests(f: &ThreadsFixture) -> u64 {
    f.sim
        .counters()
        .by_endpoint
        .get(Endpoint::FollowerDemographics.name())
        .copied()
        .unwrap_or(0)
}

#[test]
fn demographics_are_a_daily_snapshot_per_breakdown_of_accounts_with_100_followers() {
    // Seed 3: three accounts with hundreds of followers, one with a few dozen.
    let mut config = SimConfig::small(4, 5);
    config.world.seed = 3;
    let mut f = threads_fixture("it_demographics", &config);
    let followers: Vec<i64> = (0..4).map(|i| sim_followers(&f, i)).collect();
    assert!(
        followers.iter().any(|&n| n < 100) && followers.iter().filter(|&&n| n >= 100).count() >= 2,
        "the world has both kinds of account: {followers:?}"
    );
    f.sim.reset_counters();
    let run = f.scheduled_sync();
    assert_eq!(run["status"], "completed", "{run}");
    // Dimension values the simulator answers for each breakdown.
    let sizes = BTreeMap::from([("age", 6), ("city", 3), ("country", 4), ("gender", 3)]);
    for (i, &n) in followers.iter().enumerate() {
        let user = f.accounts[i].1.clone();
        let rows = demographics_today(&mut f, i);
        if n < 100 {
            assert!(rows.is_empty(), "account {i} ({n} followers): {rows:?}");
            assert_eq!(
                f.sim.calls(Endpoint::FollowerDemographics, &user),
                0,
                "account {i} ({n} followers) is not asked"
            );
            continue;
        }
        assert_eq!(f.sim.calls(Endpoint::FollowerDemographics, &user), 4);
        assert_eq!(
            rows.keys().map(String::as_str).collect::<Vec<_>>(),
            sizes.keys().copied().collect::<Vec<_>>(),
            "account {i}"
        );
        for (breakdown, (values, error)) in &rows {
            assert_eq!(error, &None, "{breakdown}");
            let values = values
                .as_ref()
                .and_then(Value::as_object)
                .expect("followers");
            let size = sizes[breakdown.as_str()];
            assert_eq!(values.len(), size, "{breakdown}: {values:?}");
            let share = n / size as i64;
            assert!(
                values.values().all(|v| v.as_i64() == Some(share)),
                "{breakdown}: {values:?} (each {share})"
            );
        }
        // The view: one row per dimension value, its share of the breakdown.
        let shown: Vec<(String, i64, f64)> = f
            .db
            .query(
                "SELECT breakdown, count(*), sum(percent)::float8 FROM pullsync.threads_follower_demographics
                  WHERE workspace_threads_account_id = $1 AND snapshot_date = (now() AT TIME ZONE 'UTC')::date
                  GROUP BY 1 ORDER BY 1",
                &[&f.accounts[i].0],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(shown.len(), 4, "{shown:?}");
        for (breakdown, values, percent) in shown {
            assert_eq!(values, sizes[breakdown.as_str()] as i64, "{breakdown}");
            assert!((99.0..=101.0).contains(&percent), "{breakdown}: {percent}");
        }
    }

    // The same UTC day again: no demographics request, the rows as they were.
    let stored = f.count("SELECT count(*) FROM pullsync.workspace_threads_follower_demographics");
    f.sim.advance(3600);
    f.sim.reset_counters();
    let again = f.scheduled_sync();
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(demographics_requests(&f), 0, "{:?}", f.sim.counters());
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.workspace_threads_follower_demographics"),
        stored
    );
    assert_eq!(f.layer_violations(), 0);
}

#[test]
fn the_breakdowns_setting_chooses_what_is_asked_and_refuses_unknown_names() {
    let mut f = threads_fixture("it_demographics_setting", &SimConfig::small(2, 5));
    assert!((0..2).all(|i| sim_followers(&f, i) >= 100));
    let per_breakdown = |f: &mut ThreadsFixture| -> BTreeMap<String, i64> {
        f.db.query(
            "SELECT breakdown, count(*) FROM pullsync.workspace_threads_follower_demographics GROUP BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };

    f.db.batch_execute("SET pullsync.threads_demographics = ''")
        .unwrap();
    f.sim.reset_counters();
    assert_eq!(f.scheduled_sync()["status"], "completed");
    assert_eq!(demographics_requests(&f), 0, "an empty list asks for none");
    assert!(per_breakdown(&mut f).is_empty());

    f.db.batch_execute("SET pullsync.threads_demographics = 'age'")
        .unwrap();
    f.sim.reset_counters();
    assert_eq!(f.scheduled_sync()["status"], "completed");
    assert_eq!(demographics_requests(&f), 2, "one per account");
    assert_eq!(per_breakdown(&mut f), BTreeMap::from([("age".into(), 2)]));

    // Later the same day with two: only the one not yet captured today is asked.
    f.db.batch_execute("SET pullsync.threads_demographics = ' Gender, age '")
        .unwrap();
    f.sim.reset_counters();
    assert_eq!(f.scheduled_sync()["status"], "completed");
    assert_eq!(demographics_requests(&f), 2, "gender, once per account");
    assert_eq!(
        per_breakdown(&mut f),
        BTreeMap::from([("age".into(), 2), ("gender".into(), 2)])
    );

    // A name Meta does not answer is refused when set, however it is set.
    for sql in [
        "SET pullsync.threads_demographics = 'country,region'",
        "ALTER SYSTEM SET pullsync.threads_demographics = 'region'",
    ] {
        assert_eq!(
            sqlstate_of(&mut f.db, sql).as_deref(),
            Some("22023"),
            "{sql}"
        );
    }
    let message =
        f.db.batch_execute("SET pullsync.threads_demographics = 'region'")
            .unwrap_err()
            .as_db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
    assert!(message.contains("\"region\""), "{message}");
    let kept: String =
        f.db.query_one("SHOW pullsync.threads_demographics", &[])
            .unwrap()
            .get(0);
    assert_eq!(kept, " Gender, age ", "the refused value changed nothing");
}

#[test]
fn a_breakdown_that_fails_costs_only_itself() {
    // Seed 1: every account has hundreds of followers.
    let mut f = threads_fixture("it_demographics_errors", &SimConfig::small(3, 5));
    assert!((0..3).all(|i| sim_followers(&f, i) >= 100));
    let users: Vec<String> = f.accounts.iter().map(|a| a.1.clone()).collect();
    // Breakdowns are asked one after the other, country first: account 0's is refused,
    // account 1's fails past the retries (1 + pullsync.http_max_retries answers), account
    // 2 is rate limited on it.
    f.sim.add_fault(fault(
        FaultKind::BadRequest,
        &users[0],
        Some(Endpoint::FollowerDemographics),
        1,
    ));
    f.sim.add_fault(fault(
        FaultKind::ServerError { status: 500 },
        &users[1],
        Some(Endpoint::FollowerDemographics),
        4,
    ));
    f.sim.add_fault(fault(
        FaultKind::Throttle {
            code: 17,
            status: 400,
        },
        &users[2],
        Some(Endpoint::FollowerDemographics),
        1,
    ));
    f.sim.reset_counters();
    let run = f.scheduled_sync();
    assert_eq!(
        run["status"], "partial",
        "account 2 was rate limited: {run}"
    );

    // Refused: kept with its error for the day, the other breakdowns stored.
    let (status, error, notes) = f.last_log(0);
    assert_eq!(status, "completed", "{error:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("follower demographics (country)")),
        "{notes:?}"
    );
    let rows = demographics_today(&mut f, 0);
    assert_eq!(rows.len(), 4, "{rows:?}");
    let (values, error) = &rows["country"];
    assert_eq!(values, &None);
    let error = error.as_deref().unwrap_or_default();
    assert!(error.contains("(#100) Invalid parameter"), "{error}");
    assert!(!error.contains("THAA"), "no token in the error: {error}");
    assert!(rows
        .iter()
        .filter(|(b, _)| b.as_str() != "country")
        .all(|(_, (v, e))| v.is_some() && e.is_none()));
    assert_eq!(f.sim.calls(Endpoint::FollowerDemographics, &users[0]), 4);
    // The view leaves a refused breakdown out.
    assert_eq!(
        f.count(&format!(
            "SELECT count(DISTINCT breakdown) FROM pullsync.threads_follower_demographics
              WHERE workspace_threads_account_id = '{}'",
            f.accounts[0].0
        )),
        3
    );

    // Transient: nothing stored for it, left for the next run; the account completes.
    let (status, error, notes) = f.last_log(1);
    assert_eq!(status, "completed", "{error:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("follower demographics (country) left for the next run")),
        "{notes:?}"
    );
    let rows = demographics_today(&mut f, 1);
    assert_eq!(
        rows.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["age", "city", "gender"])
    );
    assert_eq!(f.sim.calls(Endpoint::FollowerDemographics, &users[1]), 7);

    // Rate limited: the account stops there, as at any other call.
    let (status, error, _) = f.last_log(2);
    assert_eq!(status, "skipped");
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .starts_with("rate_limited (user limit)"),
        "{error:?}"
    );
    assert_eq!(f.sim.calls(Endpoint::FollowerDemographics, &users[2]), 1);
    assert!(demographics_today(&mut f, 2).is_empty());

    // The next run the same day asks only what is still missing: account 1's country and
    // account 2's four; never account 0's refused country.
    f.sim.reset_counters();
    let next = f.scheduled_sync();
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(f.sim.calls(Endpoint::FollowerDemographics, &users[0]), 0);
    assert_eq!(f.sim.calls(Endpoint::FollowerDemographics, &users[1]), 1);
    assert_eq!(f.sim.calls(Endpoint::FollowerDemographics, &users[2]), 4);
    for i in 0..3 {
        assert_eq!(demographics_today(&mut f, i).len(), 4, "account {i}");
    }
    assert_eq!(f.layer_violations(), 0);
}

#[test]
fn the_newer_post_fields_are_stored_as_meta_sends_them() {
    let mut f = threads_fixture("it_post_fields", &SimConfig::small(2, 80));
    let run = f.scheduled_sync();
    assert_eq!(run["status"], "completed", "{run}");
    type Fields = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<bool>,
        Option<Value>,
    );
    let expected: BTreeMap<String, Fields> = {
        let world = f.sim.sim.world.read().unwrap();
        world
            .accounts
            .iter()
            .flat_map(|a| a.visible_posts(world.now).iter().map(move |p| p.to_api(a)))
            .map(|p| {
                (
                    p.id,
                    (
                        p.topic_tag,
                        p.link_attachment_url,
                        p.alt_text,
                        p.is_quote_post,
                        p.poll_attachment
                            .map(|poll| serde_json::json!({ "poll_attachment": poll })),
                    ),
                )
            })
            .collect()
    };
    let stored: BTreeMap<String, Fields> =
        f.db.query(
            "SELECT threads_post_id, topic_tag, link_attachment_url, alt_text, is_quote_post, other_fields
               FROM pullsync.workspace_threads_posts",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))))
        .collect();
    assert_eq!(stored.len(), 160);
    assert_eq!(stored, expected);
    // The world holds each kind, so the comparison above compared something.
    let some = |pick: fn(&Fields) -> bool| stored.values().filter(|v| pick(v)).count();
    assert!(some(|v| v.0.is_some()) > 0, "topic_tag");
    assert!(some(|v| v.1.is_some()) > 0, "link_attachment_url");
    assert!(some(|v| v.2.is_some()) > 0, "alt_text");
    assert!(some(|v| v.4.is_some()) > 0, "poll_attachment");
    assert!(some(|v| v.4.is_none()) > 0, "posts without a poll");
    // A dashboard can read a poll with plain jsonb operators.
    assert!(
        f.count(
            "SELECT count(*) FROM pullsync.workspace_threads_posts
              WHERE other_fields->'poll_attachment'->>'option_a' = 'Yes'
                AND (other_fields->'poll_attachment'->>'total_votes')::int >= 0"
        ) > 0
    );
}

/// Account `index`'s `rate_limited_until`, in seconds from the database's now.
fn wait_left(f: &mut ThreadsFixture, index: usize) -> Option<f64> {
    f.db.query_one(
        "SELECT extract(epoch FROM rate_limited_until - now())::float8
           FROM pullsync.workspace_threads_accounts WHERE id = $1",
        &[&f.accounts[index].0],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_retry_after_is_honoured_by_the_next_runs_without_a_request() {
    let mut f = threads_fixture("it_retry_after", &SimConfig::small(3, 5));
    let limited = f.accounts[1].1.clone();
    f.sim.add_fault(fault(
        FaultKind::TooManyRequests { retry_after: 3600 },
        &limited,
        None,
        1,
    ));
    let first = f.scheduled_sync();
    assert_eq!(first["status"], "partial", "{first}");
    assert_eq!(first["rate_limited_count"], 1, "{first}");
    let (status, error, _) = f.last_log(1);
    assert_eq!(status, "skipped");
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .starts_with("rate_limited (user limit)"),
        "{error:?}"
    );
    let left = wait_left(&mut f, 1).expect("the wait is kept");
    assert!((3540.0..=3610.0).contains(&left), "{left}");
    assert_eq!(wait_left(&mut f, 0), None, "other accounts need not wait");

    // The next run: the account is deferred without a request, the others synced.
    f.sim.reset_counters();
    let second = f.scheduled_sync();
    assert_eq!(second["status"], "partial", "{second}");
    assert_eq!(second["rate_limited_count"], 1, "{second}");
    let counters = f.sim.counters();
    assert_eq!(
        counters.by_account.get(&limited),
        None,
        "no request for the waiting account: {counters:?}"
    );
    assert!(
        counters
            .by_account
            .get(&f.accounts[0].1)
            .copied()
            .unwrap_or(0)
            > 0
    );
    let (status, error, _) = f.last_log(1);
    assert_eq!(status, "skipped");
    let error = error.unwrap_or_default();
    assert!(
        error.starts_with(
            "rate_limited: deferred without a request, as Threads asked to wait until "
        ),
        "{error}"
    );
    for i in [0, 2] {
        assert_eq!(f.last_log(i).0, "completed");
    }
    let still = wait_left(&mut f, 1).expect("still waiting");
    assert!(
        (left - still).abs() < 60.0,
        "the wait is not moved: {left} {still}"
    );
    assert_eq!(
        f.count("SELECT count(*) FROM pullsync.alerts WHERE alert_type = 'error_rate'"),
        0,
        "a deferral is no error"
    );

    // Once the time has passed, the account is pulled again.
    f.db.execute(
        "UPDATE pullsync.workspace_threads_accounts
            SET rate_limited_until = now() - interval '1 second' WHERE id = $1",
        &[&f.accounts[1].0],
    )
    .unwrap();
    f.sim.reset_counters();
    let third = f.scheduled_sync();
    assert_eq!(third["status"], "completed", "{third}");
    assert!(
        f.sim
            .counters()
            .by_account
            .get(&limited)
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert_eq!(f.last_log(1).0, "completed");
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM pullsync.workspace_threads_posts WHERE workspace_threads_account_id = '{}'",
            f.accounts[1].0
        )),
        5
    );
    assert_eq!(f.layer_violations(), 0);
}
