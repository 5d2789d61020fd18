//! The rate limit an API announces with its answers (`X-RateLimit-Remaining`/`-Reset`, the
//! IETF `RateLimit-Remaining`/`-Reset` and `RateLimit: limit=…, remaining=…, reset=…`),
//! honoured before the limit rather than after: once an answer says nothing remains, the
//! next request waits for the reset instead of drawing a 429. The parsing and the decision
//! are pure; the wait is a tokio sleep, part of the request's future (a cancel ends it).

use super::throttle::WAIT_CAP;
use super::{Failure, FailureClass};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A reset at or above this is a Unix time, below it a number of seconds from now: no API
/// asks to wait 31 years, and no clock reads before 2001.
const EPOCH_FROM: f64 = 1_000_000_000.0;

/// What one answer said of the budget: requests left, and how long until it refills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub remaining: u64,
    pub reset: Option<Duration>,
    /// The header family it came from, for messages.
    pub from: &'static str,
}

impl Quota {
    /// From an answer's headers (`header` looks one up by its lower-case name): the
    /// structured `RateLimit` first, then `RateLimit-*`, then `X-RateLimit-*`. `now` is the
    /// Unix time to count an absolute reset from: the server's `Date` when it sent one (its
    /// clock set the reset), else this host's.
    pub fn from_headers(header: impl Fn(&str) -> Option<String>, now: f64) -> Option<Quota> {
        if let Some(quota) = header("ratelimit").and_then(|v| structured(&v)) {
            return Some(quota);
        }
        for (remaining, reset, from) in [
            (
                "ratelimit-remaining",
                "ratelimit-reset",
                "RateLimit-Remaining",
            ),
            (
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
                "X-RateLimit-Remaining",
            ),
        ] {
            if let Some(left) = header(remaining).and_then(|v| count(&v)) {
                return Some(Quota {
                    remaining: left,
                    reset: header(reset).and_then(|v| reset_in(&v, now)),
                    from,
                });
            }
        }
        None
    }
}

fn count(value: &str) -> Option<u64> {
    let v: f64 = value.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

/// A reset as the time left: a Unix time (counted from `now`) or seconds from now.
fn reset_in(value: &str, now: f64) -> Option<Duration> {
    let v: f64 = value.trim().parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let left = if v >= EPOCH_FROM { v - now } else { v };
    Some(Duration::from_secs_f64(left.clamp(0.0, 1e9)))
}

/// `RateLimit: limit=100, remaining=0, reset=30`, or the later draft's
/// `"default";r=0;t=30`: the first parameter naming what remains, and the first naming the
/// reset (seconds from now).
fn structured(value: &str) -> Option<Quota> {
    let param = |names: [&str; 2]| {
        value.split([',', ';']).find_map(|p| {
            let (key, v) = p.split_once('=')?;
            let key = key.trim();
            names
                .iter()
                .any(|n| key.eq_ignore_ascii_case(n))
                .then(|| count(v))
                .flatten()
        })
    };
    Some(Quota {
        remaining: param(["remaining", "r"])?,
        reset: param(["reset", "t"]).map(Duration::from_secs),
        from: "RateLimit",
    })
}

/// What the next request does.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    Go,
    /// Waits this long first: the reset is within the cap.
    Wait(Duration),
    /// The reset is further than a request waits: it is not made.
    TooFar(Duration, String),
}

/// The hold the latest answers put on a client's requests.
#[derive(Debug, Default)]
pub struct Budget {
    /// Until when nothing remains, and which header said so.
    spent: Mutex<Option<(Instant, &'static str)>>,
}

impl Budget {
    /// Takes in what an answer received at `at` said: nothing left holds the requests until
    /// the reset; anything left lifts the hold; an answer that says nothing changes nothing,
    /// and neither does a budget spent with no reset named (a 429 will say more).
    pub fn note(&self, quota: Option<Quota>, at: Instant) {
        let Some(quota) = quota else {
            return;
        };
        let mut spent = self.spent.lock().expect("budget lock");
        *spent = match (quota.remaining, quota.reset) {
            (0, Some(reset)) => Some((at + reset, quota.from)),
            (0, None) => *spent,
            _ => None,
        };
    }

    /// What a request about to go out at `now` does.
    pub fn turn(&self, now: Instant) -> Turn {
        let spent = self.spent.lock().expect("budget lock");
        let Some((until, from)) = *spent else {
            return Turn::Go;
        };
        let left = until.saturating_duration_since(now);
        if left.is_zero() {
            Turn::Go
        } else if left <= WAIT_CAP {
            Turn::Wait(left)
        } else {
            Turn::TooFar(left, from.to_string())
        }
    }

