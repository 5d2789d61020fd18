//! Pulls one account from the API: posts, then the metrics that are due, then account
//! insights. Async and free of pgrx: it runs on the tokio runtime and returns owned
//! results that the store writes on the main thread.

use super::api::TokenSession;
use super::plan::{after_failure, after_page, content_hash, reaches_known, ListingState, Next};
use super::plan::{Phase, Tiers};
use crate::http::{Failure, FailureClass};
use crate::outcome::Status;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use threads_model::demographics::DEMOGRAPHICS_MIN_FOLLOWERS;
use threads_model::{MediaType, Post};

/// What the store knows of a post before the pull.
#[derive(Debug, Clone)]
pub struct KnownPost {
    pub media_type: MediaType,
    pub published_at: DateTime<Utc>,
    pub metrics_updated_at: Option<DateTime<Utc>>,
    pub content_hash: Option<i64>,
    /// Threads said it does not exist: no more metrics calls.
    pub deleted: bool,
}

/// What the store knows of an account before the pull.
#[derive(Debug, Clone, Default)]
pub struct KnownAccount {
    pub posts: HashMap<String, KnownPost>,
    pub listing: ListingState,
    /// The latest follower count stored, if any.
    pub followers_count: Option<i64>,
    /// Demographics breakdowns without a snapshot for the current UTC day.
    pub demographics_due: Vec<&'static str>,
}

/// What the tier planner needs of a post: media type, published, metrics last fetched.
type Candidate = (MediaType, DateTime<Utc>, Option<DateTime<Utc>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Posts,
    Metrics,
    Insights,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Posts => "posts",
            Step::Metrics => "metrics",
            Step::Insights => "insights",
        }
    }
}

#[derive(Debug)]
pub struct PulledPost {
    pub post: Post,
    pub content_hash: i64,
}

/// Values read from one answer, metric by metric: None where the answer left a metric
/// out or gave it in a shape this client does not know (the store keeps the last value).
#[derive(Debug, Clone)]
pub struct Reading<const N: usize> {
    pub values: [Option<i64>; N],
    /// When the API answered: the capture time of the snapshot.
    pub fetched_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct AccountPull {
    /// Listed posts that are new, changed or back from deletion, each once, newest first:
    /// a post listed as it is stored needs no write.
    pub posts: Vec<PulledPost>,
    /// Metrics fetched, by Threads post id.
    pub metrics: Vec<(String, Reading<6>)>,
    /// Posts whose metrics were asked for successfully (including empty answers).
    pub metrics_checked: Vec<String>,
    /// Posts Threads says do not exist any more.
    pub deleted: Vec<String>,
    pub insights: Option<Reading<7>>,
    /// Clicks per link URL, captured with `insights`; None when the answer did not split
    /// its clicks by link.
    pub link_clicks: Option<Vec<(String, i64)>>,
    /// Demographics breakdowns asked for.
    pub demographics: Vec<DemographicsReading>,
    /// The listing's state after this pull; None leaves the stored one.
    pub listing: Option<ListingState>,
    pub steps_completed: Vec<Step>,
    pub outcome: Status,
    pub error: Option<String>,
    /// Values this client does not know (media types, metric shapes), each once.
    pub notes: Vec<String>,
    pub api_calls: u32,
    /// How long the API asked the account to wait, at most `LONGEST_WAIT`.
    pub retry_after: Option<Duration>,
    /// Set when the API rate limited the account (it is `skipped`, not failed; the next
    /// run retries it).
    pub rate_limited: Option<RateLimited>,
}

/// One demographics breakdown as the API answered it: followers per value, or why Meta
/// refused it (kept for the day: asking again before tomorrow would get the same answer).
#[derive(Debug, Clone)]
pub struct DemographicsReading {
    pub breakdown: &'static str,
    pub followers: Result<Vec<(String, i64)>, String>,
    pub fetched_at: DateTime<Utc>,
}

/// Whose budget a rate limit concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimited {
    /// The whole application's (code 4, or usage near the limit): every account waits.
    Application,
    /// One user's or token's (17, 32, 613, HTTP 429): only this account waits.
    User,
}

