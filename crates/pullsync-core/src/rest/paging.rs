//! Walking a REST listing: the URL of each request, where the next page is (or that this
//! was the last), and the records and rows of a page. A position is stored with each
//! committed page, so a run resumes exactly after the last page it wrote.

use super::config::{Auth, CursorFrom, Method, Pagination, Place, RestConfig};
use super::path::{scalar_text, JsonPath};
use crate::http::urlencode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};

/// The most records a page may hold. A record costs its bytes several times over while
/// its page is written (its slice, its row, its key); this bounds that cost whatever the
/// response cap, and a page of more ends the run.
pub const MAX_RECORDS_PER_PAGE: usize = 1_000_000;

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
    #[error("REST source {name}: the API handed out {position} again, a position already read in this run; its paging does not advance and the listing would never end")]
    Repeated { name: String, position: String },
    #[error("the GraphQL answer holds errors: {0}")]
    GraphQl(String),
    #[error("the page holds more than {MAX_RECORDS_PER_PAGE} records; ask the API for smaller pages (config.query or the pagination's size or limit)")]
    TooManyRecords,
}

/// What one answer brought: its body (read as text, never as one tree: a tree of a page
/// costs up to ~200 times its bytes) and its `Link` header.
pub struct Answer<'a> {
    pub body: &'a RawValue,
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
            let placed = placed(config, position, since);
            params.extend(
                placed
                    .into_iter()
                    .filter(|p| p.place == Place::Query)
                    .map(|p| (p.name, scalar_text(&p.value).unwrap_or_default())),
            );
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

/// A paging or incremental value of a request and where it goes.
struct Placed {
    name: String,
    place: Place,
    value: Value,
}

/// The incremental mark and the paging values of a request at `position`, in the order
/// they are sent; a body takes numbers as numbers.
fn placed(config: &RestConfig, position: &Position, since: Option<&str>) -> Vec<Placed> {
    let mut out = Vec::new();
    let mut put = |name: &str, place: Place, value: Value| {
        out.push(Placed {
            name: name.to_string(),
            place,
            value,
        })
    };
    if let (Some(inc), Some(since)) = (&config.incremental, since) {
        put(&inc.param, inc.place, Value::from(since));
    }
    match (&config.pagination, position) {
        (Pagination::Cursor { param, place, .. }, Position::Cursor { cursor }) => {
            put(param, *place, Value::from(cursor.as_str()));
        }
        (
            Pagination::PageNumber {
                param,
                place,
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
            put(param, *place, Value::from(page));
            if let Some(sp) = size_param {
                put(sp, *place, Value::from(*size));
            }
        }
        (
            Pagination::Offset {
                param,
                place,
                limit_param,
                limit,
            },
            _,
        ) => {
            let offset = match position {
                Position::Offset { offset } => *offset,
                _ => 0,
            };
            put(param, *place, Value::from(offset));
            put(limit_param, *place, Value::from(*limit));
        }
        (Pagination::GraphQl { variable, .. }, Position::Cursor { cursor }) => {
            // A GraphQL name holds no dot: the path is plain.
            put(
                &format!("variables.{variable}"),
                Place::Body,
                Value::from(cursor.as_str()),
            );
        }
        _ => {}
    }
    out
}

/// The JSON body of a POST at `position`: config.body with the values placed in it (a
/// GraphQL cursor in `variables`); None for a GET.
pub fn request_body(
    config: &RestConfig,
    position: &Position,
    since: Option<&str>,
) -> Option<String> {
    if config.method == Method::Get {
        return None;
    }
    let mut body = config
        .body
        .clone()
        .unwrap_or_else(|| Value::Object(Map::new()));
    for p in placed(config, position, since) {
        // Body paths were checked with the configuration.
        if let (Place::Body, Some(at)) = (p.place, JsonPath::parse(&p.name)) {
            at.set(&mut body, p.value);
        }
    }
    Some(body.to_string())
}

/// How many records a page held and its last one (where some APIs continue).
#[derive(Debug, Default, Clone, Copy)]
pub struct Walked<'a> {
    pub count: usize,
    pub last: Option<&'a RawValue>,
}

