//! A table proposed for sampled records (`rest_infer_table`): each column's type inferred
//! from the values it took, widened where they disagree, and the `CREATE TABLE` statement
//! with every identifier quoted as PostgreSQL needs it, whatever an API named its fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// A column's type, as the values seen suggest it. The types form a lattice: `Unknown`
/// (only nulls seen) below everything, `Bigint` below `Numeric`, every scalar type below
/// `Text`, and `Text` below `Jsonb`, which takes any JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Unknown,
    Boolean,
    Bigint,
    Numeric,
    Timestamptz,
    Text,
    Jsonb,
}

impl Kind {
    /// The type a value suggests: an RFC 3339 string is a time, an object or array jsonb.
    pub fn of(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Unknown,
            Value::Bool(_) => Kind::Boolean,
            Value::Number(n) if n.is_i64() => Kind::Bigint,
            Value::Number(_) => Kind::Numeric,
            Value::String(s) if is_rfc3339(s) => Kind::Timestamptz,
            Value::String(_) => Kind::Text,
            Value::Array(_) | Value::Object(_) => Kind::Jsonb,
        }
    }

    /// The narrowest type that holds values of both.
    pub fn widen(self, other: Kind) -> Kind {
        use Kind::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Unknown, k) | (k, Unknown) => k,
            (Bigint, Numeric) | (Numeric, Bigint) => Numeric,
            (Jsonb, _) | (_, Jsonb) => Jsonb,
            _ => Text,
        }
    }

    /// The column type; a column that held only nulls is text.
    pub fn sql(self) -> &'static str {
        match self {
            Kind::Unknown | Kind::Text => "text",
            Kind::Boolean => "boolean",
            Kind::Bigint => "bigint",
            Kind::Numeric => "numeric",
            Kind::Timestamptz => "timestamptz",
            Kind::Jsonb => "jsonb",
        }
    }
}

/// `2024-05-01T12:00:00Z`, `2024-05-01 12:00:00.5+02:00`: a date, `T` or a blank, a time
/// and a zone, as RFC 3339 writes it and PostgreSQL reads it (year 1 onwards).
fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 20
        && matches!(bytes[10], b'T' | b' ')
        && !text.starts_with("0000")
        && (text.ends_with('Z') || matches!(bytes[bytes.len() - 6], b'+' | b'-'))
        && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

/// A proposed column: its name, the path that fills it, and its type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub column: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: Kind,
}

/// The columns of a sample, in the order they were first met, each typed by every value
/// it took.
#[derive(Debug, Default)]
pub struct Columns {
    list: Vec<Column>,
    index: HashMap<String, usize>,
}

impl Columns {
    /// Adds `column`, filled from `path`, unless there is one of that name.
    pub fn add(&mut self, column: &str, path: &str) {
        if !self.index.contains_key(column) {
            self.index.insert(column.to_string(), self.list.len());
            self.list.push(Column {
                column: column.to_string(),
                path: path.to_string(),
                kind: Kind::Unknown,
            });
        }
    }

    pub fn contains(&self, column: &str) -> bool {
        self.index.contains_key(column)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Widens `column`'s type by `value` (a column not added is ignored).
    pub fn observe(&mut self, column: &str, value: &Value) {
        if let Some(&i) = self.index.get(column) {
            let c = &mut self.list[i];
            c.kind = c.kind.widen(Kind::of(value));
        }
    }

    pub fn into_list(self) -> Vec<Column> {
        self.list
    }
}

/// PostgreSQL's reserved keywords and those that cannot name a column (kwlist.h of 15
/// and 18: RESERVED_KEYWORD and TYPE_FUNC_NAME_KEYWORD); such a name is quoted.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// `name` as an SQL identifier: as it is when PostgreSQL reads it back unchanged (lower
/// case letters, digits and `_`, not first a digit, no reserved word), else in double
/// quotes with each `"` doubled.
pub fn quote_identifier(name: &str) -> String {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A table name as `to_regclass` reads it (`public.items`, `"My Schema"."Items"`): its
/// parts, an unquoted part folded to lower case. None when it is not such a name.
fn name_parts(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return None;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => {}
            Some(_) => return None,
        }
    }
    (parts.len() <= 2).then_some(parts)
}

