//! The Threads simulator against the facts of shared/threads-api.md, parsed with the same
//! models the extension uses.

use pullsync_tests::sim::faults::{Endpoint, FaultKind, FaultSpec, Malformation};
use pullsync_tests::sim::{SimConfig, SimServer};
use pullsync_tests::wait::Deadline;
use reqwest::blocking::Client;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use threads_model::error::classify;
use threads_model::insights::InsightsResponse;
use threads_model::{
    AccountInsights, ErrorClass, ErrorEnvelope, MediaType, Page, Post, PostMetrics, Profile,
    TokenResponse,
};

struct Fixture {
    server: SimServer,
    http: Client,
    accounts: Vec<(String, String)>,
}

fn fixture(accounts: usize, posts: usize) -> Fixture {
    let server = SimServer::start(&SimConfig::small(accounts, posts));
    let accounts = server
        .accounts()
        .into_iter()
        .map(|(user_id, _, token)| (user_id, token))
        .collect();
    let http = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Fixture {
        server,
        http,
        accounts,
    }
}

impl Fixture {
    fn get(&self, path_and_query: &str, token: &str) -> reqwest::blocking::Response {
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        self.http
            .get(format!(
                "{}{path_and_query}{sep}access_token={token}",
                self.server.base_url
            ))
            .send()
            .unwrap()
    }

    fn json(&self, path_and_query: &str, token: &str) -> (u16, Value) {
        let r = self.get(path_and_query, token);
        let status = r.status().as_u16();
        (status, r.json().unwrap())
    }

    /// Every post of an account through `paging.next`, with the given page size.
    fn all_posts(&self, user: &str, token: &str, limit: usize, extra: &str) -> Vec<Post> {
        let mut url = format!(
            "{}/v1.0/{user}/threads?fields={}&limit={limit}{extra}&access_token={token}",
            self.server.base_url,
            threads_model::POST_FIELDS
        );
        let mut posts = Vec::new();
        let mut deadline = Deadline::after(
            Duration::from_secs(300),
            format!("the last page of {user}'s posts (a paging.next that never ends?)"),
        );
        loop {
            deadline.check();
            let page: Page<Post> = self.http.get(&url).send().unwrap().json().unwrap();
            assert!(page.data.len() <= limit.min(100));
            posts.extend(page.data.iter().cloned());
            match page.paging.and_then(|p| p.next) {
                Some(next) => url = next,
                None => break,
            }
        }
        posts
    }

    fn api_error(&self, path_and_query: &str, token: &str) -> (u16, ErrorEnvelope) {
        let r = self.get(path_and_query, token);
        let status = r.status().as_u16();
        (status, r.json().unwrap())
    }
}

#[test]
fn every_documented_shape_parses_with_the_shared_models() {
    let f = fixture(2, 40);
    let (user, token) = &f.accounts[0];

    let (_, me) = f.json("/v1.0/me?fields=id,username,name,threads_profile_picture_url,threads_biography,is_verified", token);
    let profile: Profile = serde_json::from_value(me).unwrap();
    assert_eq!(&profile.id, user);
    assert!(profile.username.is_some());

    let posts = f.all_posts(user, token, 100, "");
    assert_eq!(posts.len(), 40);
    let types: HashSet<MediaType> = posts.iter().filter_map(|p| p.media_type.clone()).collect();
    assert!(types.contains(&MediaType::RepostFacade) && types.contains(&MediaType::CarouselAlbum));
    assert!(posts
        .iter()
        .all(|p| p.timestamp.is_some() && p.owner.as_ref().unwrap().id == *user));
    let carousel = posts
        .iter()
        .find(|p| p.media_type == Some(MediaType::CarouselAlbum))
        .unwrap();
    assert!(carousel.children.as_ref().unwrap().data.len() >= 2);

    for post in &posts {
        let (status, body) = f.json(
            &format!(
                "/v1.0/{}/insights?metric={}",
                post.id,
                threads_model::POST_METRICS
            ),
            token,
        );
        assert_eq!(status, 200);
        let response: InsightsResponse = serde_json::from_value(body.clone()).unwrap();
        let metrics = PostMetrics::from_response(&response).unwrap();
        if post.media_type == Some(MediaType::RepostFacade) {
            assert_eq!(metrics, None, "REPOST_FACADE has no insights");
        } else {
            assert!(metrics.unwrap().views > 0);
            let replies = response.data.iter().find(|m| m.name == "replies").unwrap();
            assert!(replies
                .id
                .as_ref()
                .unwrap()
                .ends_with("/insights/thread_replies/lifetime"));
        }
    }

    let (status, body) = f.json(
        &format!(
            "/v1.0/{user}/threads_insights?metric={}",
            threads_model::ACCOUNT_METRICS
        ),
        token,
    );
    assert_eq!(status, 200);
    let response: InsightsResponse = serde_json::from_value(body.clone()).unwrap();
    AccountInsights::from_response(&response).unwrap();
    let views = response.data.iter().find(|m| m.name == "views").unwrap();
    assert!(views
        .values
        .as_ref()
        .unwrap()
        .iter()
        .all(|v| v.end_time.is_some()));
    let clicks = response.data.iter().find(|m| m.name == "clicks").unwrap();
    assert!(clicks.link_total_values.is_some());
}

