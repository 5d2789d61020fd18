//! SQL functions of monitoring (thin glue).

use super::record;
use crate::error::{PullsyncError, Result};
use crate::pg_error::OrRaise;
use pgrx::prelude::*;
use pgrx::JsonB;
use pullsync_core::monitor::evaluate;
use pullsync_core::monitor::prometheus::{self, Family, Kind};
use serde_json::{json, Map};

/// `{"status": "healthy" | "degraded" | "failing", "reasons": […], "sources": {…}}`, judged
/// now against the alert thresholds. Reads only.
#[pg_extern(schema = "pullsync", security_definer, stable, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn health() -> JsonB {
    let (states, breaches) = record::current_breaches().or_raise();
    let reasons: Vec<_> = breaches
        .iter()
        .map(|b| {
            json!({
                "source": b.source,
                "alert_type": b.alert_type.as_str(),
                "severity": b.severity.as_str(),
                "message": b.message,
            })
        })
        .collect();
    let mut sources = Map::new();
    for s in &states {
        sources.insert(
            s.source.clone(),
            json!({
                "active": s.active,
                "lag_seconds": s.lag_seconds,
                "error_rate": s.error_rate,
                "runs_considered": s.runs_considered,
                "last_duration_seconds": s.last_duration_seconds,
                "accounts_without_token": s.accounts_without_token,
                "accounts_needing_reauthorization": s.accounts_needing_reauthorization,
                "items_quarantined": s.items_quarantined,
                "accounts_rate_limited": s.accounts_rate_limited,
            }),
        );
    }
    JsonB(json!({
        "status": evaluate::health(&breaches).as_str(),
        "reasons": reasons,
        "sources": sources,
    }))
}

/// Opens and resolves alerts now (jobs do this when they finish; pg_cron calls it so a
/// source that stopped running is noticed too).
#[pg_extern(schema = "pullsync", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn check_alerts() -> JsonB {
    crate::plumbing::standby::require_primary("check_alerts").or_raise();
    JsonB(record::check_alerts().or_raise())
}

/// One row of `pullsync.source_metrics`, as the exposition needs it.
struct Row {
    source: String,
    runs: i64,
    items: i64,
    attempts: i64,
    errors: i64,
    lag_seconds: Option<f64>,
    last_success: Option<f64>,
    last_duration: Option<f64>,
    jobs_running: i64,
    alerts_open: i64,
    accounts_without_token: Option<i64>,
    items_quarantined: Option<i64>,
    accounts_rate_limited: Option<i64>,
}

fn source_rows() -> Result<Vec<Row>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT source, runs_total, items_total, attempts_total, errors_total, lag_seconds,
                    extract(epoch FROM last_success_at)::float8, last_duration_seconds::float8,
                    jobs_running, alerts_open, accounts_without_token, items_quarantined,
                    accounts_rate_limited
               FROM pullsync.source_metrics ORDER BY source",
            None,
            &[],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(Row {
                source: r.get(1)?.unwrap_or_default(),
                runs: r.get(2)?.unwrap_or(0),
                items: r.get(3)?.unwrap_or(0),
                attempts: r.get(4)?.unwrap_or(0),
                errors: r.get(5)?.unwrap_or(0),
                lag_seconds: r.get(6)?,
                last_success: r.get(7)?,
                last_duration: r.get(8)?,
                jobs_running: r.get(9)?.unwrap_or(0),
                alerts_open: r.get(10)?.unwrap_or(0),
                accounts_without_token: r.get(11)?,
                items_quarantined: r.get(12)?,
                accounts_rate_limited: r.get(13)?,
            });
        }
        Ok::<_, PullsyncError>(out)
    })
}

/// Counters and gauges per source in the Prometheus text format.
#[pg_extern(schema = "pullsync", security_definer, stable, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn metrics() -> String {
    let rows = source_rows().or_raise();
    let family = |name, help, kind, value: &dyn Fn(&Row) -> Option<f64>| Family {
        name,
        help,
        kind,
        samples: rows
            .iter()
            .filter_map(|r| value(r).map(|v| (vec![("source", r.source.clone())], v)))
            .collect(),
    };
    prometheus::render(&[
        family(
            "pullsync_runs_total",
            "Jobs finished.",
            Kind::Counter,
            &|r| Some(r.runs as f64),
        ),
        family(
            "pullsync_items_total",
            "Items written (posts, snapshots, feed rows, repaired rows).",
            Kind::Counter,
            &|r| Some(r.items as f64),
        ),
        family(
            "pullsync_attempts_total",
            "Work tried: accounts, pages, reconciliation windows.",
            Kind::Counter,
            &|r| Some(r.attempts as f64),
        ),
        family(
            "pullsync_errors_total",
            "Work that failed.",
            Kind::Counter,
            &|r| Some(r.errors as f64),
        ),
        family(
            "pullsync_lag_seconds",
            "Seconds since the source's last successful pull.",
            Kind::Gauge,
            &|r| r.lag_seconds,
        ),
        family(
            "pullsync_last_success_timestamp_seconds",
            "Unix time of the source's last successful pull.",
            Kind::Gauge,
            &|r| r.last_success,
        ),
        family(
            "pullsync_last_run_duration_seconds",
            "Duration of the source's last job.",
            Kind::Gauge,
            &|r| r.last_duration,
        ),
        family(
            "pullsync_jobs_running",
            "Jobs of the source queued or running.",
            Kind::Gauge,
            &|r| Some(r.jobs_running as f64),
        ),
        family(
            "pullsync_alerts_open",
            "Open alerts of the source.",
            Kind::Gauge,
            &|r| Some(r.alerts_open as f64),
        ),
        family(
            "pullsync_accounts_without_token",
            "Active accounts whose token expired or was refused: they need re-authorisation.",
            Kind::Gauge,
            &|r| r.accounts_without_token.map(|n| n as f64),
        ),
        family(
            "pullsync_items_quarantined",
            "Items that could not be stored and wait in their source's quarantine.",
            Kind::Gauge,
            &|r| r.items_quarantined.map(|n| n as f64),
        ),
        family(
            "pullsync_accounts_rate_limited",
            "Active accounts whose latest sync waited for the API's rate limit (deferred, no error).",
            Kind::Gauge,
            &|r| r.accounts_rate_limited.map(|n| n as f64),
        ),
    ])
}

/// Every registered source's state view, in the registry's order (`define_source_states()`).
#[pg_extern(schema = "pullsync", stable, parallel_safe)]
fn source_state_views() -> SetOfIterator<'static, String> {
    SetOfIterator::new(
        crate::registry::all()
            .iter()
            .map(|s| s.state_view.to_string())
            .collect::<Vec<_>>(),
    )
}
