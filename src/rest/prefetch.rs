//! A run's requests made ahead of its writes, on the background runtime: while the main
//! thread writes a page, the next one is already requested and its rows made (the JSON
//! walk is pure, and runs on the background runtime's worker too). Where the positions
//! are known before the answers (page numbers, offsets) up to `config.concurrency` pages
//! are requested at once; every other style learns the next position from the answer, so one page is
//! ahead. Pages are still handed on, and written, strictly in listing order; requests
//! past the listing's end (at most concurrency − 1) are dropped, which aborts them.

use super::api::{page_rows, Api};
use crate::error::Result;
use crate::runtime::{self, Background, Cancel};
use pullsync_core::rest::config::Pagination;
use pullsync_core::rest::paging::{PageRows, Position, RowMaker};
use std::collections::VecDeque;
use std::sync::Arc;

/// A page read: its rows and where the next page is (None: it was the last).
pub struct Read {
    pub rows: PageRows,
    pub next: Option<Position>,
}

/// A page's outcome; the error says (without the secret) why the run stops there.
pub type Outcome = std::result::Result<Read, String>;

/// The requests of a run, in listing order, each with the position it reads.
pub struct Ahead {
    api: Arc<Api>,
    since: Option<String>,
    /// The mark the source stood at: records at or below it count as read again.
    mark: Option<String>,
    /// How many requests may be in flight at once.
    depth: usize,
    in_flight: VecDeque<(Position, Background<Outcome>)>,
}

impl Ahead {
    pub fn new(api: Arc<Api>, since: Option<String>, mark: Option<String>) -> Self {
        let config = api.config();
        let depth = match config.pagination {
            Pagination::PageNumber { .. } | Pagination::Offset { .. } => config.concurrency.max(1),
            _ => 1,
        };
        Ahead {
            api,
            since,
            mark,
            depth,
            in_flight: VecDeque::new(),
        }
    }

    /// The page at `position`: the request made ahead for it, or (if none was) one made
    /// now; waits for it without losing a cancel.
    pub fn take(&mut self, position: &Position, cancel: Cancel) -> Result<Outcome> {
        let request = match self.in_flight.pop_front() {
            Some((at, request)) if at == *position => request,
            _ => {
                self.in_flight.clear();
                self.start(position.clone())
            }
        };
        let outcome = request.wait(cancel)?;
        if outcome.is_err() {
            self.in_flight.clear();
        }
        Ok(outcome)
    }

    /// After a page whose answer leads to `next`: requests up to `room` pages from there
    /// on (what the run's limits leave), the ones already in flight kept when they are
    /// the right ones. At the listing's end the requests beyond it are dropped.
    pub fn after(&mut self, next: Option<&Position>, room: usize) {
        let Some(next) = next else {
            self.in_flight.clear();
            return;
        };
        if self.in_flight.front().is_some_and(|(at, _)| at != next) {
            self.in_flight.clear();
        }
        let wanted = self.depth.min(room);
        self.in_flight.truncate(wanted);
        while self.in_flight.len() < wanted {
            let at = match self.in_flight.back() {
                None => next.clone(),
                Some((last, _)) => match successor(&self.api.config().pagination, last) {
                    Some(at) => at,
                    None => break,
                },
            };
            let request = self.start(at.clone());
            self.in_flight.push_back((at, request));
        }
    }

    /// The run reads no further: the requests ahead are dropped (aborted).
    pub fn stop(&mut self) {
        self.in_flight.clear();
    }

    /// What makes a page's rows for this run.
    pub fn row_maker(&self) -> RowMaker<'_> {
        RowMaker::new(self.api.config()).rereading(self.mark.clone())
    }

    fn start(&self, position: Position) -> Background<Outcome> {
        let api = self.api.clone();
        let since = self.since.clone();
        let mark = self.mark.clone();
        runtime::spawn(async move {
            let config = api.config();
            let answer = api.request(config, &position, since.as_deref(), None).await;
            // Off the main thread, on the background runtime's one worker: a thread of
            // its own per page would give the allocator an arena per thread, each
            // holding memory long after its page.
            let maker = RowMaker::new(config).rereading(mark);
            page_rows(&api, config, &position, answer, maker)
                .map(|(rows, next)| Read { rows, next })
        })
    }
}

/// The position after a whole page at `at`, where the style says it before the answer.
fn successor(pagination: &Pagination, at: &Position) -> Option<Position> {
    match (pagination, at) {
        (Pagination::PageNumber { start, .. }, _) => Some(Position::Page {
            page: match at {
                Position::Page { page } => page + 1,
                _ => start + 1,
            },
        }),
        (Pagination::Offset { limit, .. }, _) => Some(Position::Offset {
            offset: match at {
                Position::Offset { offset } => offset + limit,
                _ => *limit,
            },
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pullsync_core::rest::config::Place;

    #[test]
    fn numbered_styles_predict_the_next_whole_page() {
        let pages = Pagination::PageNumber {
            param: "page".into(),
            start: 1,
            size_param: None,
            size: 10,
            place: Place::Query,
        };
        assert_eq!(
            successor(&pages, &Position::Start),
            Some(Position::Page { page: 2 })
        );
        assert_eq!(
            successor(&pages, &Position::Page { page: 7 }),
            Some(Position::Page { page: 8 })
        );
        let offsets = Pagination::Offset {
            param: "offset".into(),
            limit_param: "limit".into(),
            limit: 50,
            place: Place::Query,
        };
        assert_eq!(
            successor(&offsets, &Position::Start),
            Some(Position::Offset { offset: 50 })
        );
        assert_eq!(
            successor(&offsets, &Position::Offset { offset: 100 }),
            Some(Position::Offset { offset: 150 })
        );
        assert_eq!(successor(&Pagination::LinkHeader, &Position::Start), None);
    }
}
