//! A listing sampled before a source exists (`rest_preview`, `rest_infer_table`): the
//! configuration checked as `rest_add_source` checks it, but `target` may be left out or
//! name only its table, and then each record's top-level fields are its columns. The
//! records become rows as a pull would map them, their columns typed as they go.

use super::config::{Auth, RestConfig};
use super::extra;
use super::infer::Columns;
use super::paging::higher;
use super::path::{scalar_text, JsonPath};
use crate::error::{InputError, Result};
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// The most pages a preview reads.
pub const MAX_PAGES: u32 = 10;
/// The rows a preview shows at most, and about how many bytes of them: the answer of a
/// call made in a session has a fixed room.
pub const SHOWN_ROWS: usize = 100;
pub const SHOWN_BYTES: usize = 64 << 10;
/// The columns taken from top-level fields at most; the other fields go to `extra`.
pub const MAX_COLUMNS: usize = 500;
/// The jsonb column of what no column takes, when the configuration names none.
const EXTRA: &str = "extra";

/// How records become rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// `target.columns`, as a pull maps them.
    Target,
    /// No `target.columns`: each top-level field that can name a column is one, and the
    /// primary key's and incremental field's paths are columns named by their steps.
    TopLevel,
}

/// A configuration to preview.
#[derive(Debug, Clone)]
pub struct PreviewConfig {
    /// The configuration checked as `rest_add_source` checks it. Without `target.columns`
    /// its target maps the key and incremental paths only (and names a placeholder table
    /// when no table is given).
    pub config: RestConfig,
    pub secret: Option<String>,
    pub mapping: Mapping,
    /// `target.table` as given.
    pub table: Option<String>,
    /// The jsonb column of what no column takes: `target.extra`, else `extra` when the
    /// records' top-level fields are the columns.
    pub extra: Option<String>,
}

/// The column a path fills when the configuration maps none: its steps (`id`, `meta.id`).
fn column_of(path: &JsonPath) -> String {
    path.steps().join(".")
}

/// The paths of `primary_key` and `incremental.field`, as written, where they are paths.
fn key_paths(obj: &Map<String, Value>) -> Vec<String> {
    let mut paths: Vec<String> = match obj.get("primary_key") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if let Some(Value::String(field)) = obj.get("incremental").and_then(|i| i.get("field")) {
        paths.push(field.clone());
    }
    paths
}

impl PreviewConfig {
    /// Checks `value` as `rest_add_source` would, the secret required where `auth` is
    /// given (nothing is stored to take it from). `target` may be left out, or give its
    /// `table` (and `extra`) without `columns`.
    pub fn parse(value: &Value) -> Result<PreviewConfig> {
        let preview = Self::read(value)?;
        if matches!(preview.config.auth, Auth::OAuth2(_)) {
            // An exchange may hand out a new refresh token and spend the old one; a
            // preview, which writes nothing, could not keep it.
            return Err(InputError::invalid(
                "config.auth of type \"oauth2\" cannot be previewed",
                "A token exchange may rotate the refresh token, which a preview writes nowhere: add the source with pullsync.rest_add_source and run pullsync.rest_pull.",
            ));
        }
        Ok(preview)
    }

    fn read(value: &Value) -> Result<PreviewConfig> {
        let target = value.get("target").filter(|t| !t.is_null());
        let has_columns = target
            .and_then(|t| t.get("columns"))
            .is_some_and(|c| !c.is_null());
        if has_columns || target.is_some_and(|t| !t.is_object()) {
            let (config, secret) = RestConfig::parse(value, true)?;
            return Ok(PreviewConfig {
                table: Some(config.target.table.clone()),
                extra: config.target.extra.clone(),
                config,
                secret,
                mapping: Mapping::Target,
            });
        }
        let mut whole = value.clone();
        let Some(obj) = whole.as_object_mut() else {
            let (config, secret) = RestConfig::parse(value, true)?;
            return Ok(PreviewConfig {
                table: None,
                extra: None,
                config,
                secret,
                mapping: Mapping::Target,
            });
        };
        let mut columns = Map::new();
        for text in key_paths(obj) {
            if let Some(path) = JsonPath::parse(&text) {
                columns.insert(column_of(&path), Value::String(text));
            }
        }
        let mut target = match obj.remove("target") {
            Some(Value::Object(t)) => t,
            _ => Map::new(),
        };
        let table = target
            .get("table")
            .and_then(Value::as_str)
            .map(str::to_string);
        target
            .entry("table")
            .or_insert_with(|| Value::String("preview".into()));
        target.insert("columns".into(), Value::Object(columns));
        obj.insert("target".into(), Value::Object(target));
        let (config, secret) = RestConfig::parse(&whole, true)?;
        Ok(PreviewConfig {
            table,
            extra: Some(
                config
                    .target
                    .extra
                    .clone()
                    .unwrap_or_else(|| EXTRA.to_string()),
            ),
            config,
            secret,
            mapping: Mapping::TopLevel,
        })
    }

