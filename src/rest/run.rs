//! A REST source's run: a listing per parent for a fan-out source (fanout), a first
//! run's backfill in date windows when the source has one to do (backfill), else its
//! listing read on from where it stands (pull).

use super::store;
use super::{api, backfill, fanout, pull};
use crate::error::Result;
use crate::jobs::kind::Outcome;
use crate::plumbing::txn::Txn;
use crate::runtime::Cancel;
use std::sync::Arc;

/// Runs `name` to the end of its listing or its windows (or to its first failure), each
/// page in its own unit of work.
pub fn run(name: &str, txn: Txn, cancel: Cancel) -> Result<Outcome> {
    let source = txn.run(|| store::load(name))?;
    if let Some(for_each) = &source.config.for_each {
        return fanout::pull(&source, for_each, txn, cancel);
    }
    let api = Arc::new(api::Api::new(&source)?);
    match backfill::pending(&source, txn)? {
        Some(windows) => backfill::run(&source, &api, windows, txn, cancel),
        None => pull::pull(&source, &api, txn, cancel),
    }
}
