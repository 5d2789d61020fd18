//! Walking a REST listing: the URL of each request, where the next page is (or that this
//! was the last), and the records and rows of a page. A position is stored with each
//! committed page, so a run resumes exactly after the last page it wrote.

use super::config::{Auth, CursorFrom, Pagination, RestConfig};
use super::path::{scalar_text, JsonPath};
use crate::http::urlencode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where the next request of a run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Position {
    /// The first page.
    Start,
    Cursor {
        cursor: String,
    },
    /// A whole URL the API handed out (next link, Link header).
    Url {
        url: String,
    },
    Page {
        page: u64,
    },
    Offset {
        offset: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error("the page has no array of records at {0:?}")]
    NoRecords(String),
    #[error("the next page's URL {0:?} is on another origin than base_url; pg_pullsync does not send the source's credentials there")]
    ForeignUrl(String),
    #[error("the API handed out the same position twice ({0}); the listing would never end")]
    Repeated(String),
}

/// What one answer brought: its body and its `Link` header.
pub struct Answer<'a> {
    pub body: &'a Value,
    pub link: Option<&'a str>,
}

fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// The URL of a request at `position`; `since` is the incremental high-water mark sent
/// on every page of the run, `query_key` the API key when it goes in the query.
pub fn request_url(
    config: &RestConfig,
    position: &Position,
    since: Option<&str>,
    query_key: Option<&str>,
) -> String {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut url = match position {
        Position::Url { url } => url.clone(),
        _ => {
            params.extend(config.query.iter().cloned());
            if let (Some(inc), Some(since)) = (&config.incremental, since) {
                params.push((inc.param.clone(), since.to_string()));
            }
            match (&config.pagination, position) {
                (Pagination::Cursor { param, .. }, Position::Cursor { cursor }) => {
                    params.push((param.clone(), cursor.clone()));
                }
                (
                    Pagination::PageNumber {
                        param,
                        start,
                        size_param,
                        size,
                    },
                    _,
                ) => {
                    let page = match position {
                        Position::Page { page } => *page,
                        _ => *start,
                    };
                    params.push((param.clone(), page.to_string()));
                    if let Some(sp) = size_param {
                        params.push((sp.clone(), size.to_string()));
                    }
                }
                (
                    Pagination::Offset {
                        param,
                        limit_param,
                        limit,
                    },
                    _,
                ) => {
                    let offset = match position {
                        Position::Offset { offset } => *offset,
                        _ => 0,
                    };
                    params.push((param.clone(), offset.to_string()));
                    params.push((limit_param.clone(), limit.to_string()));
                }
                _ => {}
            }
            format!("{}{}", config.base_url, config.path)
        }
    };
    if let (Auth::QueryKey { param }, Some(key)) = (&config.auth, query_key) {
        params.push((param.clone(), key.to_string()));
    }
    for (i, (k, v)) in params.iter().enumerate() {
        let sep = if i == 0 && !url.contains('?') {
            '?'
        } else {
            '&'
        };
        url.push(sep);
        url.push_str(&urlencode(k));
        url.push('=');
        url.push_str(&urlencode(v));
    }
    url
}

/// The records of a page.
pub fn records<'a>(config: &RestConfig, body: &'a Value) -> Result<&'a [Value], PagingError> {
    config
        .records
        .get(body)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| PagingError::NoRecords(config.records.as_str().to_string()))
}

/// The page's records moved out of it, so that a page is not held twice; empty where
/// `records` finds no array.
pub fn take_records(config: &RestConfig, body: &mut Value) -> Vec<Value> {
    match config.records.get_mut(body) {
        Some(Value::Array(items)) => std::mem::take(items),
        _ => Vec::new(),
    }
}

/// The `rel="next"` target of an RFC 8288 Link header.
pub fn link_next(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p.strip_prefix("rel=")
                .map(|v| {
                    v.trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
                .unwrap_or(false)
        });
        if is_next {
            return Some(target.to_string());
        }
        rest = after;
    }
    None
}

/// A URL the API handed out, made absolute and held to base_url's origin.
fn own_url(config: &RestConfig, url: &str) -> Result<String, PagingError> {
    let absolute = if url.starts_with('/') {
        format!("{}{url}", origin(&config.base_url))
    } else {
        url.to_string()
    };
    if origin(&absolute).eq_ignore_ascii_case(origin(&config.base_url)) {
        Ok(absolute)
    } else {
        Err(PagingError::ForeignUrl(
            crate::http::redact_url(&absolute).to_string(),
        ))
    }
}

fn text_at(path: &JsonPath, value: &Value) -> Option<String> {
    path.get(value)
        .and_then(scalar_text)
        .filter(|s| !s.is_empty())
}

