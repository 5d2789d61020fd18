//! The Threads Graph API endpoints of the simulator.

use super::faults::{Endpoint, FaultKind, Malformation};
use super::world::{SimAccount, TokenProblem, World};
use super::Sim;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use threads_model::{
    ApiError, ErrorEnvelope, Page, Paging, Post, Profile, TokenResponse, DEFAULT_PAGE_LIMIT,
    EARLIEST_INSIGHTS_SINCE, EARLIEST_POSTS_SINCE, MAX_PAGE_LIMIT, TOKEN_LIFETIME_SECS,
    TOKEN_MIN_AGE_SECS,
};

type Params = Query<HashMap<String, String>>;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1.0/me", get(me))
        .route("/v1.0/{id}/threads", get(threads))
        .route("/v1.0/{id}/insights", get(media_insights))
        .route("/v1.0/{id}/threads_insights", get(account_insights))
        .route("/refresh_access_token", get(refresh_access_token))
        .route("/access_token", get(exchange_token))
}

/// What a handler answers: axum turns either side into the response.
type Answer = Result<Response, Refusal>;

/// An API error as the Graph API sends it.
struct Refusal {
    status: StatusCode,
    error: ApiError,
    retry_after: Option<u64>,
}

fn refusal(status: u16, code: i64, subcode: Option<i64>, kind: &str, message: &str) -> Refusal {
    Refusal {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        error: ApiError {
            message: message.into(),
            kind: Some(kind.into()),
            code,
            error_subcode: subcode,
            fbtrace_id: Some("AsimTrace".into()),
        },
        retry_after: None,
    }
}

fn bad_param(message: &str) -> Refusal {
    refusal(400, 100, None, "THApiException", message)
}

fn no_such_object(id: &str) -> Refusal {
    refusal(
        400,
        100,
        Some(33),
        "THApiException",
        &format!("Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
    )
}

fn token_refusal(problem: TokenProblem) -> Refusal {
    match problem {
        TokenProblem::Expired => refusal(
            400,
            190,
            Some(463),
            "OAuthException",
            "Error validating access token: Session has expired.",
        ),
        TokenProblem::Unknown | TokenProblem::Replaced => refusal(
            400,
            190,
            Some(467),
            "OAuthException",
            "Error validating access token: The session is invalid.",
        ),
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body =
            serde_json::to_vec(&ErrorEnvelope { error: self.error }).expect("serialize error");
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A fault that replaces the response.
fn fault_response(kind: &FaultKind) -> Option<Refusal> {
    Some(match *kind {
        FaultKind::ExpiredToken => token_refusal(TokenProblem::Expired),
        FaultKind::InvalidToken => token_refusal(TokenProblem::Unknown),
        FaultKind::TokenNotFound => refusal(
            400,
            24,
            None,
            "THApiException",
            "The requested resource does not exist",
        ),
        FaultKind::Throttle { code, status } => refusal(
            status,
            code,
            None,
            "THApiException",
            "Application request limit reached",
        ),
        // A user's limit over 429 (code 4 would be the whole application's).
        FaultKind::TooManyRequests { retry_after } => Refusal {
            retry_after: Some(retry_after),
            ..refusal(
                429,
                613,
                None,
                "THApiException",
                "Calls to this api have exceeded the rate limit.",
            )
        },
        FaultKind::BadRequest => bad_param("(#100) Invalid parameter"),
        FaultKind::ServerError { status } => refusal(
            status,
            2,
            None,
            "THApiException",
            "Service temporarily unavailable",
        ),
        _ => return None,
    })
}

fn token_of(params: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    params.get("access_token").cloned().or_else(|| {
        headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string())
    })
}

/// What one request needs before its handler runs: latency, counting, faults, auth.
struct Admitted<'a> {
    _in_flight: super::InFlight<'a>,
    account: usize,
    /// Cut the body in half and drop the connection.
    truncate: bool,
    malformed: bool,
    /// Break the first post's text this way.
    malformation: Option<Malformation>,
    /// Usage headers to send: (percent, minutes to regain access).
    usage: Option<(u32, Option<u64>)>,
}

/// Which account a request concerns, for counters and per-account faults.
enum Target<'a> {
    /// `/{user-id}/…` or `me`
    User(&'a str),
    Media(&'a str),
    TokenOwner,
}

async fn admit<'a>(
    sim: &'a Sim,
    endpoint: Endpoint,
    target: Target<'_>,
    token: Option<&str>,
) -> Result<Admitted<'a>, Refusal> {
    admit_page(sim, endpoint, target, token, None).await
}

