//! Fan-out: a source whose parents come from a SQL query (`for_each`), one listing per
//! parent. Here are its pure parts: the configuration, the `{name}` placeholders of `path`
//! and `query`, a parent's values and key, and each parent's own configuration with its
//! values in place (percent-encoded in the path, so a value never leaves its segment).

use super::config::RestConfig;
use super::path::{scalar_text, JsonPath};
use crate::error::{InputError, Result};
use crate::http::urlencode;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The first step of a column's or key's path that reads a parent value, not the record:
/// `$parent.repo`.
pub const PARENT: &str = "$parent";

/// `for_each`: the query that lists the parents, and which of its columns fills each
/// placeholder (`"as": {"repo": "id"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForEach {
    pub query: String,
    /// (placeholder, column of the query), in placeholder order.
    pub bind: Vec<(String, String)>,
}

fn bad(key: &str, problem: impl std::fmt::Display, hint: impl Into<String>) -> InputError {
    InputError::invalid(format!("config.{key} {problem}"), hint)
}

/// A placeholder's name: what `{…}` holds and `$parent.` names.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// One piece of a template: text as written, or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(String),
}

/// A text with `{name}` placeholders (`/repos/{repo}/issues`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

impl Template {
    /// Parses `text`; the error says what is wrong (an unclosed `{`, a `}` alone, a bad name).
    pub fn parse(text: &str) -> std::result::Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("has a '}}' without '{{' in {text:?}"));
            }
            let close = rest[open..]
                .find('}')
                .map(|i| open + i)
                .ok_or_else(|| format!("has a '{{' without '}}' in {text:?}"))?;
            let name = &rest[open + 1..close];
            if !is_name(name) {
                return Err(format!("has a placeholder {{{name}}} that is not a name"));
            }
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            parts.push(Part::Slot(name.to_string()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Slot(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text with each placeholder replaced by the parent's value, percent-encoded when
    /// `encode` (a path: `/`, `?`, `#` and the rest stay inside their segment).
    fn render(&self, parent: &Parent, encode: bool) -> String {
        self.0
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.clone(),
                Part::Slot(name) => {
                    let value = parent.text(name).unwrap_or_default();
                    if encode {
                        urlencode(&value)
                    } else {
                        value
                    }
                }
            })
            .collect()
    }
}

/// A parent: its value for each placeholder, as the query gave it (a number stays one for
/// the columns that take it).
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    values: BTreeMap<String, Value>,
}

impl Parent {
    /// The parent a row of the query (a JSON object of its columns) gives; None when a
    /// bound column is null, an object or an array (no text to put in a URL).
    pub fn from_row(bind: &[(String, String)], row: &Value) -> Option<Parent> {
        let mut values = BTreeMap::new();
        for (name, column) in bind {
            let value = row.get(column)?;
            scalar_text(value)?;
            values.insert(name.clone(), value.clone());
        }
        Some(Parent { values })
    }

    /// A placeholder's value as text.
    pub fn text(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(scalar_text)
    }

    /// The values as one JSON object (what `$parent.` paths read).
    pub fn values(&self) -> Map<String, Value> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// What the parent's state is kept under: its values as text, by placeholder (`{"repo":
    /// "42"}`), so a column's type changing from int to text keeps the parent the same.
    pub fn key(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(scalar_text(v).unwrap_or_default())))
                .collect(),
        )
    }
}

/// The value a `$parent.name` path reads from `parent`: `Some(value)` for such a path (null
/// when the name has none), None for a path into the record.
pub fn parent_value<'a>(
    path: &JsonPath,
    parent: Option<&'a Map<String, Value>>,
) -> Option<Option<&'a Value>> {
    match path.steps() {
        [top, name] if top == PARENT => Some(parent.and_then(|p| p.get(name))),
        _ => None,
    }
}

/// Why a parent cannot be pulled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParentError {
    #[error("its path {0:?} would hold an empty, \".\" or \"..\" segment")]
    DotSegment(String),
}

