//! How much of a feed page is filled: a row limit and a byte budget, so a page of big rows
//! stays near the budget however many rows were asked for. Pure.

use serde_json::Value;

/// Rows fetched at once at most: a batch may hold rows far larger than any seen before.
const MAX_FETCH: usize = 32;

/// How far a page has filled: at most `limit` rows and, past its first row, at most
/// `budget` bytes of item JSON. A row beyond either bound means there is more.
pub struct PageFill {
    pub items: Vec<Value>,
    limit: usize,
    budget: usize,
    bytes: usize,
    largest: usize,
    pub more: bool,
}

impl PageFill {
    pub fn new(limit: usize, budget: usize) -> Self {
        PageFill {
            items: Vec::new(),
            limit,
            budget,
            bytes: 0,
            largest: 0,
            more: false,
        }
    }

    /// How many rows to fetch next (one more than the page needs, to see whether there is
    /// more), or None when the page is full.
    pub fn next_fetch(&self) -> Option<usize> {
        if self.more {
            return None;
        }
        let wanted = self.limit + 1 - self.items.len();
        let room = self.budget.saturating_sub(self.bytes);
        let by_size = room.checked_div(self.largest).unwrap_or(1);
        Some(wanted.min(by_size.clamp(1, MAX_FETCH)))
    }

    /// Whether a row of `size` bytes belongs on this page; false marks the page full.
    pub fn admit(&mut self, size: usize) -> bool {
        let over_budget = !self.items.is_empty() && self.bytes >= self.budget;
        if self.items.len() == self.limit || over_budget {
            self.more = true;
            return false;
        }
        self.bytes += size;
        self.largest = self.largest.max(size);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of these sizes offered to a page until it refuses one: how many it took.
    fn fill(limit: usize, budget: usize, sizes: &[usize]) -> (usize, bool) {
        let mut page = PageFill::new(limit, budget);
        for &size in sizes {
            if !page.admit(size) {
                break;
            }
            page.items.push(Value::Null);
        }
        (page.items.len(), page.more)
    }

    #[test]
    fn small_rows_stop_at_the_limit_and_see_that_there_is_more() {
        assert_eq!(fill(3, 1000, &[10; 5]), (3, true));
        assert_eq!(fill(3, 1000, &[10; 3]), (3, false));
    }

    #[test]
    fn big_rows_stop_once_the_budget_is_reached() {
        assert_eq!(fill(500, 100, &[40; 10]), (3, true));
        assert_eq!(fill(500, 100, &[50; 10]), (2, true));
    }

    #[test]
    fn a_row_larger_than_the_budget_still_makes_a_page() {
        assert_eq!(fill(500, 100, &[1000, 1000]), (1, true));
    }

    #[test]
    fn fetches_start_with_one_row_and_size_by_the_largest_seen() {
        let mut page = PageFill::new(5000, 1000);
        assert_eq!(page.next_fetch(), Some(1));
        assert!(page.admit(10));
        page.items.push(Value::Null);
        assert_eq!(page.next_fetch(), Some(32));
        assert!(page.admit(400));
        page.items.push(Value::Null);
        assert_eq!(page.next_fetch(), Some(1));
        let mut small = PageFill::new(3, 1 << 20);
        assert!(small.admit(1));
        small.items.push(Value::Null);
        assert_eq!(
            small.next_fetch(),
            Some(3),
            "the rows left and one to see if there is more"
        );
    }

    #[test]
    fn a_full_page_fetches_no_more() {
        let mut page = PageFill::new(1, 1000);
        assert!(page.admit(1));
        page.items.push(Value::Null);
        assert!(!page.admit(1));
        assert_eq!(page.next_fetch(), None);
    }
}
