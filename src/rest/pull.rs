//! A run of a REST source: the listing read page by page over the shared HTTP layer (no
//! transaction open across a request), each page's rows and the run's position committed
//! together, so a crash or cancel resumes after the last page written. An incremental
//! source sends the high-water mark committed by its last complete run.

use super::store::{self, Stored};
use crate::config::{self, HttpOverrides};
use crate::error::{PullsyncError, Result};
use crate::jobs::kind::Outcome;
use crate::jobs::paged::{self, Fetched, Limit, Pages, Progress, Tail};
use crate::jobs::quarantine::Written;
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use chrono::{DateTime, Utc};
use pullsync_core::http::{
    self, throttle, Failure, FailureClass, HttpClient, RateLimiter, Request, RequestAuth,
    RetryPolicy, Secrets,
};
use pullsync_core::rest::config::{Auth, RestConfig};
use pullsync_core::rest::incremental;
use pullsync_core::rest::paging::{self, Answer, PageRows, Position, RowMaker, Rows, Seen};
use pullsync_core::rest::responses::{self, Action};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How much of a JSON error answer a message shows.
const ERROR_BODY_CHARS: usize = 200;

/// An API's error answers → the HTTP layer's classes. The message shows the start of a
/// JSON body (with the source's secret already taken out by the HTTP layer); any other
/// body is not shown: whatever answered was not the API, and its text is not the caller's
/// to read.
fn classify(status: u16, body: &[u8]) -> (FailureClass, String) {
    let class = match status {
        401 | 403 => FailureClass::Auth,
        429 => FailureClass::Throttled,
        500..=599 => FailureClass::Transient,
        _ => FailureClass::Refused,
    };
    let text = match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) => String::from_utf8_lossy(body)
            .chars()
            .take(ERROR_BODY_CHARS)
            .collect(),
        Err(_) if body.is_empty() => "no body".to_string(),
        Err(_) => "the answer is not JSON (not shown)".to_string(),
    };
    (class, text)
}

/// The source's HTTP client, limits and credentials.
pub struct Api<'a> {
    source: &'a Stored,
    http: HttpClient,
    limiter: Option<RateLimiter>,
    /// The secret in every form the requests send it.
    secrets: Secrets,
    /// An OAuth 2 source's access token.
    oauth: Option<super::oauth::Session>,
    pub calls: AtomicU32,
    /// Pages a `skip` rule of `config.responses` left out.
    pub skipped: AtomicU32,
}

impl<'a> Api<'a> {
    pub fn new(source: &'a Stored) -> Result<Self> {
        let c = &source.config;
        let delay = Duration::from_millis(500);
        let http = config::http_client(HttpOverrides {
            timeout: Some(Duration::from_millis(c.timeout_ms)),
            retry: Some(RetryPolicy {
                max_retries: c.retries,
                base_delay: delay,
                max_delay: Duration::from_secs(30),
            }),
            concurrency: Some(c.concurrency),
            max_response: Some((
                super::settings::max_response_bytes(),
                "pullsync.rest_max_response_size",
            )),
        })?;
        config::check_destination(&c.base_url)?;
        let oauth = match &c.auth {
            Auth::OAuth2(client) => {
                // The token endpoint may be another origin: it is checked as the API is.
                config::check_destination(&client.token_url)?;
                let secret = source.secret.as_deref();
                Some(super::oauth::Session::new(&source.name, client, secret))
            }
            _ => None,
        };
        let limiter = (c.rate_limit > 0.0).then(|| RateLimiter::new(c.rate_limit, 1));
        let mut secrets = Secrets::default();
        if let Some(secret) = &source.secret {
            match &c.auth {
                Auth::Basic { username } => secrets.add_basic(username, secret),
                _ => secrets.add(secret),
            }
        }
        Ok(Api {
            source,
            http,
            limiter,
            secrets,
            oauth,
            calls: AtomicU32::new(0),
            skipped: AtomicU32::new(0),
        })
    }

    /// The message of a failure with the secret, in any form an API echoed it, removed.
    pub fn redacted(&self, message: &str) -> String {
        let message = self.secrets.redact(message);
        match &self.oauth {
            Some(session) => session.redact(&message),
            None => message,
        }
    }

