//! A run read page by page, the same for every source that reads a listing: each page
//! fetched over HTTP with no transaction open, then written in a transaction of its own
//! together with the position the next run resumes from, and committed; so a crash or a
//! cancel (`Interrupted`, before a page or in the wait for one) resumes after the last
//! page written. The run's tail is one too: its status, `sync_logs` row, metrics and
//! outcome. A source supplies only its pages (`Pages`).

use super::kind::Outcome;
use super::quarantine::Written;
use crate::error::{PullsyncError, Result};
use crate::monitor::sync_log::{finish_paged_run, RunLog};
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use chrono::{DateTime, Utc};
use pullsync_core::outcome::Status;
use serde_json::{json, Map, Value};

/// What a run has done so far, over all its listings.
#[derive(Debug, Default)]
pub struct Progress {
    /// Pages written (committed).
    pub pages: u32,
    pub items: i64,
    pub quarantined: usize,
    /// Why the run stopped early, when it did.
    pub error: Option<String>,
}

impl Progress {
    /// Completed without an error; with one, partial when the run `kept` something (by
    /// the source's own measure), else failed.
    pub fn status(&self, kept: bool) -> Status {
        match (&self.error, kept) {
            (None, _) => Status::Completed,
            (Some(_), false) => Status::Failed,
            (Some(_), true) => Status::Partial,
        }
    }
}

/// Before a page: whether the run goes on.
pub enum Limit {
    Go,
    /// As far as the caller asked: the run ends here, and that is no failure.
    Enough,
    /// A limit of the run ends it here, with this error; the next run resumes here.
    Stop(String),
}

/// A page asked for.
pub enum Fetched<P> {
    Page(P),
    /// Ask again: the source moved its position (it starts a listing over).
    Again,
    /// The run stops here, with this error.
    Failed(String),
}

/// How a listing's reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Its last page was written.
    Listed,
    /// A limit ended the run (`Limit::Enough` or `Limit::Stop`).
    Limited,
    /// A page could not be fetched or written: `Progress::error` says why.
    Failed,
}

/// One listing of a source, read page by page.
pub trait Pages {
    type Page;

    /// Before each page.
    fn limit(&self, progress: &Progress) -> Limit;

    /// Requests the next page and decodes it. No transaction is open meanwhile; `txn`
    /// serves reads of the source's own state afterwards (where to start over).
    fn fetch(
        &mut self,
        progress: &Progress,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<Fetched<Self::Page>>;

    /// Writes a page and the position after it, in the caller's transaction.
    fn write(&mut self, page: Self::Page) -> Result<Written>;

    /// The run's error when `write` failed.
    fn write_failed(&self, error: &PullsyncError) -> String;

    /// After a page committed: moves to the next page; false at the listing's end.
    fn committed(&mut self, written: Written, txn: Txn) -> Result<bool>;
}

/// Reads `pages` to the listing's end, a limit or the first failure, counting in
/// `progress`. An error of this process (a cancel, a failed read of its own state) is
/// returned; a failure of the source's API or of a page's write is the run's
/// (`End::Failed`).
pub fn read<P: Pages>(
    pages: &mut P,
    progress: &mut Progress,
    txn: Txn,
    cancel: Cancel,
) -> Result<End> {
    loop {
        // A cancel ends the run between pages too, not only in a wait for one.
        if cancel.requested() {
            return Err(PullsyncError::Interrupted);
        }
        match pages.limit(progress) {
            Limit::Go => {}
            Limit::Enough => return Ok(End::Limited),
            Limit::Stop(error) => {
                progress.error = Some(error);
                return Ok(End::Limited);
            }
        }
        let page = match pages.fetch(progress, txn, cancel)? {
            Fetched::Page(page) => page,
            Fetched::Again => continue,
            Fetched::Failed(error) => {
                progress.error = Some(error);
                return Ok(End::Failed);
            }
        };
        let written = match txn.run(|| pages.write(page)) {
            Ok(written) => written,
            // The page is fetched again by the next run.
            Err(e) => {
                progress.error = Some(pages.write_failed(&e));
                return Ok(End::Failed);
            }
        };
        progress.pages += 1;
        progress.items += written.stored as i64;
        progress.quarantined += written.quarantined;
        if !pages.committed(written, txn)? {
            return Ok(End::Listed);
        }
    }
}

/// Who ran, and what its tail records besides the progress.
pub struct Tail<'a> {
    /// The source kind (`sync_logs.source`).
    pub source: &'a str,
    pub job_type: &'a str,
    /// What the run was about, as the source names it (`sync_logs.subject`).
    pub subject: &'a str,
    /// Its name in sync_metrics and alerts.
    pub metrics_source: &'a str,
    pub started: DateTime<Utc>,
    pub calls: u32,
    /// Whether the run kept something, by the source's own measure (`Progress::status`).
    pub kept: bool,
    pub notes: &'a [String],
    /// The source's own fields of the result (its name, its items, …); the tail adds
    /// status, pages, quarantined, api_calls and error.
    pub result: Map<String, Value>,
}

/// Logs the run (`sync_logs`, metrics) in a transaction of its own and says what it did.
pub fn finish(tail: Tail, progress: Progress, txn: Txn) -> Result<Outcome> {
    let Tail {
        source,
        job_type,
        subject,
        metrics_source,
        started,
        calls,
        kept,
        notes,
        mut result,
    } = tail;
    let status = progress.status(kept);
    let run = RunLog {
        source,
        job_type,
        subject,
        status,
        items: progress.items,
        calls,
        error: progress.error.as_deref(),
        notes,
        started,
    };
    txn.run(|| finish_paged_run(&run, metrics_source, progress.pages))?;
    result.insert("status".into(), json!(status.as_str()));
    result.insert("pages".into(), json!(progress.pages));
    result.insert("quarantined".into(), json!(progress.quarantined));
    result.insert("api_calls".into(), json!(calls));
    result.insert("error".into(), json!(progress.error));
    Ok(Outcome {
        status,
        api_calls: i64::from(calls),
        items: progress.items,
        error: progress.error,
        result: Value::Object(result),
    })
}
