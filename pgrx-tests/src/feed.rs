//! The feed's tables as a comparable value, and the provider and consumers the feed tests
//! share.

use crate::db::{connect, fresh_extension_database};
use postgres::Client;
use std::collections::BTreeMap;

/// Rows of a feed table: id → digest of the content.
pub type Digests = BTreeMap<String, String>;

/// (conversations, messages): every row as id → digest of its content. For a database
/// that holds the rows of one source only.
pub fn rows(db: &mut Client) -> (Digests, Digests) {
    rows_where(db, "true", &[])
}

/// (conversations, messages) of one `feed_source` ('' for the database's own rows).
pub fn rows_from(db: &mut Client, feed_source: &str) -> (Digests, Digests) {
    rows_where(db, "feed_source = $1", &[&feed_source])
}

fn rows_where(
    db: &mut Client,
    filter: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> (Digests, Digests) {
    let mut digests = |sql: String| -> Digests {
        db.query(&sql, args)
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    (
        digests(format!(
            "SELECT id, md5(row(user_id, started_at, ended_at, last_message_at, updated_at)::text)
               FROM pullsync.conversations WHERE {filter}"
        )),
        digests(format!(
            "SELECT id, md5(row(conversation_id, role, content_redacted, risk_level, risk_categories, created_at, updated_at)::text)
               FROM pullsync.conversation_messages WHERE {filter}"
        )),
    )
}

/// The provider database of the test cluster, served by its feed server.
pub const PROVIDER: &str = "it_workers";

/// The provider database is one for the whole cluster: the tests of one binary that fill
/// it take turns (cargo runs a binary's tests on several threads).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
/// The provider with `conversations` conversations and `messages` messages; half the rows
/// share one timestamp, all share one writing transaction.
pub fn provider(conversations: i32, messages: i32, key: &str) -> Client {
    let mut p = connect(PROVIDER);
    p.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_pullsync")
        .unwrap();
    p.batch_execute(
        "TRUNCATE pullsync.conversations, pullsync.conversation_messages, pullsync.feed_consumers CASCADE",
    )
    .unwrap();
    // A generous rate: these tests pull hundreds of pages at once.
    p.execute(
        "SELECT pullsync.feed_add_consumer('partner', $1, 1000000)",
        &[&key],
    )
    .unwrap();
    p.execute(
        "INSERT INTO pullsync.conversations (id, user_id, started_at, ended_at, last_message_at, updated_at)
         SELECT 'c' || g, 'u' || (g % 50), t, t + interval '5 min', t + interval '4 min', t
           FROM generate_series(1, $1) g,
                LATERAL (SELECT CASE WHEN g % 2 = 0 THEN timestamptz '2026-06-01 12:00:00+00'
                                     ELSE timestamptz '2026-06-01 12:00:00+00' + g * interval '1 s' END AS t) ts",
        &[&conversations],
    )
    .unwrap();
    p.execute(
        "INSERT INTO pullsync.conversation_messages
                (id, conversation_id, role, content_redacted, risk_level, risk_categories, created_at, updated_at)
         SELECT 'm' || g, 'c' || (g % $2 + 1), (ARRAY['user', 'assistant'])[g % 2 + 1], 'redacted text ' || g || ' 🙂',
                (ARRAY['none', 'low', 'high'])[g % 3 + 1], CASE WHEN g % 3 = 2 THEN ARRAY['pii', 'self_harm'] ELSE '{}' END,
                t, t
           FROM generate_series(1, $1) g,
                LATERAL (SELECT CASE WHEN g % 2 = 0 THEN timestamptz '2026-06-01 12:00:00+00'
                                     ELSE timestamptz '2026-06-01 12:00:00+00' + g * interval '1 ms' END AS t) ts",
        &[&messages, &conversations],
    )
    .unwrap();
    p
}

/// A fresh consumer database with the source `partner` pointing at `url`.
pub fn consumer(name: &str, url: &str, key: &str, batch: i32) -> Client {
    let mut c = fresh_extension_database(name);
    c.execute(
        "SELECT pullsync.feed_add_source('partner', $1, $2, batch_size => $3, rate_limit => 10000, timeout => '10 s',
                                         max_retries => 2, retry_delay => '10 ms')",
        &[&url, &key, &batch],
    )
    .unwrap();
    c
}

/// A message of a feed as a provider that is not pg_pullsync may send it.
pub fn foreign_message(id: &str, role: &str, level: &str, created: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "conversation_id": "fc1", "role": role, "content_redacted": "text",
        "risk": { "level": level, "categories": [] }, "created_at": created, "updated_at": created,
    })
}

/// A feed provider that is not pg_pullsync: one page of `messages` (which may hold items no
/// pg_pullsync schema accepts), no conversations; it checks no key.
pub fn foreign_provider(messages: Vec<serde_json::Value>) -> crate::local_server::LocalServer {
    foreign_provider_of(Vec::new(), messages)
}

/// A foreign feed provider with one page of each stream.
pub fn foreign_provider_of(
    conversations: Vec<serde_json::Value>,
    messages: Vec<serde_json::Value>,
) -> crate::local_server::LocalServer {
    use axum::routing::get;
    let messages = serde_json::json!({
        "items": messages, "next_cursor": null, "checkpoint": "foreign-messages-1",
    });
    let conversations = serde_json::json!({
        "items": conversations, "next_cursor": null, "checkpoint": "foreign-conversations-1",
    });
    let app = axum::Router::new()
        .route(
            "/conversations",
            get(move || async move { axum::Json(conversations.clone()) }),
        )
        .route(
            "/messages",
            get(move || async move { axum::Json(messages.clone()) }),
        );
    crate::local_server::LocalServer::start(app, 0, 1, "foreign-feed").expect("foreign feed")
}

/// A foreign feed provider that pages: `page` items per page, cursors `o<offset>`, the last
/// page's checkpoint resuming after everything (an empty page). It checks no key.
pub fn paged_foreign_provider(
    conversations: Vec<serde_json::Value>,
    messages: Vec<serde_json::Value>,
    page: usize,
) -> crate::local_server::LocalServer {
    use axum::extract::Query;
    use axum::routing::get;
    use std::collections::HashMap;
    use std::sync::Arc;
    let serve = |items: Arc<Vec<serde_json::Value>>| {
        move |Query(query): Query<HashMap<String, String>>| {
            let items = items.clone();
            async move {
                let from = query
                    .get("cursor")
                    .and_then(|c| c.strip_prefix('o'))
                    .and_then(|o| o.parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(items.len());
                let to = (from + page).min(items.len());
                let more = to < items.len();
                axum::Json(serde_json::json!({
                    "items": items[from..to],
                    "next_cursor": more.then(|| format!("o{to}")),
                    "checkpoint": format!("o{to}"),
                }))
            }
        }
    };
    let app = axum::Router::new()
        .route("/conversations", get(serve(Arc::new(conversations))))
        .route("/messages", get(serve(Arc::new(messages))));
    crate::local_server::LocalServer::start(app, 0, 2, "paged-foreign-feed")
        .expect("paged foreign feed")
}
