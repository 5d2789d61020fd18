//! SPI side of monitoring: recording a run, reading every source's state, and opening or
//! resolving alerts with a NOTIFY.

use crate::config;
use crate::error::Result;
use pgrx::prelude::*;
use pgrx::JsonB;
use pullsync_core::monitor::evaluate::{self, Breach, SourceState};
use pullsync_core::outcome::Status;
use serde_json::{json, Value};

pub const CHANNEL: &str = "pullsync_alerts";

/// One finished job, as the metrics see it.
pub struct Run<'a> {
    /// The source as its metrics name it: 'threads', 'feed:<consumer_id>', 'maintenance'.
    pub source: &'a str,
    pub job_type: &'a str,
    pub job_log_id: Option<i64>,
    pub status: Status,
    pub items: i64,
    /// Work tried (accounts, pages, windows) and the part of it that failed.
    pub attempts: i64,
    pub errors: i64,
    pub duration_ms: i64,
    /// A pull that succeeds resets the source's lag.
    pub pulls_data: bool,
}

/// Records a run (its row and the source's totals), then checks every alert.
pub fn record(run: &Run) -> Result<()> {
    Spi::run_with_args(
        "WITH totals AS (
             INSERT INTO pullsync.sync_metric_totals AS t
                    (source, runs, items, attempts, errors, last_run_at, last_success_at, last_duration_ms)
             VALUES ($1, 1, $5, $6, $7, now(), CASE WHEN $9 AND $4 <> 'failed' THEN now() END, $8)
             ON CONFLICT (source) DO UPDATE
                SET runs = t.runs + 1, items = t.items + EXCLUDED.items, attempts = t.attempts + EXCLUDED.attempts,
                    errors = t.errors + EXCLUDED.errors, last_run_at = now(),
                    last_success_at = coalesce(EXCLUDED.last_success_at, t.last_success_at),
                    last_duration_ms = EXCLUDED.last_duration_ms
             RETURNING last_success_at)
         INSERT INTO pullsync.sync_metrics
                (source, job_type, job_log_id, status, items, attempts, errors, duration_ms, lag_seconds)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8,
                CASE WHEN $9 THEN extract(epoch FROM now() - totals.last_success_at)::float8 END
           FROM totals",
        &[
            run.source.into(),
            run.job_type.into(),
            run.job_log_id.into(),
            run.status.as_job_state().as_str().into(),
            run.items.max(0).into(),
            run.attempts.max(0).into(),
            run.errors.clamp(0, run.attempts.max(1)).into(),
            run.duration_ms.max(0).into(),
            run.pulls_data.into(),
        ],
    )?;
    check_alerts()?;
    Ok(())
}

/// Every source's state, from `pullsync.source_metrics` and its last runs.
pub fn states() -> Result<Vec<SourceState>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT m.source, m.active, m.lag_seconds, m.last_duration_seconds::float8,
                    m.accounts_without_token, r.error_rate, r.runs, m.accounts_needing_reauthorization,
                    m.items_quarantined, m.accounts_rate_limited
               FROM pullsync.source_metrics m
               LEFT JOIN LATERAL (
                    SELECT sum(errors)::float8 / nullif(sum(attempts), 0) AS error_rate, count(*) AS runs
                      FROM (SELECT errors, attempts FROM pullsync.sync_metrics x WHERE x.source = m.source
                             ORDER BY recorded_at DESC, id DESC LIMIT $1) last) r ON true
              ORDER BY m.source",
            None,
            &[config::alert_error_runs().into()],
        )?;
        let mut states = Vec::with_capacity(rows.len());
        for row in rows {
            states.push(SourceState {
                source: row.get(1)?.unwrap_or_default(),
                active: row.get(2)?.unwrap_or(false),
                lag_seconds: row.get(3)?,
                last_duration_seconds: row.get(4)?,
                accounts_without_token: row.get(5)?,
                accounts_needing_reauthorization: row.get::<Vec<String>>(8)?.unwrap_or_default(),
                items_quarantined: row.get(9)?,
                accounts_rate_limited: row.get(10)?,
                error_rate: row.get(6)?,
                runs_considered: row.get(7)?.unwrap_or(0),
            });
        }
        Ok(states)
    })
}

/// The breaches of every source now.
pub fn current_breaches() -> Result<(Vec<SourceState>, Vec<Breach>)> {
    let states = states()?;
    let limits = config::alert_thresholds();
    let breaches = states
        .iter()
        .flat_map(|s| evaluate::breaches(s, &limits))
        .collect();
    Ok((states, breaches))
}

/// Opens an alert per new breach, refreshes the open ones, resolves those no longer
/// breached; each opening and resolution is a NOTIFY on `pullsync_alerts` (sent at commit).
/// Any role connected to the database may LISTEN, whatever it may read, so a payload
/// holds no tenant data: the alert's id, type and severity only; who may read
/// `pullsync.alerts` finds the source, message and details there.
pub fn check_alerts() -> Result<Value> {
    // One checker at a time: two jobs ending together would otherwise lock the same alert
    // rows in different orders.
    Spi::run("SELECT pg_advisory_xact_lock(hashtext('pullsync.check_alerts'))")?;
    let (_, breaches) = current_breaches()?;
    let mut opened = 0i64;
    for b in &breaches {
        let new = Spi::get_one_with_args::<bool>(
            "WITH opened AS (
                 INSERT INTO pullsync.alerts (alert_type, source, severity, message, details)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (alert_type, source) WHERE resolved_at IS NULL DO NOTHING
                 RETURNING *),
             told AS (
                 SELECT pg_notify($6, jsonb_build_object('event', 'opened', 'id', id, 'alert_type', alert_type,
                        'severity', severity, 'created_at', created_at)::text)
                   FROM opened),
             refreshed AS (
                 UPDATE pullsync.alerts SET severity = $3, message = $4, details = $5
                  WHERE alert_type = $1 AND source = $2 AND resolved_at IS NULL
                    AND NOT EXISTS (SELECT 1 FROM opened))
             SELECT EXISTS (SELECT 1 FROM told)",
            &[
                b.alert_type.as_str().into(),
                b.source.as_str().into(),
                b.severity.as_str().into(),
                b.message.as_str().into(),
                JsonB(b.details.clone()).into(),
                CHANNEL.into(),
            ],
        )?
        .unwrap_or(false);
        opened += i64::from(new);
    }
    let types: Vec<String> = breaches
        .iter()
        .map(|b| b.alert_type.as_str().to_string())
        .collect();
    let sources: Vec<String> = breaches.iter().map(|b| b.source.clone()).collect();
    let resolved = Spi::get_one_with_args::<i64>(
        "WITH resolved AS (
             UPDATE pullsync.alerts a SET resolved_at = greatest(now(), a.created_at)
              WHERE a.resolved_at IS NULL
                AND (a.alert_type, a.source) NOT IN (SELECT * FROM unnest($1::text[], $2::text[]))
             RETURNING *)
         SELECT count(pg_notify($3, jsonb_build_object('event', 'resolved', 'id', id, 'alert_type', alert_type,
                'severity', severity, 'created_at', created_at, 'resolved_at', resolved_at)::text))
           FROM resolved",
        &[types.into(), sources.into(), CHANNEL.into()],
    )?
    .unwrap_or(0);
    Ok(json!({ "opened": opened, "resolved": resolved, "breaches": breaches.len() }))
}