    /// The columns the primary key fills.
    pub fn key_columns(&self) -> Vec<String> {
        self.config.target.key_columns(&self.config.primary_key)
    }
}

/// The top-level field names of an object, in the order the document gives them (a tree
/// of it would sort them); nothing for anything else.
fn top_level_fields(raw: &RawValue) -> Vec<String> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut fields: Vec<String> = Vec::new();
            while let Some(field) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if !fields.contains(&field) {
                    fields.push(field);
                }
            }
            Ok(fields)
        }
    }
    if !raw.get().starts_with('{') {
        return Vec::new();
    }
    serde_json::Deserializer::from_str(raw.get())
        .deserialize_map(Fields)
        .unwrap_or_default()
}

/// Whether a top-level field can be a column of its own: a path names it (no dot, no `$`
/// start, no blank around it) and PostgreSQL takes it as a column name.
fn column_field(field: &str) -> Option<JsonPath> {
    let ok = !field.is_empty() && field.len() <= 63 && !field.contains('\0');
    JsonPath::parse(field).filter(|p| ok && p.steps().len() == 1 && p.steps()[0] == field)
}

/// What the records of the pages read gave.
pub struct Sample<'c> {
    preview: &'c PreviewConfig,
    pub columns: Columns,
    /// The first rows, as many as `SHOWN_ROWS` and about `SHOWN_BYTES` allow.
    pub shown: Vec<Value>,
    shown_bytes: usize,
    /// Rows made (a key the page repeats makes a row each time; a pull keeps the last).
    pub rows: usize,
    /// Records without a complete primary key: a pull leaves them out.
    pub keyless: usize,
    /// The highest `incremental.field` among the records.
    pub high_water: Option<String>,
    /// Shown rows pass through this first (the extension takes the secret out).
    clean: &'c dyn Fn(Value) -> Value,
}

impl<'c> Sample<'c> {
    pub fn new(preview: &'c PreviewConfig, clean: &'c dyn Fn(Value) -> Value) -> Self {
        let mut columns = Columns::default();
        for (column, path) in &preview.config.target.columns {
            columns.add(column, path.as_str());
        }
        Sample {
            preview,
            columns,
            shown: Vec::new(),
            shown_bytes: 0,
            rows: 0,
            keyless: 0,
            high_water: None,
            clean,
        }
    }

    /// The columns a record fills, and the paths that fill them.
    fn mapped(&mut self, raw: &RawValue) -> Vec<(String, JsonPath)> {
        let config = &self.preview.config;
        let mut mapped = config.target.columns.clone();
        if self.preview.mapping == Mapping::TopLevel {
            for field in top_level_fields(raw) {
                if Some(&field) == self.preview.extra.as_ref()
                    || mapped.iter().any(|(c, _)| *c == field)
                {
                    continue;
                }
                let Some(path) = column_field(&field) else {
                    continue;
                };
                if !self.columns.contains(&field) && self.columns.len() >= MAX_COLUMNS {
                    continue;
                }
                self.columns.add(&field, path.as_str());
                mapped.push((field, path));
            }
        }
        mapped
    }

    /// Adds one record, as a pull would make it into a row.
    pub fn add(&mut self, raw: &RawValue) {
        let Ok(record) = serde_json::from_str::<Value>(raw.get()) else {
            self.keyless += 1;
            return;
        };
        let config = &self.preview.config;
        if let Some(inc) = &config.incremental {
            let mark = inc.field.get(&record).and_then(scalar_text);
            self.high_water = higher(self.high_water.take(), mark);
        }
        if config
            .primary_key
            .iter()
            .any(|k| k.get(&record).is_none_or(Value::is_null))
        {
            self.keyless += 1;
            return;
        }
        let mapped = self.mapped(raw);
        let mut row = Map::new();
        for (column, path) in &mapped {
            let value = path.get(&record).cloned().unwrap_or(Value::Null);
            self.columns.observe(column, &value);
            row.insert(column.clone(), value);
        }
        if let Some(extra) = &self.preview.extra {
            let taken: Vec<&JsonPath> = mapped.iter().map(|(_, p)| p).collect();
            row.insert(extra.clone(), Value::Object(extra::untaken(record, &taken)));
        }
        self.rows += 1;
        if self.shown.len() < SHOWN_ROWS {
            let row = (self.clean)(Value::Object(row));
            let bytes = row.to_string().len();
            if self.shown_bytes + bytes <= SHOWN_BYTES {
                self.shown_bytes += bytes;
                self.shown.push(row);
            }
        }
    }