/// `admit` for a request that is page `page` of a listing (faults may target a page).
async fn admit_page<'a>(
    sim: &'a Sim,
    endpoint: Endpoint,
    target: Target<'_>,
    token: Option<&str>,
    page: Option<u32>,
) -> Result<Admitted<'a>, Refusal> {
    let in_flight = sim.enter();
    let (fixed, jitter) = *sim.latency.lock().unwrap();
    if fixed + jitter > 0 {
        let extra = if jitter > 0 { rand_jitter(jitter) } else { 0 };
        tokio::time::sleep(Duration::from_millis(fixed + extra)).await;
    }
    let (account_user, auth) = {
        let world = sim.world.read().unwrap();
        let auth = token
            .ok_or(TokenProblem::Unknown)
            .and_then(|t| world.authenticate(t).map(|a| a.index));
        let user = match target {
            Target::User("me") | Target::TokenOwner => {
                auth.ok().map(|i| world.accounts[i].user_id.clone())
            }
            Target::User(id) => world.account_by_user(id).map(|a| a.user_id.clone()),
            Target::Media(id) => world.post(id).map(|(a, _)| a.user_id.clone()),
        };
        (user, auth)
    };
    sim.count(endpoint, account_user.as_deref());

    let mut admitted_faults = (false, false);
    let (mut malformation, mut usage) = (None, None);
    if let Some(kind) = sim.fire(endpoint, account_user.as_deref(), page, |k| {
        !k.is_listing_fault() && *k != FaultKind::AbsurdExpiresIn
    }) {
        match kind {
            FaultKind::Slow { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            FaultKind::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            FaultKind::MalformedJson => admitted_faults.1 = true,
            FaultKind::TruncatedBody => admitted_faults.0 = true,
            FaultKind::MalformedText { malformation: m } => malformation = Some(m),
            FaultKind::Usage {
                percent,
                regain_minutes,
            } => usage = Some((percent, regain_minutes)),
            ref other => {
                if let Some(r) = fault_response(other) {
                    return Err(r);
                }
            }
        }
    }
    let account = auth.map_err(token_refusal)?;
    Ok(Admitted {
        _in_flight: in_flight,
        account,
        truncate: admitted_faults.0,
        malformed: admitted_faults.1,
        malformation,
        usage,
    })
}

fn rand_jitter(jitter: u64) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    super::world::mix(DRAWS.fetch_add(1, Ordering::Relaxed)) % (jitter + 1)
}

fn respond(admitted: &Admitted<'_>, value: &impl serde::Serialize) -> Response {
    let mut response = respond_body(admitted, value);
    if let Some((percent, regain)) = admitted.usage {
        let headers = response.headers_mut();
        let app = json!({ "call_count": percent, "total_time": percent / 2, "total_cputime": percent / 2 });
        headers.insert(
            "x-app-usage",
            HeaderValue::from_str(&app.to_string()).expect("header"),
        );
        if let Some(minutes) = regain {
            let business = json!({ "1": [{ "type": "threads", "call_count": percent, "total_time": 10,
                                           "total_cputime": 10, "estimated_time_to_regain_access": minutes }] });
            headers.insert(
                "x-business-use-case-usage",
                HeaderValue::from_str(&business.to_string()).expect("header"),
            );
        }
    }
    response
}

fn respond_body(admitted: &Admitted<'_>, value: &impl serde::Serialize) -> Response {
    let mut body = serde_json::to_vec(value).expect("serialize");
    if let Some(m) = admitted.malformation {
        body = m.apply(&body);
    }
    if admitted.malformed {
        let mut broken = body[..body.len() / 2].to_vec();
        broken.extend_from_slice(b"<html>oops");
        return ([(header::CONTENT_TYPE, "application/json")], broken).into_response();
    }
    if admitted.truncate {
        let full = body.len();
        let half = Bytes::from(body[..full / 2].to_vec());
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "truncated by fault",
            )),
        ];
        let mut response = Body::from_stream(futures_util::stream::iter(chunks)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(full));
        return response;
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Keeps only the requested fields (`id` always), as the Graph API does.
fn select_fields(value: Value, fields: Option<&String>) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    let wanted: Vec<&str> = fields
        .map(|f| f.split(',').map(str::trim).collect())
        .unwrap_or_else(|| vec!["id"]);
    let kept: Map<String, Value> = map
        .into_iter()
        .filter(|(k, _)| k == "id" || wanted.contains(&k.as_str()))
        .collect();
    Value::Object(kept)
}

