//! A REST source's configuration (`rest_add_source(name, config)`), checked key by key:
//! every refusal names the key and says what it takes. The secret (token, key or
//! password) is taken out to be sealed; what is stored and shown back never holds it.

use super::oauth::{ClientAuth, Grant, OAuth2};
use super::path::JsonPath;
use super::responses::Responses;
use crate::error::{InputError, Result};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct RestConfig {
    pub base_url: String,
    pub path: String,
    /// Sent with every request, before the paging and incremental parameters.
    pub query: Vec<(String, String)>,
    pub method: Method,
    /// A POST's JSON object, before the paging and incremental values placed in it.
    pub body: Option<Value>,
    pub auth: Auth,
    /// Where a page's array of records is (empty: the page is the array).
    pub records: JsonPath,
    /// A record's key, one or more paths; each maps to a column of the target.
    pub primary_key: Vec<JsonPath>,
    pub pagination: Pagination,
    pub incremental: Option<Incremental>,
    pub target: Target,
    /// Requests per second; 0 means no limit.
    pub rate_limit: f64,
    pub concurrency: usize,
    pub timeout_ms: u64,
    pub retries: u32,
    /// A run stops (failed) after this many pages: a listing that never ends is an error.
    pub max_pages: u32,
    /// What answers mean, checked before their status is classified.
    pub responses: Responses,
    /// The column `rest_reconcile` marks rows with when their key is no longer listed.
    pub deletes: Option<Deletes>,
    /// Fan-out: the query that lists the parents whose values fill `path`'s placeholders.
    pub for_each: Option<super::fanout::ForEach>,
}

/// How requests authenticate; the secret itself is sealed apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The key in a request header.
    HeaderKey {
        header: String,
    },
    /// The key as a query parameter.
    QueryKey {
        param: String,
    },
    /// HTTP basic: the user is configuration (shown back), the password the secret
    /// (it may be empty: `Authorization: Basic base64(user:)`).
    Basic {
        username: String,
    },
    /// `Authorization: Bearer <access token>`, the token asked of `token_url` (the client
    /// secret is the sealed secret; a refresh token and the access token are sealed apart).
    OAuth2(OAuth2),
}

/// How a listing is asked for: a search or GraphQL API is read with POSTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// Where a paging or incremental value goes: a query parameter of that name, or the JSON
/// path of that text in a POST's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Query,
    Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pagination {
    /// One request.
    None,
    /// The next page's cursor goes into `param`: from a path of the page (`meta.next`), or
    /// from a field of the page's last record (Stripe's `starting_after`), while
    /// `has_more` (when set) says true.
    Cursor {
        param: String,
        place: Place,
        from: CursorFrom,
        has_more: Option<JsonPath>,
    },
    /// The next page's whole URL at a path of the page.
    NextUrl { path: JsonPath },
    /// The next page's URL in the RFC 8288 `Link` header, `rel="next"`.
    LinkHeader,
    /// Pages numbered from `start`; a page shorter than `size` (or empty) is the last.
    PageNumber {
        param: String,
        place: Place,
        start: u64,
        size_param: Option<String>,
        size: u64,
    },
    /// Records `offset` to `offset + limit`; a shorter page is the last.
    Offset {
        param: String,
        place: Place,
        limit_param: String,
        limit: u64,
    },
    /// A GraphQL relay connection: the cursor goes into the body's `variables.<variable>`,
    /// `hasNextPage` and `endCursor` are read from the object at `page_info`.
    GraphQl {
        variable: String,
        page_info: JsonPath,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum CursorFrom {
    Page(JsonPath),
    LastRecord(JsonPath),
}

/// An incremental source sends the high-water mark of `field` (the highest value
/// committed) in `param`; the first run sends `initial`, or nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Incremental {
    pub field: JsonPath,
    pub param: String,
    pub place: Place,
    pub initial: Option<String>,
    /// Lookback, boundary and backfill windows.
    pub options: super::incremental::Options,
}

/// `rest_reconcile` marks the target's rows whose key a complete listing no longer holds:
/// `column` (a timestamptz of the target) is set to the time, and cleared when the key
/// comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletes {
    pub column: String,
}

/// Where records go: an existing table, columns filled from paths, the rest of each
/// record (all of it no column's path takes, nested fields too) into `extra` when set.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub table: String,
    pub columns: Vec<(String, JsonPath)>,
    pub extra: Option<String>,
}

impl Target {
    /// The columns the primary key's paths fill: the conflict target of the upsert.
    pub fn key_columns(&self, key: &[JsonPath]) -> Vec<String> {
        key.iter()
            .filter_map(|k| {
                self.columns
                    .iter()
                    .find(|(_, p)| p == k)
                    .map(|(c, _)| c.clone())
            })
            .collect()
    }
}

const KEYS: [&str; 13] = [
    "base_url",
    "path",
    "query",
    "auth",
    "records",
    "primary_key",
    "pagination",
    "incremental",
    "target",
    "rate_limit",
    "concurrency",
    "timeout_ms",
    "retries",
];
const MORE_KEYS: [&str; 6] = [
    "max_pages",
    "responses",
    "deletes",
    "method",
    "body",
    "for_each",
];

fn bad(key: &str, problem: impl std::fmt::Display, hint: impl Into<String>) -> InputError {
    InputError::invalid(format!("config.{key} {problem}"), hint)
}

fn text<'a>(obj: &'a Map<String, Value>, key: &str, at: &str) -> Result<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.as_str())),
        Some(_) => Err(bad(
            &format!("{at}{key}"),
            "must be a non-empty string",
            format!("Set {at}{key} to a string."),
        )),
    }
}

fn required_text<'a>(obj: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a str> {
    text(obj, key, at)?.ok_or_else(|| {
        bad(
            &format!("{at}{key}"),
            "is missing",
            format!("Add {at}{key} to the configuration (docs/REST.md)."),
        )
    })
}

fn number(obj: &Map<String, Value>, key: &str, low: f64, high: f64, default: f64) -> Result<f64> {
    number_at(obj, key, "", low, high, default)
}

