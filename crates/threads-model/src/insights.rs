//! Insights answers (per post and per account) and the values a sync stores from them.

use crate::Paging;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsightsResponse {
    pub data: Vec<Metric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Per-post lifetime values and the account `views` time series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<MetricValue>>,
    /// Account totals (likes, replies, reposts, quotes, followers_count, demographics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_value: Option<TotalValue>,
    /// Account `clicks`, per link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_total_values: Option<Vec<LinkTotal>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricValue {
    pub value: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdowns: Option<Vec<Breakdown>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    pub dimension_keys: Vec<String>,
    pub results: Vec<BreakdownResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakdownResult {
    pub dimension_values: Vec<String>,
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTotal {
    pub value: i64,
    pub link_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsightsError {
    #[error("insights answer lacks metric {0}")]
    MissingMetric(&'static str),
    #[error("metric {0} has no value")]
    NoValue(&'static str),
    #[error("metric {0} is negative")]
    Negative(&'static str),
    #[error("metric {0} adds up beyond the range of a bigint")]
    OutOfRange(&'static str),
}

impl Metric {
    /// A single value: the first of `values`, else `total_value.value` (some answers carry
    /// one shape, some the other), else the sum of `link_total_values`.
    fn scalar(&self, name: &'static str) -> Result<Option<i64>, InsightsError> {
        if let Some(v) = self.values.as_ref().and_then(|v| v.first()) {
            return Ok(Some(v.value));
        }
        if let Some(v) = self.total_value.as_ref().and_then(|t| t.value) {
            return Ok(Some(v));
        }
        self.link_total_values
            .as_ref()
            .map(|links| checked_sum(links.iter().map(|l| l.value), name))
            .transpose()
    }

    /// A window's total: the sum of a time series, else the scalar.
    fn window_total(&self, name: &'static str) -> Result<Option<i64>, InsightsError> {
        match &self.values {
            Some(values) if !values.is_empty() => {
                checked_sum(values.iter().map(|v| v.value), name).map(Some)
            }
            _ => self.scalar(name),
        }
    }
}

/// A sum the API cannot make overflow: a hostile or broken answer is bad data, not a panic.
fn checked_sum(
    mut values: impl Iterator<Item = i64>,
    name: &'static str,
) -> Result<i64, InsightsError> {
    values.try_fold(0i64, |total, v| {
        total.checked_add(v).ok_or(InsightsError::OutOfRange(name))
    })
}

fn find<'a>(
    response: &'a InsightsResponse,
    name: &'static str,
) -> Result<&'a Metric, InsightsError> {
    response
        .data
        .iter()
        .find(|m| m.name == name)
        .ok_or(InsightsError::MissingMetric(name))
}

fn non_negative(value: Option<i64>, name: &'static str) -> Result<i64, InsightsError> {
    match value {
        None => Err(InsightsError::NoValue(name)),
        Some(v) if v < 0 => Err(InsightsError::Negative(name)),
        Some(v) => Ok(v),
    }
}

/// Lifetime metrics of one post.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostMetrics {
    pub views: i64,
    pub likes: i64,
    pub replies: i64,
    pub reposts: i64,
    pub quotes: i64,
    pub shares: i64,
}

impl PostMetrics {
    /// None when the answer is empty (REPOST_FACADE posts have no insights).
    pub fn from_response(response: &InsightsResponse) -> Result<Option<Self>, InsightsError> {
        if response.data.is_empty() {
            return Ok(None);
        }
        let get = |name| find(response, name).and_then(|m| non_negative(m.scalar(name)?, name));
        Ok(Some(PostMetrics {
            views: get("views")?,
            likes: get("likes")?,
            replies: get("replies")?,
            reposts: get("reposts")?,
            quotes: get("quotes")?,
            shares: get("shares")?,
        }))
    }
}

/// Account insights over one window, plus the current follower count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInsights {
    pub followers_count: i64,
    pub views: i64,
    pub likes: i64,
    pub replies: i64,
    pub reposts: i64,
    pub quotes: i64,
    pub clicks: i64,
}

impl AccountInsights {
    /// `views` sums its daily series; `clicks` sums its links; a metric the API leaves out
    /// of a window with no activity (clicks) counts as zero.
    pub fn from_response(response: &InsightsResponse) -> Result<Self, InsightsError> {
        let total =
            |name| find(response, name).and_then(|m| non_negative(m.window_total(name)?, name));
        let clicks = match find(response, "clicks") {
            Ok(m) => non_negative(m.window_total("clicks")?.or(Some(0)), "clicks")?,
            Err(_) => 0,
        };
        Ok(AccountInsights {
            followers_count: total("followers_count")?,
            views: total("views")?,
            likes: total("likes")?,
            replies: total("replies")?,
            reposts: total("reposts")?,
            quotes: total("quotes")?,
            clicks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_insights_with_the_thread_replies_quirk() {
        let body = r#"{"data":[
          {"name":"views","period":"lifetime","values":[{"value":1000}],"title":"Views","description":"d","id":"1/insights/views/lifetime"},
          {"name":"likes","period":"lifetime","values":[{"value":100}],"title":"Likes","description":"d","id":"1/insights/likes/lifetime"},
          {"name":"replies","period":"lifetime","values":[{"value":7}],"title":"Replies","description":"d","id":"1/insights/thread_replies/lifetime"},
          {"name":"reposts","period":"lifetime","values":[{"value":3}],"id":"1/insights/reposts/lifetime"},
          {"name":"quotes","period":"lifetime","values":[{"value":2}],"id":"1/insights/quotes/lifetime"},
          {"name":"shares","period":"lifetime","total_value":{"value":1},"id":"1/insights/shares/lifetime"}]}"#;
        let r: InsightsResponse = serde_json::from_str(body).unwrap();
        let m = PostMetrics::from_response(&r).unwrap().unwrap();
        assert_eq!(
            m,
            PostMetrics {
                views: 1000,
                likes: 100,
                replies: 7,
                reposts: 3,
                quotes: 2,
                shares: 1
            }
        );
    }

    #[test]
    fn empty_post_insights_mean_no_insights() {
        let r: InsightsResponse = serde_json::from_str(r#"{"data":[]}"#).unwrap();
        assert_eq!(PostMetrics::from_response(&r).unwrap(), None);
    }

    #[test]
    fn a_missing_post_metric_is_bad_data() {
        let r: InsightsResponse =
            serde_json::from_str(r#"{"data":[{"name":"views","values":[{"value":1}]}]}"#).unwrap();
        assert_eq!(
            PostMetrics::from_response(&r).unwrap_err(),
            InsightsError::MissingMetric("likes")
        );
    }

    #[test]
    fn account_insights_in_all_three_shapes() {
        let body = r#"{"data":[
          {"name":"views","period":"day","values":[{"value":10,"end_time":"2024-07-12T07:00:00+0000"},{"value":5,"end_time":"2024-07-13T07:00:00+0000"}]},
          {"name":"likes","period":"day","total_value":{"value":4}},
          {"name":"replies","period":"day","total_value":{"value":3}},
          {"name":"reposts","period":"day","total_value":{"value":2}},
          {"name":"quotes","period":"day","total_value":{"value":1}},
          {"name":"clicks","period":"day","link_total_values":[{"value":11,"link_url":"https://a"},{"value":4,"link_url":"https://b"}]},
          {"name":"followers_count","period":"day","total_value":{"value":250}}]}"#;
        let r: InsightsResponse = serde_json::from_str(body).unwrap();
        let a = AccountInsights::from_response(&r).unwrap();
        assert_eq!(
            a,
            AccountInsights {
                followers_count: 250,
                views: 15,
                likes: 4,
                replies: 3,
                reposts: 2,
                quotes: 1,
                clicks: 15
            }
        );
    }

    #[test]
    fn demographics_breakdown_parses() {
        let body = r#"{"data":[{"name":"follower_demographics","period":"lifetime",
          "total_value":{"breakdowns":[{"dimension_keys":["age"],"results":[{"dimension_values":["18-24"],"value":30}]}]}}]}"#;
        let r: InsightsResponse = serde_json::from_str(body).unwrap();
        let b = &r.data[0]
            .total_value
            .as_ref()
            .unwrap()
            .breakdowns
            .as_ref()
            .unwrap()[0];
        assert_eq!(b.results[0].value, 30);
    }

    #[test]
    fn negative_values_are_refused() {
        let r: InsightsResponse = serde_json::from_str(
            r#"{"data":[{"name":"views","values":[{"value":-1}]},{"name":"likes","values":[{"value":1}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            PostMetrics::from_response(&r).unwrap_err(),
            InsightsError::Negative("views")
        );
    }
}