/// `since`/`until` as Unix seconds or a `YYYY-MM-DD` date.
fn parse_time(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .expect("midnight")
                    .and_utc()
                    .timestamp()
            })
    })
}

fn time_param(params: &HashMap<String, String>, name: &str) -> Result<Option<i64>, Refusal> {
    params
        .get(name)
        .map(|t| {
            parse_time(t).ok_or_else(|| {
                bad_param(&format!(
                    "(#100) Param {name} must be a unix timestamp or a date"
                ))
            })
        })
        .transpose()
}

async fn me(State(sim): State<Arc<Sim>>, Query(params): Params, headers: HeaderMap) -> Answer {
    let token = token_of(&params, &headers);
    let admitted = admit(&sim, Endpoint::Me, Target::TokenOwner, token.as_deref()).await?;
    let profile = {
        let world = sim.world.read().unwrap();
        let a = &world.accounts[admitted.account];
        Profile {
            id: a.user_id.clone(),
            username: Some(a.username.clone()),
            name: Some(format!("Sim User {}", a.index)),
            threads_profile_picture_url: Some(format!("https://cdn.sim.threads/{}.jpg", a.user_id)),
            threads_biography: Some("Simulated account 🧪".into()),
            is_verified: Some(a.index % 10 == 0),
        }
    };
    let value = select_fields(
        serde_json::to_value(profile).expect("profile"),
        params.get("fields"),
    );
    Ok(respond(&admitted, &value))
}

fn encode_cursor(post_time: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{post_time}:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (t, id) = text.split_once(':')?;
    Some((t.parse().ok()?, id.to_string()))
}