/// The configuration of `parent`'s listing: the path with its values percent-encoded, the
/// query's values with its values in place (sent encoded as every parameter is). A value
/// that would make a segment empty, `.` or `..` is refused: URL parsers drop such
/// segments (`%2E%2E` too), which would move the request to another path.
pub fn child_config(
    config: &RestConfig,
    parent: &Parent,
) -> std::result::Result<RestConfig, ParentError> {
    let mut child = config.clone();
    let template = Template::parse(&config.path).unwrap_or_else(|_| Template(vec![]));
    let path = template.render(parent, true);
    let dotted = |segment: &str| {
        let decoded = segment.replace("%2E", ".").replace("%2e", ".");
        decoded.is_empty() || decoded == "." || decoded == ".."
    };
    // Encoded values hold no '/': the segments of the path are the template's.
    let filled = config.path.split('/').zip(path.split('/'));
    if filled
        .into_iter()
        .any(|(written, segment)| written.contains('{') && dotted(segment))
    {
        return Err(ParentError::DotSegment(path));
    }
    child.path = path;
    for (_, value) in &mut child.query {
        if let Ok(t) = Template::parse(value) {
            *value = t.render(parent, false);
        }
    }
    Ok(child)
}

/// Reads `for_each` and checks it against the rest of the configuration: every placeholder
/// of `path` and of `query`'s values is named in `as`, and every `$parent.` path of the
/// columns and key names one; other paths may not read the parent. Without `for_each`, a
/// `$parent.` path is refused and `path` is taken as written.
pub fn parse(value: Option<&Value>, config: &RestConfig) -> Result<Option<ForEach>> {
    let hint = "Pass {\"query\": \"SELECT id FROM public.repos\", \"as\": {\"repo\": \"id\"}} and write {repo} in path.";
    let for_each = match value.filter(|v| !v.is_null()) {
        None => None,
        Some(Value::Object(f)) => Some(parse_object(f, hint)?),
        Some(_) => return Err(bad("for_each", "must be a JSON object", hint)),
    };
    let named = |name: &str| {
        for_each
            .as_ref()
            .is_some_and(|f| f.bind.iter().any(|(n, _)| n == name))
    };
    if for_each.is_some() {
        let path = Template::parse(&config.path).map_err(|e| bad("path", e, hint))?;
        for name in path.placeholders() {
            if !named(name) {
                return Err(bad(
                    "path",
                    format!("has {{{name}}}, which for_each.as does not name"),
                    hint,
                ));
            }
        }
        for (key, value) in &config.query {
            let t = Template::parse(value).map_err(|e| bad(&format!("query.{key}"), e, hint))?;
            let unnamed = t.placeholders().find(|n| !named(n)).map(str::to_string);
            if let Some(name) = unnamed {
                return Err(bad(
                    &format!("query.{key}"),
                    format!("has {{{name}}}, which for_each.as does not name"),
                    hint,
                ));
            }
        }
    }
    for (column, path) in &config.target.columns {
        if path.top() == Some(PARENT) {
            let ok = matches!(path.steps(), [_, name] if named(name));
            if !ok {
                return Err(bad(
                    &format!("target.columns.{column}"),
                    format!("reads {:?}, which names no value of for_each.as", path.as_str()),
                    "Map a column to \"$parent.<name>\", a name of for_each.as, to store the parent's value with its children.",
                ));
            }
        }
    }
    let reads_parent = |p: &JsonPath| p.top() == Some(PARENT);
    if config
        .incremental
        .as_ref()
        .is_some_and(|i| reads_parent(&i.field))
        || reads_parent(&config.records)
    {
        return Err(bad(
            "incremental",
            "and records read the API's answer, not the parent",
            "Use $parent. only in target.columns and primary_key.",
        ));
    }
    Ok(for_each)
}