fn number_at(
    obj: &Map<String, Value>,
    key: &str,
    at: &str,
    low: f64,
    high: f64,
    default: f64,
) -> Result<f64> {
    let named = format!("{at}{key}");
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|v| (low..=high).contains(&v)) => {
            Ok(n.as_f64().unwrap_or(default))
        }
        Some(_) => Err(bad(
            &named,
            format!("must be a number from {low} to {high}"),
            format!("Set {named} within {low}..{high}, or leave it out for {default}."),
        )),
    }
}

fn path(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<JsonPath>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => JsonPath::parse(s).map(Some).ok_or_else(|| {
            bad(
                &format!("{at}{key}"),
                format!("is not a JSON path: {s:?}"),
                "Write dotted keys and indexes, e.g. \"data\" or \"meta.next_cursor\".",
            )
        }),
        Some(_) => Err(bad(
            &format!("{at}{key}"),
            "must be a JSON path as a string",
            "Write dotted keys and indexes, e.g. \"data\" or \"meta.next_cursor\".",
        )),
    }
}

fn required_path(obj: &Map<String, Value>, key: &str, at: &str) -> Result<JsonPath> {
    path(obj, key, at)?.ok_or_else(|| {
        bad(
            &format!("{at}{key}"),
            "is missing",
            format!("Add {at}{key}, a JSON path such as \"next_cursor\"."),
        )
    })
}

/// A name that goes into a URL or a header as is.
fn token_like(value: &str, key: &str) -> Result<String> {
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.[]".contains(&b));
    if ok && !value.is_empty() && value.len() <= 128 {
        Ok(value.to_string())
    } else {
        Err(bad(
            key,
            format!("{value:?} is not a plain name"),
            "Use letters, digits, '-', '_', '.', '[' and ']' (at most 128).",
        ))
    }
}

/// Headers that steer the request or the connection rather than authenticate it: which
/// host answers, how the body is framed, what the server's network position looks like.
const STEERING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "forwarded",
    "x-real-ip",
];

/// The header an API key goes in: a plain name that does not steer the request.
fn key_header(value: &str) -> Result<String> {
    let name = token_like(value, "auth.header")?;
    let lower = name.to_ascii_lowercase();
    if STEERING_HEADERS.contains(&lower.as_str())
        || lower.starts_with("proxy-")
        || lower.starts_with("x-forwarded-")
    {
        return Err(bad(
            "auth.header",
            format!("{value:?} is not a header for an API key"),
            "Name the header the API reads its key from, e.g. \"X-Api-Key\"; headers that choose the host, frame the request or speak for a proxy are refused.",
        ));
    }
    Ok(name)
}

fn identifier(value: &str, key: &str) -> Result<String> {
    if !value.is_empty() && value.len() <= 63 && !value.contains('\0') {
        Ok(value.to_string())
    } else {
        Err(bad(
            key,
            format!("{value:?} is not a column name"),
            "Name a column of the target table.",
        ))
    }
}

fn object<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| {
        bad(
            key,
            "must be a JSON object",
            format!("Write {key} as {{ … }} (docs/REST.md)."),
        )
    })
}