/// Hands each record of a page, as the slice of the body it is, to `each` in order, with
/// how many records the page holds (counted first, so that a page of too many is refused
/// before any is handed on); no list of them is held.
pub fn each_record<'a>(
    config: &RestConfig,
    body: &'a RawValue,
    mut each: impl FnMut(&'a RawValue, usize),
) -> Result<Walked<'a>, PagingError> {
    use serde::de::{Deserializer as _, Error as _, SeqAccess, Visitor};
    struct Records<F>(F, bool);
    impl<'de, F: FnMut(&'de RawValue)> Visitor<'de> for &mut Records<F> {
        type Value = Walked<'de>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Walked<'de>, A::Error> {
            let mut walked = Walked::default();
            while let Some(record) = seq.next_element::<&'de RawValue>()? {
                if walked.count == MAX_RECORDS_PER_PAGE {
                    self.1 = true;
                    return Err(A::Error::custom("too many records"));
                }
                (self.0)(record);
                walked.count += 1;
                walked.last = Some(record);
            }
            Ok(walked)
        }
    }
    let no_records = || PagingError::NoRecords(config.records.as_str().to_string());
    let array = config
        .records
        .get_raw(body)
        .filter(|r| r.get().starts_with('['))
        .ok_or_else(no_records)?;
    let walk = |each: &mut dyn FnMut(&'a RawValue)| {
        let mut records = Records(each, false);
        match serde_json::Deserializer::from_str(array.get()).deserialize_seq(&mut records) {
            Ok(walked) => Ok(walked),
            Err(_) if records.1 => Err(PagingError::TooManyRecords),
            Err(_) => Err(no_records()),
        }
    };
    let count = walk(&mut |_| {})?.count;
    walk(&mut |record| each(record, count))
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

fn text_at(path: &JsonPath, value: &RawValue) -> Option<String> {
    path.get_value(value)
        .as_ref()
        .and_then(scalar_text)
        .filter(|s| !s.is_empty())
}

/// Where the page after the one read at `at` is, or None when that was the last.
pub fn next(
    config: &RestConfig,
    at: &Position,
    answer: &Answer,
    records: &Walked,
) -> Result<Option<Position>, PagingError> {
    let next = match &config.pagination {
        Pagination::None => None,
        Pagination::Cursor { from, has_more, .. } => {
            let more = has_more.as_ref().map(|p| {
                p.get_value(answer.body)
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false)
            });
            if more == Some(false) {
                None
            } else {
                let cursor = match from {
                    CursorFrom::Page(path) => text_at(path, answer.body),
                    CursorFrom::LastRecord(field) => records.last.and_then(|r| text_at(field, r)),
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
            (records.count as u64 >= *size).then_some(Position::Page { page: page + 1 })
        }
        Pagination::Offset { limit, .. } => {
            let offset = match at {
                Position::Offset { offset } => *offset,
                _ => 0,
            };
            (records.count as u64 >= *limit).then_some(Position::Offset {
                offset: offset + records.count as u64,
            })
        }
        Pagination::GraphQl { page_info, .. } => {
            let info = page_info.get_value(answer.body);
            let field = |name: &str| info.as_ref().and_then(|i| i.get(name));
            let more = field("hasNextPage").and_then(Value::as_bool) == Some(true);
            field("endCursor")
                .and_then(scalar_text)
                .filter(|c| more && !c.is_empty())
                .map(|cursor| Position::Cursor { cursor })
        }
    };
    Ok(next)
}

/// How many of a GraphQL answer's error messages a failure shows, and how much of each.
const GRAPHQL_ERRORS_SHOWN: usize = 3;
const GRAPHQL_ERROR_CHARS: usize = 200;

/// Refuses a GraphQL answer that holds `errors`: GraphQL answers them with 200, and with
/// whatever data it could give beside them, which is not the listing asked for.
pub fn check_answer(config: &RestConfig, body: &RawValue) -> Result<(), PagingError> {
    if !matches!(config.pagination, Pagination::GraphQl { .. }) {
        return Ok(());
    }
    let errors = match JsonPath::parse("errors").and_then(|p| p.get_value(body)) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(errors)) if errors.is_empty() => return Ok(()),
        Some(Value::Array(errors)) => errors,
        Some(other) => vec![other],
    };
    let mut shown: Vec<String> = errors
        .iter()
        .take(GRAPHQL_ERRORS_SHOWN)
        .map(|e| {
            let message = e.get("message").and_then(Value::as_str);
            message
                .unwrap_or("(an error without a message)")
                .chars()
                .take(GRAPHQL_ERROR_CHARS)
                .collect()
        })
        .collect();
    if errors.len() > GRAPHQL_ERRORS_SHOWN {
        shown.push(format!("and {} more", errors.len() - GRAPHQL_ERRORS_SHOWN));
    }
    Err(PagingError::GraphQl(shown.join("; ")))
}

