//! Summaries of repeated measurements: median with min–max, pair-by-pair ratios, and the
//! slope of a log-log fit. Pure, so it is unit-tested.

/// Median, minimum and maximum of a set of runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        assert!(!values.is_empty(), "a summary needs at least one run");
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        }
    }

    /// `a[i] / b[i]` for each pair of runs made side by side, summarised.
    pub fn of_ratios(a: &[f64], b: &[f64]) -> Summary {
        assert_eq!(a.len(), b.len(), "ratios pair runs one to one");
        let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        Summary::of(&ratios)
    }

    /// "12.3 (11.9–13.0)" with `decimals` after the point.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// The least-squares slope of log(y) against log(x): 1 means y grows in proportion to x.
pub fn log_log_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 || points.iter().any(|&(x, y)| x <= 0.0 || y <= 0.0) {
        return None;
    }
    let logs: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x.ln(), y.ln())).collect();
    let n = logs.len() as f64;
    let mean_x = logs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = logs.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = logs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let variance: f64 = logs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    (variance > 0.0).then(|| covariance / variance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_of_odd_and_even_runs() {
        assert_eq!(
            Summary::of(&[3.0, 1.0, 2.0]),
            Summary {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }

    #[test]
    fn ratios_pair_runs_in_order() {
        // Pairing 10/5, 30/10, 20/20 — not the ratio of medians (20/10).
        let s = Summary::of_ratios(&[10.0, 30.0, 20.0], &[5.0, 10.0, 20.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.show(1), "2.0 (1.0–3.0)");
    }

    #[test]
    fn slope_of_proportional_and_quadratic_growth() {
        let linear = [(100.0, 2.0), (1000.0, 20.0), (10000.0, 200.0)];
        assert!((log_log_slope(&linear).unwrap() - 1.0).abs() < 1e-9);
        let quadratic = [(10.0, 1.0), (100.0, 100.0)];
        assert!((log_log_slope(&quadratic).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(log_log_slope(&[(1.0, 1.0)]), None);
        assert_eq!(log_log_slope(&[(1.0, 0.0), (2.0, 1.0)]), None);
    }
}
