//! SQL functions of reconciliation (thin glue).

use super::{feed, runs, threads};
use crate::error::PullsyncError;
use crate::pg_error::OrRaise;
use crate::pg_time::to_chrono;
use chrono::{DateTime, Utc};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use serde_json::json;

fn window(
    start: Option<TimestampWithTimeZone>,
    end: Option<TimestampWithTimeZone>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let finite = |value: Option<TimestampWithTimeZone>, name: &'static str| {
        to_chrono(value.ok_or(PullsyncError::NullArgument { name }).or_raise())
            .ok_or_else(|| {
                PullsyncError::invalid(format!("{name} must be finite"), "Pass a real timestamp.")
            })
            .or_raise()
    };
    let (start, end) = (finite(start, "start"), finite(end, "end"));
    runs::check_window(start, end).or_raise();
    (start, end)
}

/// Compares a feed source's counts with this database's over [start, end), lists the
/// missing and extra ids where they differ and, with `repair`, re-pulls the missing rows.
/// `consumer_id` null: every active feed source. Returns `{"status", "runs": […]}`.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sync_reconcile(
    start: Option<TimestampWithTimeZone>,
    end: Option<TimestampWithTimeZone>,
    consumer_id: default!(Option<String>, "NULL"),
    repair: default!(Option<bool>, false),
) -> JsonB {
    let (start, end) = window(start, end);
    let repair = repair
        .ok_or(PullsyncError::NullArgument { name: "repair" })
        .or_raise();
    let consumers = match consumer_id {
        Some(id) => vec![id],
        None => {
            let all = feed::active_sources().or_raise();
            if all.is_empty() {
                PullsyncError::NotFound {
                    message: "there is no active feed source to reconcile".into(),
                    hint: "Add one with pullsync.feed_add_source(consumer_id, base_url, api_key)."
                        .into(),
                }
                .raise_now()
            }
            all
        }
    };
    let runs: Vec<_> = consumers
        .iter()
        .map(|c| feed::reconcile(c, start, end, repair, crate::runtime::Cancel::Backend).or_raise())
        .collect();
    let rank = |s: &str| match s {
        "success" => 0,
        "repaired" => 1,
        "mismatch" => 2,
        _ => 3,
    };
    let status = runs
        .iter()
        .filter_map(|r| r["status"].as_str())
        .max_by_key(|s| rank(s))
        .unwrap_or("success");
    JsonB(json!({ "status": status, "runs": runs }))
}

/// Compares an account's stored posts with the API's listing of posts published in
/// [start, end) and writes the missing ones with their metrics.
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn threads_reconcile(
    account_id: Option<Uuid>,
    start: Option<TimestampWithTimeZone>,
    end: Option<TimestampWithTimeZone>,
) -> JsonB {
    let account_id = account_id
        .ok_or(PullsyncError::NullArgument { name: "account_id" })
        .or_raise();
    let (start, end) = window(start, end);
    JsonB(threads::reconcile(account_id, start, end).or_raise())
}