/// The positions a run has read, to catch a paginator that hands out one again (the same
/// cursor, URL or page, at once or after a round): a run would read the same pages until
/// max_pages. Bounded: past `SEEN_POSITIONS` the oldest are forgotten (max_pages still ends
/// a longer round).
pub struct Seen {
    source: String,
    hasher: std::collections::hash_map::RandomState,
    order: VecDeque<u64>,
    hashes: HashSet<u64>,
}

pub const SEEN_POSITIONS: usize = 4096;

impl Seen {
    /// For a run of `source` that starts at `start`.
    pub fn new(source: &str, start: &Position) -> Seen {
        let mut seen = Seen {
            source: source.to_string(),
            hasher: Default::default(),
            order: VecDeque::new(),
            hashes: HashSet::new(),
        };
        seen.insert(start);
        seen
    }

    fn insert(&mut self, position: &Position) -> bool {
        use std::hash::BuildHasher;
        let hash = self
            .hasher
            .hash_one(serde_json::to_string(position).unwrap_or_default());
        if !self.hashes.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        if self.order.len() > SEEN_POSITIONS {
            if let Some(oldest) = self.order.pop_front() {
                self.hashes.remove(&oldest);
            }
        }
        true
    }

    /// Notes the position the run goes to next; an error when it was read already.
    pub fn note(&mut self, next: &Position) -> Result<(), PagingError> {
        if self.insert(next) {
            return Ok(());
        }
        Err(PagingError::Repeated {
            name: self.source.clone(),
            position: shown(next),
        })
    }
}

/// A position as a message shows it: a URL without its query (which may hold a token the
/// API put there), a cursor cut short.
fn shown(position: &Position) -> String {
    match position {
        Position::Start => "the first page".into(),
        Position::Cursor { cursor } => {
            let cut: String = cursor.chars().take(100).collect();
            let more = if cut.len() < cursor.len() { "…" } else { "" };
            format!("cursor {:?}{more}", cut)
        }
        Position::Url { url } => format!("the URL {}", crate::http::redact_url(url)),
        Position::Page { page } => format!("page {page}"),
        Position::Offset { offset } => format!("offset {offset}"),
    }
}

/// A page's rows as the target's columns take them, as the text of one JSON array, each
/// row a slice of it: runs of rows go to the upsert as slices too.
#[derive(Debug, Default)]
pub struct Rows {
    text: String,
    spans: Vec<(usize, usize)>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Each row's JSON text, in page order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.spans.iter().map(|&(from, to)| &self.text[from..to])
    }

    /// The rows in runs of at most `max_rows` rows and (unless one row is larger) about
    /// `max_bytes` bytes, each the rows' text between `[` and `]` (comma-separated) and
    /// its rows, in page order.
    pub fn chunks(&self, max_rows: usize, max_bytes: usize) -> Vec<(&str, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut first = 0;
        while first < self.spans.len() {
            let from = self.spans[first].0;
            let mut last = first;
            while last + 1 < self.spans.len()
                && last + 1 - first < max_rows.max(1)
                && self.spans[last + 1].1 - from <= max_bytes
            {
                last += 1;
            }
            out.push((&self.text[from..self.spans[last].1], first..last + 1));
            first = last + 1;
        }
        out
    }
}

/// What a page's records gave.
#[derive(Debug, Default)]
pub struct PageRows {
    pub rows: Rows,
    /// Records without a complete primary key, left out.
    pub keyless: usize,
    /// The highest incremental field among the records.
    pub high_water: Option<String>,
    /// Records at or below the mark the run started from (`RowMaker::rereading`): read
    /// again, by the lookback or the boundary.
    pub reread: usize,
}

/// Makes the rows of a page record by record (with what no column takes in the extra
/// column), one per key (the last record of a key wins, as an upsert may touch a
/// row once), counts the records with no complete key (left out) and finds the page's
/// high-water mark. One record is a tree at a time; the rows are text.
pub struct RowMaker<'c> {
    config: &'c RestConfig,
    /// The columns' paths: what the extra column leaves out.
    mapped: Vec<&'c JsonPath>,
    out: PageRows,
    /// Where each row is in the text; (0, 0): replaced by a later record of its key.
    spans: Vec<(usize, usize)>,
    keys: KeyIndex,
    /// The mark the run started from: records at or below it are counted as read again.
    mark: Option<String>,
    /// The parent's values, for `$parent.` paths (fan-out).
    parent: Option<&'c Map<String, Value>>,
}

