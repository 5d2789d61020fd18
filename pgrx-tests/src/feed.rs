//! The feed's tables as a comparable value.

use postgres::Client;
use std::collections::BTreeMap;

/// (conversations, messages): every row as id → digest of its content.
pub fn rows(db: &mut Client) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let digests = |db: &mut Client, sql: &str| -> BTreeMap<String, String> {
        db.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    (
        digests(
            db,
            "SELECT id, md5(row(user_id, started_at, ended_at, last_message_at, updated_at)::text) FROM pullsync.conversations",
        ),
        digests(
            db,
            "SELECT id, md5(row(conversation_id, role, content_redacted, risk_level, risk_categories, created_at, updated_at)::text)
               FROM pullsync.conversation_messages",
        ),
    )
}