async fn threads(
    State(sim): State<Arc<Sim>>,
    Path(user): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Answer {
    let token = token_of(&params, &headers);
    let page_number = listing_page(&sim, &user, &params);
    let admitted = admit_page(
        &sim,
        Endpoint::Threads,
        Target::User(&user),
        token.as_deref(),
        Some(page_number),
    )
    .await?;
    let page = list_threads(&sim, &user, &params, &headers, &admitted, page_number)?;
    Ok(respond(&admitted, &page))
}

/// Which page of the listing a request asks for (1 = the newest), counted in pages of its
/// limit from the `after` cursor; for faults that target a page.
fn listing_page(sim: &Sim, user: &str, params: &HashMap<String, String>) -> u32 {
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(DEFAULT_PAGE_LIMIT)
        .clamp(1, MAX_PAGE_LIMIT)
        .min(
            sim.listing_cap
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(1),
        );
    let Some(after) = params.get("after").and_then(|c| decode_cursor(c)) else {
        return 1;
    };
    let world = sim.world.read().unwrap();
    let Some(account) = world.account_by_user(user) else {
        return 1;
    };
    let before = account
        .visible_posts(world.now)
        .partition_point(|p| (p.published_at, p.id.clone()) >= after);
    (before / limit) as u32 + 1
}

fn list_threads(
    sim: &Sim,
    user: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    admitted: &Admitted<'_>,
    page_number: u32,
) -> Result<Page<Value>, Refusal> {
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|&l| l >= 1)
            .ok_or_else(|| bad_param("(#100) Param limit must be a positive integer"))?
            .min(MAX_PAGE_LIMIT),
    }
    .min(
        sim.listing_cap
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1),
    );
    if params.contains_key("before") && params.contains_key("after") {
        return Err(bad_param("(#100) Cannot specify both before and after"));
    }
    let since = time_param(params, "since")?;
    let until = time_param(params, "until")?;
    if since.is_some_and(|s| s < EARLIEST_POSTS_SINCE) {
        return Err(bad_param(&format!(
            "(#100) Param since must be at or after {EARLIEST_POSTS_SINCE}"
        )));
    }
    let position = |name: &str| -> Result<Option<(i64, String)>, Refusal> {
        params
            .get(name)
            .map(|c| decode_cursor(c).ok_or_else(|| bad_param("(#100) Invalid cursor")))
            .transpose()
    };
    let (after, before) = (position("after")?, position("before")?);
    let owner_id = sim.world.read().unwrap().accounts[admitted.account]
        .user_id
        .clone();
    let has_after = after.is_some();
    let listing_fault = sim.fire(
        Endpoint::Threads,
        Some(&owner_id),
        Some(page_number),
        |k| match k {
            FaultKind::DuplicateItems => has_after,
            FaultKind::DisappearingPost => true,
            _ => false,
        },
    );

    let mut world = sim.world.write().unwrap();
    let owner = &world.accounts[admitted.account];
    if user != "me" && user != owner.user_id {
        return Err(if world.account_by_user(user).is_some() {
            refusal(
                400,
                10,
                None,
                "OAuthException",
                "(#10) Application does not have permission for this action",
            )
        } else {
            no_such_object(user)
        });
    }
    let now = world.now;
    let until = until.unwrap_or(now).min(now);
    let key = |p: &super::world::SimPost| (p.published_at, p.id.clone());
    // Newest first; the window, then the cursor.
    let window: Vec<&super::world::SimPost> = owner
        .visible_posts(now)
        .iter()
        .filter(|p| p.published_at <= until && since.is_none_or(|s| p.published_at >= s))
        .collect();
    let (start, end) = if let Some(b) = &before {
        let end = window.partition_point(|p| key(p) > *b);
        (end.saturating_sub(limit), end)
    } else {
        let start = after
            .as_ref()
            .map_or(0, |a| window.partition_point(|p| key(p) >= *a));
        (start, (start + limit).min(window.len()))
    };
    let mut items: Vec<Post> = window[start..end].iter().map(|p| p.to_api(owner)).collect();
    let more_after = end < window.len();
    let more_before = start > 0;
    let next_first = more_after.then(|| window[end].id.clone());
    let repeated = (start > 0).then(|| window[start - 1].to_api(owner));
    let first_key = window.get(start).map(|p| key(p));
    let last_key = end
        .checked_sub(1)
        .and_then(|i| window.get(i))
        .map(|p| key(p));

    match listing_fault {
        Some(FaultKind::DuplicateItems) => {
            if let Some(previous_last) = repeated {
                items.insert(0, previous_last);
            }
        }
        Some(FaultKind::DisappearingPost) => {
            if let Some(id) = next_first {
                world.remove_post(&id);
            }
        }
        _ => {}
    }
    let fields = params.get("fields");
    let data: Vec<Value> = items
        .into_iter()
        .map(|p| select_fields(serde_json::to_value(p).expect("post"), fields))
        .collect();

    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let link = |cursor_name: &str, cursor: &str| {
        let mut query: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k.as_str() != "after" && k.as_str() != "before")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        query.sort();
        query.push((cursor_name.to_string(), cursor.to_string()));
        let qs = serde_urlencoded::to_string(&query).expect("query string");
        format!("http://{host}/v1.0/{user}/threads?{qs}")
    };
    let cursors = match (&first_key, &last_key) {
        (Some(f), Some(l)) => Some(threads_model::Cursors {
            before: Some(encode_cursor(f.0, &f.1)),
            after: Some(encode_cursor(l.0, &l.1)),
        }),
        _ => None,
    };
    let paging = cursors.map(|c| Paging {
        next: more_after.then(|| link("after", c.after.as_deref().unwrap_or_default())),
        previous: more_before.then(|| link("before", c.before.as_deref().unwrap_or_default())),
        cursors: Some(c),
    });
    Ok(Page { data, paging })
}

const POST_METRIC_NAMES: [&str; 6] = ["views", "likes", "replies", "reposts", "quotes", "shares"];

