//! REST sources that authenticate with OAuth 2 (pgrx-tests/src/oauth_api.rs): client
//! credentials asked once and cached, a new token when the API refuses one, a rotated
//! refresh token committed before the API is called, invalid_grant marking the source
//! (an alert, no more requests) until rest_alter_source, runs of one source at once
//! renewing one at a time, a fan-out's parents sharing one renewal, and no secret
//! anywhere shown.

use postgres::Client;
use pullsync_tests::db::fresh_extension_database;
use pullsync_tests::oauth_api::{self, OAuthApi, CLIENT_ID, CLIENT_SECRET, MARK};
use pullsync_tests::rest_calls::pull;
use serde_json::{json, Value};

fn config(api: &OAuthApi, auth: Value) -> Value {
    json!({
        "base_url": api.base_url(),
        "path": "/v1/items",
        "auth": auth,
        "records": "data",
        "primary_key": "id",
        "target": { "table": "public.items", "columns": { "id": "id", "name": "name" } },
        "retries": 0
    })
}

fn refresh_auth(api: &OAuthApi, refresh_token: &str) -> Value {
    json!({
        "type": "oauth2", "grant": "refresh_token", "token_url": api.token_url(),
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": refresh_token
    })
}

fn database(name: &str) -> Client {
    let mut db = fresh_extension_database(name);
    db.batch_execute("CREATE TABLE public.items (id bigint PRIMARY KEY, name text)")
        .unwrap();
    db
}

fn add(db: &mut Client, name: &str, config: &Value) -> Value {
    db.query_one("SELECT pullsync.rest_add_source($1, $2)", &[&name, config])
        .unwrap()
        .get(0)
}

fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

/// Every place a secret could leak to: the source's row (config and all), the run logs,
/// alerts and job results.
fn assert_no_secret(db: &mut Client) {
    for sql in [
        "SELECT coalesce(string_agg(r::text, ' '), '') FROM pullsync.rest_sources r",
        "SELECT coalesce(string_agg(l::text, ' '), '') FROM pullsync.sync_logs l",
        "SELECT coalesce(string_agg(a::text, ' '), '') FROM pullsync.alerts a",
        "SELECT coalesce(string_agg(j::text, ' '), '') FROM pullsync.jobs j",
        "SELECT coalesce(string_agg(s::text, ' '), '') FROM pullsync.source_states s",
    ] {
        let text: String = db.query_one(sql, &[]).unwrap().get(0);
        assert!(!text.contains(MARK), "{sql}: {text}");
    }
}

#[test]
fn client_credentials_are_asked_once_cached_and_renewed_when_refused() {
    let api = oauth_api::start();
    let mut db = database("it_rest_oauth_cc");
    let auth = json!({
        "type": "oauth2", "grant": "client_credentials", "token_url": api.token_url(),
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scope": "read",
        "client_auth": "body"
    });
    let shown = add(&mut db, "cc", &config(&api, auth));
    assert!(!shown.to_string().contains(MARK), "{shown}");
    assert_eq!(shown["auth"]["client_id"], CLIENT_ID);

    let first = pull(&mut db, "cc");
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["items"], 5, "{first}");
    let second = pull(&mut db, "cc");
    assert_eq!(second["status"], "completed", "{second}");
    let grants = api.grants();
    assert_eq!(grants.len(), 1, "the token is reused: {grants:?}");
    assert_eq!(
        (
            grants[0].grant_type.as_str(),
            grants[0].client_auth.as_str()
        ),
        ("client_credentials", "body")
    );
    let requests = api.api_requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|t| t.is_some() && *t == requests[0]));
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.rest_sources
              WHERE access_token_encrypted LIKE 'v1:%' AND access_token_expires_at > now() + interval '50 minutes'"
        ),
        1
    );

    // The API refuses the token (revoked early): one new token, one more try.
    api.revoke_access_tokens();
    let third = pull(&mut db, "cc");
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(api.grants().len(), 2);
    let requests = api.api_requests();
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert_ne!(requests[2], requests[3]);
    assert_no_secret(&mut db);
}