/// Which row holds each key, in few allocations: a record's key would otherwise be an
/// allocation of its own, several times the size of a tiny record, and the many small
/// ones kept between a record's passing ones fragment the heap.
#[derive(Default)]
struct KeyIndex {
    hasher: std::collections::hash_map::RandomState,
    /// The keys' texts, one after another, and where each row's key is in it.
    text: String,
    at: Vec<(usize, usize)>,
    /// A key's hash → the row of the first key with that hash.
    by_hash: HashMap<u64, usize>,
    /// Keys whose hash an earlier, different key has (rare).
    collided: HashMap<Box<str>, usize>,
}

impl KeyIndex {
    fn reserve(&mut self, rows: usize) {
        self.at.reserve_exact(rows);
        self.by_hash.reserve(rows);
    }

    /// Notes that row `row` (the next one) has `key`; the earlier row with that key, if any.
    fn insert(&mut self, key: &str, row: usize) -> Option<usize> {
        use std::hash::BuildHasher;
        let from = self.text.len();
        self.text.push_str(key);
        self.at.push((from, self.text.len()));
        let hash = self.hasher.hash_one(key);
        match self.by_hash.get(&hash).copied() {
            None => {
                self.by_hash.insert(hash, row);
                None
            }
            Some(earlier) => {
                let (from, to) = self.at[earlier];
                if &self.text[from..to] == key {
                    self.by_hash.insert(hash, row);
                    Some(earlier)
                } else {
                    self.collided.insert(key.into(), row)
                }
            }
        }
    }
}

impl<'c> RowMaker<'c> {
    pub fn new(config: &'c RestConfig) -> Self {
        let mut out = PageRows::default();
        out.rows.text.push('[');
        RowMaker {
            config,
            mapped: config
                .target
                .columns
                .iter()
                .map(|(_, p)| p)
                .filter(|p| p.top() != Some(super::fanout::PARENT))
                .collect(),
            out,
            spans: Vec::new(),
            keys: KeyIndex::default(),
            mark: None,
            parent: None,
        }
    }

    /// The rows of a parent's children: `$parent.` paths read `parent`'s values.
    pub fn for_parent(config: &'c RestConfig, parent: &'c Map<String, Value>) -> Self {
        RowMaker {
            parent: Some(parent),
            ..RowMaker::new(config)
        }
    }

    /// Counts the records at or below `mark` (`PageRows::reread`).
    pub fn rereading(mut self, mark: Option<String>) -> Self {
        self.mark = mark;
        self
    }

    /// Adds a record of a page of `of` records.
    pub fn add(&mut self, raw: &RawValue, of: usize) {
        if self.spans.capacity() == 0 {
            // Sized once: growing doubles, and holds the old and the new table meanwhile.
            self.spans.reserve_exact(of);
            self.keys.reserve(of);
        }
        let config = self.config;
        let out = &mut self.out;
        let Ok(record) = serde_json::from_str::<Value>(raw.get()) else {
            out.keyless += 1;
            return;
        };
        if let Some(inc) = &config.incremental {
            let value = inc.field.get(&record).and_then(scalar_text);
            if let (Some(v), Some(m)) = (&value, &self.mark) {
                out.reread += usize::from(super::incremental::not_above(v, m));
            }
            out.high_water = higher(out.high_water.take(), value);
        }
        let parent = self.parent;
        let at = |path: &JsonPath| {
            super::fanout::parent_value(path, parent).unwrap_or_else(|| path.get(&record))
        };
        let key: Option<Vec<&Value>> = config
            .primary_key
            .iter()
            .map(|k| at(k).filter(|v| !v.is_null()))
            .collect();
        let Some(key) = key else {
            out.keyless += 1;
            return;
        };
        let key = serde_json::to_string(&key).unwrap_or_default();
        let mut row = Map::new();
        for (column, path) in &config.target.columns {
            row.insert(column.clone(), at(path).cloned().unwrap_or(Value::Null));
        }
        if let Some(extra) = &config.target.extra {
            let rest = super::extra::untaken(record, &self.mapped);
            row.insert(extra.clone(), Value::Object(rest));
        }
        let text = &mut out.rows.text;
        if text.len() > 1 {
            text.push(',');
        }
        let from = text.len();
        text.push_str(&Value::Object(row).to_string());
        if let Some(replaced) = self.keys.insert(&key, self.spans.len()) {
            self.spans[replaced] = (0, 0);
        }
        self.spans.push((from, text.len()));
    }

