//! The tokio runtime that carries HTTP for a backend or worker, and waiting on it without
//! losing Postgres' cancel and terminate requests.

use crate::error::{PullsyncError, Result};
use crate::plumbing::{bgworker, signals};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// Built on first use in each process: never in _PG_init, whose process forks afterwards.
/// Current-thread: the futures run on the calling (main) thread, and Postgres is never
/// called from them.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // Threads tokio starts (DNS lookups) must not take Postgres' signals: their
            // handlers may only run on the main thread.
            .on_thread_start(signals::block_all)
            .build()
            .expect("a tokio runtime can be built")
    })
}

/// What ends a wait early: the background process was told to stop (SIGTERM, as pgrx's
/// handler records it). Every request is made in one: a worker, the feed server, or the
/// process of a call made in a session (jobs/session.rs), whose caller's cancel reaches
/// it as SIGTERM.
#[derive(Debug, Clone, Copy)]
pub struct Cancel;

impl Cancel {
    /// Also answers what Postgres asks of every process while it waits: absorb
    /// procsignal barriers (DROP DATABASE waits for them) even mid-HTTP.
    pub fn requested(self) -> bool {
        bgworker::absorb_barriers();
        bgworker::stopping()
    }
}

/// Runs `work` to completion unless cancelled; then the work is dropped (its requests
/// abandoned) and Err is returned.
pub fn block_on_until<F: Future>(work: F, cancel: Cancel) -> Result<F::Output> {
    let outcome = runtime().block_on(async {
        tokio::select! {
            out = work => Some(out),
            _ = async {
                while !cancel.requested() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            } => None,
        }
    });
    match outcome {
        Some(out) => Ok(out),
        None => Err(PullsyncError::Interrupted),
    }
}

/// `block_on_until`, calling `beat` on this (the main) thread every `every` while the
/// work runs: a worker keeps its claims alive through a long pull.
pub fn block_on_beating<F: Future>(
    work: F,
    cancel: Cancel,
    every: Duration,
    mut beat: impl FnMut() -> Result<()>,
) -> Result<F::Output> {
    let mut work = std::pin::pin!(work);
    loop {
        let slice = async { tokio::time::timeout(every, work.as_mut()).await };
        match block_on_until(slice, cancel)? {
            Ok(out) => return Ok(out),
            Err(_elapsed) => beat()?,
        }
    }
}

/// A second runtime with one worker thread of its own: work spawned on it makes progress
/// while the main thread is busy in Postgres (a feed pull fetches its next page while it
/// writes the current one). Lazily built, like the first.
fn background() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pullsync-http")
            .enable_all()
            .on_thread_start(signals::block_all)
            .build()
            .expect("a tokio runtime can be built")
    })
}

/// Work running on the background runtime; dropping it before it ends aborts it.
pub struct Background<T>(tokio::task::JoinHandle<T>);

/// Starts `work` on the background runtime. It must not call Postgres.
pub fn spawn<F>(work: F) -> Background<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Background(background().spawn(work))
}

impl<T> Background<T> {
    /// Waits for the work's result without losing cancel and terminate requests.
    pub fn wait(mut self, cancel: Cancel) -> Result<T> {
        finished(block_on_until(&mut self.0, cancel)?)
    }

    /// `wait`, calling `beat` every `every` meanwhile (`block_on_beating`).
    pub fn wait_beating(
        mut self,
        cancel: Cancel,
        every: Duration,
        beat: impl FnMut() -> Result<()>,
    ) -> Result<T> {
        finished(block_on_beating(&mut self.0, cancel, every, beat)?)
    }
}

fn finished<T>(joined: std::result::Result<T, tokio::task::JoinError>) -> Result<T> {
    joined.map_err(|e| PullsyncError::Internal(format!("background HTTP work failed: {e}")))
}

/// Awaited among others (a fan-out's parents): its result as `wait` gives it.
impl<T> Future for Background<T> {
    type Output = Result<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<T>> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(finished)
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleeps without blocking cancellation.
pub fn sleep(duration: Duration, cancel: Cancel) -> Result<()> {
    // The timer must be created inside the runtime.
    block_on_until(async move { tokio::time::sleep(duration).await }, cancel)
}
