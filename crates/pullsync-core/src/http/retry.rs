//! Exponential backoff with full jitter. Pure.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based): uniform in [0, min(max, base·2^(retry-1))],
    /// drawn from `entropy` so that callers in lockstep spread out.
    pub fn delay(&self, retry: u32, entropy: u64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_delay);
        let millis = exp.as_millis() as u64;
        if millis == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(entropy % (millis + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
    };

    #[test]
    fn delays_grow_exponentially_and_stay_capped() {
        let worst = |retry| POLICY.delay(retry, u64::MAX - 1);
        let ceiling = |retry: u32| POLICY.delay(retry, 10_000 * (1 << retry));
        assert!(worst(1) <= Duration::from_millis(100));
        assert!(ceiling(2) <= Duration::from_millis(200));
        assert!(POLICY.delay(30, 1_999) <= Duration::from_secs(2));
        for retry in 1..10 {
            let cap = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_secs(2));
            for entropy in [0, 7, 12_345, u64::MAX] {
                assert!(POLICY.delay(retry, entropy) <= cap);
            }
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let delays: std::collections::HashSet<_> =
            (0..50u64).map(|e| POLICY.delay(3, e * 7919)).collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn zero_base_means_no_wait() {
        let p = RetryPolicy {
            base_delay: Duration::ZERO,
            ..POLICY
        };
        assert_eq!(p.delay(3, 99), Duration::ZERO);
    }
}
