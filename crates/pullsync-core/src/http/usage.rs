//! The usage Meta's Graph APIs report with an answer: `X-App-Usage`
//! (`{"call_count":…,"total_time":…,"total_cputime":…}`, percent of the app's budget) and
//! `X-Business-Use-Case-Usage` (`{"<id>":[{…, "estimated_time_to_regain_access":<min>}]}`).
//! Read leniently: a header that is absent or not understood says nothing. Pure.

use serde_json::Value;
use std::time::Duration;

pub const APP_USAGE: &str = "x-app-usage";
pub const BUSINESS_USAGE: &str = "x-business-use-case-usage";

/// Share of the budget a caller should stop at, before the limit rather than after it.
pub const SLOW_DOWN_PERCENT: u32 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The highest share of any budget used, in percent.
    pub percent: u32,
    /// How long until calls are accepted again, when Meta says.
    pub regain: Option<Duration>,
}

impl Usage {
    pub fn from_headers(app: Option<&str>, business: Option<&str>) -> Option<Usage> {
        let mut figures = Vec::new();
        if let Some(v) = app.and_then(|h| serde_json::from_str::<Value>(h).ok()) {
            figures.push(v);
        }
        if let Some(Value::Object(ids)) = business.and_then(|h| serde_json::from_str(h).ok()) {
            for entries in ids.into_values() {
                match entries {
                    Value::Array(list) => figures.extend(list),
                    other => figures.push(other),
                }
            }
        }
        let number = |v: &Value, key: &str| v.get(key).and_then(Value::as_f64);
        let mut usage: Option<Usage> = None;
        for f in &figures {
            let percent = ["call_count", "total_time", "total_cputime"]
                .iter()
                .filter_map(|k| number(f, k))
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            let regain = number(f, "estimated_time_to_regain_access")
                .filter(|m| *m > 0.0 && m.is_finite())
                .map(|m| Duration::from_secs_f64((m * 60.0).min(86_400.0)));
            if percent.is_none() && regain.is_none() {
                continue;
            }
            let u = usage.get_or_insert(Usage {
                percent: 0,
                regain: None,
            });
            u.percent = u
                .percent
                .max(percent.unwrap_or(0.0).clamp(0.0, 1000.0) as u32);
            u.regain = u.regain.max(regain);
        }
        usage
    }

    /// Whether the caller should make no further call for now.
    pub fn near_limit(&self) -> bool {
        self.percent >= SLOW_DOWN_PERCENT || self.regain.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_highest_share_of_either_header() {
        let u = Usage::from_headers(
            Some(r#"{"call_count":28,"total_time":25,"total_cputime":25}"#),
            None,
        )
        .unwrap();
        assert_eq!(
            u,
            Usage {
                percent: 28,
                regain: None
            }
        );
        assert!(!u.near_limit());
        let u = Usage::from_headers(
            Some(r#"{"call_count":5}"#),
            Some(r#"{"1234":[{"type":"threads","call_count":40,"total_time":93,"total_cputime":10,"estimated_time_to_regain_access":0}]}"#),
        )
        .unwrap();
        assert_eq!(u.percent, 93);
        assert!(u.near_limit());
    }

    #[test]
    fn the_time_to_regain_access_is_in_minutes() {
        let u = Usage::from_headers(
            None,
            Some(r#"{"1":[{"call_count":100,"estimated_time_to_regain_access":3}]}"#),
        )
        .unwrap();
        assert_eq!(u.regain, Some(Duration::from_secs(180)));
        assert!(u.near_limit());
    }

    #[test]
    fn absent_or_unreadable_headers_say_nothing() {
        assert_eq!(Usage::from_headers(None, None), None);
        assert_eq!(Usage::from_headers(Some("not json"), Some("[1]")), None);
        assert_eq!(Usage::from_headers(Some("{}"), Some(r#"{"1":[]}"#)), None);
    }
}
