//! The simulated Threads world: accounts, posts and metrics, all derived from a seed and a
//! simulated clock. Pure: no I/O, no wall clock.

use std::collections::HashMap;
use threads_model::{IdRef, MediaType, Post, PostMetrics, TOKEN_LIFETIME_SECS};

/// SplitMix64: a small, fast, well-mixed hash used as a deterministic RNG.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn hash3(seed: u64, a: u64, b: u64) -> u64 {
    mix(mix(mix(seed) ^ a) ^ b)
}

const TEXTS: [&str; 8] = [
    "Shipping a new feature today 🚀",
    "今日はいい天気ですね ☀️",
    "Café con leche y código ☕",
    "我们的新产品发布了！🎉",
    "Thread about Postgres internals 🧵 (1/7)",
    "Ça marche, enfin. 😅",
    "안녕하세요, Threads!",
    "Plain ASCII post, nothing special.",
];

const TOPICS: [&str; 4] = ["Postgres", "Rust", "Coffee", "Weather"];

#[derive(Debug, Clone)]
pub struct SimPost {
    pub id: String,
    pub media_type: MediaType,
    pub published_at: i64,
    pub text: String,
    pub shortcode: String,
    pub children: Vec<String>,
    /// Posts flagged for copyright have no permalink.
    pub copyright_flagged: bool,
    /// Growth rates of the lifetime metrics, per unit of log-age.
    rates: [u64; 6],
}

impl SimPost {
    /// Lifetime metrics at simulated time `now`: grow with age, never shrink.
    pub fn metrics_at(&self, now: i64) -> PostMetrics {
        let age_hours = ((now - self.published_at).max(0) as f64) / 3600.0;
        let growth = (1.0 + age_hours).ln();
        let v = |i: usize| (self.rates[i] as f64 * growth) as i64;
        PostMetrics {
            views: v(0),
            likes: v(1),
            replies: v(2),
            reposts: v(3),
            quotes: v(4),
            shares: v(5),
        }
    }

