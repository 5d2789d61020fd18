//! Per-link clicks and follower demographics: the account insights that come as a list
//! of named values rather than one number.

use crate::insights::{InsightsError, Metric};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The breakdowns `follower_demographics` answers, one per call.
pub const BREAKDOWNS: [&str; 4] = ["country", "city", "age", "gender"];

/// Meta answers demographics only for accounts with at least this many followers.
pub const DEMOGRAPHICS_MIN_FOLLOWERS: i64 = 100;

/// The metric text named `name` in an answer, borrowed; None when the answer has none.
fn metric(answer: &[u8], name: &str) -> Result<Option<Metric>, InsightsError> {
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        name: Option<&'a str>,
    }
    let Some(data) = crate::insights::metric_texts(answer)? else {
        return Err(InsightsError::NoData);
    };
    for item in data {
        let named = serde_json::from_str::<Named>(item.get()).ok();
        if named.and_then(|n| n.name) == Some(name) {
            return Ok(serde_json::from_str::<Metric>(item.get()).ok());
        }
    }
    Ok(None)
}

/// Adds `value` to `name`'s total, refusing what no bigint holds or a negative count.
fn add(
    totals: &mut BTreeMap<String, i64>,
    name: &str,
    value: i64,
    metric: &'static str,
) -> Result<(), InsightsError> {
    if value < 0 {
        return Err(InsightsError::Negative(metric));
    }
    let total = totals.entry(name.to_string()).or_insert(0);
    *total = total
        .checked_add(value)
        .ok_or(InsightsError::OutOfRange(metric))?;
    Ok(())
}

/// Clicks per link URL in an account insights answer, in URL order. An answer without
/// `clicks` had none in its window (empty); None when `clicks` came in a shape without
/// its links (a total only), so the split is unknown. A URL named twice counts once.
pub fn link_clicks(answer: &[u8]) -> Result<Option<Vec<(String, i64)>>, InsightsError> {
    let Some(clicks) = metric(answer, "clicks")? else {
        return Ok(Some(Vec::new()));
    };
    let Some(links) = clicks.link_total_values else {
        return Ok(None);
    };
    let mut totals = BTreeMap::new();
    for link in links {
        add(&mut totals, &link.link_url, link.value, "clicks")?;
    }
    Ok(Some(totals.into_iter().collect()))
}

/// Followers per value of one breakdown (a country, a city, an age range, a gender) from a
/// `follower_demographics` answer, in value order.
pub fn follower_demographics(
    answer: &[u8],
    breakdown: &str,
) -> Result<Vec<(String, i64)>, InsightsError> {
    const NAME: &str = "follower_demographics";
    let metric = metric(answer, NAME)?.ok_or(InsightsError::MissingMetric(NAME))?;
    let breakdowns = metric
        .total_value
        .and_then(|t| t.breakdowns)
        .ok_or(InsightsError::NoValue(NAME))?;
    let mut totals = BTreeMap::new();
    for b in breakdowns {
        // The answer names its dimension; one for another breakdown is not this one's.
        if !b.dimension_keys.is_empty() && b.dimension_keys.iter().all(|k| k != breakdown) {
            continue;
        }
        for result in b.results {
            if let Some(value) = result.dimension_values.first() {
                add(&mut totals, value, result.value, NAME)?;
            }
        }
    }
    Ok(totals.into_iter().collect())
}

/// The breakdowns a comma-separated list names, each once, in the list's order; an empty
/// list names none. Refuses a name Meta does not answer.
pub fn parse_breakdowns(list: &str) -> Result<Vec<&'static str>, String> {
    let mut chosen = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let known = BREAKDOWNS
            .iter()
            .find(|b| b.eq_ignore_ascii_case(item))
            .ok_or_else(|| {
                format!(
                    "\"{item}\" is no follower_demographics breakdown (use {})",
                    BREAKDOWNS.join(", ")
                )
            })?;
        if !chosen.contains(known) {
            chosen.push(*known);
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clicks_per_link_sum_a_repeated_url_and_keep_unknown_shapes_apart() {
        let answer = br#"{"data":[{"name":"views","values":[{"value":3}]},
            {"name":"clicks","period":"day","link_total_values":[
              {"value":11,"link_url":"https://b"},{"value":4,"link_url":"https://a"},{"value":1,"link_url":"https://b"}]}]}"#;
        assert_eq!(
            link_clicks(answer).unwrap(),
            Some(vec![("https://a".into(), 4), ("https://b".into(), 12)])
        );
        assert_eq!(
            link_clicks(br#"{"data":[{"name":"views","values":[{"value":3}]}]}"#).unwrap(),
            Some(vec![]),
            "no clicks metric: none that day"
        );
        assert_eq!(
            link_clicks(br#"{"data":[{"name":"clicks","total_value":{"value":7}}]}"#).unwrap(),
            None,
            "a total without links: the split is unknown"
        );
        assert_eq!(
            link_clicks(
                br#"{"data":[{"name":"clicks","link_total_values":[{"value":-1,"link_url":"x"}]}]}"#
            )
            .unwrap_err(),
            InsightsError::Negative("clicks")
        );
        let huge = format!(
            r#"{{"data":[{{"name":"clicks","link_total_values":[{{"value":{m},"link_url":"x"}},{{"value":{m},"link_url":"x"}}]}}]}}"#,
            m = i64::MAX
        );
        assert_eq!(
            link_clicks(huge.as_bytes()).unwrap_err(),
            InsightsError::OutOfRange("clicks")
        );
    }

    #[test]
    fn demographics_read_the_asked_breakdown() {
        let answer = br#"{"data":[{"name":"follower_demographics","period":"lifetime",
            "total_value":{"breakdowns":[{"dimension_keys":["country"],"results":[
              {"dimension_values":["US"],"value":30},{"dimension_values":["JP"],"value":12},
              {"dimension_values":[],"value":5}]}]}}]}"#;
        assert_eq!(
            follower_demographics(answer, "country").unwrap(),
            vec![("JP".into(), 12), ("US".into(), 30)]
        );
        assert_eq!(follower_demographics(answer, "age").unwrap(), vec![]);
        assert_eq!(
            follower_demographics(br#"{"data":[]}"#, "age").unwrap_err(),
            InsightsError::MissingMetric("follower_demographics")
        );
        assert_eq!(
            follower_demographics(
                br#"{"data":[{"name":"follower_demographics","total_value":{"value":3}}]}"#,
                "age"
            )
            .unwrap_err(),
            InsightsError::NoValue("follower_demographics")
        );
    }

    #[test]
    fn breakdown_lists_are_checked() {
        assert_eq!(parse_breakdowns("").unwrap(), Vec::<&str>::new());
        assert_eq!(
            parse_breakdowns(" Country, age,country ").unwrap(),
            vec!["country", "age"]
        );
        assert!(parse_breakdowns("country,region")
            .unwrap_err()
            .contains("\"region\""));
    }
}