fn unknown_keys(obj: &Map<String, Value>, known: &[&str], at: &str) -> Result<()> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(
            &format!("{at}{k}"),
            "is not a key pg_pullsync knows",
            format!(
                "Known keys{}: {}.",
                if at.is_empty() { "" } else { " here" },
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

impl RestConfig {
    /// Checks a configuration. With `secret_required`, the auth secret must be present and
    /// is returned (to be sealed); a stored configuration has none.
    pub fn parse(value: &Value, secret_required: bool) -> Result<(RestConfig, Option<String>)> {
        let obj = object(value, "config")?;
        let known: Vec<&str> = KEYS.iter().chain(MORE_KEYS.iter()).copied().collect();
        unknown_keys(obj, &known, "")?;
        let base_url = required_text(obj, "base_url", "")?
            .trim_end_matches('/')
            .to_string();
        let scheme_ok = base_url.starts_with("https://") || base_url.starts_with("http://");
        let host = base_url.split("://").nth(1).unwrap_or("");
        if !scheme_ok || host.is_empty() || host.contains(['?', '#', ' ']) {
            return Err(bad(
                "base_url",
                format!("{base_url:?} is not an http(s) URL without query"),
                "Pass e.g. \"https://api.example.com\"; put parameters in config.query.",
            ));
        }
        let endpoint = text(obj, "path", "")?.unwrap_or("").to_string();
        if !(endpoint.is_empty() || endpoint.starts_with('/')) || endpoint.contains(['?', '#']) {
            return Err(bad(
                "path",
                format!("{endpoint:?} must start with '/' and hold no query"),
                "Pass e.g. \"/v1/customers\"; put parameters in config.query.",
            ));
        }
        let mut query = Vec::new();
        if let Some(q) = obj.get("query").filter(|q| !q.is_null()) {
            for (k, v) in object(q, "query")? {
                let v = super::path::scalar_text(v).ok_or_else(|| {
                    bad(
                        &format!("query.{k}"),
                        "must be a string, number or boolean",
                        "Query parameters are scalars.",
                    )
                })?;
                query.push((k.clone(), v));
            }
        }
        let (auth, secret) = parse_auth(obj.get("auth"), secret_required)?;
        let records = path(obj, "records", "")?
            .unwrap_or_else(|| JsonPath::parse("").expect("the empty path parses"));
        let primary_key = parse_key(obj.get("primary_key"))?;
        let pagination = parse_pagination(obj.get("pagination"))?;
        let (method, body) = parse_method(obj, &pagination)?;
        check_places(&pagination, method)?;
        let incremental = parse_incremental(obj.get("incremental"), method)?;
        let target = parse_target(obj.get("target"), &primary_key, incremental.as_ref())?;
        let deletes = parse_deletes(obj.get("deletes"), &target)?;
        let mut config = RestConfig {
            base_url,
            path: endpoint,
            query,
            method,
            body,
            auth,
            records,
            primary_key,
            pagination,
            incremental,
            target,
            rate_limit: number(obj, "rate_limit", 0.0, 10_000.0, 0.0)?,
            concurrency: number(obj, "concurrency", 1.0, 16.0, 1.0)? as usize,
            timeout_ms: number(obj, "timeout_ms", 100.0, 600_000.0, 30_000.0)? as u64,
            retries: number(obj, "retries", 0.0, 10.0, 3.0)? as u32,
            max_pages: number(obj, "max_pages", 1.0, 1_000_000.0, 10_000.0)? as u32,
            responses: Responses::parse(obj.get("responses"))?,
            deletes,
            for_each: None,
        };
        config.for_each = super::fanout::parse(obj.get("for_each"), &config)?;
        Ok((config, secret))
    }

    /// `value` as stored and shown back: the secret removed.
    pub fn without_secret(value: &Value) -> Value {
        let mut shown = value.clone();
        if let Some(auth) = shown.get_mut("auth").and_then(Value::as_object_mut) {
            for secret in ["token", "key", "password", "client_secret", "refresh_token"] {
                auth.remove(secret);
            }
        }
        shown
    }

    /// Whether a change of a stored configuration (`patch`, the keys given to
    /// `rest_alter_source`) must carry the secret again: a sealed secret is sent to the
    /// `base_url` it was given with, so pointing the source elsewhere takes the secret anew
    /// (else whoever may alter a source could send its key to a server of their own).
    pub fn patch_needs_secret(stored: &Value, patch: &Value, has_secret: bool) -> bool {
        let moved = patch
            .get("base_url")
            .is_some_and(|url| Some(url) != stored.get("base_url"));
        has_secret && moved && patch.get("auth").is_none()
    }
}

fn parse_auth(value: Option<&Value>, secret_required: bool) -> Result<(Auth, Option<String>)> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok((Auth::None, None));
    };
    let auth = object(value, "auth")?;
    let kind = required_text(auth, "type", "auth.")?;
    let secret_of = |key: &str| -> Result<Option<String>> {
        match text(auth, key, "auth.")? {
            Some(s) => Ok(Some(s.to_string())),
            None if secret_required => Err(bad(
                &format!("auth.{key}"),
                "is missing",
                format!("Pass the {key}; it is sealed at once and never shown back."),
            )),
            None => Ok(None),
        }
    };
    match kind {
        "bearer" => {
            unknown_keys(auth, &["type", "token"], "auth.")?;
            Ok((Auth::Bearer, secret_of("token")?))
        }
        "api_key" => {
            unknown_keys(auth, &["type", "key", "header", "query"], "auth.")?;
            let secret = secret_of("key")?;
            match (text(auth, "header", "auth.")?, text(auth, "query", "auth.")?) {
                (Some(h), None) => Ok((
                    Auth::HeaderKey {
                        header: key_header(h)?,
                    },
                    secret,
                )),
                (None, Some(q)) => Ok((
                    Auth::QueryKey {
                        param: token_like(q, "auth.query")?,
                    },
                    secret,
                )),
                _ => Err(bad(
                    "auth",
                    "of type api_key needs either header or query",
                    "Pass {\"type\": \"api_key\", \"header\": \"X-Api-Key\", \"key\": …} or \"query\": \"api_key\".",
                )),
            }
        }
        "basic" => {
            unknown_keys(auth, &["type", "username", "password"], "auth.")?;
            let username = required_text(auth, "username", "auth.")?.to_string();
            if username.contains(':') {
                return Err(bad(
                    "auth.username",
                    "must not contain ':'",
                    "HTTP basic cannot carry it.",
                ));
            }
            // An empty password is one (the API reads the user alone): sealed like any.
            let password = match auth.get("password") {
                Some(Value::String(p)) if p.is_empty() => Some(String::new()),
                _ => secret_of("password")?,
            };
            if password.as_deref() == Some("") && looks_like_a_secret_key(&username) {
                return Err(bad(
                    "auth.username",
                    "looks like a secret API key, and the username is shown back",
                    "For an API that takes its key as the basic user (Stripe), pass {\"type\": \"bearer\", \"token\": …}: the token is sealed.",
                ));
            }
            Ok((Auth::Basic { username }, password))
        }
        "oauth2" => parse_oauth2(auth, secret_required).map(|(o, s)| (Auth::OAuth2(o), s)),
        other => Err(bad(
            "auth.type",
            format!("{other:?} is not a kind of authentication pg_pullsync knows"),
            "Use \"bearer\", \"api_key\", \"basic\" or \"oauth2\"; leave auth out for none.",
        )),
    }
}