    pub fn to_api(&self, owner: &SimAccount) -> Post {
        let is_carousel = self.media_type == MediaType::CarouselAlbum;
        let has_media = matches!(
            self.media_type,
            MediaType::Image | MediaType::Video | MediaType::CarouselAlbum | MediaType::Audio
        );
        Post {
            id: self.id.clone(),
            media_product_type: Some("THREADS".into()),
            media_type: Some(self.media_type.clone()),
            media_url: has_media.then(|| format!("https://cdn.sim.threads/{}.jpg", self.id)),
            permalink: (!self.copyright_flagged).then(|| {
                format!(
                    "https://www.threads.net/@{}/post/{}",
                    owner.username, self.shortcode
                )
            }),
            owner: Some(IdRef {
                id: owner.user_id.clone(),
            }),
            username: Some(owner.username.clone()),
            text: (self.media_type != MediaType::RepostFacade).then(|| self.text.clone()),
            timestamp: chrono::DateTime::from_timestamp(self.published_at, 0),
            shortcode: Some(self.shortcode.clone()),
            thumbnail_url: (self.media_type == MediaType::Video)
                .then(|| format!("https://cdn.sim.threads/{}-thumb.jpg", self.id)),
            children: is_carousel.then(|| threads_model::Children {
                data: self
                    .children
                    .iter()
                    .map(|id| IdRef { id: id.clone() })
                    .collect(),
            }),
            is_quote_post: Some(self.text.starts_with("Thread")),
            quoted_post: None,
            reposted_post: (self.media_type == MediaType::RepostFacade).then(|| IdRef {
                id: format!("{}9", self.id),
            }),
            alt_text: (self.media_type == MediaType::Image)
                .then(|| format!("A picture for post {}", self.id)),
            link_attachment_url: (self.media_type == MediaType::TextPost
                && self.rates[2].is_multiple_of(4))
            .then(|| format!("https://example.com/{}/{}", owner.username, self.shortcode)),
            gif_url: None,
            topic_tag: self.rates[1]
                .is_multiple_of(3)
                .then(|| TOPICS[(self.rates[0] % TOPICS.len() as u64) as usize].to_string()),
            poll_attachment: (self.media_type == MediaType::TextPost
                && self.rates[3].is_multiple_of(5))
            .then(|| {
                let votes = self.rates[4] % 1000;
                serde_json::json!({
                    "option_a": "Yes", "option_b": "No",
                    "option_a_votes_percentage": 0.6, "option_b_votes_percentage": 0.4,
                    "total_votes": votes,
                    "expiration_timestamp": "2026-01-01T00:00:00+0000",
                })
            }),
            has_replies: Some(self.rates[2] > 0),
            reply_audience: Some("EVERYONE".into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Token {
    pub text: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct SimAccount {
    pub index: usize,
    pub user_id: String,
    pub username: String,
    pub token: Token,
    /// Newest first.
    pub posts: Vec<SimPost>,
    followers_base: i64,
    /// The world's first day: followers grow from it.
    start_day: i64,
    followers_per_day: i64,
    views_per_day: u64,
}

/// Earliest time every account exists (posts, followers).
const DAY: i64 = 86_400;

fn generate_post(seed: u64, account: usize, p: usize, published_at: i64) -> SimPost {
    let ph = hash3(seed, account as u64, p as u64 + 1);
    let media_type = MediaType::KNOWN[(ph % 6) as usize].clone();
    let id = format!("{}{:06}", 18_000_000_000u64 + account as u64 * 1_000_000, p);
    let children = if media_type == MediaType::CarouselAlbum {
        (0..2 + ph % 3).map(|c| format!("{id}{c}")).collect()
    } else {
        Vec::new()
    };
    let rate = |k: u64, scale: u64| (hash3(seed, ph, k) % scale) + if k == 0 { 50 } else { 0 };
    SimPost {
        shortcode: format!("C{:x}", ph & 0xFFFF_FFFF),
        text: TEXTS[(ph >> 8) as usize % TEXTS.len()].to_string(),
        children,
        copyright_flagged: ph.is_multiple_of(13),
        media_type,
        published_at,
        rates: [
            rate(0, 2000),
            rate(1, 200),
            rate(2, 40),
            rate(3, 20),
            rate(4, 10),
            rate(5, 10),
        ],
        id,
    }
}

impl SimAccount {
    /// Posts published by `now`, newest first.
    pub fn visible_posts(&self, now: i64) -> &[SimPost] {
        let first = self.posts.partition_point(|p| p.published_at > now);
        &self.posts[first..]
    }

    /// Follower count at `now`: grows and wobbles, so it changes between days.
    pub fn followers_at(&self, seed: u64, now: i64) -> i64 {
        let day = now.div_euclid(DAY);
        let wobble = (hash3(seed, self.index as u64, day as u64) % 7) as i64 - 3;
        (self.followers_base + self.followers_per_day * (day - self.start_day) + wobble).max(0)
    }

    /// Daily account metric `metric` (0 views, 1 likes, 2 replies, 3 reposts, 4 quotes,
    /// 5 clicks) for the day that starts at `day_start`, counted up to `until` when that
    /// day is still under way.
    pub fn daily(&self, seed: u64, metric: u64, day_start: i64, until: i64) -> i64 {
        let full = (hash3(seed ^ metric, self.index as u64, day_start as u64)
            % self.views_per_day.max(1)) as i64;
        let full = match metric {
            0 => full,
            5 => full / 20,
            m => full / (4 + m as i64 * 3),
        };
        let elapsed = (until - day_start).clamp(0, DAY);
        full * elapsed / DAY
    }
}

#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub seed: u64,
    pub accounts: usize,
    pub posts_per_account: usize,
    /// Simulated "now" at start, Unix seconds.
    pub start: i64,
}

#[derive(Debug)]
pub struct World {
    pub seed: u64,
    pub now: i64,
    pub accounts: Vec<SimAccount>,
    /// user_id -> index
    by_user: HashMap<String, usize>,
    /// post id -> (account index, position in its posts)
    by_post: HashMap<String, (usize, usize)>,
    /// token text -> account index, for current and replaced tokens
    tokens: HashMap<String, (usize, bool)>,
    token_serial: u64,
    /// Posts published by `add_post`, for their ids.
    added_posts: usize,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Unknown,
    Replaced,
    Expired,
}

impl World {
    pub fn generate(config: &WorldConfig) -> World {
        World::generate_with_posts(config, |_| config.posts_per_account)
    }

    /// As `generate`, with `posts(account index)` posts for each account instead of
    /// `posts_per_account`.
    pub fn generate_with_posts(config: &WorldConfig, posts: impl Fn(usize) -> usize) -> World {
        let seed = config.seed;
        let mut accounts = Vec::with_capacity(config.accounts);
        for index in 0..config.accounts {
            let h = hash3(seed, index as u64, 0);
            let user_id = format!(
                "{}",
                17_841_400_000_000_000u64 + (h % 1_000_000_000) * 1000 + index as u64
            );
            let username = format!("sim_user_{index}");
            // `posts_per_account` posts over the last ~180 days, and a third as many again
            // ahead of the clock, which appear as it advances. Stored newest first.
            let past = posts(index);
            let future = past / 3;
            let gap = (180 * DAY / past.max(1) as i64).max(61) as u64;
            let step = |p: usize| 60 + (hash3(seed, index as u64, p as u64 + 1) % gap) as i64;
            let mut times = Vec::with_capacity(past + future);
            let mut t = config.start - (h % 3600) as i64;
            for p in 0..past {
                t -= step(p);
                times.push(t);
            }
            let mut t = config.start;
            for p in past..past + future {
                t += step(p);
                times.push(t);
            }
            let mut posts: Vec<SimPost> = times
                .into_iter()
                .enumerate()
                .map(|(p, published_at)| generate_post(seed, index, p, published_at))
                .collect();
            posts.sort_by(|a, b| b.published_at.cmp(&a.published_at).then(b.id.cmp(&a.id)));
            let token = Token {
                text: format!("THAA{:016x}{:04}", mix(h), index),
                issued_at: config.start - 2 * DAY,
                expires_at: config.start - 2 * DAY + TOKEN_LIFETIME_SECS,
            };
            accounts.push(SimAccount {
                index,
                user_id,
                username,
                token,
                posts,
                followers_base: 20 + (h % 600) as i64,
                start_day: config.start.div_euclid(DAY),
                followers_per_day: (h >> 20) as i64 % 5,
                views_per_day: 200 + (h >> 30) % 5000,
            });
        }
        let mut world = World {
            seed,
            now: config.start,
            accounts,
            by_user: HashMap::new(),
            by_post: HashMap::new(),
            tokens: HashMap::new(),
            token_serial: 0,
            added_posts: 0,
        };
        world.reindex();
        world
    }

    fn reindex(&mut self) {
        self.by_user.clear();
        self.by_post.clear();
        for (i, a) in self.accounts.iter().enumerate() {
            self.by_user.insert(a.user_id.clone(), i);
            self.tokens.insert(a.token.text.clone(), (i, true));
            for (p, post) in a.posts.iter().enumerate() {
                self.by_post.insert(post.id.clone(), (i, p));
            }
        }
    }

    pub fn account_by_user(&self, user_id: &str) -> Option<&SimAccount> {
        self.by_user.get(user_id).map(|&i| &self.accounts[i])
    }

    /// A published post and its owner.
    pub fn post(&self, id: &str) -> Option<(&SimAccount, &SimPost)> {
        let &(a, p) = self.by_post.get(id)?;
        let account = &self.accounts[a];
        let post = &account.posts[p];
        (post.published_at <= self.now).then_some((account, post))
    }

    /// The account a token belongs to, if the token is current and unexpired.
    pub fn authenticate(&self, token: &str) -> Result<&SimAccount, TokenProblem> {
        match self.tokens.get(token) {
            None => Err(TokenProblem::Unknown),
            Some(&(i, _)) if self.accounts[i].token.text != token => Err(TokenProblem::Replaced),
            Some(&(i, _)) if self.accounts[i].token.expires_at <= self.now => {
                Err(TokenProblem::Expired)
            }
            Some(&(i, _)) => Ok(&self.accounts[i]),
        }
    }

    /// Replaces an account's token with a new one of the given age and remaining lifetime;
    /// the old token becomes invalid.
    pub fn issue_token(&mut self, index: usize, age: i64, lifetime: i64) -> Token {
        self.token_serial += 1;
        let account = &mut self.accounts[index];
        let token = Token {
            text: format!(
                "THAA{:016x}{:04}r{}",
                mix(hash3(self.seed, index as u64, self.token_serial)),
                index,
                self.token_serial
            ),
            issued_at: self.now - age,
            expires_at: self.now - age + lifetime,
        };
        if let Some(old) = self.tokens.get_mut(&account.token.text) {
            old.1 = false;
        }
        account.token = token.clone();
        self.tokens.insert(token.text.clone(), (index, true));
        token
    }

    /// Removes a post from the world (the "disappears between pages" fault).
    /// Publishes a new post of account `index` now; returns its id.
    pub fn add_post(&mut self, index: usize) -> String {
        self.added_posts += 1;
        let post = generate_post(self.seed, index, 900_000 + self.added_posts, self.now);
        let id = post.id.clone();
        let posts = &mut self.accounts[index].posts;
        let at = posts.partition_point(|p| (p.published_at, &p.id) > (post.published_at, &id));
        posts.insert(at, post);
        self.reindex();
        id
    }

    pub fn remove_post(&mut self, id: &str) -> bool {
        let Some(&(a, p)) = self.by_post.get(id) else {
            return false;
        };
        self.accounts[a].posts.remove(p);
        self.reindex();
        true
    }

    pub fn advance(&mut self, seconds: i64) {
        self.now += seconds.max(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::generate(&WorldConfig {
            seed: 7,
            accounts: 3,
            posts_per_account: 60,
            start: 1_760_000_000,
        })
    }

    #[test]
    fn the_same_seed_gives_the_same_world() {
        let (a, b) = (world(), world());
        for (x, y) in a.accounts.iter().zip(&b.accounts) {
            assert_eq!(x.user_id, y.user_id);
            assert_eq!(x.token.text, y.token.text);
            let ids = |acc: &SimAccount| acc.posts.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(x), ids(y));
        }
    }

    #[test]
    fn posts_are_newest_first_with_every_media_type() {
        let w = world();
        let mut seen = std::collections::HashSet::new();
        for a in &w.accounts {
            assert!(a
                .posts
                .windows(2)
                .all(|p| p[0].published_at > p[1].published_at));
            seen.extend(a.posts.iter().map(|p| p.media_type.clone()));
        }
        assert_eq!(seen.len(), MediaType::KNOWN.len());
    }

    #[test]
    fn new_posts_appear_as_the_clock_advances() {
        let mut w = world();
        let before = w.accounts[0].visible_posts(w.now).len();
        assert_eq!(before, 60);
        w.advance(30 * DAY);
        assert!(w.accounts[0].visible_posts(w.now).len() > before);
    }

    #[test]
    fn metrics_grow_with_the_clock() {
        let w = world();
        let post = &w.accounts[0].visible_posts(w.now)[0];
        let before = post.metrics_at(w.now);
        let after = post.metrics_at(w.now + DAY);
        assert!(after.views > before.views);
        assert!(after.likes >= before.likes);
    }

    #[test]
    fn a_new_token_invalidates_the_old() {
        let mut w = world();
        let old = w.accounts[1].token.text.clone();
        assert!(w.authenticate(&old).is_ok());
        let new = w.issue_token(1, 0, TOKEN_LIFETIME_SECS);
        assert_eq!(w.authenticate(&old).unwrap_err(), TokenProblem::Replaced);
        assert_eq!(w.authenticate(&new.text).unwrap().index, 1);
        w.advance(TOKEN_LIFETIME_SECS);
        assert_eq!(
            w.authenticate(&new.text).unwrap_err(),
            TokenProblem::Expired
        );
        assert_eq!(w.authenticate("nope").unwrap_err(), TokenProblem::Unknown);
    }
}
