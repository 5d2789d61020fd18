//! What a sync asks the API for: which posts' metrics are due (refresh tiers), and where
//! the newest-first post listing goes next and when it may stop. Pure.

use chrono::{DateTime, Utc};
use threads_model::{MediaType, Post};

/// Age limits of the refresh tiers, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    /// Younger posts: every run.
    pub every_run_age: i64,
    /// Younger posts: at most hourly.
    pub hourly_age: i64,
    /// Younger posts: at most daily; older: at most weekly.
    pub daily_age: i64,
}

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

impl Tiers {
    /// How long a post of this age waits between metric refreshes.
    pub fn interval(&self, age: i64) -> i64 {
        if age < self.every_run_age {
            0
        } else if age < self.hourly_age {
            HOUR
        } else if age < self.daily_age {
            DAY
        } else {
            7 * DAY
        }
    }

    /// Whether the post's metrics are due. A run that comes a little early (schedules
    /// drift by seconds) still counts: 5% of the interval is forgiven.
    pub fn due(
        &self,
        media_type: &MediaType,
        published_at: DateTime<Utc>,
        refreshed_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        if !media_type.has_insights() {
            return false;
        }
        let Some(refreshed_at) = refreshed_at else {
            return true;
        };
        let interval = self.interval((now - published_at).num_seconds());
        (now - refreshed_at).num_seconds() >= interval - interval / 20
    }
}

/// FNV-1a over the post as listed: equal hashes mean the post did not change.
pub fn content_hash(post: &Post) -> i64 {
    let bytes = serde_json::to_vec(post).expect("a post always serializes");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Listing is newest first, so once a page holds a post stored before and unchanged,
/// everything older is stored too: a later sync stops paging there.
pub fn reaches_known(page: &[Post], stored_hash: impl Fn(&str) -> Option<i64>) -> bool {
    page.iter()
        .any(|p| stored_hash(&p.id).is_some_and(|h| h == content_hash(p)))
}

/// How far an account's listing got, committed with the posts it produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingState {
    /// The `after` cursor of the first page not yet stored: the start of a gap between
    /// the newest posts stored and older ones. None: no gap.
    pub resume_after: Option<String>,
    /// Whether the posts below the gap (or all of them, without a gap) reach the end of the
    /// listing. Only then may a listing stop at a stored, unchanged post.
    pub complete: bool,
}

/// Which part of the listing a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// From the newest post down to the first stored, unchanged one.
    Top,
    /// From the stored resume cursor on, through the gap.
    Resume,
}

/// What to do after a page of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Fetch {
        after: String,
        phase: Phase,
    },
    /// The listing is done for this run; the state to store.
    Done(ListingState),
}

/// After a page in `phase` (`reaches_known`: it holds a stored, unchanged post; `next`:
/// the cursor of the page after it, if any).
pub fn after_page(
    state: &ListingState,
    phase: Phase,
    reaches_known: bool,
    next: Option<String>,
) -> Next {
    let Some(next) = next else {
        // The end of the listing: everything is stored, contiguous.
        return Next::Done(ListingState {
            resume_after: None,
            complete: true,
        });
    };
    match phase {
        Phase::Top if reaches_known => match &state.resume_after {
            Some(gap) => Next::Fetch {
                after: gap.clone(),
                phase: Phase::Resume,
            },
            None if state.complete => Next::Done(state.clone()),
            // Never listed to the end: go on through the stored posts.
            None => Next::Fetch {
                after: next,
                phase: Phase::Top,
            },
        },
        Phase::Resume if reaches_known && state.complete => Next::Done(ListingState {
            resume_after: None,
            complete: true,
        }),
        phase => Next::Fetch { after: next, phase },
    }
}

