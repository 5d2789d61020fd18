//! What a sync asks the API for: which posts' metrics are due (refresh tiers), and when
//! the newest-first post listing may stop. Pure.

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
        media_type: MediaType,
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
            MediaType::TextPost,
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
        assert!(!TIERS.due(MediaType::RepostFacade, now, None, now));
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