fn metric_list(params: &HashMap<String, String>) -> Result<Vec<String>, Refusal> {
    let list: Vec<String> = params
        .get("metric")
        .map(|m| {
            m.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        return Err(bad_param("(#100) The parameter metric is required"));
    }
    Ok(list)
}

async fn media_insights(
    State(sim): State<Arc<Sim>>,
    Path(media): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Answer {
    let token = token_of(&params, &headers);
    let admitted = admit(
        &sim,
        Endpoint::MediaInsights,
        Target::Media(&media),
        token.as_deref(),
    )
    .await?;
    let result = (|| {
        let metrics = metric_list(&params)?;
        let world = sim.world.read().unwrap();
        let (owner, post) = world.post(&media).ok_or_else(|| no_such_object(&media))?;
        if owner.index != admitted.account {
            return Err(no_such_object(&media));
        }
        for m in &metrics {
            if m == "clicks" {
                return Err(refusal(
                    400,
                    1,
                    None,
                    "THApiException",
                    "An unknown error has occurred.",
                ));
            }
            if !POST_METRIC_NAMES.contains(&m.as_str()) {
                return Err(bad_param(&format!(
                    "(#100) metric[0] must be one of the following values: {}",
                    POST_METRIC_NAMES.join(", ")
                )));
            }
        }
        if !post.media_type.has_insights() {
            return Ok(json!({ "data": [] }));
        }
        let values = post.metrics_at(world.now);
        let data: Vec<Value> = metrics
            .iter()
            .map(|name| {
                let value = match name.as_str() {
                    "views" => values.views,
                    "likes" => values.likes,
                    "replies" => values.replies,
                    "reposts" => values.reposts,
                    "quotes" => values.quotes,
                    _ => values.shares,
                };
                // The documented quirk: replies report under the id `thread_replies`.
                let id_name = if name == "replies" {
                    "thread_replies"
                } else {
                    name
                };
                json!({
                    "name": name,
                    "period": "lifetime",
                    "values": [{ "value": value }],
                    "title": title_case(name),
                    "description": format!("The number of {name} on your post."),
                    "id": format!("{media}/insights/{id_name}/lifetime"),
                })
            })
            .collect();
        Ok(json!({ "data": data }))
    })()?;
    Ok(respond(&admitted, &result))
}

fn title_case(name: &str) -> String {
    let mut c = name.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

const ACCOUNT_METRIC_NAMES: [&str; 8] = [
    "views",
    "likes",
    "replies",
    "reposts",
    "quotes",
    "clicks",
    "followers_count",
    "follower_demographics",
];
const DAY: i64 = 86_400;
/// Pacific midnight as a fixed UTC-8 offset (inferred from end_time values).
const PACIFIC_OFFSET: i64 = 8 * 3600;

fn pacific_day_start(t: i64) -> i64 {
    (t + PACIFIC_OFFSET).div_euclid(DAY) * DAY - PACIFIC_OFFSET
}

async fn account_insights(
    State(sim): State<Arc<Sim>>,
    Path(user): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Answer {
    let token = token_of(&params, &headers);
    let demographics = params
        .get("metric")
        .is_some_and(|m| m.split(',').any(|n| n.trim() == "follower_demographics"));
    let endpoint = if demographics {
        Endpoint::FollowerDemographics
    } else {
        Endpoint::AccountInsights
    };
    let admitted = admit(&sim, endpoint, Target::User(&user), token.as_deref()).await?;
    let world = sim.world.read().unwrap();
    let body = account_insights_body(&world, &user, &params, admitted.account)?;
    Ok(respond(&admitted, &body))
}

fn account_insights_body(
    world: &World,
    user: &str,
    params: &HashMap<String, String>,
    account: usize,
) -> Result<Value, Refusal> {
    let owner: &SimAccount = &world.accounts[account];
    if user != "me" && user != owner.user_id {
        return Err(no_such_object(user));
    }
    let metrics = metric_list(params)?;
    let now = world.now;
    let since = time_param(params, "since")?.unwrap_or(now - DAY);
    let until = time_param(params, "until")?.unwrap_or(now).min(now);
    if since < EARLIEST_INSIGHTS_SINCE {
        return Err(bad_param(&format!(
            "(#100) Param since must be at or after {EARLIEST_INSIGHTS_SINCE} (2024-04-13)"
        )));
    }
    if since > until {
        return Err(bad_param("(#100) Param since must be before until"));
    }
    let seed = world.seed;
    let mut days = Vec::new();
    let mut d = pacific_day_start(since);
    while d < until {
        days.push(d);
        d += DAY;
    }
    let window_sum = |metric: u64| -> i64 {
        days.iter()
            .map(|&day| owner.daily(seed, metric, day, until))
            .sum()
    };
    let mut data = Vec::new();
    for name in &metrics {
        let entry = match name.as_str() {
            "views" => json!({
                "name": "views", "period": "day", "title": "Views",
                "values": days.iter().map(|&day| json!({
                    "value": owner.daily(seed, 0, day, until),
                    "end_time": threads_model::time::format(
                        chrono::DateTime::from_timestamp(day + DAY, 0).expect("time")),
                })).collect::<Vec<_>>(),
            }),
            "likes" | "replies" | "reposts" | "quotes" => {
                let metric = match name.as_str() {
                    "likes" => 1,
                    "replies" => 2,
                    "reposts" => 3,
                    _ => 4,
                };
                json!({ "name": name, "period": "day", "title": title_case(name),
                        "total_value": { "value": window_sum(metric) } })
            }
            "clicks" => {
                let total = window_sum(5);
                json!({ "name": "clicks", "period": "day", "title": "Clicks",
                        "link_total_values": [
                            { "value": total - total / 3, "link_url": format!("https://example.com/{}", owner.username) },
                            { "value": total / 3, "link_url": "https://example.org/landing" }] })
            }
            "followers_count" => json!({
                "name": "followers_count", "period": "day", "title": "Followers",
                "total_value": { "value": owner.followers_at(seed, now) },
            }),
            "follower_demographics" => demographics(owner, seed, now, params)?,
            _ => {
                return Err(bad_param(&format!(
                    "(#100) metric must be one of the following values: {}",
                    ACCOUNT_METRIC_NAMES.join(", ")
                )))
            }
        };
        data.push(entry);
    }
    Ok(json!({ "data": data }))
}

fn demographics(
    owner: &SimAccount,
    seed: u64,
    now: i64,
    params: &HashMap<String, String>,
) -> Result<Value, Refusal> {
    let breakdown = params.get("breakdown").map(String::as_str);
    let values: &[&str] = match breakdown {
        Some("country") => &["US", "JP", "BR", "DE"],
        Some("city") => &["New York, New York", "Tokyo, Tokyo", "São Paulo, São Paulo"],
        Some("age") => &["18-24", "25-34", "35-44", "45-54", "55-64", "65+"],
        Some("gender") => &["F", "M", "U"],
        _ => {
            return Err(bad_param(
                "(#100) follower_demographics requires exactly one breakdown: country, city, age or gender",
            ))
        }
    };
    let followers = owner.followers_at(seed, now);
    if followers < 100 {
        return Err(bad_param(
            "(#100) follower_demographics requires at least 100 followers",
        ));
    }
    let share = followers / values.len() as i64;
    Ok(json!({
        "name": "follower_demographics", "period": "lifetime", "title": "Follower demographics",
        "total_value": { "breakdowns": [{
            "dimension_keys": [breakdown.unwrap_or_default()],
            "results": values.iter().map(|v| json!({ "dimension_values": [v], "value": share })).collect::<Vec<_>>(),
        }]}
    }))
}

async fn refresh_access_token(State(sim): State<Arc<Sim>>, Query(params): Params) -> Answer {
    token_grant(&sim, &params, "th_refresh_token", true).await
}

async fn exchange_token(State(sim): State<Arc<Sim>>, Query(params): Params) -> Answer {
    token_grant(&sim, &params, "th_exchange_token", false).await
}

/// Refresh: the token must be current, at least 24 h old and unexpired; the new token lives
/// 60 days and the old one stops working. Exchange: any current token becomes long-lived.
/// As Meta documents them, both take the token only as the `access_token` query parameter:
/// a Bearer header alone is an invalid session (190/467).
async fn token_grant(
    sim: &Sim,
    params: &HashMap<String, String>,
    grant: &str,
    check_age: bool,
) -> Answer {
    let token = params.get("access_token").cloned();
    let admitted = admit(
        sim,
        Endpoint::RefreshToken,
        Target::TokenOwner,
        token.as_deref(),
    )
    .await?;
    if params.get("grant_type").map(String::as_str) != Some(grant) {
        return Err(bad_param(&format!("(#100) grant_type must be {grant}")));
    }
    if !check_age && !params.contains_key("client_secret") {
        return Err(bad_param("(#100) client_secret is required"));
    }
    let mut world = sim.world.write().unwrap();
    let current = &world.accounts[admitted.account].token;
    if check_age && world.now - current.issued_at < TOKEN_MIN_AGE_SECS {
        return Err(bad_param(
            "(#100) A long-lived token can be refreshed only when it is at least 24 hours old",
        ));
    }
    let new = world.issue_token(admitted.account, 0, TOKEN_LIFETIME_SECS);
    let owner = world.accounts[admitted.account].user_id.clone();
    let absurd = sim
        .fire(Endpoint::RefreshToken, Some(&owner), None, |k| {
            *k == FaultKind::AbsurdExpiresIn
        })
        .is_some();
    let body = TokenResponse {
        access_token: new.text,
        token_type: "bearer".into(),
        expires_in: if absurd {
            i64::MAX
        } else {
            new.expires_at - world.now
        },
        user_id: None,
    };
    Ok(respond(&admitted, &body))
}