/// The state to store when the request for page `after` (none: the first page) in `phase`
/// failed. What was listed before it is stored; the listing resumes at `after`.
pub fn after_failure(
    state: &ListingState,
    phase: Phase,
    after: Option<&str>,
    cursor_refused: bool,
) -> ListingState {
    match (phase, after) {
        // Nothing listed this run: as before.
        (Phase::Top, None) => state.clone(),
        // The stored cursor is no longer accepted: list everything again.
        (Phase::Resume, _) if cursor_refused => ListingState::default(),
        (Phase::Resume, Some(after)) => ListingState {
            resume_after: Some(after.to_string()),
            complete: state.complete,
        },
        (Phase::Resume, None) => state.clone(),
        (Phase::Top, Some(after)) => ListingState {
            resume_after: Some(after.to_string()),
            // A second gap above the first: the one cursor cannot hold both, so the
            // listing goes to the end from here.
            complete: state.complete && state.resume_after.is_none(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const TIERS: Tiers = Tiers {
        every_run_age: DAY,
        hourly_age: 7 * DAY,
        daily_age: 30 * DAY,
    };

    fn due(age_hours: i64, refreshed_minutes_ago: Option<i64>) -> bool {
        let now = Utc::now();
        TIERS.due(
            &MediaType::TextPost,
            now - Duration::hours(age_hours),
            refreshed_minutes_ago.map(|m| now - Duration::minutes(m)),
            now,
        )
    }

    #[test]
    fn tiers_follow_post_age() {
        assert!(due(2, Some(1)), "younger than a day: every run");
        assert!(!due(48, Some(30)), "two days old: hourly");
        assert!(due(48, Some(60)));
        assert!(due(48, Some(58)), "a run a little early still counts");
        assert!(!due(10 * 24, Some(12 * 60)), "ten days: daily");
        assert!(due(10 * 24, Some(24 * 60)));
        assert!(!due(60 * 24, Some(3 * 24 * 60)), "two months: weekly");
        assert!(due(60 * 24, Some(7 * 24 * 60)));
        assert!(due(60 * 24, None), "never fetched: due");
    }

    #[test]
    fn repost_facades_are_never_due() {
        let now = Utc::now();
        assert!(!TIERS.due(&MediaType::RepostFacade, now, None, now));
        assert!(TIERS.due(&MediaType::Other("NEW".into()), now, None, now));
    }

    fn state(resume: Option<&str>, complete: bool) -> ListingState {
        ListingState {
            resume_after: resume.map(str::to_string),
            complete,
        }
    }

    fn fetch(after: &str, phase: Phase) -> Next {
        Next::Fetch {
            after: after.into(),
            phase,
        }
    }

    #[test]
    fn a_first_listing_cut_short_resumes_where_it_stopped() {
        // First sync: page 1 fine, page 2 throttled.
        let first = ListingState::default();
        assert_eq!(
            after_page(&first, Phase::Top, false, Some("p2".into())),
            fetch("p2", Phase::Top)
        );
        let stored = after_failure(&first, Phase::Top, Some("p2"), false);
        assert_eq!(stored, state(Some("p2"), false));
        // Next run: page 1 is known now; the listing jumps to the gap and goes to the end,
        // through known posts too, since nothing below was ever listed to the end.
        assert_eq!(
            after_page(&stored, Phase::Top, true, Some("p2".into())),
            fetch("p2", Phase::Resume)
        );
        assert_eq!(
            after_page(&stored, Phase::Resume, true, Some("p4".into())),
            fetch("p4", Phase::Resume)
        );
        assert_eq!(
            after_page(&stored, Phase::Resume, false, None),
            Next::Done(state(None, true))
        );
    }

    #[test]
    fn a_complete_listing_stops_at_the_first_known_post() {
        let done = state(None, true);
        assert_eq!(
            after_page(&done, Phase::Top, false, Some("p2".into())),
            fetch("p2", Phase::Top)
        );
        assert_eq!(
            after_page(&done, Phase::Top, true, Some("p3".into())),
            Next::Done(done.clone())
        );
    }

    #[test]
    fn an_incremental_listing_cut_short_leaves_a_gap_that_is_filled_later() {
        let done = state(None, true);
        // New posts fill two pages; the second fails before the known posts are reached.
        let gap = after_failure(&done, Phase::Top, Some("n2"), false);
        assert_eq!(gap, state(Some("n2"), true));
        // Next run: the new top reaches the stored new posts, the gap is listed until
        // the old, complete posts are reached.
        assert_eq!(
            after_page(&gap, Phase::Top, true, Some("x".into())),
            fetch("n2", Phase::Resume)
        );
        assert_eq!(
            after_page(&gap, Phase::Resume, false, Some("n3".into())),
            fetch("n3", Phase::Resume)
        );
        assert_eq!(
            after_page(&gap, Phase::Resume, true, Some("o2".into())),
            Next::Done(state(None, true))
        );
        // A failure inside the gap moves its start.
        assert_eq!(
            after_failure(&gap, Phase::Resume, Some("n3"), false),
            state(Some("n3"), true)
        );
    }

    #[test]
    fn a_second_gap_or_a_refused_cursor_lists_to_the_end() {
        let gap = state(Some("n2"), true);
        assert_eq!(
            after_failure(&gap, Phase::Top, Some("m2"), false),
            state(Some("m2"), false)
        );
        assert_eq!(
            after_failure(&gap, Phase::Resume, Some("n2"), true),
            ListingState::default()
        );
        // A failure of the very first request changes nothing.
        assert_eq!(after_failure(&gap, Phase::Top, None, false), gap);
    }

    #[test]
    fn paging_stops_at_a_stored_unchanged_post() {
        let post = |id: &str, text: &str| Post {
            text: Some(text.into()),
            ..serde_json::from_str(&format!(r#"{{"id":"{id}"}}"#)).unwrap()
        };
        let stored = post("2", "old");
        let page = vec![post("3", "new"), post("2", "old")];
        let h = content_hash(&stored);
        assert!(reaches_known(&page, |id| (id == "2").then_some(h)));
        let edited = vec![post("3", "new"), post("2", "edited")];
        assert!(!reaches_known(&edited, |id| (id == "2").then_some(h)));
        assert!(!reaches_known(&page, |_| None));
    }
}
