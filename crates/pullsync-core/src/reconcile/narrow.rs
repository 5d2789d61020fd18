//! Narrowing a window whose counts differ down to windows small enough to list ids, by
//! bisection; and comparing id lists (pure).

use std::collections::HashSet;

/// [start, end) in Unix microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// Below this width a window is listed whatever its counts.
pub const MIN_WIDTH_MICROS: i64 = 1_000_000;

impl Window {
    fn halves(self) -> (Window, Window) {
        let mid = self.start + (self.end - self.start) / 2;
        (
            Window {
                start: self.start,
                end: mid,
            },
            Window {
                start: mid,
                end: self.end,
            },
        )
    }
}

/// Counts per stream on the source and on the target.
pub type Counts<const N: usize> = ([i64; N], [i64; N]);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed<const N: usize> {
    /// Counts of the whole window.
    pub whole: Counts<N>,
    /// Per stream, the windows whose ids must be listed, in time order.
    pub leaves: [Vec<Window>; N],
    /// How many windows were counted.
    pub probes: usize,
}

/// Counts `window`; where a stream's counts differ, halves the window until each differing
/// part holds at most `leaf_rows` rows, is narrower than [`MIN_WIDTH_MICROS`], or
/// `max_probes` counts were spent. Parts whose counts agree are not looked at further (a
/// missing and an extra record in one part cancel out; listing ids of the whole window
/// would find them, at the price of reading every id).
pub fn narrow<const N: usize, E>(
    window: Window,
    leaf_rows: i64,
    max_probes: usize,
    mut count: impl FnMut(Window) -> Result<Counts<N>, E>,
) -> Result<Narrowed<N>, E> {
    let whole = count(window)?;
    let mut probes = 1;
    let mut leaves: [Vec<Window>; N] = std::array::from_fn(|_| Vec::new());
    // Breadth first: when the probe budget runs out, every differing part has been
    // narrowed about as far as the others.
    let mut queue = std::collections::VecDeque::from([(window, whole, [true; N])]);
    while let Some((w, (source, target), streams)) = queue.pop_front() {
        let mut split = [false; N];
        for i in 0..N {
            if !streams[i] || source[i] == target[i] {
                continue;
            }
            let small = source[i].max(target[i]) <= leaf_rows;
            let narrow = w.end - w.start <= MIN_WIDTH_MICROS;
            if small || narrow || probes + 2 > max_probes {
                leaves[i].push(w);
            } else {
                split[i] = true;
            }
        }
        if split.iter().any(|s| *s) {
            let (first, second) = w.halves();
            for half in [first, second] {
                let counts = count(half)?;
                probes += 1;
                queue.push_back((half, counts, split));
            }
        }
    }
    for l in &mut leaves {
        l.sort();
    }
    Ok(Narrowed {
        whole,
        leaves,
        probes,
    })
}

/// Ids the source has and the target lacks, and the other way round, each sorted.
pub fn diff(source: &[String], target: &[String]) -> (Vec<String>, Vec<String>) {
    let s: HashSet<&String> = source.iter().collect();
    let t: HashSet<&String> = target.iter().collect();
    let mut missing: Vec<String> = s.difference(&t).map(|id| (*id).clone()).collect();
    let mut extra: Vec<String> = t.difference(&s).map(|id| (*id).clone()).collect();
    missing.sort();
    extra.sort();
    (missing, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows at whole seconds: stream 0 on the source at every second, the target lacks
    /// `gaps`; stream 1 agrees.
    fn world(n: i64, gaps: &[i64]) -> impl FnMut(Window) -> Result<Counts<2>, ()> + '_ {
        move |w: Window| {
            let inside = |t: i64| t * 1_000_000 >= w.start && t * 1_000_000 < w.end;
            let source = (0..n).filter(|t| inside(*t)).count() as i64;
            let target = (0..n).filter(|t| inside(*t) && !gaps.contains(t)).count() as i64;
            Ok(([source, 7], [target, 7]))
        }
    }

    const ALL: Window = Window {
        start: 0,
        end: 100_000 * 1_000_000,
    };

    #[test]
    fn equal_counts_need_one_probe() {
        let n = narrow(ALL, 1000, 1000, world(100_000, &[])).unwrap();
        assert_eq!(n.probes, 1);
        assert!(n.leaves.iter().all(Vec::is_empty));
    }

    #[test]
    fn narrows_to_small_windows_holding_every_gap() {
        let gaps = [5, 50_000, 50_001, 99_999];
        let n = narrow(ALL, 1000, 10_000, world(100_000, &gaps)).unwrap();
        assert_eq!(n.whole, ([100_000, 7], [99_996, 7]));
        assert!(n.leaves[1].is_empty());
        for gap in gaps {
            let t = gap * 1_000_000;
            assert!(
                n.leaves[0].iter().any(|w| w.start <= t && t < w.end),
                "gap {gap} not covered"
            );
        }
        let listed: i64 = n.leaves[0]
            .iter()
            .map(|w| (w.end - w.start) / 1_000_000 + 1)
            .sum();
        assert!(listed <= 4 * 1000 + 4, "listed {listed} seconds");
        assert!(n.probes < 60, "{} probes", n.probes);
    }

    #[test]
    fn the_probe_budget_is_kept() {
        let gaps: Vec<i64> = (0..100_000).step_by(97).collect();
        let n = narrow(ALL, 10, 25, world(100_000, &gaps)).unwrap();
        assert!(n.probes <= 25);
        for gap in gaps {
            let t = gap * 1_000_000;
            assert!(
                n.leaves[0].iter().any(|w| w.start <= t && t < w.end),
                "gap {gap} not listed"
            );
        }
    }

    #[test]
    fn diff_names_both_sides() {
        let s = ["a", "b", "c"].map(String::from);
        let t = ["b", "d"].map(String::from);
        let (missing, extra) = diff(&s, &t);
        assert_eq!(missing, ["a", "c"]);
        assert_eq!(extra, ["d"]);
    }
}
