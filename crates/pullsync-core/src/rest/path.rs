//! JSON paths as the REST configuration writes them: dotted keys and array indexes,
//! optionally after `$.` (`data`, `meta.next_cursor`, `$.links.next`, `items.0.id`); the
//! empty path (or `$`) is the whole document.

use serde_json::Value;

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

    /// The value at this path, to change or move out of it.
    pub fn get_mut<'a>(&self, value: &'a mut Value) -> Option<&'a mut Value> {
        self.steps.iter().try_fold(value, |v, step| match v {
            Value::Object(map) => map.get_mut(step),
            Value::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        })
    }

    /// The first key: the top-level field a record's mapping takes.
    pub fn top(&self) -> Option<&str> {
        self.steps.first().map(String::as_str)
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
    fn scalars_become_text() {
        assert_eq!(scalar_text(&json!("x")), Some("x".into()));
        assert_eq!(scalar_text(&json!(12)), Some("12".into()));
        assert_eq!(scalar_text(&json!(null)), None);
        assert_eq!(scalar_text(&json!({})), None);
    }
}
