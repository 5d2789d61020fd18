//! The three layers' arithmetic: whether a capture becomes an L1 snapshot, and its L2 delta.
//! L3 is the newest snapshot. Pure.

use chrono::{DateTime, Utc};

/// The newest snapshot of one post or account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous<const N: usize> {
    pub values: [i64; N],
    pub captured_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<const N: usize> {
    /// Same values as the newest snapshot, taken within the heartbeat: write nothing.
    Unchanged,
    /// Write a snapshot and its delta. The first delta counts from zero
    /// (`period_start` none); later ones from the previous snapshot; negative allowed.
    Snapshot {
        delta: [i64; N],
        period_start: Option<DateTime<Utc>>,
    },
}

/// Decides for a capture at `now`. `heartbeat_secs`: an unchanged value is snapshotted again
/// once this much time has passed, so history has a point per day even when flat.
pub fn decide<const N: usize>(
    previous: Option<&Previous<N>>,
    values: [i64; N],
    now: DateTime<Utc>,
    heartbeat_secs: i64,
) -> Decision<N> {
    match previous {
        None => Decision::Snapshot {
            delta: values,
            period_start: None,
        },
        Some(p) if now <= p.captured_at => Decision::Unchanged,
        Some(p) if p.values == values && (now - p.captured_at).num_seconds() < heartbeat_secs => {
            Decision::Unchanged
        }
        Some(p) => Decision::Snapshot {
            delta: std::array::from_fn(|i| values[i] - p.values[i]),
            period_start: Some(p.captured_at),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn first_capture_counts_from_zero() {
        let now = Utc::now();
        assert_eq!(
            decide(None, [5, 1], now, 86_400),
            Decision::Snapshot {
                delta: [5, 1],
                period_start: None
            }
        );
    }

    #[test]
    fn deltas_are_differences_and_may_be_negative() {
        let t0 = Utc::now();
        let prev = Previous {
            values: [10, 4],
            captured_at: t0,
        };
        let t1 = t0 + Duration::hours(1);
        assert_eq!(
            decide(Some(&prev), [15, 3], t1, 86_400),
            Decision::Snapshot {
                delta: [5, -1],
                period_start: Some(t0)
            }
        );
    }

    #[test]
    fn unchanged_values_wait_for_the_heartbeat() {
        let t0 = Utc::now();
        let prev = Previous {
            values: [7],
            captured_at: t0,
        };
        assert_eq!(
            decide(Some(&prev), [7], t0 + Duration::hours(23), 86_400),
            Decision::Unchanged
        );
        assert_eq!(
            decide(Some(&prev), [7], t0 + Duration::hours(24), 86_400),
            Decision::Snapshot {
                delta: [0],
                period_start: Some(t0)
            }
        );
        assert_eq!(
            decide(Some(&prev), [8], t0, 86_400),
            Decision::Unchanged,
            "never twice at one instant"
        );
    }

    #[test]
    fn the_sum_of_deltas_is_the_latest_value() {
        let mut t = Utc::now();
        let mut prev: Option<Previous<3>> = None;
        let mut sum = [0i64; 3];
        for values in [
            [1, 2, 3],
            [1, 2, 3],
            [4, 1, 9],
            [4, 1, 9],
            [2, 8, 9],
            [100, 0, 0],
        ] {
            t += Duration::hours(25);
            if let Decision::Snapshot { delta, .. } = decide(prev.as_ref(), values, t, 86_400) {
                for i in 0..3 {
                    sum[i] += delta[i];
                }
                prev = Some(Previous {
                    values,
                    captured_at: t,
                });
            }
            assert_eq!(sum, prev.unwrap().values);
        }
    }
}
