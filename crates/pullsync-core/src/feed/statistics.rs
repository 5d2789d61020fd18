//! When a pull refreshes the statistics of the table it fills: at a first threshold, then
//! each time the rows it stored have doubled, so a pull of n rows analyzes about
//! log2(n / FIRST) times and the planner never sees the table more than half its size.

/// Rows a pull stores before its first refresh: smaller pulls never analyze.
pub const FIRST: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatisticsRefresh {
    next_at: usize,
}

impl Default for StatisticsRefresh {
    fn default() -> Self {
        StatisticsRefresh { next_at: FIRST }
    }
}

impl StatisticsRefresh {
    /// Whether, with `stored` rows stored so far, the statistics are due now.
    pub fn due(&mut self, stored: usize) -> bool {
        if stored < self.next_at {
            return false;
        }
        self.next_at = stored.saturating_mul(2);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_at_the_threshold_then_each_doubling() {
        let mut refresh = StatisticsRefresh::default();
        let due: Vec<usize> = (1..=200)
            .map(|page| page * 5_000)
            .filter(|&stored| refresh.due(stored))
            .collect();
        assert_eq!(due, [20_000, 40_000, 80_000, 160_000, 320_000, 640_000]);
    }

    #[test]
    fn small_pulls_never_refresh() {
        let mut refresh = StatisticsRefresh::default();
        assert!(!(0..FIRST).step_by(1_000).any(|stored| refresh.due(stored)));
    }
}
