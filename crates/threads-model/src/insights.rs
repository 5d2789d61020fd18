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
    #[error("the answer has no data array")]
    NoData,
    #[error("the answer is not a JSON object: {0}")]
    Malformed(String),
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

/// What a lenient read of an answer found: each wanted metric's value, None where the
/// answer left it out or gave it in a shape this client does not know, and those described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readings<const N: usize> {
    pub values: [Option<i64>; N],
    pub unknown: Vec<String>,
}

/// An insights answer as its metrics' own texts, borrowed from the body: each metric is
/// parsed on its own, so one in a shape this client does not know leaves the rest.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
}

/// The metrics of an answer; None when it has no `data` array.
pub(crate) fn metric_texts(
    answer: &[u8],
) -> Result<Option<Vec<&serde_json::value::RawValue>>, InsightsError> {
    let envelope: Envelope =
        serde_json::from_slice(answer).map_err(|e| InsightsError::Malformed(e.to_string()))?;
    Ok(envelope
        .data
        .and_then(|data| serde_json::from_str(data.get()).ok()))
}

/// Reads `names` metric by metric from an answer's metric texts. Meta adds metrics and
/// shapes over time, so nothing unknown fails the answer; a negative or overflowing value
/// does.
fn read<const N: usize>(
    data: Vec<&serde_json::value::RawValue>,
    names: [&'static str; N],
    total: fn(&Metric, &'static str) -> Result<Option<i64>, InsightsError>,
) -> Result<Readings<N>, InsightsError> {
    let mut unknown = Vec::new();
    let mut metrics = Vec::with_capacity(data.len());
    for item in data {
        match serde_json::from_str::<Metric>(item.get()) {
            Ok(m) => metrics.push(m),
            Err(_) => {
                let mut shown = item.get().to_string();
                if shown.len() > 200 {
                    let cut = (0..=200)
                        .rev()
                        .find(|&i| shown.is_char_boundary(i))
                        .unwrap_or(0);
                    shown.truncate(cut);
                    shown.push('…');
                }
                unknown.push(format!("a metric in an unknown shape: {shown}"));
            }
        }
    }
    let mut values = [None; N];
    for (slot, name) in values.iter_mut().zip(names) {
        let Some(metric) = metrics.iter().find(|m| m.name == name) else {
            unknown.push(format!("metric {name} missing"));
            continue;
        };
        match total(metric, name)? {
            Some(v) if v < 0 => return Err(InsightsError::Negative(name)),
            Some(v) => *slot = Some(v),
            None => unknown.push(format!("metric {name} has no value in a known shape")),
        }
    }
    Ok(Readings { values, unknown })
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
    pub const NAMES: [&'static str; 6] =
        ["views", "likes", "replies", "reposts", "quotes", "shares"];

    /// A lenient read (see `Readings`), in the order of `NAMES`; None when the answer is
    /// empty (REPOST_FACADE posts have no insights).
    pub fn read(answer: &[u8]) -> Result<Option<Readings<6>>, InsightsError> {
        let data = metric_texts(answer)?.ok_or(InsightsError::NoData)?;
        if data.is_empty() {
            return Ok(None);
        }
        read(data, Self::NAMES, Metric::scalar).map(Some)
    }

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
    pub const NAMES: [&'static str; 7] = [
        "followers_count",
        "views",
        "likes",
        "replies",
        "reposts",
        "quotes",
        "clicks",
    ];

    /// A lenient read (see `Readings`), in the order of `NAMES`. `clicks`, which the API
    /// leaves out of a window without any, reads 0.
    pub fn read(answer: &[u8]) -> Result<Readings<7>, InsightsError> {
        let data = metric_texts(answer)?.ok_or(InsightsError::NoData)?;
        let mut readings = read(data, Self::NAMES, Metric::window_total)?;
        if readings.values[6].is_none() {
            readings.values[6] = Some(0);
            readings.unknown.retain(|u| u != "metric clicks missing");
        }
        Ok(readings)
    }

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
    fn a_lenient_read_keeps_what_it_knows_and_describes_the_rest() {
        let answer = br#"{"data":[
              {"name":"views","values":[{"value":{"organic":5,"paid":2}}]},
              {"name":"likes","values":[{"value":100}]},
              {"name":"replies","total_value":{"value":7}},
              {"name":"reposts","values":[{"value":3}]},
              {"name":"quotes","period":"lifetime","breakdown_v2":{"x":1}},
              {"name":"reach","values":[{"value":9}]}]}"#;
        let r = PostMetrics::read(answer).unwrap().unwrap();
        assert_eq!(r.values, [None, Some(100), Some(7), Some(3), None, None]);
        assert_eq!(r.unknown.len(), 4, "{:?}", r.unknown);
        assert_eq!(
            r.unknown[0],
            r#"a metric in an unknown shape: {"name":"views","values":[{"value":{"organic":5,"paid":2}}]}"#
        );
        assert!(r.unknown.contains(&"metric views missing".to_string()));
        assert!(r
            .unknown
            .contains(&"metric quotes has no value in a known shape".to_string()));
        assert!(r.unknown.contains(&"metric shares missing".to_string()));
        assert_eq!(PostMetrics::read(br#"{"data":[]}"#).unwrap(), None);
        assert_eq!(
            PostMetrics::read(br#"{"data":[{"name":"likes","values":[{"value":-1}]}]}"#)
                .unwrap_err(),
            InsightsError::Negative("likes")
        );
        let a = AccountInsights::read(
            br#"{"data":[{"name":"followers_count","total_value":{"value":5}}]}"#,
        )
        .unwrap();
        assert_eq!(a.values, [Some(5), None, None, None, None, None, Some(0)]);
        assert_eq!(a.unknown.len(), 5);
    }

    #[test]
    fn an_answer_without_a_data_array_or_not_json_is_bad_data() {
        for body in [
            &br#"{"paging":{}}"#[..],
            br#"{"data":{"name":"views"}}"#,
            br#"{"data":null}"#,
        ] {
            assert_eq!(PostMetrics::read(body).unwrap_err(), InsightsError::NoData);
        }
        for body in [&b"[1,2]"[..], b"{\"data\":[", b"", b"null"] {
            assert!(matches!(
                AccountInsights::read(body).unwrap_err(),
                InsightsError::Malformed(_)
            ));
        }
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
