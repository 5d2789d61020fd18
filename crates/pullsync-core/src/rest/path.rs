//! JSON paths as the REST configuration writes them: dotted keys and array indexes,
//! optionally after `$.` (`data`, `meta.next_cursor`, `$.links.next`, `items.0.id`); the
//! empty path (or `$`) is the whole document.

use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<String>,
}

impl JsonPath {
    /// Parses `text`; None when a step is empty (`a..b`).
    pub fn parse(text: &str) -> Option<JsonPath> {
        let trimmed = text.trim();
        let body = trimmed
            .strip_prefix("$.")
            .or_else(|| (trimmed == "$").then_some(""))
            .unwrap_or(trimmed);
        let steps: Vec<String> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('.').map(str::to_string).collect()
        };
        if steps.iter().any(String::is_empty) {
            return None;
        }
        Some(JsonPath {
            text: trimmed.to_string(),
            steps,
        })
    }

    /// The value at this path, if there is one.
    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.steps.iter().try_fold(value, |v, step| match v {
            Value::Object(map) => map.get(step),
            Value::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }

    /// The text of the value at this path in a document read as text, without building
    /// the document's tree: only the objects and arrays on the way are split, each into
    /// slices of its members (a duplicate key: the last one, as a tree keeps it).
    pub fn get_raw<'a>(&self, value: &'a RawValue) -> Option<&'a RawValue> {
        self.steps.iter().try_fold(value, |v, step| {
            let text = v.get();
            match text.as_bytes().first()? {
                b'{' => serde_json::from_str::<HashMap<String, &RawValue>>(text)
                    .ok()?
                    .remove(step.as_str()),
                b'[' => {
                    let i = step.parse::<usize>().ok()?;
                    serde_json::from_str::<Vec<&RawValue>>(text)
                        .ok()?
                        .get(i)
                        .copied()
                }
                _ => None,
            }
        })
    }

    /// The value at this path in a document read as text, as a tree of its own.
    pub fn get_value(&self, value: &RawValue) -> Option<Value> {
        serde_json::from_str(self.get_raw(value)?.get()).ok()
    }

    /// The first step; None for the whole document.
    pub fn top(&self) -> Option<&str> {
        self.steps.first().map(String::as_str)
    }

    /// The keys and indexes, outermost first.
    pub fn steps(&self) -> &[String] {
        &self.steps
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A scalar as the text a query parameter or a high-water mark holds; None for null,
/// objects and arrays.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_keys_and_indexes() {
        let doc = json!({ "meta": { "next": "c2" }, "data": [{ "id": 7 }] });
        assert_eq!(
            JsonPath::parse("meta.next").unwrap().get(&doc),
            Some(&json!("c2"))
        );
        assert_eq!(
            JsonPath::parse("$.data.0.id").unwrap().get(&doc),
            Some(&json!(7))
        );
        assert_eq!(JsonPath::parse("$").unwrap().get(&doc), Some(&doc));
        assert_eq!(JsonPath::parse("").unwrap().get(&doc), Some(&doc));
        assert_eq!(JsonPath::parse("data.3").unwrap().get(&doc), None);
        assert_eq!(JsonPath::parse("meta.next.deeper").unwrap().get(&doc), None);
        assert!(JsonPath::parse("a..b").is_none());
    }

    #[test]
    fn paths_reach_into_a_document_read_as_text() {
        let doc: Box<RawValue> = serde_json::from_str(
            r#"{ "meta": { "next": "c1", "next": "c2" }, "data": [{ "id": 7 }, 8] }"#,
        )
        .unwrap();
        let at = |p: &str| JsonPath::parse(p).unwrap().get_value(&doc);
        assert_eq!(at("meta.next"), Some(json!("c2")));
        assert_eq!(at("$.data.0.id"), Some(json!(7)));
        assert_eq!(at("data.1"), Some(json!(8)));
        assert_eq!(
            JsonPath::parse("data")
                .unwrap()
                .get_raw(&doc)
                .unwrap()
                .get(),
            r#"[{ "id": 7 }, 8]"#
        );
        assert_eq!(at("$").unwrap()["meta"]["next"], json!("c2"));
        assert_eq!(at("data.3"), None);
        assert_eq!(at("data.x"), None);
        assert_eq!(at("meta.next.deeper"), None);
    }

    #[test]
    fn scalars_become_text() {
        assert_eq!(scalar_text(&json!("x")), Some("x".into()));
        assert_eq!(scalar_text(&json!(12)), Some("12".into()));
        assert_eq!(scalar_text(&json!(null)), None);
        assert_eq!(scalar_text(&json!({})), None);
    }
}