fn parse_object(f: &Map<String, Value>, hint: &str) -> Result<ForEach> {
    if let Some(k) = f.keys().find(|k| !["query", "as"].contains(&k.as_str())) {
        return Err(bad(
            &format!("for_each.{k}"),
            "is not a key pg_pullsync knows",
            "Known keys here: query, as.",
        ));
    }
    let query = match f.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => {
            q.trim().trim_end_matches(';').trim_end().to_string()
        }
        _ => {
            return Err(bad(
                "for_each.query",
                "must be a SELECT as a non-empty string",
                hint,
            ))
        }
    };
    let mut bind = Vec::new();
    match f.get("as") {
        Some(Value::Object(map)) if !map.is_empty() => {
            for (name, column) in map {
                if !is_name(name) {
                    return Err(bad(
                        &format!("for_each.as.{name}"),
                        "is not a placeholder name",
                        "Use letters, digits and '_', not starting with a digit.",
                    ));
                }
                match column.as_str().filter(|c| !c.is_empty()) {
                    Some(c) => bind.push((name.clone(), c.to_string())),
                    None => {
                        return Err(bad(
                            &format!("for_each.as.{name}"),
                            "must name a column of the query",
                            hint,
                        ))
                    }
                }
            }
        }
        _ => {
            return Err(bad(
                "for_each.as",
                "must map placeholders to columns of the query",
                hint,
            ))
        }
    }
    Ok(ForEach { query, bind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(path: &str) -> Value {
        json!({
            "base_url": "https://api.example.com",
            "path": path,
            "query": { "state": "all", "repo": "{repo}" },
            "primary_key": ["$parent.repo", "id"],
            "for_each": { "query": "SELECT id, login FROM public.repos;", "as": { "repo": "id", "owner": "login" } },
            "target": { "table": "public.issues", "columns": { "repo_id": "$parent.repo", "id": "id" } }
        })
    }

    fn parsed(value: &Value) -> RestConfig {
        RestConfig::parse(value, false).unwrap().0
    }

    fn parent(repo: Value) -> Parent {
        Parent::from_row(
            &[
                ("owner".into(), "login".into()),
                ("repo".into(), "id".into()),
            ],
            &json!({ "id": repo, "login": "acme" }),
        )
        .unwrap()
    }

    #[test]
    fn for_each_parses_and_is_checked_against_path_query_and_columns() {
        let c = parsed(&config("/orgs/{owner}/repos/{repo}/issues"));
        let f = c.for_each.clone().unwrap();
        assert_eq!(f.query, "SELECT id, login FROM public.repos");
        assert_eq!(
            f.bind,
            [
                ("owner".to_string(), "login".to_string()),
                ("repo".to_string(), "id".to_string())
            ]
        );
        assert_eq!(c.target.key_columns(&c.primary_key), ["repo_id", "id"]);

        let refused = |change: &dyn Fn(&mut Value)| {
            let mut v = config("/repos/{repo}/issues");
            change(&mut v);
            RestConfig::parse(&v, false).unwrap_err().to_string()
        };
        assert!(refused(&|v| v["path"] = json!("/repos/{org}/issues"))
            .starts_with("config.path has {org}"));
        assert!(refused(&|v| v["path"] = json!("/repos/{repo/issues")).starts_with("config.path"));
        assert!(refused(&|v| v["query"]["x"] = json!("{nope}")).starts_with("config.query.x"));
        assert!(
            refused(&|v| v["target"]["columns"]["other"] = json!("$parent.nope"))
                .starts_with("config.target.columns.other")
        );
        assert!(
            refused(&|v| v["for_each"]["query"] = json!(" ")).starts_with("config.for_each.query")
        );
        assert!(refused(&|v| v["for_each"]["as"] = json!({})).starts_with("config.for_each.as"));
        assert!(refused(&|v| v["for_each"]["as"] = json!({ "1x": "id" }))
            .starts_with("config.for_each.as.1x"));
        assert!(
            refused(&|v| v["for_each"]["where"] = json!(1)).starts_with("config.for_each.where")
        );
        assert!(refused(&|v| {
            v.as_object_mut().unwrap().remove("for_each");
        })
        .starts_with("config.target.columns.repo_id"));
    }

    #[test]
    fn without_for_each_a_path_is_taken_as_written() {
        let mut v = config("/literal/{braces}");
        v.as_object_mut().unwrap().remove("for_each");
        v["primary_key"] = json!("id");
        v["query"] = json!({ "q": "{x}" });
        v["target"]["columns"] = json!({ "id": "id" });
        let c = parsed(&v);
        assert_eq!((c.for_each, c.path.as_str()), (None, "/literal/{braces}"));
    }

    #[test]
    fn a_parent_value_stays_inside_its_segment() {
        let c = parsed(&config("/repos/{repo}/issues"));
        let path = |repo: &str| child_config(&c, &parent(json!(repo))).map(|c| c.path);
        assert_eq!(path("42").unwrap(), "/repos/42/issues");
        assert_eq!(path("../admin").unwrap(), "/repos/..%2Fadmin/issues");
        assert_eq!(path("x?y#z").unwrap(), "/repos/x%3Fy%23z/issues");
        assert_eq!(
            path("http://evil").unwrap(),
            "/repos/http%3A%2F%2Fevil/issues"
        );
        assert_eq!(path("a b%2F").unwrap(), "/repos/a%20b%252F/issues");
        for dots in ["..", ".", ""] {
            assert!(path(dots).is_err(), "{dots:?}");
        }
        // The query's values are filled raw; request_url encodes every parameter.
        let child = child_config(&c, &parent(json!("a&b=c"))).unwrap();
        assert!(child
            .query
            .contains(&("repo".to_string(), "a&b=c".to_string())));
        let url = crate::rest::paging::request_url(
            &child,
            &crate::rest::paging::Position::Start,
            None,
            None,
        );
        assert_eq!(
            url,
            "https://api.example.com/repos/a%26b%3Dc/issues?repo=a%26b%3Dc&state=all"
        );
    }

    #[test]
    fn a_parent_has_typed_values_and_a_text_key() {
        let p = parent(json!(42));
        assert_eq!(p.key(), json!({ "owner": "acme", "repo": "42" }));
        assert_eq!(p.values()["repo"], json!(42));
        assert_eq!(p.key(), parent(json!("42")).key());
        let bind = [("repo".to_string(), "id".to_string())];
        assert!(Parent::from_row(&bind, &json!({ "id": null })).is_none());
        assert!(Parent::from_row(&bind, &json!({ "id": [1] })).is_none());
        assert!(Parent::from_row(&bind, &json!({ "other": 1 })).is_none());
    }

    #[test]
    fn parent_paths_read_the_parent() {
        let values = parent(json!(7)).values();
        let at =
            |p: &str| parent_value(&JsonPath::parse(p).unwrap(), Some(&values)).map(|v| v.cloned());
        assert_eq!(at("$parent.repo"), Some(Some(json!(7))));
        assert_eq!(at("$parent.none"), Some(None));
        assert_eq!(at("id"), None);
        assert_eq!(at("$parent.repo.deeper"), None);
    }

    #[test]
    fn a_childs_row_holds_its_parent_and_its_key_includes_it() {
        let mut v = config("/repos/{repo}/issues");
        v["target"]["extra"] = json!("raw");
        let c = parsed(&v);
        let page: Box<serde_json::value::RawValue> =
            serde_json::from_str(r#"[{"id": 1, "title": "a"}, {"id": 1, "title": "b"}]"#).unwrap();
        let rows_of = |repo: i64| {
            let values = parent(json!(repo)).values();
            let mut maker = crate::rest::paging::RowMaker::for_parent(&c, &values);
            crate::rest::paging::each_record(&c, &page, |r, of| maker.add(r, of)).unwrap();
            let rows = maker.finish().rows;
            rows.iter()
                .map(|r| serde_json::from_str::<Value>(r).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rows_of(7),
            [json!({ "repo_id": 7, "id": 1, "raw": { "title": "b" } })]
        );
        assert_eq!(rows_of(8)[0]["repo_id"], json!(8));
    }

    #[test]
    fn templates_parse() {
        let t = Template::parse("/a/{x}-{y_1}/b").unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["x", "y_1"]);
        assert!(Template::parse("/a/}").is_err());
        assert!(Template::parse("/a/{}").is_err());
        assert!(Template::parse("/a/{x-y}").is_err());
        assert!(Template::parse("/plain")
            .unwrap()
            .placeholders()
            .next()
            .is_none());
    }
}