/// `{"type": "oauth2", "grant", "token_url", "client_id", "client_secret", "refresh_token",
/// "scope", "client_auth"}`: the client secret is returned as the secret; the refresh
/// token, required for that grant, is read by [`refresh_token_given`].
fn parse_oauth2(
    auth: &Map<String, Value>,
    secret_required: bool,
) -> Result<(OAuth2, Option<String>)> {
    let at = "auth.";
    unknown_keys(
        auth,
        &[
            "type",
            "grant",
            "token_url",
            "client_id",
            "client_secret",
            "refresh_token",
            "scope",
            "client_auth",
        ],
        at,
    )?;
    let grant = match required_text(auth, "grant", at)? {
        "client_credentials" => Grant::ClientCredentials,
        "refresh_token" => Grant::RefreshToken,
        other => {
            return Err(bad(
                "auth.grant",
                format!("{other:?} is not a grant pg_pullsync asks tokens with"),
                "Use \"client_credentials\" or \"refresh_token\" (with the refresh token an authorisation gave).",
            ))
        }
    };
    let token_url = required_text(auth, "token_url", at)?.to_string();
    let host = token_url.split("://").nth(1).unwrap_or("");
    if !(token_url.starts_with("https://") || token_url.starts_with("http://"))
        || host.is_empty()
        || host.starts_with('/')
        || token_url.contains(['#', ' '])
    {
        return Err(bad(
            "auth.token_url",
            format!("{token_url:?} is not an http(s) URL"),
            "Pass the authorization server's token endpoint, e.g. \"https://auth.example.com/oauth/token\".",
        ));
    }
    let client_id = required_text(auth, "client_id", at)?.to_string();
    let client_auth = match text(auth, "client_auth", at)? {
        None | Some("basic") => ClientAuth::Basic,
        Some("body") => ClientAuth::Body,
        Some(other) => {
            return Err(bad(
                "auth.client_auth",
                format!("{other:?} is not a way to send the client's credentials"),
                "Use \"basic\" (HTTP Basic, the default) or \"body\" (client_id and client_secret in the form).",
            ))
        }
    };
    let scope = text(auth, "scope", at)?.map(str::to_string);
    let missing = |key: &str| {
        bad(
            &format!("auth.{key}"),
            "is missing",
            format!("Pass the {key}; it is sealed at once and never shown back."),
        )
    };
    let secret = text(auth, "client_secret", at)?.map(str::to_string);
    if secret_required {
        if secret.is_none() {
            return Err(missing("client_secret"));
        }
        if grant == Grant::RefreshToken && text(auth, "refresh_token", at)?.is_none() {
            return Err(missing("refresh_token"));
        }
    }
    if grant == Grant::ClientCredentials && auth.contains_key("refresh_token") {
        return Err(bad(
            "auth.refresh_token",
            "is for the refresh_token grant",
            "Leave refresh_token out with \"grant\": \"client_credentials\".",
        ));
    }
    let oauth = OAuth2 {
        grant,
        token_url,
        client_id,
        scope,
        client_auth,
    };
    Ok((oauth, secret))
}

/// The refresh token a configuration carries (`auth.refresh_token` of an oauth2 auth), to
/// be sealed apart from the client secret.
pub fn refresh_token_given(config: &Value) -> Option<String> {
    config
        .get("auth")
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("oauth2"))
        .and_then(|a| a.get("refresh_token"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// Stripe's secret and restricted keys, which its API takes as the basic user: the
/// username is configuration, stored and shown back, so such a key must not go there.
fn looks_like_a_secret_key(username: &str) -> bool {
    ["sk_live_", "sk_test_", "rk_live_", "rk_test_"]
        .iter()
        .any(|prefix| username.starts_with(prefix))
}

fn parse_key(value: Option<&Value>) -> Result<Vec<JsonPath>> {
    let hint =
        "Pass the record's key as a JSON path, or a list of them: \"id\" or [\"org\", \"id\"].";
    let texts: Vec<&str> = match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .ok_or_else(|| bad("primary_key", "must list strings", hint))
            })
            .collect::<Result<_>>()?,
        None | Some(Value::Null) => return Err(bad("primary_key", "is missing", hint)),
        Some(_) => {
            return Err(bad(
                "primary_key",
                "must be a path or a list of paths",
                hint,
            ))
        }
    };
    texts
        .into_iter()
        .map(|t| {
            JsonPath::parse(t)
                .filter(|p| p.top().is_some())
                .ok_or_else(|| bad("primary_key", format!("{t:?} is not a JSON path"), hint))
        })
        .collect()
}

/// `incremental`: the field whose highest value is the mark, where the mark is sent (a
/// POST's body takes it with `"in": "body"`), the first run's `initial`, and the options.
fn parse_incremental(value: Option<&Value>, method: Method) -> Result<Option<Incremental>> {
    Ok(match value.filter(|v| !v.is_null()) {
        None => None,
        Some(v) => {
            let inc = object(v, "incremental")?;
            unknown_keys(
                inc,
                &[
                    "field", "param", "in", "initial", "lookback", "boundary", "windows",
                ],
                "incremental.",
            )?;
            let place = place(inc, "incremental.", method)?;
            Some(Incremental {
                field: required_path(inc, "field", "incremental.")?,
                param: param(
                    required_text(inc, "param", "incremental.")?,
                    place,
                    "incremental.param",
                )?,
                place,
                initial: match inc.get("initial") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(super::path::scalar_text(v).ok_or_else(|| {
                        bad(
                            "incremental.initial",
                            "must be a scalar",
                            "Pass e.g. \"2024-01-01T00:00:00Z\".",
                        )
                    })?),
                },
                options: super::incremental::parse_options(inc)?,
            })
        }
    })
}

/// `{"style": "cursor"}`: the next cursor from a path of the page, or from a field of the
/// page's last record while `has_more` says true.
fn parse_cursor(p: &Map<String, Value>, at: &str) -> Result<Pagination> {
    unknown_keys(
        p,
        &[
            "style",
            "param",
            "in",
            "cursor_path",
            "last_record_field",
            "has_more_path",
        ],
        at,
    )?;
    let place = place(p, at, Method::Post)?;
    let param = param(required_text(p, "param", at)?, place, "pagination.param")?;
    let from = match (path(p, "cursor_path", at)?, path(p, "last_record_field", at)?) {
        (Some(c), None) => CursorFrom::Page(c),
        (None, Some(f)) => CursorFrom::LastRecord(f),
        _ => {
            return Err(bad(
                "pagination",
                "of style cursor needs either cursor_path or last_record_field",
                "cursor_path: where the page holds the next cursor (\"meta.next_cursor\"); last_record_field: the field of the last record to continue after (\"id\").",
            ))
        }
    };
    let has_more = path(p, "has_more_path", at)?;
    if matches!(from, CursorFrom::LastRecord(_)) && has_more.is_none() {
        return Err(bad(
            "pagination.has_more_path",
            "is missing",
            "Continuing after the last record needs the page's has_more flag, e.g. \"has_more\".",
        ));
    }
    Ok(Pagination::Cursor {
        param,
        place,
        from,
        has_more,
    })
}

/// `{"style": "graphql"}`: a relay connection, the cursor in a variable of the query.
fn parse_graphql(p: &Map<String, Value>, at: &str) -> Result<Pagination> {
    unknown_keys(p, &["style", "cursor_variable", "page_info_path"], at)?;
    let variable = text(p, "cursor_variable", at)?.unwrap_or("after");
    if !graphql_name(variable) {
        return Err(bad(
            "pagination.cursor_variable",
            format!("{variable:?} is not a GraphQL variable name"),
            "Name the query's cursor variable without its $, e.g. \"after\".",
        ));
    }
    Ok(Pagination::GraphQl {
        variable: variable.to_string(),
        page_info: required_path(p, "page_info_path", at)?,
    })
}

