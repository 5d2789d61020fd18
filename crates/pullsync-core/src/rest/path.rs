//! JSON paths as the REST configuration writes them: dotted keys and array indexes,
//! optionally after `$.` (`data`, `meta.next_cursor`, `$.links.next`, `items.0.id`); a key
//! that holds dots or other signs is quoted as a JSON string in brackets
//! (`["@odata.nextLink"]`, `data["a.b"].c`). The empty path (or `$`) is the whole document.

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
    /// Parses `text`; None when a plain step is empty (`a..b`) or a quoted one is not a
    /// JSON string closed by `]`.
    pub fn parse(text: &str) -> Option<JsonPath> {
        let trimmed = text.trim();
        let body = if trimmed == "$" {
            ""
        } else if trimmed.starts_with("$[\"") {
            &trimmed[1..]
        } else {
            trimmed.strip_prefix("$.").unwrap_or(trimmed)
        };
        Some(JsonPath {
            text: trimmed.to_string(),
            steps: steps(body)?,
        })
    }

    /// Puts `value` at this path in `doc`, making the objects on the way (and replacing
    /// what is not one); the whole path replaces `doc`.
    pub fn set(&self, doc: &mut Value, value: Value) {
        let Some((last, way)) = self.steps.split_last() else {
            *doc = value;
            return;
        };
        let mut at = doc;
        for step in way {
            if !at.is_object() {
                *at = Value::Object(Default::default());
            }
            at = at
                .as_object_mut()
                .expect("made an object above")
                .entry(step.clone())
                .or_insert(Value::Null);
        }
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        if let Value::Object(map) = at {
            map.insert(last.clone(), value);
        }
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

/// The steps of a path's text: plain ones between dots, quoted ones (`["a.b"]`) after a
/// step or a dot, or first.
fn steps(mut rest: &str) -> Option<Vec<String>> {
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('[').filter(|r| r.starts_with('"')) {
            let mut stream = serde_json::Deserializer::from_str(quoted).into_iter::<String>();
            let key = stream.next()?.ok()?;
            rest = quoted[stream.byte_offset()..].strip_prefix(']')?;
            steps.push(key);
        } else {
            let end = rest
                .char_indices()
                .find(|&(i, c)| c == '.' || rest[i..].starts_with("[\""))
                .map_or(rest.len(), |(i, _)| i);
            if end == 0 {
                return None;
            }
            steps.push(rest[..end].to_string());
            rest = &rest[end..];
        }
        // After a step: the end, a quoted step, or a dot and another step.
        if let Some(after_dot) = rest.strip_prefix('.') {
            if after_dot.is_empty() {
                return None;
            }
            rest = after_dot;
        } else if !rest.is_empty() && !rest.starts_with("[\"") {
            return None;
        }
    }
    Some(steps)
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
    fn quoted_steps_name_keys_with_dots_and_signs() {
        let doc = json!({
            "@odata.nextLink": "https://h/n",
            "value": [{ "a.b": { "c": 1 } }],
            "items[0]": 2
        });
        let at = |p: &str| JsonPath::parse(p).unwrap().get(&doc).cloned();
        assert_eq!(at(r#"["@odata.nextLink"]"#), Some(json!("https://h/n")));
        assert_eq!(at(r#"$["@odata.nextLink"]"#), Some(json!("https://h/n")));
        assert_eq!(at(r#"value.0["a.b"].c"#), Some(json!(1)));
        assert_eq!(at(r#"value.0.["a.b"].c"#), Some(json!(1)));
        // Brackets without a quote stay part of a plain key, as before.
        assert_eq!(at("items[0]"), Some(json!(2)));
        assert_eq!(at("@odata.nextLink"), None);
        let raw: Box<RawValue> = serde_json::from_str(&doc.to_string()).unwrap();
        assert_eq!(
            JsonPath::parse(r#"["@odata.nextLink"]"#)
                .unwrap()
                .get_value(&raw),
            Some(json!("https://h/n"))
        );
        for bad in [r#"["a"#, r#"["a"x"#, r#"["a"]x"#, r#"a.["b"]."#, "a.", ".a"] {
            assert!(JsonPath::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn set_makes_the_objects_on_the_way() {
        let mut body = json!({ "query": "q", "variables": { "first": 5 }, "page": 3 });
        JsonPath::parse("variables.after")
            .unwrap()
            .set(&mut body, json!("c1"));
        JsonPath::parse("page.number")
            .unwrap()
            .set(&mut body, json!(2));
        JsonPath::parse("filter.since")
            .unwrap()
            .set(&mut body, json!("s"));
        assert_eq!(
            body,
            json!({
                "query": "q",
                "variables": { "first": 5, "after": "c1" },
                "page": { "number": 2 },
                "filter": { "since": "s" }
            })
        );
    }

    #[test]
    fn scalars_become_text() {
        assert_eq!(scalar_text(&json!("x")), Some("x".into()));
        assert_eq!(scalar_text(&json!(12)), Some("12".into()));
        assert_eq!(scalar_text(&json!(null)), None);
        assert_eq!(scalar_text(&json!({})), None);
    }
}