/// Where the page after the one read at `at` is, or None when that was the last.
pub fn next(
    config: &RestConfig,
    at: &Position,
    answer: &Answer,
    records: &[Value],
) -> Result<Option<Position>, PagingError> {
    let next = match &config.pagination {
        Pagination::None => None,
        Pagination::Cursor { from, has_more, .. } => {
            let more = has_more
                .as_ref()
                .map(|p| p.get(answer.body).and_then(Value::as_bool).unwrap_or(false));
            if more == Some(false) {
                None
            } else {
                let cursor = match from {
                    CursorFrom::Page(path) => text_at(path, answer.body),
                    CursorFrom::LastRecord(field) => records.last().and_then(|r| text_at(field, r)),
                };
                cursor.map(|cursor| Position::Cursor { cursor })
            }
        }
        Pagination::NextUrl { path } => text_at(path, answer.body)
            .map(|url| own_url(config, &url).map(|url| Position::Url { url }))
            .transpose()?,
        Pagination::LinkHeader => answer
            .link
            .and_then(link_next)
            .map(|url| own_url(config, &url).map(|url| Position::Url { url }))
            .transpose()?,
        Pagination::PageNumber { start, size, .. } => {
            let page = match at {
                Position::Page { page } => *page,
                _ => *start,
            };
            (records.len() as u64 >= *size).then_some(Position::Page { page: page + 1 })
        }
        Pagination::Offset { limit, .. } => {
            let offset = match at {
                Position::Offset { offset } => *offset,
                _ => 0,
            };
            (records.len() as u64 >= *limit).then_some(Position::Offset {
                offset: offset + records.len() as u64,
            })
        }
    };
    if next.as_ref() == Some(at) {
        return Err(PagingError::Repeated(
            serde_json::to_string(at).unwrap_or_default(),
        ));
    }
    Ok(next)
}

/// The rows of a page as the target's columns take them (with the unmapped top-level
/// fields in the extra column), one per key (the last record of a key wins, as an upsert
/// may touch a row once), and how many records had no complete key (left out).
pub fn rows(config: &RestConfig, records: &[Value]) -> (Vec<Value>, usize) {
    let mapped: Vec<&str> = config
        .target
        .columns
        .iter()
        .filter_map(|(_, p)| p.top())
        .collect();
    let mut rows: Vec<Value> = Vec::with_capacity(records.len());
    let mut at_key: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut keyless = 0;
    for record in records {
        let key: Option<Vec<&Value>> = config
            .primary_key
            .iter()
            .map(|k| k.get(record).filter(|v| !v.is_null()))
            .collect();
        let Some(key) = key else {
            keyless += 1;
            continue;
        };
        let key = serde_json::to_string(&key).unwrap_or_default();
        let mut row = Map::new();
        for (column, path) in &config.target.columns {
            row.insert(
                column.clone(),
                path.get(record).cloned().unwrap_or(Value::Null),
            );
        }
        if let Some(extra) = &config.target.extra {
            let rest: Map<String, Value> = record
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| !mapped.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            row.insert(extra.clone(), Value::Object(rest));
        }
        match at_key.get(&key) {
            Some(&i) => rows[i] = Value::Object(row),
            None => {
                at_key.insert(key, rows.len());
                rows.push(Value::Object(row));
            }
        }
    }
    (rows, keyless)
}

/// The higher of two high-water marks: numerically when both are numbers, else as text
/// (ISO 8601 timestamps of one format order so).
pub fn higher(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let greater = match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => y > x,
                _ => b > a,
            };
            Some(if greater { b } else { a })
        }
        (a, b) => a.or(b),
    }
}