fn parse_pagination(value: Option<&Value>) -> Result<Pagination> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Pagination::None);
    };
    let p = object(value, "pagination")?;
    let style = required_text(p, "style", "pagination.")?;
    let at = "pagination.";
    let positive = |key: &str, default: u64| -> Result<u64> {
        Ok(
            number(p, key, 1.0, 1_000_000.0, default as f64).map_err(|_| {
                bad(
                    &format!("{at}{key}"),
                    "must be a positive number",
                    format!("Set {at}{key} to e.g. 100."),
                )
            })? as u64,
        )
    };
    match style {
        "none" => {
            unknown_keys(p, &["style"], at)?;
            Ok(Pagination::None)
        }
        "cursor" => parse_cursor(p, at),
        "next_url" => {
            unknown_keys(p, &["style", "next_url_path"], at)?;
            Ok(Pagination::NextUrl {
                path: required_path(p, "next_url_path", at)?,
            })
        }
        "link_header" => {
            unknown_keys(p, &["style"], at)?;
            Ok(Pagination::LinkHeader)
        }
        "page_number" => {
            unknown_keys(p, &["style", "param", "in", "start", "size_param", "size"], at)?;
            let place = place(p, at, Method::Post)?;
            Ok(Pagination::PageNumber {
                param: param(text(p, "param", at)?.unwrap_or("page"), place, "pagination.param")?,
                place,
                start: number_at(p, "start", at, 0.0, 1.0, 1.0)? as u64,
                size_param: text(p, "size_param", at)?
                    .map(|s| param(s, place, "pagination.size_param"))
                    .transpose()?,
                size: positive("size", 100)?,
            })
        }
        "offset" => {
            unknown_keys(p, &["style", "param", "in", "limit_param", "limit"], at)?;
            let place = place(p, at, Method::Post)?;
            Ok(Pagination::Offset {
                param: param(text(p, "param", at)?.unwrap_or("offset"), place, "pagination.param")?,
                place,
                limit_param: param(text(p, "limit_param", at)?.unwrap_or("limit"), place, "pagination.limit_param")?,
                limit: positive("limit", 100)?,
            })
        }
        "graphql" => parse_graphql(p, at),
        other => Err(bad(
            "pagination.style",
            format!("{other:?} is not a paging style pg_pullsync knows"),
            "Use \"cursor\", \"next_url\", \"link_header\", \"page_number\", \"offset\", \"graphql\" or \"none\".",
        )),
    }
}

fn parse_deletes(value: Option<&Value>, target: &Target) -> Result<Option<Deletes>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let d = object(value, "deletes")?;
    unknown_keys(d, &["column"], "deletes.")?;
    let column = identifier(required_text(d, "column", "deletes.")?, "deletes.column")?;
    let filled = target.columns.iter().any(|(c, _)| *c == column);
    if filled || target.extra.as_ref() == Some(&column) {
        return Err(bad(
            "deletes.column",
            "is a column the records fill",
            "Name a timestamptz column of the target no path fills, e.g. \"deleted_at\".",
        ));
    }
    Ok(Some(Deletes { column }))
}

/// `method` and `body`: a body goes with a POST only, a GraphQL listing is POSTed (the
/// method may be left out) with a body holding its `query`.
fn parse_method(
    obj: &Map<String, Value>,
    pagination: &Pagination,
) -> Result<(Method, Option<Value>)> {
    let graphql = matches!(pagination, Pagination::GraphQl { .. });
    let method = match text(obj, "method", "")? {
        None if graphql => Method::Post,
        None => Method::Get,
        Some(m) if m.eq_ignore_ascii_case("get") => Method::Get,
        Some(m) if m.eq_ignore_ascii_case("post") => Method::Post,
        Some(m) => {
            return Err(bad(
                "method",
                format!("{m:?} is not a method pg_pullsync lists with"),
                "Use \"GET\" (the default) or \"POST\" (with config.body).",
            ))
        }
    };
    if graphql && method == Method::Get {
        return Err(bad(
            "method",
            "must be POST for a GraphQL listing",
            "Leave config.method out or set it to \"POST\".",
        ));
    }
    let body = match obj.get("body").filter(|b| !b.is_null()) {
        None => None,
        Some(_) if method == Method::Get => {
            return Err(bad(
                "body",
                "is sent with a POST only",
                "Set config.method to \"POST\", or leave config.body out.",
            ))
        }
        Some(b) => Some(Value::Object(object(b, "body")?.clone())),
    };
    if graphql {
        let query = body.as_ref().and_then(|b| b.get("query"));
        if query
            .and_then(Value::as_str)
            .is_none_or(|q| q.trim().is_empty())
        {
            return Err(bad(
                "body.query",
                "is missing",
                "Put the GraphQL query in config.body.query, with $after for the cursor.",
            ));
        }
        let variables = body.as_ref().and_then(|b| b.get("variables"));
        if variables.is_some_and(|v| !v.is_object() && !v.is_null()) {
            return Err(bad(
                "body.variables",
                "must be a JSON object",
                "Write config.body.variables as {\"first\": 50, …}.",
            ));
        }
    }
    Ok((method, body))
}

/// A paging or incremental value's `in`: `query` (the default) or `body`, which takes a POST.
fn place(obj: &Map<String, Value>, at: &str, method: Method) -> Result<Place> {
    match text(obj, "in", at)? {
        None | Some("query") => Ok(Place::Query),
        Some("body") if method == Method::Post => Ok(Place::Body),
        Some("body") => Err(bad(
            &format!("{at}in"),
            "is \"body\", and a GET has none",
            "Set config.method to \"POST\", or leave in out for the query string.",
        )),
        Some(other) => Err(bad(
            &format!("{at}in"),
            format!("{other:?} is not a place for the value"),
            "Use \"query\" (the default) or \"body\" (a POST's JSON body).",
        )),
    }
}

