//! Pulls one account from the API: posts, then the metrics that are due, then account
//! insights. Async and free of pgrx: it runs on the tokio runtime and returns owned
//! results that the store writes on the main thread.

use super::api::TokenSession;
use super::plan::{content_hash, reaches_known, Tiers};
use crate::http::{Failure, FailureClass};
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use threads_model::{AccountInsights, MediaType, Post, PostMetrics};

/// What the store knows of a post before the pull.
#[derive(Debug, Clone)]
pub struct KnownPost {
    pub media_type: MediaType,
    pub published_at: DateTime<Utc>,
    pub metrics_updated_at: Option<DateTime<Utc>>,
    pub content_hash: Option<i64>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Partial,
    Failed,
    /// Token expired or invalid: left to the token refresh job.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug)]
pub struct PulledPost {
    pub post: Post,
    pub content_hash: i64,
}

#[derive(Debug)]
pub struct AccountPull {
    /// Listed posts, each once, newest first.
    pub posts: Vec<PulledPost>,
    /// Metrics fetched, by Threads post id.
    pub metrics: Vec<(String, PostMetrics)>,
    /// Posts whose metrics were asked for successfully (including empty answers).
    pub metrics_checked: Vec<String>,
    pub insights: Option<AccountInsights>,
    pub steps_completed: Vec<Step>,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub api_calls: u32,
    pub retry_after: Option<Duration>,
}

/// Records the first failure of a pull and whether the token must not be called again.
#[derive(Default)]
struct Trouble {
    first: Mutex<Option<Failure>>,
    stop: AtomicBool,
    auth: AtomicBool,
}

impl Trouble {
    fn record(&self, failure: Failure) {
        match failure.class {
            FailureClass::Auth => {
                self.auth.store(true, Ordering::Relaxed);
                self.stop.store(true, Ordering::Relaxed);
            }
            FailureClass::Throttled => self.stop.store(true, Ordering::Relaxed),
            _ => {}
        }
        let mut first = self.first.lock().expect("trouble lock");
        // An auth or throttling failure explains the run better than an earlier hiccup.
        let replace = match &*first {
            None => true,
            Some(f) => {
                matches!(failure.class, FailureClass::Auth | FailureClass::Throttled)
                    && !matches!(f.class, FailureClass::Auth | FailureClass::Throttled)
            }
        };
        if replace {
            *first = Some(failure);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

pub async fn pull_account(
    session: &TokenSession<'_>,
    user_id: &str,
    known: &HashMap<String, KnownPost>,
    tiers: Tiers,
    now: DateTime<Utc>,
    concurrency: usize,
) -> AccountPull {
    let trouble = Trouble::default();
    let mut steps = Vec::new();

    // 1. Posts, newest first, until a page reaches a stored, unchanged post.
    let mut posts: Vec<PulledPost> = Vec::new();
    let mut seen = HashSet::new();
    let mut after: Option<String> = None;
    let posts_ok = loop {
        match session.posts_page(user_id, after.as_deref()).await {
            Ok(page) => {
                let stop_here =
                    reaches_known(&page.data, |id| known.get(id).and_then(|k| k.content_hash));
                let next = page.next_after().map(str::to_string);
                for post in page.data {
                    if post.media_type.is_none() || post.timestamp.is_none() {
                        trouble.record(Failure::new(
                            FailureClass::BadData,
                            format!(
                                "post {} was listed without media_type or timestamp",
                                post.id
                            ),
                        ));
                        continue;
                    }
                    // Pages may repeat an item; keep its first listing.
                    if seen.insert(post.id.clone()) {
                        let content_hash = content_hash(&post);
                        posts.push(PulledPost { post, content_hash });
                    }
                }
                match next {
                    Some(cursor) if !stop_here => after = Some(cursor),
                    _ => break true,
                }
            }
            Err(failure) => {
                trouble.record(failure);
                break false;
            }
        }
    };
    if posts_ok && trouble.first.lock().expect("trouble lock").is_none() {
        steps.push(Step::Posts);
    }

    // 2. Metrics of the posts that are due, `concurrency` at a time (the HTTP layer also
    // bounds all accounts together).
    let mut candidates: HashMap<&str, Candidate> = known
        .iter()
        .map(|(id, k)| {
            (
                id.as_str(),
                (k.media_type, k.published_at, k.metrics_updated_at),
            )
        })
        .collect();
    for p in &posts {
        if let (Some(media_type), Some(published_at)) = (p.post.media_type, p.post.timestamp) {
            let refreshed = known.get(&p.post.id).and_then(|k| k.metrics_updated_at);
            candidates.insert(p.post.id.as_str(), (media_type, published_at, refreshed));
        }
    }
    let due: Vec<&str> = candidates
        .iter()
        .filter(|(_, (media_type, published, refreshed))| {
            tiers.due(*media_type, *published, *refreshed, now)
        })
        .map(|(id, _)| *id)
        .collect();
    let mut metrics = Vec::new();
    let mut metrics_checked = Vec::new();
    let mut metrics_ok = !trouble.stopped();
    if metrics_ok {
        let results: Vec<(&str, Result<Option<PostMetrics>, Failure>)> = stream::iter(due)
            .map(|id| {
                let trouble = &trouble;
                async move {
                    if trouble.stopped() {
                        return (
                            id,
                            Err(Failure::new(
                                FailureClass::Throttled,
                                "not called: token stopped for this run",
                            )),
                        );
                    }
                    (id, session.post_metrics(id).await)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (id, result) in results {
            match result {
                Ok(values) => {
                    metrics_checked.push(id.to_string());
                    if let Some(values) = values {
                        metrics.push((id.to_string(), values));
                    }
                }
                Err(failure) => {
                    metrics_ok = false;
                    if !failure.message.starts_with("not called") {
                        trouble.record(failure);
                    }
                }
            }
        }
    }
    if metrics_ok {
        steps.push(Step::Metrics);
    }

    // 3. Account insights for the current UTC day, and the follower count.
    let mut insights = None;
    if !trouble.stopped() {
        let day_start = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        match session.account_insights(user_id, day_start, now).await {
            Ok(values) => {
                insights = Some(values);
                steps.push(Step::Insights);
            }
            Err(failure) => trouble.record(failure),
        }
    }

    let failure = trouble.first.into_inner().expect("trouble lock");
    let outcome = if trouble.auth.load(Ordering::Relaxed) {
        Outcome::Skipped
    } else if steps.len() == 3 {
        Outcome::Completed
    } else if steps.is_empty() {
        Outcome::Failed
    } else {
        Outcome::Partial
    };
    AccountPull {
        posts,
        metrics,
        metrics_checked,
        insights,
        steps_completed: steps,
        outcome,
        retry_after: failure.as_ref().and_then(|f| f.retry_after),
        error: failure.map(|f| f.message),
        api_calls: session.calls.load(Ordering::Relaxed),
    }
}
