//! The REST source's SQL calls as the integration tests make them.

use postgres::Client;
use serde_json::Value;

/// `rest_add_source(name, config)`, which must succeed.
pub fn add(db: &mut Client, name: &str, config: &Value) {
    db.execute("SELECT pullsync.rest_add_source($1, $2)", &[&name, config])
        .unwrap();
}

/// `rest_pull(name)`'s answer.
pub fn pull(db: &mut Client, name: &str) -> Value {
    db.query_one("SELECT pullsync.rest_pull($1)", &[&name])
        .unwrap()
        .get(0)
}
