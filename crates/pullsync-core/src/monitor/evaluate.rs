//! Which thresholds a source breaches, and what that means for health (pure).

use serde_json::{json, Value};

/// What the monitor knows of one source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceState {
    pub source: String,
    /// Configured (or the maintenance jobs): only these are judged.
    pub active: bool,
    pub lag_seconds: Option<f64>,
    /// Failed work over all work in the last runs; None without runs.
    pub error_rate: Option<f64>,
    pub runs_considered: i64,
    pub last_duration_seconds: Option<f64>,
    pub accounts_without_token: Option<i64>,
    /// Usernames of those accounts: whoever must authorise the app again.
    pub accounts_needing_reauthorization: Vec<String>,
    /// Feed items waiting in quarantine.
    pub items_quarantined: Option<i64>,
    /// Accounts whose latest sync waited for the API's rate limit.
    pub accounts_rate_limited: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub lag_seconds: f64,
    pub error_rate: f64,
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertType {
    Lag,
    ErrorRate,
    Duration,
    TokenExpired,
    Quarantine,
    Throttled,
}

impl AlertType {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Lag => "lag",
            AlertType::ErrorRate => "error_rate",
            AlertType::Duration => "duration",
            AlertType::TokenExpired => "token_expired",
            AlertType::Quarantine => "quarantine",
            AlertType::Throttled => "throttled",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub alert_type: AlertType,
    pub source: String,
    pub severity: Severity,
    pub message: String,
    pub details: Value,
}

/// A lag this many times the threshold is critical.
const CRITICAL_LAG_FACTOR: f64 = 4.0;
/// Half of the work failing is critical whatever the threshold.
const CRITICAL_ERROR_RATE: f64 = 0.5;