#[test]
fn a_rotated_refresh_token_is_committed_before_the_api_is_called() {
    let api = oauth_api::start();
    let mut db = database("it_rest_oauth_rotation");
    let first_refresh = api.refresh_token();
    add(
        &mut db,
        "rt",
        &config(&api, refresh_auth(&api, &first_refresh)),
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.rest_sources WHERE refresh_token_encrypted LIKE 'v1:%'"
        ),
        1
    );
    // Tokens shorter-lived than the margin: the next run asks for a new one.
    api.set_expires_in(30);
    // The API breaks right after the token exchange: the run dies with its first request.
    api.set_api_fails(true);
    let crashed = pull(&mut db, "rt");
    assert_eq!(crashed["status"], "failed", "{crashed}");
    let grants = api.grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(
        grants[0].refresh_token.as_deref(),
        Some(first_refresh.as_str())
    );
    assert_eq!(grants[0].client_auth, "basic");
    let rotated = api.refresh_token();
    assert_ne!(rotated, first_refresh, "the server rotated it");
    assert_eq!(api.api_requests().len(), 1);
    // Sealed, never plain.
    let row: String = db
        .query_one("SELECT r::text FROM pullsync.rest_sources r", &[])
        .unwrap()
        .get(0);
    assert!(!row.contains(&rotated) && !row.contains(MARK), "{row}");

    // The next run refreshes with the new token, which only it knows.
    api.set_api_fails(false);
    let next = pull(&mut db, "rt");
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(next["items"], 5, "{next}");
    let grants = api.grants();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(grants[1].refresh_token.as_deref(), Some(rotated.as_str()));
    assert_eq!(grants[1].status, 200);
    // The spent one is refused by the server.
    let answer = reqwest::blocking::Client::new()
        .post(api.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ])
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: Value = answer.json().unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_no_secret(&mut db);
}

#[test]
fn invalid_grant_marks_the_source_alerts_and_stops_requests_until_reauthorised() {
    let api = oauth_api::start();
    let mut db = database("it_rest_oauth_reauth");
    let stale = format!("rt-{MARK}-revoked-long-ago");
    add(&mut db, "crm", &config(&api, refresh_auth(&api, &stale)));
    let failed = pull(&mut db, "crm");
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("needs re-authorisation"), "{error}");
    assert!(error.contains("invalid_grant"), "{error}");
    assert!(error.contains("pullsync.rest_alter_source"), "{error}");
    assert!(api.api_requests().is_empty());
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.rest_sources
              WHERE needs_reauth_at IS NOT NULL AND needs_reauth_reason LIKE '%HTTP 400: invalid_grant%'"
        ),
        1
    );
    let details: Value = db
        .query_one(
            "SELECT details FROM pullsync.source_states WHERE source = 'rest:crm'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(details["accounts_needing_reauthorization"], json!(["crm"]));
    let alert: String = db
        .query_one(
            "SELECT message FROM pullsync.alerts
              WHERE alert_type = 'token_expired' AND source = 'rest:crm' AND resolved_at IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(alert.contains("crm"), "{alert}");

    // No further request while it waits.
    let again = pull(&mut db, "crm");
    assert_eq!(again["status"], "failed", "{again}");
    assert!(again["error"]
        .as_str()
        .unwrap()
        .contains("needs re-authorisation"));
    assert_eq!(api.grants().len(), 1);
    assert!(api.api_requests().is_empty());

    // New credentials end the wait; the next run's record resolves the alert.
    db.query_one(
        "SELECT pullsync.rest_alter_source('crm', $1)",
        &[&json!({ "auth": refresh_auth(&api, &api.refresh_token()) })],
    )
    .unwrap();
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.rest_sources WHERE needs_reauth_at IS NULL"
        ),
        1
    );
    let healed = pull(&mut db, "crm");
    assert_eq!(healed["status"], "completed", "{healed}");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.alerts WHERE alert_type = 'token_expired' AND resolved_at IS NULL"
        ),
        0
    );
    assert_no_secret(&mut db);
}