    /// An OAuth 2 source's access token had before requests are made: the committed one
    /// while it is good, else a new one. Nothing for other sources.
    pub fn authorize(&self, txn: Txn, cancel: Cancel) -> Result<std::result::Result<(), Failure>> {
        match &self.oauth {
            Some(session) => session.ensure(&self.http, &self.calls, false, txn, cancel),
            None => Ok(Ok(())),
        }
    }

    /// `page` for an OAuth 2 source: an access token had first (the committed one while
    /// it is good, else a new one), and a new one asked for once when the API refuses it.
    pub fn authorized_page(
        &self,
        position: &Position,
        since: Option<&str>,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<std::result::Result<http::Answer, Failure>> {
        if let Err(failure) = self.authorize(txn, cancel)? {
            return Ok(Err(failure));
        }
        let Some(session) = &self.oauth else {
            return self.page(position, since, cancel);
        };
        match self.page(position, since, cancel)? {
            Err(failure) if failure.class == FailureClass::Auth => {}
            answered => return Ok(answered),
        }
        // Refused (revoked, or expired early): one new token, one more try.
        if let Err(failure) = session.ensure(&self.http, &self.calls, true, txn, cancel)? {
            return Ok(Err(failure));
        }
        self.page(position, since, cancel)
    }

    /// One page at `position` (a GET, or a POST of the body the position makes), waiting
    /// out throttling as the API asks (Retry-After).
    pub fn page(
        &self,
        position: &Position,
        since: Option<&str>,
        cancel: Cancel,
    ) -> Result<std::result::Result<http::Answer, Failure>> {
        runtime::block_on_until(
            self.request(&self.source.config, position, since, None),
            cancel,
        )
    }

    /// The request of the page at `position` of the listing `c` (the source's own, or a
    /// fan-out parent's) as a future of its own (a backfill waits for several windows'
    /// pages at once, a fan-out for several parents'), with a window's end (`until`: its
    /// parameter and value) when it has one; throttling waited out, the failure's message
    /// without the secret.
    pub async fn request(
        &self,
        c: &RestConfig,
        position: &Position,
        since: Option<&str>,
        until: Option<(&str, &str)>,
    ) -> std::result::Result<http::Answer, Failure> {
        let secret = self.source.secret.as_deref();
        let query_key = matches!(c.auth, Auth::QueryKey { .. })
            .then_some(secret)
            .flatten();
        let mut url = paging::request_url(c, position, since, query_key);
        if let (Some((param, value)), false) = (until, matches!(position, Position::Url { .. })) {
            url = incremental::with_param(url, param, value);
        }
        let access = self.oauth.as_ref().and_then(|o| o.access_token());
        let (auth, header) = match (&c.auth, secret) {
            (Auth::OAuth2(_), _) => (access.as_deref().map(RequestAuth::Bearer), None),
            (Auth::Bearer, Some(s)) => (Some(RequestAuth::Bearer(s)), None),
            (Auth::Basic { username }, Some(s)) => (Some(RequestAuth::Basic(username, s)), None),
            (Auth::HeaderKey { header }, Some(s)) => (None, Some((header.as_str(), s))),
            _ => (None, None),
        };
        let request = Request {
            url: &url,
            auth,
            header,
            query_secret: query_key,
        };
        let body = paging::request_body(c, position, since);
        let gate = Some(&c.responses as &dyn http::Gate);
        let send = || async {
            let (limiter, calls) = (self.limiter.as_ref(), &self.calls);
            match &body {
                Some(body) => {
                    self.http
                        .post(&request, body.as_bytes(), limiter, classify, calls, gate)
                        .await
                }
                None => {
                    self.http
                        .get_gated(&request, limiter, classify, calls, gate)
                        .await
                }
            }
        };
        throttle::waiting_out(send).await.map_err(|mut failure| {
            failure.message = self.redacted(&failure.message);
            failure
        })
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Reads the page at `position`, hands each record (a slice of the body: a page is never
/// one tree) to `each` with the page's number of records, and says where the next page is
/// (noted in `seen`: a position read already stops the run); the inner error says
/// (without the secret) why the run stops there.
fn read_page(
    api: &Api,
    position: &Position,
    seen: &mut Seen,
    since: Option<&str>,
    txn: Txn,
    cancel: Cancel,
    each: impl FnMut(&RawValue, usize),
) -> Result<std::result::Result<Option<Position>, String>> {
    let fetched = api.authorized_page(position, since, txn, cancel)?;
    let config = &api.source.config;
    let next = walk_answer(api, config, position, fetched, each).and_then(|next| match &next {
        Some(at) => seen
            .note(at)
            .map(|()| next)
            .map_err(|e| api.redacted(&e.to_string())),
        None => Ok(None),
    });
    Ok(next)
}

/// The records of a page of the listing `config` (the source's own, or a fan-out
/// parent's) fetched at `position` to `each`, and where the next page is (the error: why
/// the listing stops there, without the secret).
pub(super) fn walk_answer(
    api: &Api,
    config: &RestConfig,
    position: &Position,
    fetched: std::result::Result<http::Answer, Failure>,
    each: impl FnMut(&RawValue, usize),
) -> std::result::Result<Option<Position>, String> {
    let fetched = fetched.map_err(|f| f.message)?;
    match config.responses.action(fetched.status, &fetched.body) {
        Some(Action::End) => return Ok(None),
        Some(Action::Skip) => {
            api.skipped.fetch_add(1, Ordering::Relaxed);
            let next = responses::after_skip(config, position, fetched.link.as_deref());
            return next.map_err(|e| api.redacted(&e.to_string()));
        }
        _ => {}
    }
    let body = fetched
        .json_borrowed::<&RawValue>()
        .map_err(|f| api.redacted(&f.message))?;
    let answer = Answer {
        body,
        link: fetched.link.as_deref(),
    };
    let next = paging::check_answer(config, body)
        .and_then(|()| paging::each_record(config, body, each))
        .and_then(|walked| paging::next(config, position, &answer, &walked));
    next.map_err(|e| api.redacted(&e.to_string()))
}

/// A REST source's name in sync_metrics and alerts.
pub fn metrics_source(name: &str) -> String {
    format!("rest:{name}")
}

/// A run's listing, page by page.
struct Listing<'a> {
    source: &'a Stored,
    api: &'a Api<'a>,
    /// The target, quoted and qualified.
    table: String,
    clock: Instant,
    budget: Duration,
    position: Position,
    /// The positions this run has read.
    seen: Seen,
    /// The mark the run sends.
    since: Option<String>,
    /// The highest incremental value written so far.
    run_high_water: Option<String>,
    /// Records left out for want of a complete primary key.
    keyless: usize,
    /// Records at or below the stored mark (read again by the lookback or the boundary).
    reread: usize,
    /// Where the page being written leads (None: it is the last).
    next: Option<Position>,
}

impl Pages for Listing<'_> {
    type Page = Rows;

    fn limit(&self, progress: &Progress) -> Limit {
        let (pages, max_pages) = (progress.pages, self.source.config.max_pages);
        if pages >= max_pages {
            return Limit::Stop(format!(
                "stopped after config.max_pages ({max_pages}) pages; the next run resumes here"
            ));
        }
        if pages > 0 && self.clock.elapsed() >= self.budget {
            return Limit::Stop(format!(
                "stopped after {pages} pages in pullsync.rest_run_budget ({} s); the next run resumes here",
                self.budget.as_secs()
            ));
        }
        Limit::Go
    }

    fn fetch(&mut self, _: &Progress, txn: Txn, cancel: Cancel) -> Result<Fetched<Rows>> {
        let mut maker =
            RowMaker::new(&self.source.config).rereading(self.source.high_water.clone());
        let since = self.since.as_deref();
        let read = read_page(
            self.api,
            &self.position,
            &mut self.seen,
            since,
            txn,
            cancel,
            |r, of| maker.add(r, of),
        )?;
        self.next = match read {
            Ok(next) => next,
            Err(message) => return Ok(Fetched::Failed(message)),
        };
        let PageRows {
            rows,
            keyless,
            high_water,
            reread,
        } = maker.finish();
        self.keyless += keyless;
        self.reread += reread;
        self.run_high_water = paging::higher(self.run_high_water.take(), high_water);
        Ok(Fetched::Page(rows))
    }

    fn write(&mut self, rows: Rows) -> Result<Written> {
        // A lookback reads below the mark: the mark it leaves is never lower than the one
        // it started from.
        let high_water =
            paging::higher(self.source.high_water.clone(), self.run_high_water.clone());
        store::write_page(
            self.source,
            &self.table,
            &rows,
            self.next.as_ref(),
            high_water.as_deref(),
        )
    }

    fn write_failed(&self, error: &PullsyncError) -> String {
        write_failed(self.api, error)
    }

    fn committed(&mut self, _: Written, _: Txn) -> Result<bool> {
        match self.next.take() {
            Some(next) => {
                self.position = next;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

pub(super) fn write_failed(api: &Api, error: &PullsyncError) -> String {
    format!(
        "writing a page failed: {}",
        api.redacted(&error.to_string())
    )
}

/// Where the run starts: an unfinished run resumes where it stopped, with the mark it was
/// started with; a fresh one notes its start and the mark it sends.
fn start(source: &Stored, txn: Txn) -> Result<(Position, Option<String>, Option<String>)> {
    if let Some(run) = &source.run {
        return Ok((
            run.position.clone(),
            run.since.clone(),
            run.high_water.clone(),
        ));
    }
    let config = &source.config;
    let since = match (&source.high_water, &config.incremental) {
        (Some(mark), Some(inc)) => {
            Some(incremental::since_for(mark, &inc.options).map_err(|e| {
                PullsyncError::invalid(
                    e,
                    "Change config.incremental (docs/REST.md, \"Incremental runs\").",
                )
            })?)
        }
        (mark, inc) => mark
            .clone()
            .or_else(|| inc.as_ref().and_then(|i| i.initial.clone())),
    };
    txn.run(|| store::begin_run(&source.name, since.as_deref()))?;
    Ok((Position::Start, since, None))
}

/// What a run's log says besides its error.
pub(super) fn notes(resumed: bool, quarantined: usize, keyless: usize) -> Vec<String> {
    let mut notes = Vec::new();
    if resumed {
        notes.push("resumed an unfinished run after its last committed page".to_string());
    }
    if quarantined > 0 {
        notes.push(format!(
            "{quarantined} records the target would not take are in pullsync.rest_quarantine"
        ));
    }
    if keyless > 0 {
        notes.push(format!(
            "{keyless} records without a complete primary key were left out"
        ));
    }
    notes
}

/// Runs `source` to the end of its listing (or to its first failure), each page in its own
/// unit of work.
pub fn pull(source: &Stored, api: &Api, txn: Txn, cancel: Cancel) -> Result<Outcome> {
    let started = Utc::now();
    let clock = Instant::now();
    let name = source.name.as_str();
    let (position, since, run_high_water) = start(source, txn)?;
    let mut listing = Listing {
        source,
        api,
        table: String::new(),
        clock,
        budget: super::settings::run_budget(),
        seen: Seen::new(name, &position),
        position,
        since,
        run_high_water,
        keyless: 0,
        reread: 0,
        next: None,
    };
    let mut progress = Progress::default();
    // The target, checked against the owner's rights once for the run; every write still
    // runs as the owner, so a right revoked meanwhile stops it as well.
    match txn.run(|| store::check_target(&source.owner, &source.config)) {
        Ok(table) => {
            listing.table = table;
            paged::read(&mut listing, &mut progress, txn, cancel)?;
        }
        Err(e) => progress.error = Some(write_failed(api, &e)),
    }
    let resumed = source.run.is_some();
    let notes = notes(resumed, progress.quarantined, listing.keyless);
    let mut result = Map::new();
    result.insert("name".into(), json!(name));
    result.insert("items".into(), json!(progress.items));
    result.insert("since".into(), json!(listing.since));
    result.insert("resumed".into(), json!(resumed));
    result.insert("left_out".into(), json!(listing.keyless));
    result.insert("reread".into(), json!(listing.reread));
    finish(api, started, progress, &notes, result, txn)
}

/// A run's tail, the same for a listing, a backfill and a fan-out: the pages a `skip` rule
/// left out added to its answer, then its status, `sync_logs` row, metrics and outcome.
pub(super) fn finish(
    api: &Api,
    started: DateTime<Utc>,
    progress: Progress,
    notes: &[String],
    mut result: Map<String, Value>,
    txn: Txn,
) -> Result<Outcome> {
    let name = api.source.name.as_str();
    result.insert("skipped".into(), json!(api.skipped.load(Ordering::Relaxed)));
    let tail = Tail {
        source: "rest",
        job_type: "rest_pull",
        subject: name,
        metrics_source: &metrics_source(name),
        started,
        calls: api.calls(),
        kept: progress.pages > 0,
        notes,
        result,
    };
    paged::finish(tail, progress, txn)
}

/// `rest_reconcile`: lists the source again (from `since`, sent as the incremental
/// parameter, or all of it) and names the keys the target lacks.
pub fn reconcile(name: &str, since: Option<&str>, txn: Txn, cancel: Cancel) -> Result<Value> {
    let source = txn.run(|| store::load(name))?;
    if source.config.for_each.is_some() {
        return Err(PullsyncError::invalid(
            format!("REST source {name} lists its children per parent (for_each): rest_reconcile does not list it"),
            "Compare such a source's rows with the API yourself, or pull it again.",
        ));
    }
    let api = Api::new(&source)?;
    let config = &source.config;
    let mut out = crate::reconcile::runs::Outcome::begin(
        "rest",
        name.to_string(),
        (Utc::now(), Utc::now()),
        false,
    );
    out.windows.push(json!({ "since": since }));
    let mut listed: std::collections::BTreeSet<Vec<Option<String>>> = Default::default();
    let mut position = Position::Start;
    // Only a listing read to its last page may mark keys as deleted.
    let mut complete = false;
    let mut seen = Seen::new(name, &position);
    for _ in 0..config.max_pages {
        let read = read_page(&api, &position, &mut seen, since, txn, cancel, |raw, _| {
            let Ok(record) = serde_json::from_str::<Value>(raw.get()) else {
                return;
            };
            let key: Vec<Option<String>> = config
                .primary_key
                .iter()
                .map(|k| {
                    k.get(&record)
                        .and_then(pullsync_core::rest::path::scalar_text)
                })
                .collect();
            if key.iter().all(Option::is_some) {
                listed.insert(key);
            }
        })?;
        let next = match read {
            Ok(next) => next,
            Err(message) => {
                out.error = Some(message);
                break;
            }
        };
        match next {
            Some(next) => position = next,
            None => {
                complete = true;
                break;
            }
        }
    }
    let deletes = match (&config.deletes, since, complete) {
        (Some(d), None, true) => {
            let keys = json!(listed.iter().collect::<Vec<_>>());
            Some(txn.run(|| store::mark_deletes(&source, &d.column, &keys))?)
        }
        _ => None,
    };
    let stored: std::collections::BTreeSet<Vec<Option<String>>> = txn
        .run(|| store::stored_keys(&source))?
        .into_iter()
        .collect();
    let max_ids = config::reconcile_max_ids();
    let missing: Vec<String> = listed
        .difference(&stored)
        .map(|k| k.iter().flatten().cloned().collect::<Vec<_>>().join(","))
        .collect();
    out.truncated = missing.len() > max_ids;
    out.still_missing = missing.len() as i64;
    out.source_counts = json!({ "records": listed.len() });
    out.target_counts = json!({ "rows": stored.len() });
    let mut records = json!({ "missing": missing.iter().take(max_ids).collect::<Vec<_>>(), "extra": [], "rest_source": name });
    let (marked, unmarked) = deletes.unzip();
    if config.deletes.is_some() {
        records["marked_deleted"] = json!(marked.unwrap_or(0));
        records["unmarked_deleted"] = json!(unmarked.unwrap_or(0));
    }
    out.streams.insert("records".into(), records);
    let mut answer = txn.run(|| out.record(&metrics_source(name), "rest_reconcile"))?;
    if config.deletes.is_some() {
        // null: this listing marks nothing (a `since`, or not read to its end).
        answer["marked_deleted"] = json!(marked);
        answer["unmarked_deleted"] = json!(unmarked);
    }
    Ok(answer)
}