    /// Waits out a spent budget before a `method` request to `shown`; a reset past the cap
    /// is a throttled failure made without a request, as a 429 past its waits ends a run.
    pub async fn admit(&self, method: &str, shown: &str) -> Result<(), Failure> {
        match self.turn(Instant::now()) {
            Turn::Go => Ok(()),
            Turn::Wait(left) => {
                tokio::time::sleep(left).await;
                Ok(())
            }
            Turn::TooFar(left, from) => Err(Failure {
                retry_after: Some(left),
                attempts: 0,
                ..Failure::new(
                    FailureClass::Throttled,
                    format!(
                        "{method} {shown}: deferred without a request: the API's rate limit is spent ({from}: 0) until its reset in {} s, longer than a request waits ({} s)",
                        left.as_secs(),
                        WAIT_CAP.as_secs()
                    ),
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NOW: f64 = 1_700_000_000.0;

    fn read(headers: &[(&str, &str)]) -> Option<Quota> {
        let map: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Quota::from_headers(|name| map.get(name).cloned(), NOW)
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn x_ratelimit_reset_is_a_unix_time_or_seconds_from_now() {
        let epoch = read(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000030"),
        ])
        .unwrap();
        assert_eq!((epoch.remaining, epoch.reset), (0, secs(30)));
        assert_eq!(epoch.from, "X-RateLimit-Remaining");
        let delta = read(&[("x-ratelimit-remaining", "5"), ("x-ratelimit-reset", "12")]).unwrap();
        assert_eq!((delta.remaining, delta.reset), (5, secs(12)));
        let past = read(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1600000000"),
        ])
        .unwrap();
        assert_eq!(past.reset, secs(0));
    }

    #[test]
    fn ietf_fields_and_the_structured_header_are_read() {
        let fields = read(&[("ratelimit-remaining", "3"), ("ratelimit-reset", "7")]).unwrap();
        assert_eq!((fields.remaining, fields.reset), (3, secs(7)));
        let flat = read(&[("ratelimit", "limit=100, remaining=0, reset=30")]).unwrap();
        assert_eq!((flat.remaining, flat.reset), (0, secs(30)));
        let items = read(&[("ratelimit", "\"default\";r=0;t=9")]).unwrap();
        assert_eq!((items.remaining, items.reset), (0, secs(9)));
        assert_eq!(items.from, "RateLimit");
        let first = read(&[
            ("ratelimit", "limit=10, remaining=4, reset=1"),
            ("x-ratelimit-remaining", "0"),
        ])
        .unwrap();
        assert_eq!(first.remaining, 4);
    }

    #[test]
    fn nothing_or_nonsense_says_nothing() {
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[("x-ratelimit-remaining", "lots")]), None);
        assert_eq!(read(&[("ratelimit", "limit=10")]), None);
        let no_reset = read(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "soon"),
        ]);
        assert_eq!(no_reset.unwrap().reset, None);
    }

    fn quota(remaining: u64, reset: Option<Duration>) -> Option<Quota> {
        Some(Quota {
            remaining,
            reset,
            from: "X-RateLimit-Remaining",
        })
    }

    #[test]
    fn a_spent_budget_waits_for_its_reset_within_the_cap() {
        let budget = Budget::default();
        let t0 = Instant::now();
        assert_eq!(budget.turn(t0), Turn::Go);
        budget.note(quota(1, secs(5)), t0);
        assert_eq!(budget.turn(t0), Turn::Go);
        budget.note(quota(0, secs(2)), t0);
        assert_eq!(budget.turn(t0), Turn::Wait(Duration::from_secs(2)));
        assert_eq!(budget.turn(t0 + Duration::from_secs(2)), Turn::Go);
        // An answer without the headers keeps the hold; one with some left lifts it.
        budget.note(None, t0);
        assert_eq!(budget.turn(t0), Turn::Wait(Duration::from_secs(2)));
        budget.note(quota(0, None), t0);
        assert_eq!(budget.turn(t0), Turn::Wait(Duration::from_secs(2)));
        budget.note(quota(9, secs(60)), t0);
        assert_eq!(budget.turn(t0), Turn::Go);
    }

    #[test]
    fn a_reset_past_the_cap_is_not_waited_for() {
        let budget = Budget::default();
        let t0 = Instant::now();
        budget.note(quota(0, secs(3600)), t0);
        assert!(
            matches!(budget.turn(t0), Turn::TooFar(left, _) if left == Duration::from_secs(3600))
        );
        budget.note(quota(0, Some(WAIT_CAP)), t0);
        assert_eq!(budget.turn(t0), Turn::Wait(WAIT_CAP));
    }

    #[tokio::test]
    async fn admit_waits_or_refuses_without_a_request() {
        let budget = Budget::default();
        budget.note(quota(0, Some(Duration::from_millis(50))), Instant::now());
        let t0 = Instant::now();
        budget.admit("GET", "http://h/x").await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(40));
        budget.note(quota(0, secs(600)), Instant::now());
        let refused = budget.admit("POST", "http://h/x").await.unwrap_err();
        assert_eq!(refused.class, FailureClass::Throttled);
        assert_eq!(refused.attempts, 0);
        assert!(refused.message.starts_with("POST http://h/x: deferred"));
        assert!(
            refused.message.contains("X-RateLimit-Remaining: 0"),
            "{}",
            refused.message
        );
    }
}