impl RateLimited {
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimited::Application => "application",
            RateLimited::User => "user",
        }
    }
}

/// The longest wait an answer may ask of an account (its Retry-After, or the time its usage
/// headers give to regain access): no answer parks an account for longer than a day.
pub const LONGEST_WAIT: Duration = Duration::from_secs(86_400);

/// The reason recorded for an account the API rate limited.
pub const RATE_LIMITED: &str = "rate_limited";

/// The day whose account insights a sync asks for, as [since, until] in the API's time:
/// until is the earlier of our clock and the API's (from its `Date`), so `since` is never
/// after the API's now even when our clock runs ahead of Meta's around midnight; since is
/// that day's 00:00 UTC, never before the earliest the API accepts.
pub fn insights_window(
    now: DateTime<Utc>,
    api_now: Option<DateTime<Utc>>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let until = api_now.map_or(now, |api| api.min(now));
    let midnight = until
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    let floor =
        DateTime::from_timestamp(threads_model::EARLIEST_INSIGHTS_SINCE, 0).expect("a valid time");
    (midnight.max(floor), until)
}

/// Records the first failure of a pull and whether the token must not be called again.
#[derive(Default)]
struct Trouble {
    first: Mutex<Option<Failure>>,
    stop: AtomicBool,
    auth: AtomicBool,
    /// 0: not rate limited; 1: a user's limit; 2: the application's.
    rate_limited: std::sync::atomic::AtomicU8,
    notes: Mutex<Vec<String>>,
}

