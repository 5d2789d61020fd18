//! A token bucket per credential or source: `rate` requests per second, bursts up to
//! `burst`. The refill arithmetic is pure; waiting is a tokio sleep.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `rate` requests per second; 0 or less means unlimited.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token at `now`; returns how long to wait first (zero when one was free).
    pub fn reserve(&self, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let mut state = self.state.lock().expect("rate limiter lock");
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate)
            .min(self.burst);
        let after = refilled - 1.0;
        *state = (after, now);
        if after >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-after / self.rate)
        }
    }

    /// Takes a token only if one is free at `now`; otherwise says how long until one is.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut state = self.state.lock().expect("rate limiter lock");
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate)
            .min(self.burst);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            Ok(())
        } else {
            *state = (refilled, now);
            Err(Duration::from_secs_f64((1.0 - refilled) / self.rate))
        }
    }

    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        let limiter = RateLimiter::new(10.0, 2);
        let t0 = Instant::now();
        assert_eq!(limiter.reserve(t0), Duration::ZERO);
        assert_eq!(limiter.reserve(t0), Duration::ZERO);
        let third = limiter.reserve(t0);
        assert!((third.as_secs_f64() - 0.1).abs() < 1e-6, "{third:?}");
        let fourth = limiter.reserve(t0);
        assert!((fourth.as_secs_f64() - 0.2).abs() < 1e-6, "{fourth:?}");
        // After a second the bucket is full again (capped at the burst).
        assert_eq!(limiter.reserve(t0 + Duration::from_secs(2)), Duration::ZERO);
    }

    #[test]
    fn try_take_refuses_without_going_into_debt() {
        let limiter = RateLimiter::new(1.0, 1);
        let t0 = Instant::now();
        assert_eq!(limiter.try_take(t0), Ok(()));
        assert!(limiter.try_take(t0).is_err());
        assert!(limiter.try_take(t0).is_err());
        assert_eq!(limiter.try_take(t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let limiter = RateLimiter::new(0.0, 1);
        let t0 = Instant::now();
        assert!((0..100).all(|_| limiter.reserve(t0).is_zero()));
    }
}
