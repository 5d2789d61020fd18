//! What a record keeps for the `extra` column: everything no column's path takes. A taken
//! value leaves its object, and an object that taking leaves empty leaves its parent;
//! arrays stay whole (a path into an element fills its column, the array stays in extra),
//! as dropping an element would shift the ones after it.

use super::path::JsonPath;
use serde_json::{Map, Value};

/// The fields of `record` no path of `taken` reaches, the record itself moved in rather
/// than copied (a record is made into a row once). A record that is not an object, or
/// one a path takes whole (`$`), leaves nothing.
pub fn untaken(record: Value, taken: &[&JsonPath]) -> Map<String, Value> {
    let Value::Object(mut fields) = record else {
        return Map::new();
    };
    for path in taken {
        match path.steps().split_first() {
            Some((first, more)) => {
                take(&mut fields, first, more);
            }
            None => return Map::new(),
        }
    }
    fields
}

/// Removes `step`, then `more` below it, from `fields`; whether anything was removed.
fn take(fields: &mut Map<String, Value>, step: &str, more: &[String]) -> bool {
    let Some((next, rest)) = more.split_first() else {
        return fields.remove(step).is_some();
    };
    let Some(Value::Object(inner)) = fields.get_mut(step) else {
        return false;
    };
    let removed = take(inner, next, rest);
    if removed && inner.is_empty() {
        fields.remove(step);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rest(record: Value, paths: &[&str]) -> Value {
        let paths: Vec<JsonPath> = paths.iter().map(|p| JsonPath::parse(p).unwrap()).collect();
        let taken: Vec<&JsonPath> = paths.iter().collect();
        Value::Object(untaken(record, &taken))
    }

    #[test]
    fn a_nested_path_leaves_its_siblings() {
        let record = json!({
            "id": 1,
            "author": { "name": "a", "roles": ["x"], "address": { "zip": "1" } },
            "title": "t"
        });
        assert_eq!(
            rest(record, &["id", "author.name", "title"]),
            json!({ "author": { "roles": ["x"], "address": { "zip": "1" } } })
        );
    }

    #[test]
    fn parents_emptied_by_taking_go_others_stay() {
        let record = json!({ "a": { "b": { "c": 1 } }, "empty": {}, "d": { "e": 2, "f": 3 } });
        assert_eq!(
            rest(record, &["a.b.c", "d.e", "empty.x"]),
            json!({ "empty": {}, "d": { "f": 3 } })
        );
    }

    #[test]
    fn a_whole_object_taken_goes_whole() {
        let record = json!({ "id": 1, "author": { "name": "a", "roles": ["x"] } });
        assert_eq!(rest(record.clone(), &["id", "author"]), json!({}));
        assert_eq!(rest(record, &["author", "author.name"]), json!({ "id": 1 }));
    }

    #[test]
    fn arrays_stay_whole() {
        let record = json!({ "id": 1, "items": [{ "sku": "s", "n": 2 }, 3], "tags": ["x"] });
        assert_eq!(
            rest(record, &["id", "items.0.sku", "items.1"]),
            json!({ "items": [{ "sku": "s", "n": 2 }, 3], "tags": ["x"] })
        );
    }

    #[test]
    fn missing_paths_and_scalars_on_the_way_leave_the_record() {
        let record = json!({ "id": 1, "title": "t" });
        assert_eq!(
            rest(record, &["nothing", "title.deeper", "id.0"]),
            json!({ "id": 1, "title": "t" })
        );
    }

    #[test]
    fn the_whole_record_taken_or_no_object_leaves_nothing() {
        assert_eq!(rest(json!({ "id": 1 }), &["$"]), json!({}));
        assert_eq!(rest(json!([1, 2]), &["0"]), json!({}));
    }
}