impl Trouble {
    fn record(&self, failure: Failure) {
        match failure.class {
            FailureClass::Auth => {
                self.auth.store(true, Ordering::Relaxed);
                self.stop.store(true, Ordering::Relaxed);
            }
            FailureClass::Throttled => {
                self.rate_limited.fetch_max(1, Ordering::Relaxed);
                self.stop.store(true, Ordering::Relaxed);
            }
            FailureClass::AppThrottled => {
                self.rate_limited.fetch_max(2, Ordering::Relaxed);
                self.stop.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
        let stops = |class: FailureClass| class.stops_the_account();
        let mut first = self.first.lock().expect("trouble lock");
        // An auth or throttling failure explains the run better than an earlier hiccup.
        let replace = match &*first {
            None => true,
            Some(f) => stops(failure.class) && !stops(f.class),
        };
        if replace {
            *first = Some(failure);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn note(&self, note: String) {
        let mut notes = self.notes.lock().expect("notes lock");
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
}

/// Pulls one account: its posts, the metrics that are due, its insights and follower
/// demographics, each phase going as far as the token and the rate limit allow.
pub async fn pull_account(
    session: &TokenSession<'_>,
    user_id: &str,
    known: &KnownAccount,
    tiers: Tiers,
    now: DateTime<Utc>,
    concurrency: usize,
) -> AccountPull {
    let pulling = Pulling {
        session,
        user_id,
        known,
        trouble: Trouble::default(),
    };
    let mut steps = Vec::new();
    let listed = pulling.list_posts().await;
    if listed.to_the_stop {
        steps.push(Step::Posts);
    }
    let due = due_metrics(known, &listed.posts, tiers, now);
    let metrics = pulling.fetch_metrics(due, concurrency).await;
    if metrics.complete {
        steps.push(Step::Metrics);
    }
    let insights = pulling.account_insights(now).await;
    if insights.is_some() {
        steps.push(Step::Insights);
    }
    let followers = insights
        .as_ref()
        .and_then(|insights| insights.reading.values[0])
        .or(known.followers_count);
    let demographics = pulling.demographics(followers).await;
    pulling.finish(listed, metrics, insights, demographics, steps)
}

/// One account's pull in progress: what every phase reads, and the trouble they record.
struct Pulling<'a, 's> {
    session: &'a TokenSession<'s>,
    user_id: &'a str,
    known: &'a KnownAccount,
    trouble: Trouble,
}

/// What listing the posts found.
struct Listed {
    /// Every listed post that could be read, each once, newest first.
    posts: Vec<PulledPost>,
    /// The listing's state after this pull.
    listing: ListingState,
    /// The listing went without failure as far as it had to.
    to_the_stop: bool,
}

/// What the metrics phase fetched.
#[derive(Default)]
struct Metrics {
    metrics: Vec<(String, Reading<6>)>,
    checked: Vec<String>,
    deleted: Vec<String>,
    /// The phase ran, and every due post was answered (or found deleted).
    complete: bool,
}

/// The account's insights as the API answered them.
struct AccountInsights {
    reading: Reading<7>,
    /// Clicks per link URL; None when the answer did not split its clicks by link.
    link_clicks: Option<Vec<(String, i64)>>,
}

impl Pulling<'_, '_> {
    /// Posts, newest first, until a page reaches a stored, unchanged post of a listing
    /// that once went to the end; an interrupted listing resumes at its gap.
    async fn list_posts(&self) -> Listed {
        let known = self.known;
        let mut posts: Vec<PulledPost> = Vec::new();
        let mut seen = HashSet::new();
        let (mut after, mut phase): (Option<String>, Phase) = (None, Phase::Top);
        let listing = loop {
            let page = match self
                .session
                .posts_page(self.user_id, after.as_deref())
                .await
            {
                Ok(page) => page,
                Err(failure) => {
                    let refused = phase == Phase::Resume
                        && after == known.listing.resume_after
                        && matches!(failure.class, FailureClass::Refused);
                    self.trouble.record(failure);
                    break after_failure(&known.listing, phase, after.as_deref(), refused);
                }
            };
            let stop_here = reaches_known(&page.data, |id| {
                known.posts.get(id).and_then(|k| k.content_hash)
            });
            let next = page.next_after().map(str::to_string);
            for post in page.data {
                if !self.readable(&post) {
                    continue;
                }
                // Pages may repeat an item; keep its first listing.
                if seen.insert(post.id.clone()) {
                    let content_hash = content_hash(&post);
                    posts.push(PulledPost { post, content_hash });
                }
            }
            match after_page(&known.listing, phase, stop_here, next) {
                Next::Fetch {
                    after: cursor,
                    phase: next_phase,
                } => {
                    after = Some(cursor);
                    phase = next_phase;
                }
                Next::Done(state) => break state,
            }
        };
        let to_the_stop = self.trouble.first.lock().expect("trouble lock").is_none();
        Listed {
            posts,
            listing,
            to_the_stop,
        }
    }

    /// A listed post without media type or timestamp is bad data, left out; an unknown
    /// media type is kept and noted.
    fn readable(&self, post: &Post) -> bool {
        let Some(media_type) = &post.media_type else {
            self.trouble.record(Failure::new(
                FailureClass::BadData,
                format!("post {} was listed without media_type", post.id),
            ));
            return false;
        };
        if post.timestamp.is_none() {
            self.trouble.record(Failure::new(
                FailureClass::BadData,
                format!("post {} was listed without timestamp", post.id),
            ));
            return false;
        }
        if !media_type.is_known() {
            self.trouble.note(format!(
                "media_type {} (post {})",
                media_type.as_str(),
                post.id
            ));
        }
        true
    }

    /// Metrics of the posts that are due, `concurrency` at a time (the HTTP layer also
    /// bounds all accounts together).
    async fn fetch_metrics(&self, due: Vec<&str>, concurrency: usize) -> Metrics {
        let mut fetched = Metrics {
            complete: !self.trouble.stopped(),
            ..Metrics::default()
        };
        if !fetched.complete {
            return fetched;
        }
        // None: not called, as the token was stopped for this run meanwhile.
        type Fetched = Option<Result<Option<super::api::MetricsAnswer>, Failure>>;
        // Made before the stream rather than by a closure in it: a closure over borrowed
        // ids kept in the future makes it not Send (rust-lang/rust#102211), and a batch's
        // pulls run on another thread.
        let fetches: Vec<_> = due
            .into_iter()
            .map(|id| {
                let (trouble, session) = (&self.trouble, self.session);
                async move {
                    if trouble.stopped() {
                        return (id, None);
                    }
                    (id, Some(session.post_metrics(id).await))
                }
            })
            .collect();
        let results: Vec<(&str, Fetched)> = stream::iter(fetches)
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (id, result) in results {
            match result {
                Some(Ok(answer)) => {
                    fetched.checked.push(id.to_string());
                    if let Some(answer) = answer {
                        for note in answer.unknown {
                            self.trouble.note(format!("post insights: {note}"));
                        }
                        fetched.metrics.push((
                            id.to_string(),
                            Reading {
                                values: answer.values,
                                fetched_at: answer.fetched_at,
                            },
                        ));
                    }
                }
                // Deleted on Threads (or no longer visible to the token).
                Some(Err(failure)) if failure.class == FailureClass::Gone => {
                    fetched.deleted.push(id.to_string());
                }
                Some(Err(failure)) => {
                    fetched.complete = false;
                    self.trouble.record(failure);
                }
                None => fetched.complete = false,
            }
        }
        fetched
    }

    /// Account insights for the current UTC day, and the follower count.
    async fn account_insights(&self, now: DateTime<Utc>) -> Option<AccountInsights> {
        if self.trouble.stopped() {
            return None;
        }
        let (since, until) = insights_window(now, self.session.api_now());
        match self
            .session
            .account_insights(self.user_id, since, until)
            .await
        {
            Ok(answer) => {
                let reading = answer.insights;
                for note in reading.unknown {
                    self.trouble.note(format!("account insights: {note}"));
                }
                Some(AccountInsights {
                    reading: Reading {
                        values: reading.values,
                        fetched_at: reading.fetched_at,
                    },
                    link_clicks: answer.link_clicks,
                })
            }
            Err(failure) => {
                self.trouble.record(failure);
                None
            }
        }
    }

    /// Follower demographics, once a day per breakdown, for accounts Meta answers them
    /// for. A breakdown that fails costs only itself, unless the token or the rate limit
    /// stops the account.
    async fn demographics(&self, followers: Option<i64>) -> Vec<DemographicsReading> {
        let mut demographics = Vec::new();
        if followers.is_none_or(|f| f < DEMOGRAPHICS_MIN_FOLLOWERS) {
            return demographics;
        }
        for &breakdown in &self.known.demographics_due {
            if self.trouble.stopped() {
                break;
            }
            let answer = self
                .session
                .follower_demographics(self.user_id, breakdown)
                .await;
            let followers = match answer {
                Ok(values) => Ok(values),
                Err(failure)
                    if matches!(failure.class, FailureClass::Refused | FailureClass::Gone) =>
                {
                    self.trouble.note(format!(
                        "follower demographics ({breakdown}): {}",
                        failure.message
                    ));
                    Err(failure.message)
                }
                Err(failure) if failure.class.stops_the_account() => {
                    self.trouble.record(failure);
                    continue;
                }
                Err(failure) => {
                    self.trouble.note(format!(
                        "follower demographics ({breakdown}) left for the next run: {}",
                        failure.message
                    ));
                    continue;
                }
            };
            demographics.push(DemographicsReading {
                breakdown,
                followers,
                fetched_at: Utc::now(),
            });
        }
        demographics
    }

    /// The pull's result: the outcome from the steps completed and the trouble met, and
    /// only the listed posts that need a write.
    fn finish(
        self,
        listed: Listed,
        metrics: Metrics,
        insights: Option<AccountInsights>,
        demographics: Vec<DemographicsReading>,
        steps: Vec<Step>,
    ) -> AccountPull {
        let mut notes = self.session.take_notes();
        for note in self.trouble.notes.into_inner().expect("notes lock") {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        let failure = self.trouble.first.into_inner().expect("trouble lock");
        let rate_limited = match self.trouble.rate_limited.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(RateLimited::User),
            _ => Some(RateLimited::Application),
        };
        let auth = self.trouble.auth.load(Ordering::Relaxed);
        // A rate limit is no failure: what was fetched is written, the rest waits for the
        // next run (a refused token weighs more: it needs a person).
        let rate_limited = rate_limited.filter(|_| !auth);
        let outcome = if auth || rate_limited.is_some() {
            Status::Skipped
        } else if steps.len() == 3 {
            Status::Completed
        } else if steps.is_empty() {
            Status::Failed
        } else {
            Status::Partial
        };
        let stored = &self.known.posts;
        let mut posts = listed.posts;
        posts.retain(|p| {
            stored
                .get(&p.post.id)
                .is_none_or(|k| k.deleted || k.content_hash != Some(p.content_hash))
        });
        let (insights, link_clicks) = match insights {
            Some(i) => (Some(i.reading), i.link_clicks),
            None => (None, None),
        };
        AccountPull {
            posts,
            metrics: metrics.metrics,
            metrics_checked: metrics.checked,
            deleted: metrics.deleted,
            insights,
            link_clicks,
            demographics,
            listing: Some(listed.listing),
            steps_completed: steps,
            outcome,
            retry_after: failure
                .as_ref()
                .and_then(|f| f.retry_after)
                .map(|wait| wait.min(LONGEST_WAIT)),
            error: failure.map(|f| match rate_limited {
                Some(scope) => format!("{RATE_LIMITED} ({} limit): {}", scope.as_str(), f.message),
                None => f.message,
            }),
            notes,
            api_calls: self.session.calls.load(Ordering::Relaxed),
            rate_limited,
        }
    }
}

/// The posts whose metrics are due: every stored post not deleted, and every listed one
/// (a listed post exists, whatever was said of it before).
fn due_metrics<'a>(
    known: &'a KnownAccount,
    listed: &'a [PulledPost],
    tiers: Tiers,
    now: DateTime<Utc>,
) -> Vec<&'a str> {
    let stored = &known.posts;
    let mut candidates: HashMap<&str, Candidate> = stored
        .iter()
        .filter(|(_, k)| !k.deleted)
        .map(|(id, k)| {
            (
                id.as_str(),
                (k.media_type.clone(), k.published_at, k.metrics_updated_at),
            )
        })
        .collect();
    for p in listed {
        if let (Some(media_type), Some(published_at)) = (&p.post.media_type, p.post.timestamp) {
            let refreshed = stored.get(&p.post.id).and_then(|k| k.metrics_updated_at);
            candidates.insert(
                p.post.id.as_str(),
                (media_type.clone(), published_at, refreshed),
            );
        }
    }
    candidates
        .iter()
        .filter(|(_, (media_type, published, refreshed))| {
            tiers.due(media_type, *published, *refreshed, now)
        })
        .map(|(id, _)| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn insights_ask_for_the_api_s_day_when_our_clock_runs_ahead() {
        // Our clock is past midnight, Meta's is not yet: yesterday, up to Meta's now.
        let (since, until) =
            insights_window(at("2026-12-06T00:00:05Z"), Some(at("2026-12-05T23:59:58Z")));
        assert_eq!(since, at("2026-12-05T00:00:00Z"));
        assert_eq!(until, at("2026-12-05T23:59:58Z"));
        assert!(since < until);
    }

    #[test]
    fn insights_keep_our_day_when_the_api_is_ahead_or_silent() {
        let now = at("2026-12-06T10:00:00Z");
        let today = at("2026-12-06T00:00:00Z");
        assert_eq!(insights_window(now, None), (today, now));
        assert_eq!(
            insights_window(now, Some(at("2026-12-07T01:00:00Z"))),
            (today, now)
        );
    }

    #[test]
    fn insights_never_ask_before_the_api_s_floor() {
        let (since, until) = insights_window(at("2024-04-13T09:00:00Z"), None);
        assert_eq!(since.timestamp(), threads_model::EARLIEST_INSIGHTS_SINCE);
        assert!(since < until);
        assert_eq!(
            insights_window(at("2024-04-14T03:00:00Z"), None).0,
            at("2024-04-14T00:00:00Z")
        );
    }
}