#[test]
fn paging_with_any_limit_returns_every_post_once_newest_first() {
    let f = fixture(1, 137);
    let (user, token) = &f.accounts[0];
    let expected: Vec<String> = f
        .all_posts(user, token, 100, "")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(expected.len(), 137);
    for limit in [1, 7, 25, 99, 100, 250] {
        let posts = f.all_posts(user, token, limit, "");
        let ids: Vec<String> = posts.iter().map(|p| p.id.clone()).collect();
        assert_eq!(ids, expected, "limit {limit}");
        assert!(posts.windows(2).all(|w| w[0].timestamp >= w[1].timestamp));
    }
    // Default limit is 25 and `me` works like the user id.
    let page: Page<Post> = f.get("/v1.0/me/threads", token).json().unwrap();
    assert_eq!(page.data.len(), 25);
    assert!(page.paging.unwrap().next.is_some());
}

#[test]
fn since_and_until_filter_the_listing() {
    let f = fixture(1, 120);
    let (user, token) = &f.accounts[0];
    let all = f.all_posts(user, token, 100, "");
    let ts: Vec<i64> = all
        .iter()
        .map(|p| p.timestamp.unwrap().timestamp())
        .collect();
    let (since, until) = (ts[90], ts[10]);
    let window = f.all_posts(user, token, 30, &format!("&since={since}&until={until}"));
    let expected: Vec<&str> = all
        .iter()
        .filter(|p| (since..=until).contains(&p.timestamp.unwrap().timestamp()))
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(
        window.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(expected.len(), 81);
    let (status, e) = f.api_error(&format!("/v1.0/{user}/threads?since=1600000000"), token);
    assert_eq!((status, e.error.code), (400, 100));
}

#[test]
fn the_before_cursor_walks_back() {
    let f = fixture(1, 30);
    let (user, token) = &f.accounts[0];
    let first: Page<Post> = f
        .get(&format!("/v1.0/{user}/threads?limit=10"), token)
        .json()
        .unwrap();
    let second: Page<Post> = f
        .http
        .get(first.paging.as_ref().unwrap().next.clone().unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let back: Page<Post> = f
        .http
        .get(second.paging.as_ref().unwrap().previous.clone().unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(back.data, first.data);
    assert!(first.paging.unwrap().previous.is_none());
}

#[test]
fn tokens_work_as_parameter_or_bearer_and_only_for_their_account() {
    let f = fixture(2, 5);
    let (user_a, token_a) = &f.accounts[0];
    let (user_b, _) = &f.accounts[1];
    let bearer: Profile = f
        .http
        .get(format!("{}/v1.0/me", f.server.base_url))
        .bearer_auth(token_a)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(&bearer.id, user_a);
    let (status, e) = f.api_error(&format!("/v1.0/{user_b}/threads"), token_a);
    assert_eq!(status, 400);
    assert_ne!(classify(status, Some(&e.error)), ErrorClass::Auth);
    let (status, e) = f.api_error("/v1.0/me", "THAAnot-a-token");
    assert_eq!(
        (status, e.error.code, e.error.error_subcode),
        (400, 190, Some(467))
    );
    // Media insights of another account's post are refused.
    let b_posts = f.all_posts(user_b, &f.accounts[1].1, 100, "");
    let (status, _) = f.api_error(
        &format!("/v1.0/{}/insights?metric=views", b_posts[0].id),
        token_a,
    );
    assert_eq!(status, 400);
}

#[test]
fn metric_rules_clicks_unknown_metrics_and_the_earliest_since() {
    let f = fixture(1, 10);
    let (user, token) = &f.accounts[0];
    let post = f
        .all_posts(user, token, 100, "")
        .into_iter()
        .find(|p| p.media_type != Some(MediaType::RepostFacade))
        .unwrap();
    let (status, e) = f.api_error(
        &format!("/v1.0/{}/insights?metric=views,clicks", post.id),
        token,
    );
    assert_eq!(
        (status, e.error.code, e.error.message.as_str()),
        (400, 1, "An unknown error has occurred.")
    );
    let (_, e) = f.api_error(
        &format!("/v1.0/{}/insights?metric=nonsense", post.id),
        token,
    );
    assert_eq!(e.error.code, 100);
    let (status, e) = f.api_error(
        &format!("/v1.0/{user}/threads_insights?metric=views&since=1712991599"),
        token,
    );
    assert_eq!((status, e.error.code), (400, 100));
    let (status, _) = f.json(
        &format!("/v1.0/{user}/threads_insights?metric=views&since=1712991600"),
        token,
    );
    assert_eq!(status, 200);
}

#[test]
fn follower_demographics_needs_one_breakdown_and_100_followers() {
    let f = fixture(40, 1);
    let world = f.server.sim.world.read().unwrap();
    let seed = world.seed;
    let now = world.now;
    let big = world
        .accounts
        .iter()
        .find(|a| a.followers_at(seed, now) >= 100)
        .unwrap();
    let small = world
        .accounts
        .iter()
        .find(|a| a.followers_at(seed, now) < 100)
        .unwrap();
    let (big, small) = (
        (big.user_id.clone(), big.token.text.clone()),
        (small.user_id.clone(), small.token.text.clone()),
    );
    drop(world);
    let path =
        |u: &str, b: &str| format!("/v1.0/{u}/threads_insights?metric=follower_demographics{b}");
    let (status, body) = f.json(&path(&big.0, "&breakdown=age"), &big.1);
    assert_eq!(status, 200);
    let response: InsightsResponse = serde_json::from_value(body).unwrap();
    let breakdowns = response.data[0]
        .total_value
        .as_ref()
        .unwrap()
        .breakdowns
        .as_ref()
        .unwrap();
    assert_eq!(breakdowns[0].dimension_keys, vec!["age"]);
    assert_eq!(f.api_error(&path(&big.0, ""), &big.1).1.error.code, 100);
    assert_eq!(
        f.api_error(&path(&big.0, "&breakdown=shoe_size"), &big.1)
            .1
            .error
            .code,
        100
    );
    assert_eq!(
        f.api_error(&path(&small.0, "&breakdown=age"), &small.1)
            .1
            .error
            .code,
        100
    );
}

#[test]
fn token_refresh_rules() {
    let f = fixture(1, 1);
    let (user, _) = &f.accounts[0];
    // A fresh token (1 hour old) cannot be refreshed yet.
    let young: Value = f
        .http
        .post(format!("{}/admin/accounts/{user}/token", f.server.base_url))
        .json(&serde_json::json!({"age_secs": 3600}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let young = young["token"].as_str().unwrap().to_string();
    let refresh = |t: &str| f.get("/refresh_access_token?grant_type=th_refresh_token", t);
    let r = refresh(&young);
    assert_eq!(r.status().as_u16(), 400);
    // 25 hours later it can; the answer is the documented shape and the old token dies.
    f.server.advance(24 * 3600);
    let r = refresh(&young);
    assert_eq!(r.status().as_u16(), 200);
    let t: TokenResponse = r.json().unwrap();
    assert_eq!(t.token_type, "bearer");
    assert_eq!(t.expires_in, threads_model::TOKEN_LIFETIME_SECS);
    assert_eq!(
        f.api_error("/v1.0/me", &young).1.error.error_subcode,
        Some(467)
    );
    assert_eq!(f.get("/v1.0/me", &t.access_token).status().as_u16(), 200);
    // Only the documented form works: the token as the access_token query parameter.
    let bearer: ErrorEnvelope = f
        .http
        .get(format!(
            "{}/refresh_access_token?grant_type=th_refresh_token",
            f.server.base_url
        ))
        .bearer_auth(&t.access_token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (bearer.error.code, bearer.error.error_subcode),
        (190, Some(467))
    );
    // Past its 60 days the token is expired (190/463) and cannot be refreshed.
    f.server.advance(threads_model::TOKEN_LIFETIME_SECS + 60);
    let (status, e) = f.api_error("/v1.0/me", &t.access_token);
    assert_eq!(
        (status, e.error.code, e.error.error_subcode),
        (400, 190, Some(463))
    );
    assert_eq!(refresh(&t.access_token).status().as_u16(), 400);
}

#[test]
fn the_clock_grows_metrics_followers_move_and_new_posts_appear() {
    let f = fixture(1, 30);
    let (user, token) = &f.accounts[0];
    let posts = f.all_posts(user, token, 100, "");
    let post = posts
        .iter()
        .find(|p| p.media_type != Some(MediaType::RepostFacade))
        .unwrap();
    let metrics = |f: &Fixture| -> PostMetrics {
        let r: InsightsResponse = f
            .get(
                &format!(
                    "/v1.0/{}/insights?metric={}",
                    post.id,
                    threads_model::POST_METRICS
                ),
                token,
            )
            .json()
            .unwrap();
        PostMetrics::from_response(&r).unwrap().unwrap()
    };
    let before = metrics(&f);
    f.server.advance(7 * 86_400);
    let after = metrics(&f);
    assert!(after.views > before.views);
    assert!(f.all_posts(user, token, 100, "").len() > posts.len());
    let clock: Value = f
        .http
        .get(format!("{}/admin/clock", f.server.base_url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(clock["now"].as_i64().is_some());
}

#[test]
fn counters_count_per_endpoint_and_account_and_reset() {
    let f = fixture(2, 5);
    let (user, token) = &f.accounts[0];
    f.get("/v1.0/me", token);
    f.get(&format!("/v1.0/{user}/threads"), token);
    f.get(&format!("/v1.0/{user}/threads"), token);
    let c = f.server.counters();
    assert_eq!(c.total, 3);
    assert_eq!(c.by_endpoint["threads"], 2);
    assert_eq!(c.by_account[user], 3);
    assert!(!c.by_account.contains_key(&f.accounts[1].0));
    let over_http: Value = f
        .http
        .get(format!("{}/admin/counters", f.server.base_url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(over_http["total"], 3);
    f.http
        .post(format!("{}/admin/counters/reset", f.server.base_url))
        .send()
        .unwrap();
    assert_eq!(f.server.counters().total, 0);
}

fn once(kind: FaultKind, account: &str, endpoint: Endpoint) -> FaultSpec {
    FaultSpec {
        kind,
        account: Some(account.to_string()),
        endpoint: Some(endpoint),
        times: Some(1),
        probability: None,
        page: None,
    }
}

#[test]
fn each_error_fault_fires_exactly_as_configured_and_only_there() {
    let f = fixture(2, 5);
    let (a, token_a) = &f.accounts[0];
    let (b, token_b) = &f.accounts[1];
    let cases = [
        (
            FaultKind::ExpiredToken,
            400,
            Some(190),
            Some(463),
            ErrorClass::Auth,
        ),
        (
            FaultKind::InvalidToken,
            400,
            Some(190),
            Some(467),
            ErrorClass::Auth,
        ),
        (
            FaultKind::TokenNotFound,
            400,
            Some(24),
            None,
            ErrorClass::Auth,
        ),
        (
            FaultKind::Throttle {
                code: 4,
                status: 400,
            },
            400,
            Some(4),
            None,
            ErrorClass::Throttled,
        ),
        (
            FaultKind::Throttle {
                code: 17,
                status: 403,
            },
            403,
            Some(17),
            None,
            ErrorClass::Throttled,
        ),
        (
            FaultKind::Throttle {
                code: 32,
                status: 400,
            },
            400,
            Some(32),
            None,
            ErrorClass::Throttled,
        ),
        (
            FaultKind::Throttle {
                code: 613,
                status: 403,
            },
            403,
            Some(613),
            None,
            ErrorClass::Throttled,
        ),
        (
            FaultKind::TooManyRequests { retry_after: 7 },
            429,
            Some(613),
            None,
            ErrorClass::Throttled,
        ),
        (
            FaultKind::ServerError { status: 503 },
            503,
            Some(2),
            None,
            ErrorClass::Transient,
        ),
    ];
    for (kind, status, code, subcode, class) in cases {
        f.server.add_fault(once(kind.clone(), a, Endpoint::Threads));
        // Other endpoint, other account: untouched.
        assert_eq!(
            f.get("/v1.0/me", token_a).status().as_u16(),
            200,
            "{kind:?}"
        );
        assert_eq!(
            f.get(&format!("/v1.0/{b}/threads"), token_b)
                .status()
                .as_u16(),
            200,
            "{kind:?}"
        );
        let r = f.get(&format!("/v1.0/{a}/threads"), token_a);
        assert_eq!(r.status().as_u16(), status, "{kind:?}");
        if let FaultKind::TooManyRequests { retry_after } = kind {
            assert_eq!(
                r.headers()["retry-after"].to_str().unwrap(),
                retry_after.to_string()
            );
        }
        let e: ErrorEnvelope = r.json().unwrap();
        assert_eq!(Some(e.error.code), code, "{kind:?}");
        assert_eq!(e.error.error_subcode, subcode, "{kind:?}");
        assert_eq!(classify(status, Some(&e.error)), class, "{kind:?}");
        // Fired once: the next call is normal.
        assert_eq!(
            f.get(&format!("/v1.0/{a}/threads"), token_a)
                .status()
                .as_u16(),
            200,
            "{kind:?}"
        );
    }
    let listed: Value = f
        .http
        .get(format!("{}/admin/faults", f.server.base_url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(listed.as_array().unwrap().iter().all(|x| x["fired"] == 1));
}

#[test]
fn slow_hanging_malformed_and_truncated_responses() {
    let f = fixture(1, 5);
    let (a, token) = &f.accounts[0];
    let quick = Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let url = format!("{}/v1.0/me?access_token={token}", f.server.base_url);

    f.server
        .add_fault(once(FaultKind::Slow { ms: 2000 }, a, Endpoint::Me));
    assert!(quick.get(&url).send().unwrap_err().is_timeout());
    f.server.add_fault(once(FaultKind::Hang, a, Endpoint::Me));
    assert!(quick.get(&url).send().unwrap_err().is_timeout());

    f.server
        .add_fault(once(FaultKind::MalformedJson, a, Endpoint::Me));
    let body = quick.get(&url).send().unwrap().bytes().unwrap();
    assert!(serde_json::from_slice::<Profile>(&body).is_err());

    f.server
        .add_fault(once(FaultKind::TruncatedBody, a, Endpoint::Me));
    let truncated = quick.get(&url).send().and_then(|r| r.bytes());
    assert!(
        truncated.is_err(),
        "a truncated body must not read as complete"
    );

    // After the four faults, the endpoint answers normally.
    let profile: Profile = quick.get(&url).send().unwrap().json().unwrap();
    assert_eq!(&profile.id, a);
}

#[test]
fn a_post_disappears_between_pages_and_duplicates_cross_pages() {
    let f = fixture(1, 30);
    let (a, token) = &f.accounts[0];
    let all: Vec<String> = f
        .all_posts(a, token, 100, "")
        .into_iter()
        .map(|p| p.id)
        .collect();

    f.server
        .add_fault(once(FaultKind::DuplicateItems, a, Endpoint::Threads));
    let first: Page<Post> = f
        .get(&format!("/v1.0/{a}/threads?limit=10"), token)
        .json()
        .unwrap();
    let second: Page<Post> = f
        .http
        .get(first.paging.unwrap().next.unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        second.data[0].id, first.data[9].id,
        "the previous page's last item repeats"
    );
    assert_eq!(second.data.len(), 11);

    f.server
        .add_fault(once(FaultKind::DisappearingPost, a, Endpoint::Threads));
    let paged: Vec<String> = f
        .all_posts(a, token, 10, "")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(paged.len(), all.len() - 1);
    assert!(
        !paged.contains(&all[10]),
        "the first post of page two vanished"
    );
    assert_eq!(f.all_posts(a, token, 100, "").len(), all.len() - 1);
}

#[test]
fn probability_faults_and_latency_settings_over_http() {
    let f = fixture(1, 3);
    let (_, token) = &f.accounts[0];
    let added: Value = f
        .http
        .post(format!("{}/admin/faults", f.server.base_url))
        .json(&serde_json::json!({"type": "server_error", "status": 500, "probability": 0.5, "endpoint": "me"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(added["id"].as_u64().is_some());
    let failures = (0..200)
        .filter(|_| f.get("/v1.0/me", token).status().as_u16() == 500)
        .count();
    assert!((60..140).contains(&failures), "{failures}");
    f.http
        .delete(format!("{}/admin/faults", f.server.base_url))
        .send()
        .unwrap();
    assert!((0..20).all(|_| f.get("/v1.0/me", token).status().is_success()));
    let r = f
        .http
        .post(format!("{}/admin/latency", f.server.base_url))
        .json(&serde_json::json!({"fixed_ms": 1, "jitter_ms": 2}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(*f.server.sim.latency.lock().unwrap(), (1, 2));
}

#[test]
fn answers_carry_the_simulated_clock_usage_headers_and_broken_text_on_request() {
    let f = fixture(1, 5);
    let (a, token) = f.accounts[0].clone();
    // Date is the simulated clock, which a test may set apart from the real one.
    f.server.advance(3 * 86_400);
    let now = f.server.sim.world.read().unwrap().now;
    let r = f.get(&format!("/v1.0/{a}/threads"), &token);
    let date = chrono::DateTime::parse_from_rfc2822(r.headers()["date"].to_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(date, now);

    f.server.add_fault(once(
        FaultKind::Usage {
            percent: 93,
            regain_minutes: Some(5),
        },
        &a,
        Endpoint::Threads,
    ));
    let r = f.get(&format!("/v1.0/{a}/threads"), &token);
    assert_eq!(r.status().as_u16(), 200);
    let header = |name: &str| -> Value {
        serde_json::from_str(r.headers()[name].to_str().unwrap()).unwrap()
    };
    assert_eq!(header("x-app-usage")["call_count"], 93);
    assert_eq!(
        header("x-business-use-case-usage")["1"][0]["estimated_time_to_regain_access"],
        5
    );

    for malformation in Malformation::ALL {
        f.server.add_fault(once(
            FaultKind::MalformedText { malformation },
            &a,
            Endpoint::Threads,
        ));
        let body = f
            .get(
                &format!("/v1.0/{a}/threads?fields=id,text,timestamp"),
                &token,
            )
            .bytes()
            .unwrap();
        assert!(
            serde_json::from_slice::<Page<Post>>(&body).is_err()
                || malformation == Malformation::Nul,
            "{malformation:?}: a strict reader refuses the page"
        );
        // Fired once: the next page is clean.
        let clean = f
            .get(
                &format!("/v1.0/{a}/threads?fields=id,text,timestamp"),
                &token,
            )
            .bytes()
            .unwrap();
        assert!(serde_json::from_slice::<Page<Post>>(&clean).is_ok());
    }
}