/// The table to create, qualified and quoted: `target.table` read as PostgreSQL reads a
/// table name (a text that is none is taken as one name, quoted); without one, `default`
/// in schema `public`.
pub fn table_name(given: Option<&str>, default: &str) -> String {
    let parts = match given {
        Some(text) => name_parts(text).unwrap_or_else(|| vec![text.to_string()]),
        None => vec![default.to_string()],
    };
    let parts = if parts.len() == 1 {
        vec!["public".to_string(), parts[0].clone()]
    } else {
        parts
    };
    parts
        .iter()
        .map(|p| quote_identifier(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// A table's name from an endpoint's last step (`/v1/customers` → `customers`), made
/// lower case letters, digits and `_`; `records` when nothing is left.
pub fn name_from_path(path: &str) -> String {
    let last = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_matches('_');
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        "records".to_string()
    } else {
        name.to_string()
    }
}

/// The first of `extra`, `extra_1`, `extra_2`, … that no column has: the jsonb column for
/// what no column takes.
pub fn free_extra(columns: &[Column]) -> String {
    let taken = |name: &str| columns.iter().any(|c| c.column == name);
    std::iter::once("extra".to_string())
        .chain((1..).map(|i| format!("extra_{i}")))
        .find(|name| !taken(name))
        .expect("an unbounded list has a free name")
}

/// What `rest_infer_table` proposes: the table, then the `target` to give
/// `rest_add_source` for it.
pub struct Proposal<'a> {
    /// Quoted and qualified (`table_name`).
    pub table: &'a str,
    pub columns: &'a [Column],
    pub keys: &'a [String],
    pub extra: &'a str,
}

impl Proposal<'_> {
    /// `CREATE TABLE …;` with a column per sampled column, the key as its primary key and
    /// the extra jsonb column last, then the configuration's `target` as a comment (its
    /// JSON on one line: no name can end the comment).
    pub fn sql(&self) -> String {
        let mut lines: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("    {} {}", quote_identifier(&c.column), c.kind.sql()))
            .collect();
        lines.push(format!("    {} jsonb", quote_identifier(self.extra)));
        if !self.keys.is_empty() {
            let keys: Vec<String> = self.keys.iter().map(|k| quote_identifier(k)).collect();
            lines.push(format!("    PRIMARY KEY ({})", keys.join(", ")));
        }
        let columns: serde_json::Map<String, Value> = self
            .columns
            .iter()
            .map(|c| (c.column.clone(), Value::String(c.path.clone())))
            .collect();
        let target = serde_json::json!({
            "table": self.table,
            "columns": columns,
            "extra": self.extra,
        });
        format!(
            "CREATE TABLE {} (\n{}\n);\n-- \"target\": {}\n",
            self.table,
            lines.join(",\n"),
            target
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind_of_all(values: &[Value]) -> Kind {
        values
            .iter()
            .fold(Kind::Unknown, |k, v| k.widen(Kind::of(v)))
    }

    #[test]
    fn values_suggest_their_types() {
        assert_eq!(Kind::of(&json!(true)), Kind::Boolean);
        assert_eq!(Kind::of(&json!(-7)), Kind::Bigint);
        assert_eq!(Kind::of(&json!(u64::MAX)), Kind::Numeric);
        assert_eq!(Kind::of(&json!(1.5)), Kind::Numeric);
        assert_eq!(Kind::of(&json!(3.0)), Kind::Numeric);
        assert_eq!(Kind::of(&json!("2024-05-01T12:00:00Z")), Kind::Timestamptz);
        assert_eq!(
            Kind::of(&json!("2024-05-01 12:00:00.25+02:00")),
            Kind::Timestamptz
        );
        assert_eq!(Kind::of(&json!({ "a": 1 })), Kind::Jsonb);
        assert_eq!(Kind::of(&json!([1])), Kind::Jsonb);
        assert_eq!(Kind::of(&json!(null)), Kind::Unknown);
        for text in [
            "hello",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-13-01T12:00:00Z",
            "0000-01-01T00:00:00Z",
            "2024-05-01t12:00:00z",
            "12",
        ] {
            assert_eq!(Kind::of(&json!(text)), Kind::Text, "{text}");
        }
    }

    #[test]
    fn conflicting_values_widen() {
        assert_eq!(kind_of_all(&[json!(1), json!(2.5)]), Kind::Numeric);
        assert_eq!(kind_of_all(&[json!(null), json!(1)]), Kind::Bigint);
        assert_eq!(
            kind_of_all(&[json!("2024-05-01T12:00:00Z"), json!("soon")]),
            Kind::Text
        );
        assert_eq!(kind_of_all(&[json!(true), json!(1)]), Kind::Text);
        assert_eq!(kind_of_all(&[json!(1), json!("1")]), Kind::Text);
        assert_eq!(kind_of_all(&[json!("a"), json!([1])]), Kind::Jsonb);
        assert_eq!(kind_of_all(&[json!({}), json!(1.5)]), Kind::Jsonb);
        assert_eq!(kind_of_all(&[json!(null)]).sql(), "text");
    }

    #[test]
    fn widening_does_not_depend_on_the_order_of_values() {
        let values = [
            json!(null),
            json!(true),
            json!(1),
            json!(1.5),
            json!("2024-05-01T12:00:00Z"),
            json!("x"),
            json!([]),
        ];
        let kinds: Vec<Kind> = values.iter().map(Kind::of).collect();
        for &a in &kinds {
            for &b in &kinds {
                assert_eq!(a.widen(b), b.widen(a));
                for &c in &kinds {
                    assert_eq!(a.widen(b).widen(c), a.widen(b.widen(c)));
                }
            }
        }
    }

    #[test]
    fn identifiers_are_quoted_when_postgres_would_read_them_otherwise() {
        assert_eq!(quote_identifier("id"), "id");
        assert_eq!(quote_identifier("updated_at2"), "updated_at2");
        assert_eq!(quote_identifier("updatedAt"), "\"updatedAt\"");
        assert_eq!(quote_identifier("order"), "\"order\"");
        assert_eq!(quote_identifier("user"), "\"user\"");
        assert_eq!(quote_identifier("2fa"), "\"2fa\"");
        assert_eq!(quote_identifier("a b"), "\"a b\"");
        assert_eq!(quote_identifier("é"), "\"é\"");
        assert_eq!(
            quote_identifier("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }

    #[test]
    fn table_names_are_read_as_postgres_reads_them() {
        assert_eq!(table_name(Some("public.items"), "x"), "public.items");
        assert_eq!(table_name(Some("Items"), "x"), "public.items");
        assert_eq!(
            table_name(Some("\"My Schema\".\"Items\""), "x"),
            "\"My Schema\".\"Items\""
        );
        assert_eq!(table_name(None, "customers"), "public.customers");
        assert_eq!(
            table_name(Some("x; DROP TABLE y"), "z"),
            "public.\"x; DROP TABLE y\""
        );
        assert_eq!(table_name(Some("a.b.c"), "z"), "public.\"a.b.c\"");
        assert_eq!(table_name(Some("\"a\"\"b\""), "z"), "public.\"a\"\"b\"");
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(name_from_path("/v1/customers"), "customers");
        assert_eq!(name_from_path("/items/items.json"), "items_json");
        assert_eq!(name_from_path("/api/"), "api");
        assert_eq!(name_from_path(""), "records");
        assert_eq!(name_from_path("/v1/2024"), "records");
    }

    #[test]
    fn the_extra_column_takes_a_free_name() {
        let column = |name: &str| Column {
            column: name.into(),
            path: name.into(),
            kind: Kind::Text,
        };
        assert_eq!(free_extra(&[column("id")]), "extra");
        assert_eq!(free_extra(&[column("extra"), column("extra_1")]), "extra_2");
    }

    #[test]
    fn columns_keep_their_first_order_and_widen() {
        let mut columns = Columns::default();
        columns.add("id", "id");
        columns.add("price", "price");
        columns.add("id", "other");
        columns.observe("price", &json!(1));
        columns.observe("price", &json!(2.5));
        columns.observe("nowhere", &json!(1));
        let list = columns.into_list();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].column.as_str(), list[0].path.as_str()),
            ("id", "id")
        );
        assert_eq!(list[0].kind, Kind::Unknown);
        assert_eq!(list[1].kind, Kind::Numeric);
    }

    #[test]
    fn a_proposal_is_one_statement_whatever_the_names() {
        let hostile = "a\"; DROP TABLE x; --";
        let columns = vec![
            Column {
                column: "id".into(),
                path: "id".into(),
                kind: Kind::Bigint,
            },
            Column {
                column: hostile.into(),
                path: hostile.into(),
                kind: Kind::Text,
            },
            Column {
                column: "line\nbreak".into(),
                path: "line\nbreak".into(),
                kind: Kind::Jsonb,
            },
        ];
        let sql = Proposal {
            table: &table_name(Some("public.items"), "x"),
            columns: &columns,
            keys: &["id".to_string()],
            extra: "extra",
        }
        .sql();
        assert_eq!(
            sql,
            "CREATE TABLE public.items (\n    id bigint,\n    \"a\"\"; DROP TABLE x; --\" text,\n    \"line\nbreak\" jsonb,\n    extra jsonb,\n    PRIMARY KEY (id)\n);\n-- \"target\": {\"columns\":{\"a\\\"; DROP TABLE x; --\":\"a\\\"; DROP TABLE x; --\",\"id\":\"id\",\"line\\nbreak\":\"line\\nbreak\"},\"extra\":\"extra\",\"table\":\"public.items\"}\n"
        );
        // The comment is one line: nothing a name holds ends it.
        let (_, comment) = sql.split_once(");\n--").unwrap();
        assert_eq!(comment.trim_end().lines().count(), 1);
    }
}