    /// The sample's figures for the answer: rows shown and made, records left out, the
    /// highest mark, the columns and their types.
    pub fn summary(self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("rows_shown".into(), json!(self.shown.len()));
        out.insert("rows_total".into(), json!(self.rows));
        out.insert("left_out".into(), json!(self.keyless));
        out.insert("high_water".into(), json!(self.high_water));
        out.insert("columns".into(), json!(self.columns.into_list()));
        out.insert("rows".into(), Value::Array(self.shown));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::infer::Kind;
    use crate::rest::paging::each_record;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "base_url": "https://api.example.com",
            "path": "/v1/items",
            "records": "rows",
            "primary_key": "id",
            "pagination": { "style": "next_url", "next_url_path": "next_url" },
        })
    }

    fn same(v: Value) -> Value {
        v
    }

    fn sample(preview: &PreviewConfig, page: &str) -> Map<String, Value> {
        let body: &RawValue = serde_json::from_str(page).unwrap();
        let mut sample = Sample::new(preview, &same);
        each_record(&preview.config, body, |r, _| sample.add(r)).unwrap();
        sample.summary()
    }

    #[test]
    fn without_a_target_the_top_level_fields_are_the_columns() {
        let preview = PreviewConfig::parse(&base()).unwrap();
        assert_eq!(preview.mapping, Mapping::TopLevel);
        assert_eq!(preview.table, None);
        assert_eq!(preview.key_columns(), ["id"]);
        let out = sample(
            &preview,
            r#"{"rows": [
                {"name": "a", "id": 1, "price": 2, "a.b": 1, "extra": 5, "at": "2024-01-01T00:00:00Z", "tags": ["x"]},
                {"id": 2, "price": 2.5, "name": null, "at": "later", "new": true},
                {"name": "no key"}
            ]}"#,
        );
        let columns: Vec<(String, Kind)> =
            serde_json::from_value::<Vec<crate::rest::infer::Column>>(out["columns"].clone())
                .unwrap()
                .into_iter()
                .map(|c| (c.column, c.kind))
                .collect();
        let expected: Vec<(String, Kind)> = [
            ("id", Kind::Bigint),
            ("name", Kind::Text),
            ("price", Kind::Numeric),
            ("at", Kind::Text),
            ("tags", Kind::Jsonb),
            ("new", Kind::Boolean),
        ]
        .iter()
        .map(|(c, k)| (c.to_string(), *k))
        .collect();
        assert_eq!(columns, expected);
        assert_eq!(out["left_out"], 1);
        assert_eq!(out["rows_total"], 2);
        // A field no path can name, and one named like the extra column, stay in extra.
        assert_eq!(out["rows"][0]["extra"], json!({ "a.b": 1, "extra": 5 }));
        assert_eq!(
            out["rows"][1],
            json!({ "id": 2, "price": 2.5, "name": null, "at": "later", "new": true, "extra": {} })
        );
    }

    #[test]
    fn a_target_with_columns_maps_as_a_pull_does() {
        let mut config = base();
        config["incremental"] = json!({ "field": "meta.at", "param": "since" });
        config["target"] = json!({
            "table": "public.items",
            "columns": { "id": "id", "at": "meta.at" },
            "extra": "raw"
        });
        let preview = PreviewConfig::parse(&config).unwrap();
        assert_eq!(preview.mapping, Mapping::Target);
        assert_eq!(preview.table.as_deref(), Some("public.items"));
        let out = sample(
            &preview,
            r#"{"rows": [{"id": 1, "meta": {"at": "2024-01-02T00:00:00Z", "by": "x"}, "n": 1},
                         {"id": 2, "meta": {"at": "2024-01-03T00:00:00Z"}}]}"#,
        );
        assert_eq!(
            out["rows"][0],
            json!({ "id": 1, "at": "2024-01-02T00:00:00Z", "raw": { "meta": { "by": "x" }, "n": 1 } })
        );
        assert_eq!(out["high_water"], "2024-01-03T00:00:00Z");
        assert_eq!(
            out["columns"],
            json!([{ "column": "at", "path": "meta.at", "type": "timestamptz" },
                   { "column": "id", "path": "id", "type": "bigint" }])
        );
    }

    #[test]
    fn a_table_alone_names_the_table_and_keeps_the_top_level_mapping() {
        let mut config = base();
        config["incremental"] = json!({ "field": "meta.at", "param": "since" });
        config["target"] = json!({ "table": "public.items", "extra": "raw" });
        let preview = PreviewConfig::parse(&config).unwrap();
        assert_eq!(preview.mapping, Mapping::TopLevel);
        assert_eq!(preview.table.as_deref(), Some("public.items"));
        assert_eq!(preview.extra.as_deref(), Some("raw"));
        let out = sample(
            &preview,
            r#"{"rows": [{"id": 1, "meta": {"at": "2024-01-02T00:00:00Z", "by": "x"}}]}"#,
        );
        assert_eq!(
            out["rows"][0],
            json!({ "id": 1, "meta.at": "2024-01-02T00:00:00Z", "meta": { "at": "2024-01-02T00:00:00Z", "by": "x" }, "raw": {} })
        );
    }

    #[test]
    fn the_checks_of_rest_add_source_apply() {
        let mut no_key = base();
        no_key.as_object_mut().unwrap().remove("primary_key");
        assert!(PreviewConfig::parse(&no_key).is_err());
        let mut no_secret = base();
        no_secret["auth"] = json!({ "type": "bearer" });
        assert!(PreviewConfig::parse(&no_secret).is_err());
        let mut secret = base();
        secret["auth"] = json!({ "type": "bearer", "token": "t0ken" });
        assert_eq!(
            PreviewConfig::parse(&secret).unwrap().secret.as_deref(),
            Some("t0ken")
        );
        let mut bad_columns = base();
        bad_columns["target"] = json!({ "table": "t", "columns": { "name": "name" } });
        assert!(PreviewConfig::parse(&bad_columns).is_err());
        let mut not_object = base();
        not_object["target"] = json!("t");
        assert!(PreviewConfig::parse(&not_object).is_err());
        assert!(PreviewConfig::parse(&json!([1])).is_err());
        let mut oauth = base();
        oauth["auth"] = json!({ "type": "oauth2", "grant": "client_credentials",
            "token_url": "https://auth.example.com/token", "client_id": "c",
            "client_secret": "s3cret" });
        let refused = PreviewConfig::parse(&oauth).unwrap_err().to_string();
        assert!(
            refused.contains("oauth2") && !refused.contains("s3cret"),
            "{refused}"
        );
    }

    #[test]
    fn shown_rows_are_bounded_and_cleaned() {
        let preview = PreviewConfig::parse(&base()).unwrap();
        let records: Vec<Value> = (0..SHOWN_ROWS + 5)
            .map(|i| json!({ "id": i, "s": "secret" }))
            .collect();
        let page = json!({ "rows": records }).to_string();
        let body: &RawValue = serde_json::from_str(&page).unwrap();
        let clean = |v: Value| Value::String(v.to_string().replace("secret", "[redacted]"));
        let mut cleaned = Sample::new(&preview, &clean);
        each_record(&preview.config, body, |r, _| cleaned.add(r)).unwrap();
        let out = cleaned.summary();
        assert_eq!(out["rows_shown"], SHOWN_ROWS);
        assert_eq!(out["rows_total"], SHOWN_ROWS + 5);
        assert!(!out["rows"].to_string().contains("\"secret"));

        let big: Vec<Value> = (0..3)
            .map(|i| json!({ "id": i, "s": "x".repeat(SHOWN_BYTES / 2) }))
            .collect();
        let page = json!({ "rows": big }).to_string();
        let out = sample(&preview, &page);
        assert_eq!(out["rows_shown"], 1);
        assert_eq!(out["rows_total"], 3);
    }

    #[test]
    fn top_level_columns_are_capped() {
        let preview = PreviewConfig::parse(&base()).unwrap();
        let mut record = Map::new();
        record.insert("id".into(), json!(1));
        for i in 0..MAX_COLUMNS + 3 {
            record.insert(format!("f{i:04}"), json!(i));
        }
        let page = json!({ "rows": [record] }).to_string();
        let out = sample(&preview, &page);
        assert_eq!(out["columns"].as_array().unwrap().len(), MAX_COLUMNS);
        assert_eq!(out["rows"][0]["extra"].as_object().unwrap().len(), 4);
    }
}
