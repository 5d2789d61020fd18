//! Waiting out throttling between a listing's pages: a request answered 429 is made again
//! after the wait the server names (Retry-After), a few times, each wait capped. The waits
//! are part of the request's future: dropping it (a cancel, a terminate) ends them at once.

use super::{Failure, FailureClass};
use std::future::Future;
use std::time::Duration;

/// The longest wait for one Retry-After. A minute is the window per-minute quotas count in
/// (the extension's own feed server limits each consumer per minute, and asks one limited
/// to a request a minute to wait up to 60 s): a shorter cap asks again before the window
/// rolls over, only to be refused again. Three such waits (3 min) still end well within a
/// unit's timeout and a REST run's budget (10 min each by default).
pub const WAIT_CAP: Duration = Duration::from_secs(60);

/// How often one request is made again after a 429 before its failure is the caller's.
pub const WAITS: u32 = 3;

/// The wait when the server does not say.
const UNSAID: Duration = Duration::from_secs(1);

/// The wait before asking again: as the server asks, never longer than the cap.
pub fn wait_for(retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or(UNSAID).min(WAIT_CAP)
}

/// Makes `request` and, while it is throttled, again after each wait, up to `WAITS` times;
/// then its answer or its failure. A throttled failure that made no request (the API's
/// announced budget spent until a reset past the cap) is not waited on: the cap would not
/// reach the reset.
pub async fn waiting_out<T, F, Fut>(mut request: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut waits = 0;
    loop {
        match request().await {
            Err(failure)
                if failure.class == FailureClass::Throttled
                    && failure.attempts > 0
                    && waits < WAITS =>
            {
                waits += 1;
                tokio::time::sleep(wait_for(failure.retry_after)).await;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn throttled(retry_after: Option<Duration>) -> Failure {
        Failure {
            retry_after,
            ..Failure::new(FailureClass::Throttled, "429")
        }
    }

    #[test]
    fn waits_as_asked_within_the_cap() {
        assert_eq!(wait_for(None), Duration::from_secs(1));
        assert_eq!(
            wait_for(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(wait_for(Some(Duration::from_secs(3600))), WAIT_CAP);
    }

    #[tokio::test]
    async fn asks_again_after_each_wait_then_gives_up() {
        let made = Cell::new(0);
        let outcome: Result<(), Failure> = waiting_out(|| {
            made.set(made.get() + 1);
            async { Err(throttled(Some(Duration::ZERO))) }
        })
        .await;
        assert_eq!(outcome.unwrap_err().class, FailureClass::Throttled);
        assert_eq!(made.get(), 1 + WAITS);
    }

    #[tokio::test]
    async fn an_answer_or_another_failure_ends_it() {
        let made = Cell::new(0);
        let answered = waiting_out(|| {
            made.set(made.get() + 1);
            let n = made.get();
            async move {
                if n < 2 {
                    Err(throttled(Some(Duration::ZERO)))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(answered.unwrap(), 2);
        let refused: Result<(), Failure> =
            waiting_out(|| async { Err(Failure::new(FailureClass::Refused, "400")) }).await;
        assert_eq!(refused.unwrap_err().class, FailureClass::Refused);
    }

    #[tokio::test]
    async fn a_throttled_failure_without_a_request_is_not_waited_on() {
        let made = Cell::new(0);
        let outcome: Result<(), Failure> = waiting_out(|| {
            made.set(made.get() + 1);
            async {
                Err(Failure {
                    attempts: 0,
                    ..throttled(Some(Duration::from_secs(3600)))
                })
            }
        })
        .await;
        assert_eq!(outcome.unwrap_err().class, FailureClass::Throttled);
        assert_eq!(made.get(), 1);
    }
}