/// The highest incremental field among a page's records.
pub fn page_high_water(config: &RestConfig, records: &[Value]) -> Option<String> {
    let field = &config.incremental.as_ref()?.field;
    records
        .iter()
        .filter_map(|r| field.get(r).and_then(scalar_text))
        .fold(None, |hw, v| higher(hw, Some(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(pagination: Value) -> RestConfig {
        RestConfig::parse(
            &json!({
                "base_url": "https://api.example.com",
                "path": "/v1/items",
                "query": { "state": "all" },
                "auth": { "type": "api_key", "query": "api_key", "key": "k" },
                "records": "data",
                "primary_key": "id",
                "pagination": pagination,
                "incremental": { "field": "updated", "param": "since" },
                "target": { "table": "t", "columns": { "id": "id", "updated": "updated" }, "extra": "raw" }
            }),
            true,
        )
        .unwrap()
        .0
    }

    #[test]
    fn records_are_moved_out_of_the_page() {
        let c = config(json!({ "style": "none" }));
        let mut page = json!({ "data": [{ "id": 1 }, { "id": 2 }], "more": true });
        assert_eq!(records(&c, &page).unwrap().len(), 2);
        assert_eq!(
            take_records(&c, &mut page),
            vec![json!({ "id": 1 }), json!({ "id": 2 })]
        );
        assert_eq!(page, json!({ "data": [], "more": true }));
        assert!(take_records(&c, &mut json!({ "other": [] })).is_empty());
    }

    #[test]
    fn urls_carry_query_since_paging_and_the_key() {
        let c = config(json!({ "style": "page_number", "size_param": "per_page", "size": 2 }));
        assert_eq!(
            request_url(&c, &Position::Start, Some("2024-01-01T00:00:00Z"), Some("k y")),
            "https://api.example.com/v1/items?state=all&since=2024-01-01T00%3A00%3A00Z&page=1&per_page=2&api_key=k%20y"
        );
        assert_eq!(
            request_url(
                &c,
                &Position::Url {
                    url: "https://api.example.com/n?p=2".into()
                },
                None,
                Some("k")
            ),
            "https://api.example.com/n?p=2&api_key=k"
        );
    }

    #[test]
    fn link_headers_give_the_next_target() {
        let h = r#"<https://api.example.com/i?page=2>; rel="next", <https://api.example.com/i?page=9>; rel="last""#;
        assert_eq!(
            link_next(h).as_deref(),
            Some("https://api.example.com/i?page=2")
        );
        let h = r#"<https://api.example.com/i?page=1>; rel="prev first""#;
        assert_eq!(link_next(h), None);
        assert_eq!(
            link_next(r#"</i?page=3>; rel=next"#).as_deref(),
            Some("/i?page=3")
        );
    }

    #[test]
    fn each_style_finds_the_next_page_or_the_end() {
        let body =
            json!({ "data": [{ "id": "a" }, { "id": "b" }], "has_more": true, "next": "c2" });
        let records = body["data"].as_array().unwrap().clone();
        let answer = Answer {
            body: &body,
            link: None,
        };
        let stripe = config(
            json!({ "style": "cursor", "param": "starting_after", "last_record_field": "id", "has_more_path": "has_more" }),
        );
        assert_eq!(
            next(&stripe, &Position::Start, &answer, &records).unwrap(),
            Some(Position::Cursor { cursor: "b".into() })
        );
        let last = json!({ "data": [], "has_more": false });
        assert_eq!(
            next(
                &stripe,
                &Position::Start,
                &Answer {
                    body: &last,
                    link: None
                },
                &[]
            )
            .unwrap(),
            None
        );
        let cursor = config(json!({ "style": "cursor", "param": "cursor", "cursor_path": "next" }));
        assert_eq!(
            next(&cursor, &Position::Start, &answer, &records).unwrap(),
            Some(Position::Cursor {
                cursor: "c2".into()
            })
        );
        assert!(matches!(
            next(
                &cursor,
                &Position::Cursor {
                    cursor: "c2".into()
                },
                &answer,
                &records
            ),
            Err(PagingError::Repeated(_))
        ));
        let pages = config(json!({ "style": "page_number", "size": 2 }));
        assert_eq!(
            next(&pages, &Position::Page { page: 4 }, &answer, &records).unwrap(),
            Some(Position::Page { page: 5 })
        );
        assert_eq!(
            next(&pages, &Position::Page { page: 5 }, &answer, &records[..1]).unwrap(),
            None
        );
        let offsets = config(json!({ "style": "offset", "limit": 2 }));
        assert_eq!(
            next(&offsets, &Position::Offset { offset: 4 }, &answer, &records).unwrap(),
            Some(Position::Offset { offset: 6 })
        );
        let links = config(json!({ "style": "link_header" }));
        let foreign = Answer {
            body: &body,
            link: Some(r#"<https://evil.example.net/steal>; rel="next""#),
        };
        assert!(matches!(
            next(&links, &Position::Start, &foreign, &records),
            Err(PagingError::ForeignUrl(_))
        ));
        let relative = Answer {
            body: &body,
            link: Some(r#"</v1/items?page=2>; rel="next""#),
        };
        assert_eq!(
            next(&links, &Position::Start, &relative, &records).unwrap(),
            Some(Position::Url {
                url: "https://api.example.com/v1/items?page=2".into()
            })
        );
    }

    #[test]
    fn rows_map_columns_keep_the_rest_and_leave_keyless_records_out() {
        let c = config(json!({ "style": "none" }));
        let records = vec![
            json!({ "id": 1, "updated": "u0", "title": "old" }),
            json!({ "id": 1, "updated": "u1", "title": "x" }),
            json!({ "title": "no id" }),
        ];
        let (rows, keyless) = rows(&c, &records);
        assert_eq!(keyless, 1);
        assert_eq!(
            rows,
            [json!({ "id": 1, "updated": "u1", "raw": { "title": "x" } })]
        );
    }

    #[test]
    fn high_water_marks_compare_as_numbers_or_text() {
        assert_eq!(
            higher(Some("9".into()), Some("10".into())).as_deref(),
            Some("10")
        );
        assert_eq!(
            higher(Some("2024-02-01".into()), Some("2024-01-31".into())).as_deref(),
            Some("2024-02-01")
        );
        assert_eq!(higher(None, Some("a".into())).as_deref(), Some("a"));
        let c = config(json!({ "style": "none" }));
        let records = [
            json!({ "id": 1, "updated": "2024-01-02" }),
            json!({ "id": 2, "updated": "2024-03-01" }),
        ];
        assert_eq!(page_high_water(&c, &records).as_deref(), Some("2024-03-01"));
    }
}