fn human(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}min {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The breaches of an active source, in a fixed order: lag, error rate, duration, expired
/// tokens, quarantine, throttling.
pub fn breaches(state: &SourceState, limits: &Thresholds) -> Vec<Breach> {
    if !state.active {
        return Vec::new();
    }
    [
        lag(state, limits),
        error_rate(state, limits),
        duration(state, limits),
        token_expired(state),
        quarantine(state),
        throttled(state),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn breach(
    state: &SourceState,
    alert_type: AlertType,
    severity: Severity,
    message: String,
    details: Value,
) -> Breach {
    Breach {
        alert_type,
        source: state.source.clone(),
        severity,
        message,
        details,
    }
}

fn lag(state: &SourceState, limits: &Thresholds) -> Option<Breach> {
    let lag = state.lag_seconds.filter(|l| *l > limits.lag_seconds)?;
    let severity = if lag > limits.lag_seconds * CRITICAL_LAG_FACTOR {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Some(breach(
        state,
        AlertType::Lag,
        severity,
        format!(
            "{}: no successful pull for {} (threshold {})",
            state.source,
            human(lag),
            human(limits.lag_seconds)
        ),
        json!({ "lag_seconds": lag, "threshold_seconds": limits.lag_seconds }),
    ))
}

fn error_rate(state: &SourceState, limits: &Thresholds) -> Option<Breach> {
    let rate = state.error_rate.filter(|r| *r > limits.error_rate)?;
    let severity = if rate >= CRITICAL_ERROR_RATE {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Some(breach(
        state,
        AlertType::ErrorRate,
        severity,
        format!(
            "{}: {:.0}% of the work failed over the last {} runs (threshold {:.0}%)",
            state.source,
            rate * 100.0,
            state.runs_considered,
            limits.error_rate * 100.0
        ),
        json!({ "error_rate": rate, "runs": state.runs_considered, "threshold": limits.error_rate }),
    ))
}

fn duration(state: &SourceState, limits: &Thresholds) -> Option<Breach> {
    let duration = state
        .last_duration_seconds
        .filter(|d| *d > limits.duration_seconds)?;
    Some(breach(
        state,
        AlertType::Duration,
        Severity::Warning,
        format!(
            "{}: the last run took {} (threshold {})",
            state.source,
            human(duration),
            human(limits.duration_seconds)
        ),
        json!({ "duration_seconds": duration, "threshold_seconds": limits.duration_seconds }),
    ))
}

fn token_expired(state: &SourceState) -> Option<Breach> {
    let n = state.accounts_without_token.filter(|n| *n > 0)?;
    let names = &state.accounts_needing_reauthorization;
    Some(breach(
        state,
        AlertType::TokenExpired,
        Severity::Warning,
        format!(
            "{}: {n} active account(s) have no usable token (expired or refused by the API) and are not synced; authorise again: {}",
            state.source,
            first_names(names)
        ),
        json!({ "accounts": n, "usernames": names }),
    ))
}

/// The first usernames, then how many more: the message stays short, the details list all.
fn first_names(names: &[String]) -> String {
    const NAMED: usize = 10;
    let mut who = names
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED {
        who.push_str(&format!(" and {} more", names.len() - NAMED));
    }
    who
}

fn quarantine(state: &SourceState) -> Option<Breach> {
    let n = state.items_quarantined.filter(|n| *n > 0)?;
    Some(breach(
        state,
        AlertType::Quarantine,
        Severity::Warning,
        format!(
            "{}: {n} feed item(s) could not be stored and wait in pullsync.feed_quarantine; fix the cause, then SELECT pullsync.feed_retry_quarantined('{}')",
            state.source,
            state.source.trim_start_matches("feed:")
        ),
        json!({ "items": n }),
    ))
}

/// A rate limit is no error (it stays out of error_rate): its own alert, open while the
/// latest syncs keep waiting for it.
fn throttled(state: &SourceState) -> Option<Breach> {
    let n = state.accounts_rate_limited.filter(|n| *n > 0)?;
    Some(breach(
        state,
        AlertType::Throttled,
        Severity::Warning,
        format!(
            "{}: the latest sync of {n} active account(s) waited for the API's rate limit and was deferred to the next run",
            state.source
        ),
        json!({ "accounts": n }),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded,
    Failing,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Failing => "failing",
        }
    }
}

/// Failing with any critical breach, degraded with any other, healthy without.
pub fn health(breaches: &[Breach]) -> Health {
    match breaches.iter().map(|b| b.severity).max() {
        None => Health::Healthy,
        Some(Severity::Warning) => Health::Degraded,
        Some(Severity::Critical) => Health::Failing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        lag_seconds: 3600.0,
        error_rate: 0.10,
        duration_seconds: 300.0,
    };

    fn state() -> SourceState {
        SourceState {
            source: "feed:partner".into(),
            active: true,
            lag_seconds: Some(60.0),
            error_rate: Some(0.0),
            runs_considered: 10,
            last_duration_seconds: Some(2.0),
            accounts_without_token: None,
            accounts_needing_reauthorization: Vec::new(),
            items_quarantined: None,
            accounts_rate_limited: None,
        }
    }

    #[test]
    fn a_healthy_source_breaches_nothing() {
        let found = breaches(&state(), &LIMITS);
        assert!(found.is_empty());
        assert_eq!(health(&found), Health::Healthy);
    }

    #[test]
    fn each_threshold_opens_its_own_alert() {
        let s = SourceState {
            lag_seconds: Some(7200.0),
            error_rate: Some(0.2),
            last_duration_seconds: Some(301.0),
            accounts_without_token: Some(2),
            accounts_needing_reauthorization: vec!["alice".into(), "bob".into()],
            items_quarantined: Some(3),
            accounts_rate_limited: Some(4),
            ..state()
        };
        let found = breaches(&s, &LIMITS);
        assert!(
            found[3].message.ends_with("authorise again: alice, bob"),
            "{}",
            found[3].message
        );
        let types: Vec<_> = found.iter().map(|b| b.alert_type).collect();
        assert_eq!(
            types,
            [
                AlertType::Lag,
                AlertType::ErrorRate,
                AlertType::Duration,
                AlertType::TokenExpired,
                AlertType::Quarantine,
                AlertType::Throttled
            ]
        );
        assert!(found.iter().all(|b| b.severity == Severity::Warning));
        assert_eq!(health(&found), Health::Degraded);
        assert_eq!(
            found[0].message,
            "feed:partner: no successful pull for 2h 0min (threshold 1h 0min)"
        );
    }

    #[test]
    fn far_past_a_threshold_is_critical() {
        let s = SourceState {
            lag_seconds: Some(4.0 * 3600.0 + 1.0),
            error_rate: Some(0.5),
            ..state()
        };
        let found = breaches(&s, &LIMITS);
        assert!(found.iter().all(|b| b.severity == Severity::Critical));
        assert_eq!(health(&found), Health::Failing);
    }

    #[test]
    fn exactly_at_a_threshold_is_fine_and_inactive_sources_are_not_judged() {
        let s = SourceState {
            lag_seconds: Some(3600.0),
            error_rate: Some(0.1),
            last_duration_seconds: Some(300.0),
            ..state()
        };
        assert!(breaches(&s, &LIMITS).is_empty());
        let gone = SourceState {
            active: false,
            lag_seconds: Some(1e9),
            ..state()
        };
        assert!(breaches(&gone, &LIMITS).is_empty());
    }

    #[test]
    fn past_ten_usernames_the_message_counts_the_rest_and_the_details_list_all() {
        let names: Vec<String> = (1..=12).map(|i| format!("u{i}")).collect();
        let s = SourceState {
            accounts_without_token: Some(12),
            accounts_needing_reauthorization: names.clone(),
            ..state()
        };
        let found = breaches(&s, &LIMITS);
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .message
                .ends_with("authorise again: u1, u2, u3, u4, u5, u6, u7, u8, u9, u10 and 2 more"),
            "{}",
            found[0].message
        );
        assert_eq!(
            found[0].details,
            json!({ "accounts": 12, "usernames": names })
        );
    }

    #[test]
    fn quarantine_names_the_feed_to_retry() {
        let s = SourceState {
            items_quarantined: Some(3),
            ..state()
        };
        let found = breaches(&s, &LIMITS);
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .message
                .ends_with("then SELECT pullsync.feed_retry_quarantined('partner')"),
            "{}",
            found[0].message
        );
    }
}