/// `pull` of `name` from two sessions at once (a scheduled run and a manual one): both
/// answers.
fn pull_twice_at_once(database: &str, name: &str) -> [Value; 2] {
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (database, name) = (database.to_string(), name.to_string());
            std::thread::spawn(move || {
                let mut db = pullsync_tests::db::connect(&database);
                pull(&mut db, &name)
            })
        })
        .collect();
    let answers: Vec<Value> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    [answers[0].clone(), answers[1].clone()]
}

#[test]
fn runs_at_once_renew_a_rotating_refresh_token_once_and_share_it() {
    let api = oauth_api::start();
    let database_name = "it_rest_oauth_at_once";
    let mut db = database(database_name);
    add(
        &mut db,
        "shared",
        &config(&api, refresh_auth(&api, &api.refresh_token())),
    );
    // Both runs find no access token; the first exchange takes a second, so the other
    // run wants a token meanwhile. Sending the same refresh token twice would have the
    // second refused (invalid_grant) and the source marked as needing re-authorisation.
    api.set_token_delay(std::time::Duration::from_millis(1000));
    for answer in pull_twice_at_once(database_name, "shared") {
        assert_eq!(answer["status"], "completed", "{answer}");
        assert_eq!(answer["items"], 5, "{answer}");
    }
    let grants = api.grants();
    assert_eq!(
        grants.len(),
        1,
        "one exchange, its token shared: {grants:?}"
    );
    assert_eq!(grants[0].status, 200);

    // The API refuses the token both runs hold: each wants a new one, and the run that
    // comes second takes the one the first committed instead of spending the refresh
    // token the first already rotated.
    api.revoke_access_tokens();
    for answer in pull_twice_at_once(database_name, "shared") {
        assert_eq!(answer["status"], "completed", "{answer}");
    }
    let grants = api.grants();
    assert!(
        grants.iter().all(|g| g.status == 200),
        "no refresh token sent twice: {grants:?}"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pullsync.rest_sources WHERE needs_reauth_at IS NULL"
        ),
        1
    );
    // The lock is let go: a third run renews when it must.
    api.revoke_access_tokens();
    assert_eq!(pull(&mut db, "shared")["status"], "completed");
    assert_no_secret(&mut db);
}

#[test]
fn a_fan_out_renews_a_refused_token_once_for_the_parents_refused_together() {
    let api = oauth_api::start();
    let mut db = database("it_rest_oauth_fan_out");
    db.batch_execute(
        "CREATE TABLE public.groups (id int PRIMARY KEY);
         INSERT INTO public.groups SELECT generate_series(1, 6);
         CREATE TABLE public.group_items (id bigint PRIMARY KEY, name text);",
    )
    .unwrap();
    let auth = json!({
        "type": "oauth2", "grant": "client_credentials", "token_url": api.token_url(),
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET
    });
    let config = json!({
        "base_url": api.base_url(),
        "path": "/v1/groups/{group}/items",
        "for_each": { "query": "SELECT id FROM public.groups", "as": { "group": "id" } },
        "auth": auth,
        "records": "data",
        "primary_key": "id",
        "target": { "table": "public.group_items", "columns": { "id": "id", "name": "name" } },
        "concurrency": 3,
        "retries": 0
    });
    add(&mut db, "groups", &config);
    let first = pull(&mut db, "groups");
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["items"], 30, "{first}");
    assert_eq!(api.grants().len(), 1);

    // The token is revoked: the three parents in flight are refused together; one new
    // token is asked for, the other two take it, and every parent is read.
    api.revoke_access_tokens();
    let second = pull(&mut db, "groups");
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["parents"]["done"], 6, "{second}");
    let grants = api.grants();
    assert_eq!(grants.len(), 2, "one renewal for the run: {grants:?}");
    let requests = api.api_requests();
    let refused = requests[6..]
        .iter()
        .filter(|token| *token == &requests[0])
        .count();
    assert_eq!(
        refused, 3,
        "only the three sent together had the revoked token"
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM public.group_items"),
        30
    );
    assert_no_secret(&mut db);
}