    pub fn finish(self) -> PageRows {
        let RowMaker { mut out, spans, .. } = self;
        out.rows.text.push(']');
        if spans.iter().all(|&(from, _)| from > 0) {
            out.rows.spans = spans;
            return out;
        }
        // Rows replaced by later ones leave the array: it is written again without them.
        let text = std::mem::take(&mut out.rows.text);
        let kept = &mut out.rows;
        kept.text.reserve(text.len());
        kept.text.push('[');
        for (from, to) in spans.into_iter().filter(|&(from, _)| from > 0) {
            if kept.text.len() > 1 {
                kept.text.push(',');
            }
            let start = kept.text.len();
            kept.text.push_str(&text[from..to]);
            kept.spans.push((start, kept.text.len()));
        }
        kept.text.push(']');
        out
    }
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

    /// All rows as one JSON array.
    fn whole(rows: &Rows) -> Value {
        let chunks = rows.chunks(usize::MAX, usize::MAX);
        assert!(chunks.len() <= 1);
        let text = chunks.first().map_or("", |c| c.0);
        serde_json::from_str(&format!("[{text}]")).unwrap()
    }

    fn raw(value: &Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(value).unwrap()
    }

    fn records<'a>(c: &RestConfig, page: &'a RawValue) -> Result<Vec<&'a RawValue>, PagingError> {
        let mut all = Vec::new();
        let walked = each_record(c, page, |r, of| {
            all.push(r);
            assert!(of >= all.len());
        })?;
        assert_eq!(walked.count, all.len());
        assert_eq!(walked.last.map(RawValue::get), all.last().map(|r| r.get()));
        Ok(all)
    }

    fn walked<'a>(records: &[&'a RawValue]) -> Walked<'a> {
        Walked {
            count: records.len(),
            last: records.last().copied(),
        }
    }

    fn rows(c: &RestConfig, records: &[&RawValue]) -> PageRows {
        let mut maker = RowMaker::new(c);
        for r in records {
            maker.add(r, records.len());
        }
        maker.finish()
    }

    #[test]
    fn records_are_slices_of_the_page_and_a_page_has_few_enough() {
        let c = config(json!({ "style": "none" }));
        let page = raw(&json!({ "data": [{ "id": 1 }, { "id": 2 }], "more": true }));
        let texts: Vec<&str> = records(&c, &page)
            .unwrap()
            .iter()
            .map(|r| r.get())
            .collect();
        assert_eq!(texts, [r#"{"id":1}"#, r#"{"id":2}"#]);
        for other in [json!({ "other": [] }), json!({ "data": { "id": 1 } })] {
            assert!(matches!(
                records(&c, &raw(&other)),
                Err(PagingError::NoRecords(_))
            ));
        }
        let many = format!("{{\"data\":[{}0]}}", "0,".repeat(MAX_RECORDS_PER_PAGE));
        let many: Box<RawValue> = serde_json::from_str(&many).unwrap();
        assert!(matches!(
            records(&c, &many),
            Err(PagingError::TooManyRecords)
        ));
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
            raw(&json!({ "data": [{ "id": "a" }, { "id": "b" }], "has_more": true, "next": "c2" }));
        let all = records(&config(json!({ "style": "none" })), &body).unwrap();
        let records = walked(&all);
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
        let last = raw(&json!({ "data": [], "has_more": false }));
        assert_eq!(
            next(
                &stripe,
                &Position::Start,
                &Answer {
                    body: &last,
                    link: None
                },
                &Walked::default()
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
        let pages = config(json!({ "style": "page_number", "size": 2 }));
        assert_eq!(
            next(&pages, &Position::Page { page: 4 }, &answer, &records).unwrap(),
            Some(Position::Page { page: 5 })
        );
        assert_eq!(
            next(
                &pages,
                &Position::Page { page: 5 },
                &answer,
                &walked(&all[..1])
            )
            .unwrap(),
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

    fn post(extra: Value) -> RestConfig {
        let mut c = json!({
            "base_url": "https://api.example.com",
            "path": "/v1/search",
            "query": { "v": "2" },
            "method": "POST",
            "body": { "filter": { "state": "open" }, "size": 50 },
            "records": "hits",
            "primary_key": "id",
            "target": { "table": "t", "columns": { "id": "id", "updated": "updated" } }
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        RestConfig::parse(&c, true).unwrap().0
    }

    fn body_of(c: &RestConfig, at: &Position, since: Option<&str>) -> Value {
        serde_json::from_str(&request_body(c, at, since).unwrap()).unwrap()
    }

    #[test]
    fn a_post_carries_its_cursor_and_mark_in_the_body() {
        let c = post(json!({
            "pagination": { "style": "cursor", "in": "body", "param": "page.after", "cursor_path": "next" },
            "incremental": { "field": "updated", "param": "filter.since", "in": "body" }
        }));
        assert_eq!(
            body_of(&c, &Position::Start, Some("2024-01-01")),
            json!({ "filter": { "state": "open", "since": "2024-01-01" }, "size": 50 })
        );
        assert_eq!(
            body_of(
                &c,
                &Position::Cursor {
                    cursor: "c2".into()
                },
                None
            ),
            json!({ "filter": { "state": "open" }, "size": 50, "page": { "after": "c2" } })
        );
        // Nothing placed in the body reaches the query string.
        assert_eq!(
            request_url(
                &c,
                &Position::Cursor {
                    cursor: "c2".into()
                },
                Some("s"),
                None
            ),
            "https://api.example.com/v1/search?v=2"
        );
        // The mark may stay in the query while the paging goes in the body, numbers as numbers.
        let c = post(json!({
            "pagination": { "style": "offset", "in": "body", "param": "from", "limit_param": "size", "limit": 20 },
            "incremental": { "field": "updated", "param": "since" }
        }));
        assert_eq!(
            body_of(&c, &Position::Offset { offset: 40 }, Some("s")),
            json!({ "filter": { "state": "open" }, "size": 20, "from": 40 })
        );
        assert_eq!(
            request_url(&c, &Position::Offset { offset: 40 }, Some("s"), None),
            "https://api.example.com/v1/search?v=2&since=s"
        );
        // A GET has no body.
        assert_eq!(
            request_body(&config(json!({ "style": "none" })), &Position::Start, None),
            None
        );
    }

    fn graphql() -> RestConfig {
        post(json!({
            "body": { "query": "query($after: String) { r { issues(first: 2, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } }", "variables": { "first": 2 } },
            "records": "data.r.issues.nodes",
            "pagination": { "style": "graphql", "page_info_path": "data.r.issues.pageInfo" }
        }))
    }

    #[test]
    fn graphql_sends_the_cursor_as_a_variable_and_reads_page_info() {
        let c = graphql();
        let first = body_of(&c, &Position::Start, None);
        assert_eq!(first["variables"], json!({ "first": 2 }));
        let later = body_of(
            &c,
            &Position::Cursor {
                cursor: "Y3Vy".into(),
            },
            None,
        );
        assert_eq!(later["variables"], json!({ "first": 2, "after": "Y3Vy" }));
        let page = |info: Value| {
            raw(
                &json!({ "data": { "r": { "issues": { "nodes": [{ "id": 1 }], "pageInfo": info } } } }),
            )
        };
        let at = |body: &RawValue| {
            let walked = each_record(&c, body, |_, _| {}).unwrap();
            next(&c, &Position::Start, &Answer { body, link: None }, &walked).unwrap()
        };
        assert_eq!(
            at(&page(json!({ "hasNextPage": true, "endCursor": "Y2" }))),
            Some(Position::Cursor {
                cursor: "Y2".into()
            })
        );
        for last in [
            json!({ "hasNextPage": false, "endCursor": "Y2" }),
            json!({ "hasNextPage": true, "endCursor": null }),
            json!({ "hasNextPage": true }),
            json!({ "endCursor": "Y2" }),
            json!(null),
        ] {
            assert_eq!(at(&page(last.clone())), None, "{last}");
        }
    }

    #[test]
    fn graphql_errors_in_a_200_fail_the_page() {
        let c = graphql();
        let ok = raw(&json!({ "data": {}, "errors": [] }));
        assert!(check_answer(&c, &ok).is_ok());
        let failed = raw(&json!({ "data": null, "errors": [
            { "message": "Field 'issuez' doesn't exist" }, { "path": ["x"] },
            { "message": "c" }, { "message": "d" }
        ] }));
        let e = check_answer(&c, &failed).unwrap_err().to_string();
        assert_eq!(
            e,
            "the GraphQL answer holds errors: Field 'issuez' doesn't exist; (an error without a message); c; and 1 more"
        );
        // Other styles read no `errors` key.
        assert!(check_answer(&config(json!({ "style": "none" })), &failed).is_ok());
    }

    #[test]
    fn odata_next_links_are_followed_and_null_ends() {
        let c = config(json!({ "style": "next_url", "next_url_path": "[\"@odata.nextLink\"]" }));
        let at = |body: Value| {
            let body = raw(&body);
            next(
                &c,
                &Position::Start,
                &Answer {
                    body: &body,
                    link: None,
                },
                &Walked::default(),
            )
            .unwrap()
        };
        assert_eq!(
            at(
                json!({ "data": [], "@odata.nextLink": "https://api.example.com/v1/items?$skiptoken=2" })
            ),
            Some(Position::Url {
                url: "https://api.example.com/v1/items?$skiptoken=2".into()
            })
        );
        assert_eq!(at(json!({ "data": [], "@odata.nextLink": null })), None);
        assert_eq!(at(json!({ "data": [] })), None);
    }

    #[test]
    fn a_null_or_missing_cursor_ends_every_style() {
        let body = raw(
            &json!({ "data": [{ "id": null }, { "id": null }], "has_more": true, "next": null }),
        );
        let walked = walked(&records(&config(json!({ "style": "none" })), &body).unwrap());
        let answer = Answer {
            body: &body,
            link: None,
        };
        for style in [
            json!({ "style": "cursor", "param": "c", "cursor_path": "next" }),
            json!({ "style": "cursor", "param": "c", "cursor_path": "missing" }),
            json!({ "style": "cursor", "param": "c", "cursor_path": "next", "has_more_path": "has_more" }),
            json!({ "style": "cursor", "param": "c", "last_record_field": "id", "has_more_path": "has_more" }),
            json!({ "style": "next_url", "next_url_path": "next" }),
            json!({ "style": "link_header" }),
            json!({ "style": "none" }),
        ] {
            assert_eq!(
                next(&config(style.clone()), &Position::Start, &answer, &walked).unwrap(),
                None,
                "{style}"
            );
        }
        let empty = Answer {
            body: &body,
            link: Some(""),
        };
        assert_eq!(
            next(
                &config(json!({ "style": "link_header" })),
                &Position::Start,
                &empty,
                &walked
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn a_paginator_that_does_not_advance_is_caught() {
        let cursor = |c: &str| Position::Cursor { cursor: c.into() };
        let mut seen = Seen::new("search", &Position::Start);
        seen.note(&cursor("c1")).unwrap();
        let again = seen.note(&cursor("c1")).unwrap_err().to_string();
        assert!(
            again.starts_with("REST source search: the API handed out cursor \"c1\" again"),
            "{again}"
        );
        // A round back to an earlier position, and a next URL's query kept out of the message.
        let mut seen = Seen::new("odata", &Position::Start);
        let url = |n: u32| Position::Url {
            url: format!("https://h/items?token=t0k3n&page={n}"),
        };
        for n in 1..=3 {
            seen.note(&url(n)).unwrap();
        }
        let round = seen.note(&url(2)).unwrap_err().to_string();
        assert!(round.contains("the URL https://h/items again"), "{round}");
        assert!(!round.contains("t0k3n"), "{round}");
        // Bounded: the oldest positions are forgotten.
        let mut seen = Seen::new("long", &Position::Start);
        for page in 0..(SEEN_POSITIONS as u64 + 10) {
            seen.note(&Position::Page { page }).unwrap();
        }
        assert!(seen.hashes.len() <= SEEN_POSITIONS);
        assert!(seen.note(&Position::Page { page: 0 }).is_ok());
        assert!(seen
            .note(&Position::Page {
                page: SEEN_POSITIONS as u64 + 9
            })
            .is_err());
        let long = seen
            .note(&cursor(&"x".repeat(500)))
            .and_then(|_| seen.note(&cursor(&"x".repeat(500))));
        assert!(long.unwrap_err().to_string().contains("…"));
    }

    #[test]
    fn rows_map_columns_keep_the_rest_and_leave_keyless_records_out() {
        let c = config(json!({ "style": "none" }));
        let page = raw(&json!({ "data": [
            { "id": 1, "updated": "u0", "title": "old" },
            { "id": 2, "updated": "u3", "title": "y" },
            { "id": 1, "updated": "u1", "title": "x" },
            { "title": "no id", "updated": "u4" },
            7
        ] }));
        let page = rows(&c, &records(&c, &page).unwrap());
        assert_eq!(page.keyless, 2);
        assert_eq!(page.high_water.as_deref(), Some("u4"));
        assert_eq!(page.reread, 0);
        let mut maker = RowMaker::new(&c).rereading(Some("u1".into()));
        let listed = raw(
            &json!({ "data": [{ "id": 1, "updated": "u0" }, { "id": 2, "updated": "u1" }, { "id": 3, "updated": "u2" }] }),
        );
        for r in records(&c, &listed).unwrap() {
            maker.add(r, 3);
        }
        assert_eq!(
            maker.finish().reread,
            2,
            "u0 and u1 are at or below the mark"
        );
        let as_values = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        let expected = [
            json!({ "id": 2, "updated": "u3", "raw": { "title": "y" } }),
            json!({ "id": 1, "updated": "u1", "raw": { "title": "x" } }),
        ];
        assert_eq!(page.rows.len(), 2);
        assert_eq!(whole(&page.rows), json!(expected));
        let each: Vec<Value> = page.rows.iter().map(as_values).collect();
        assert_eq!(each, expected);
        let chunks: Vec<(Value, std::ops::Range<usize>)> = page
            .rows
            .chunks(1, 1 << 20)
            .into_iter()
            .map(|(text, rows)| (as_values(&format!("[{text}]")), rows))
            .collect();
        assert_eq!(
            chunks,
            [(json!([expected[0]]), 0..1), (json!([expected[1]]), 1..2)]
        );
        assert_eq!(page.rows.chunks(10, 1 << 20).len(), 1);
        assert_eq!(page.rows.chunks(10, 1).len(), 2);
        let unique = raw(&json!({ "data": [{ "id": 1 }, { "id": 2 }] }));
        let unique = rows(&c, &records(&c, &unique).unwrap());
        assert_eq!(
            whole(&unique.rows),
            json!([
                { "id": 1, "updated": null, "raw": {} },
                { "id": 2, "updated": null, "raw": {} }
            ])
        );
        assert!(rows(&c, &[]).rows.is_empty());
    }

    #[test]
    fn extra_keeps_what_nested_columns_leave() {
        let mut c = config(json!({ "style": "none" }));
        c.target.columns = [
            ("id", "id"),
            ("author_name", "author.name"),
            ("title", "title"),
        ]
        .iter()
        .map(|(c, p)| (c.to_string(), JsonPath::parse(p).unwrap()))
        .collect();
        let page = raw(&json!({ "data": [{
            "id": 1,
            "author": { "name": "a", "roles": ["x"], "address": { "zip": "1" } },
            "title": "t"
        }] }));
        let page = rows(&c, &records(&c, &page).unwrap());
        assert_eq!(
            whole(&page.rows),
            json!([{
                "id": 1,
                "author_name": "a",
                "title": "t",
                "raw": { "author": { "roles": ["x"], "address": { "zip": "1" } } }
            }])
        );
    }

    #[test]
    fn keys_find_their_earlier_row_even_when_hashes_collide() {
        let mut keys = KeyIndex::default();
        assert_eq!(keys.insert("[1]", 0), None);
        assert_eq!(keys.insert("[2]", 1), None);
        assert_eq!(keys.insert("[1]", 2), Some(0));
        assert_eq!(keys.insert("[1]", 3), Some(2));
        // "[3]" under a hash an earlier "[2]" holds, as if the two hashed alike.
        use std::hash::BuildHasher;
        let mut colliding = KeyIndex::default();
        colliding.text.push_str("[2]");
        colliding.at.push((0, 3));
        colliding
            .by_hash
            .insert(colliding.hasher.hash_one("[3]"), 0);
        assert_eq!(colliding.insert("[3]", 1), None);
        assert_eq!(colliding.insert("[3]", 2), Some(1));
        assert_eq!(colliding.insert("[2]", 3), None);
        assert_eq!(colliding.insert("[2]", 4), Some(3));
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
        let page = raw(&json!({ "data": [
            { "id": 1, "updated": "2024-01-02" },
            { "id": 2, "updated": "2024-03-01" },
        ] }));
        let page = rows(&c, &records(&c, &page).unwrap());
        assert_eq!(page.high_water.as_deref(), Some("2024-03-01"));
    }
}