/// A parameter's name: a plain name in the query string, a JSON path into the body.
fn param(value: &str, place: Place, key: &str) -> Result<String> {
    match place {
        Place::Query => token_like(value, key),
        Place::Body => match JsonPath::parse(value).filter(|p| p.top().is_some()) {
            Some(_) => Ok(value.trim().to_string()),
            None => Err(bad(
                key,
                format!("{value:?} is not a JSON path into the body"),
                "Name where the value goes in config.body, e.g. \"cursor\" or \"page.after\".",
            )),
        },
    }
}

/// Paging placed in the body needs a POST; the method is parsed after the pagination.
fn check_places(pagination: &Pagination, method: Method) -> Result<()> {
    let in_body = matches!(
        pagination,
        Pagination::Cursor {
            place: Place::Body,
            ..
        } | Pagination::PageNumber {
            place: Place::Body,
            ..
        } | Pagination::Offset {
            place: Place::Body,
            ..
        }
    );
    if in_body && method == Method::Get {
        return Err(bad(
            "pagination.in",
            "is \"body\", and a GET has none",
            "Set config.method to \"POST\", or leave in out for the query string.",
        ));
    }
    Ok(())
}

fn graphql_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && name.len() <= 128
}

fn parse_target(
    value: Option<&Value>,
    key: &[JsonPath],
    incremental: Option<&Incremental>,
) -> Result<Target> {
    let hint = "Pass {\"table\": \"public.issues\", \"columns\": {\"id\": \"id\", …}, \"extra\": \"raw\"}.";
    let t = match value {
        Some(v) if v.is_object() => object(v, "target")?,
        _ => return Err(bad("target", "is missing", hint)),
    };
    unknown_keys(t, &["table", "columns", "extra"], "target.")?;
    let table = required_text(t, "table", "target.")?.to_string();
    let mut columns = Vec::new();
    match t.get("columns") {
        Some(Value::Object(map)) if !map.is_empty() => {
            for (column, p) in map {
                let column = identifier(column, &format!("target.columns.{column}"))?;
                let p = p.as_str().and_then(JsonPath::parse).ok_or_else(|| {
                    bad(
                        &format!("target.columns.{column}"),
                        "must be a JSON path",
                        hint,
                    )
                })?;
                columns.push((column, p));
            }
        }
        _ => {
            return Err(bad(
                "target.columns",
                "must map columns to JSON paths",
                hint,
            ))
        }
    }
    let extra = text(t, "extra", "target.")?
        .map(|e| identifier(e, "target.extra"))
        .transpose()?;
    if extra
        .as_ref()
        .is_some_and(|e| columns.iter().any(|(c, _)| c == e))
    {
        return Err(bad(
            "target.extra",
            "is also a mapped column",
            "Name a jsonb column no path fills.",
        ));
    }
    let target = Target {
        table,
        columns,
        extra,
    };
    if target.key_columns(key).len() != key.len() {
        return Err(bad(
            "target.columns",
            "must map every primary_key path to a column",
            "Map each path of primary_key, e.g. \"columns\": {\"id\": \"id\"}.",
        ));
    }
    if let Some(inc) = incremental {
        if !target.columns.iter().any(|(_, p)| *p == inc.field) {
            return Err(bad(
                "target.columns",
                "must map incremental.field to a column",
                "The high-water mark is taken from stored rows; map the field, e.g. \"updated_at\": \"updated_at\".",
            ));
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_new_base_url_needs_the_secret_again() {
        let stored = json!({ "base_url": "https://api.example.com", "path": "/a" });
        let elsewhere = json!({ "base_url": "http://127.0.0.1:9" });
        assert!(RestConfig::patch_needs_secret(&stored, &elsewhere, true));
        let with_secret =
            json!({ "base_url": "http://127.0.0.1:9", "auth": { "type": "bearer", "token": "t" } });
        assert!(!RestConfig::patch_needs_secret(&stored, &with_secret, true));
        // The same base_url, other keys, or a source without a secret: nothing to resend.
        let same = json!({ "base_url": "https://api.example.com", "path": "/b" });
        assert!(!RestConfig::patch_needs_secret(&stored, &same, true));
        assert!(!RestConfig::patch_needs_secret(
            &stored,
            &json!({ "path": "/b" }),
            true
        ));
        assert!(!RestConfig::patch_needs_secret(&stored, &elsewhere, false));
    }

    fn github() -> Value {
        json!({
            "base_url": "https://api.example.com",
            "path": "/repos/o/r/issues",
            "query": { "state": "all", "per_page": 50 },
            "auth": { "type": "bearer", "token": "ghp_secret" },
            "primary_key": "id",
            "pagination": { "style": "link_header" },
            "incremental": { "field": "updated_at", "param": "since", "initial": "2024-01-01T00:00:00Z" },
            "target": { "table": "public.issues", "columns": { "id": "id", "title": "title", "updated_at": "updated_at" }, "extra": "raw" }
        })
    }

    #[test]
    fn a_good_configuration_parses_and_gives_its_secret() {
        let (config, secret) = RestConfig::parse(&github(), true).unwrap();
        assert_eq!(secret.as_deref(), Some("ghp_secret"));
        assert_eq!(config.auth, Auth::Bearer);
        assert_eq!(config.pagination, Pagination::LinkHeader);
        assert_eq!(
            config.query,
            [
                ("per_page".into(), "50".into()),
                ("state".into(), "all".into())
            ]
        );
        assert_eq!(config.target.key_columns(&config.primary_key), ["id"]);
        assert_eq!(config.max_pages, 10_000);
    }

    #[test]
    fn the_stored_form_holds_no_secret_and_parses_without_one() {
        let stored = RestConfig::without_secret(&github());
        assert!(!stored.to_string().contains("ghp_secret"));
        let (_, secret) = RestConfig::parse(&stored, false).unwrap();
        assert_eq!(secret, None);
        assert!(RestConfig::parse(&stored, true).is_err());
    }

    fn refusal(change: impl FnOnce(&mut Value)) -> String {
        let mut config = github();
        change(&mut config);
        match RestConfig::parse(&config, true) {
            Err(InputError::Invalid { message, hint }) => {
                assert!(!hint.is_empty());
                assert!(!message.contains("ghp_secret") && !hint.contains("ghp_secret"));
                message
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn every_refusal_names_the_key() {
        assert!(refusal(|c| c["base_url"] = json!("ftp://x")).starts_with("config.base_url"));
        assert!(refusal(|c| c["path"] = json!("v1")).starts_with("config.path"));
        assert!(refusal(|c| c["colour"] = json!(1)).starts_with("config.colour"));
        assert!(refusal(|c| c["auth"]["type"] = json!("oauth")).starts_with("config.auth.type"));
        assert!(
            refusal(|c| c["auth"] = json!({ "type": "bearer" })).starts_with("config.auth.token")
        );
        assert!(refusal(|c| c["primary_key"] = json!([])).starts_with("config.primary_key"));
        assert!(refusal(|c| c["pagination"] = json!({ "style": "pages" }))
            .starts_with("config.pagination.style"));
        assert!(
            refusal(|c| c["pagination"] = json!({ "style": "cursor", "param": "after" }))
                .starts_with("config.pagination")
        );
        assert!(
            refusal(|c| c["target"]["columns"] = json!({ "title": "title" }))
                .starts_with("config.target.columns")
        );
        assert!(refusal(|c| c["incremental"]["field"] = json!("changed_at"))
            .starts_with("config.target.columns"));
        assert!(refusal(|c| c["rate_limit"] = json!(-1)).starts_with("config.rate_limit"));
        assert!(
            refusal(|c| c["target"]["extra"] = json!("title")).starts_with("config.target.extra")
        );
    }

    #[test]
    fn posts_and_graphql_are_checked_key_by_key() {
        let starts = |change: fn(&mut Value), key: &str| {
            let message = refusal(change);
            assert!(message.starts_with(key), "{key}: {message}");
        };
        starts(|c| c["method"] = json!("PUT"), "config.method");
        starts(|c| c["body"] = json!({ "q": 1 }), "config.body");
        starts(
            |c| {
                c["method"] = json!("POST");
                c["body"] = json!([1]);
            },
            "config.body",
        );
        starts(
            |c| {
                c["pagination"] = json!({ "style": "cursor", "in": "body", "param": "after", "cursor_path": "next" })
            },
            "config.pagination.in",
        );
        starts(
            |c| {
                c["method"] = json!("POST");
                c["pagination"] = json!({ "style": "cursor", "in": "form", "param": "after", "cursor_path": "next" });
            },
            "config.pagination.in",
        );
        starts(
            |c| {
                c["method"] = json!("POST");
                c["pagination"] = json!({ "style": "cursor", "in": "body", "param": "a..b", "cursor_path": "next" });
            },
            "config.pagination.param",
        );
        starts(
            |c| c["incremental"]["in"] = json!("body"),
            "config.incremental.in",
        );
        starts(
            |c| {
                c["pagination"] = json!({ "style": "graphql", "page_info_path": "data.x.pageInfo" })
            },
            "config.body.query",
        );
        starts(
            |c| {
                c["method"] = json!("GET");
                c["pagination"] = json!({ "style": "graphql", "page_info_path": "p" });
            },
            "config.method",
        );
        starts(
            |c| {
                c["body"] = json!({ "query": "q", "variables": [] });
                c["pagination"] = json!({ "style": "graphql", "page_info_path": "p" });
            },
            "config.body.variables",
        );
        starts(
            |c| {
                c["body"] = json!({ "query": "q" });
                c["pagination"] = json!({ "style": "graphql", "cursor_variable": "$after", "page_info_path": "p" });
            },
            "config.pagination.cursor_variable",
        );
        starts(
            |c| {
                c["body"] = json!({ "query": "q" });
                c["pagination"] = json!({ "style": "graphql" });
            },
            "config.pagination.page_info_path",
        );
        let mut c = github();
        c["body"] = json!({ "query": "query($after: String) { x }" });
        c["pagination"] = json!({ "style": "graphql", "page_info_path": "data.x.pageInfo" });
        c["incremental"]["in"] = json!("body");
        c["incremental"]["param"] = json!("variables.since");
        let (config, _) = RestConfig::parse(&c, true).unwrap();
        assert_eq!(config.method, Method::Post);
        assert_eq!(
            config.pagination,
            Pagination::GraphQl {
                variable: "after".into(),
                page_info: JsonPath::parse("data.x.pageInfo").unwrap()
            }
        );
        assert_eq!(config.incremental.unwrap().place, Place::Body);
    }

    #[test]
    fn paging_styles_parse() {
        let mut c = github();
        c["pagination"] = json!({ "style": "cursor", "param": "starting_after", "last_record_field": "id", "has_more_path": "has_more" });
        let (config, _) = RestConfig::parse(&c, true).unwrap();
        assert!(matches!(
            config.pagination,
            Pagination::Cursor {
                from: CursorFrom::LastRecord(_),
                ..
            }
        ));
        c["pagination"] = json!({ "style": "page_number", "size_param": "per_page", "size": 30 });
        let (config, _) = RestConfig::parse(&c, true).unwrap();
        assert_eq!(
            config.pagination,
            Pagination::PageNumber {
                param: "page".into(),
                place: Place::Query,
                start: 1,
                size_param: Some("per_page".into()),
                size: 30
            }
        );
        c["pagination"] = json!({ "style": "offset", "limit": 25 });
        assert!(RestConfig::parse(&c, true).is_ok());
        c["auth"] = json!({ "type": "api_key", "query": "api_key", "key": "k" });
        let (config, secret) = RestConfig::parse(&c, true).unwrap();
        assert_eq!(
            config.auth,
            Auth::QueryKey {
                param: "api_key".into()
            }
        );
        assert_eq!(secret.as_deref(), Some("k"));
        c["auth"] = json!({ "type": "basic", "username": "u", "password": "p" });
        assert_eq!(
            RestConfig::parse(&c, true).unwrap().0.auth,
            Auth::Basic {
                username: "u".into()
            }
        );
    }

    #[test]
    fn oauth2_parses_and_its_secrets_are_neither_stored_nor_shown() {
        let mut c = github();
        c["auth"] = json!({ "type": "oauth2", "grant": "refresh_token",
            "token_url": "https://auth.example.com/token", "client_id": "app",
            "client_secret": "cs-secret", "refresh_token": "rt-secret", "scope": "read" });
        let (config, secret) = RestConfig::parse(&c, true).unwrap();
        assert_eq!(secret.as_deref(), Some("cs-secret"));
        assert_eq!(refresh_token_given(&c).as_deref(), Some("rt-secret"));
        let Auth::OAuth2(o) = &config.auth else {
            panic!("{:?}", config.auth)
        };
        assert_eq!(
            (&o.grant, &o.client_auth),
            (&Grant::RefreshToken, &ClientAuth::Basic)
        );
        let stored = RestConfig::without_secret(&c);
        assert!(!stored.to_string().contains("secret"), "{stored}");
        assert_eq!(RestConfig::parse(&stored, false).unwrap().0, config);
        assert_eq!(refresh_token_given(&stored), None);
        // The refresh grant needs its token; client credentials take none.
        c["auth"].as_object_mut().unwrap().remove("refresh_token");
        assert!(RestConfig::parse(&c, true)
            .unwrap_err()
            .to_string()
            .contains("config.auth.refresh_token"));
        c["auth"]["grant"] = json!("client_credentials");
        c["auth"]["client_auth"] = json!("body");
        assert!(RestConfig::parse(&c, true).is_ok());
        c["auth"]["refresh_token"] = json!("rt-secret");
        assert!(RestConfig::parse(&c, true).is_err());
        c["auth"]["grant"] = json!("password");
        let e = format!("{:?}", RestConfig::parse(&c, true).unwrap_err());
        assert!(
            e.contains("config.auth.grant") && !e.contains("secret\""),
            "{e}"
        );
        c["auth"]["grant"] = json!("client_credentials");
        c["auth"].as_object_mut().unwrap().remove("refresh_token");
        c["auth"]["token_url"] = json!("ftp://x");
        assert!(RestConfig::parse(&c, true)
            .unwrap_err()
            .to_string()
            .contains("config.auth.token_url"));
    }

    #[test]
    fn basic_takes_an_empty_password_but_no_key_as_the_shown_username() {
        let mut c = github();
        c["auth"] = json!({ "type": "basic", "username": "u", "password": "" });
        let (config, secret) = RestConfig::parse(&c, true).unwrap();
        assert_eq!(
            config.auth,
            Auth::Basic {
                username: "u".into()
            }
        );
        assert_eq!(secret.as_deref(), Some(""));
        let stored = RestConfig::without_secret(&c);
        assert_eq!(stored["auth"], json!({ "type": "basic", "username": "u" }));
        assert_eq!(RestConfig::parse(&stored, false).unwrap().1, None);
        // A missing password is still a forgotten one.
        c["auth"] = json!({ "type": "basic", "username": "u" });
        assert!(RestConfig::parse(&c, true)
            .unwrap_err()
            .to_string()
            .contains("config.auth.password"));
        c["auth"] = json!({ "type": "basic", "username": "sk_test_51abc", "password": "" });
        // Message and hint, neither echoing the key.
        let refused = format!("{:?}", RestConfig::parse(&c, true).unwrap_err());
        assert!(refused.contains("config.auth.username"), "{refused}");
        assert!(refused.contains("bearer"), "{refused}");
        assert!(!refused.contains("sk_test_51abc"), "{refused}");
        c["auth"] = json!({ "type": "bearer", "token": "sk_test_51abc" });
        assert_eq!(
            RestConfig::parse(&c, true).unwrap().1.as_deref(),
            Some("sk_test_51abc")
        );
    }

    #[test]
    fn an_incremental_initial_may_be_a_number() {
        let mut c = github();
        c["incremental"]["initial"] = json!(1_700_000_000);
        let (config, _) = RestConfig::parse(&c, true).unwrap();
        assert_eq!(
            config.incremental.unwrap().initial.as_deref(),
            Some("1700000000")
        );
        c["incremental"]["initial"] = json!({ "at": 1 });
        assert!(RestConfig::parse(&c, true)
            .unwrap_err()
            .to_string()
            .contains("config.incremental.initial"));
    }

    #[test]
    fn deletes_name_a_column_no_path_fills() {
        let mut c = github();
        c["deletes"] = json!({ "column": "deleted_at" });
        let (config, _) = RestConfig::parse(&c, true).unwrap();
        assert_eq!(config.deletes.unwrap().column, "deleted_at");
        assert!(refusal(|c| c["deletes"] = json!({ "column": "title" }))
            .starts_with("config.deletes.column"));
        assert!(refusal(|c| c["deletes"] = json!({})).starts_with("config.deletes.column"));
        assert!(
            refusal(|c| c["deletes"] = json!({ "column": "d", "soft": true }))
                .starts_with("config.deletes.soft")
        );
        assert!(refusal(|c| c["incremental"]["boundary"] = json!("open"))
            .starts_with("config.incremental.boundary"));
    }

    #[test]
    fn an_api_key_header_may_not_steer_the_request() {
        let mut c = github();
        for header in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "Proxy-Authorization",
            "X-Forwarded-For",
            "forwarded",
        ] {
            c["auth"] = json!({ "type": "api_key", "header": header, "key": "k" });
            let e = RestConfig::parse(&c, true).unwrap_err();
            assert!(
                e.to_string().contains("config.auth.header"),
                "{header}: {e}"
            );
        }
        for header in ["X-Api-Key", "Authorization", "api-key"] {
            c["auth"] = json!({ "type": "api_key", "header": header, "key": "k" });
            assert!(RestConfig::parse(&c, true).is_ok(), "{header}");
        }
    }
}
