//! The feed's two streams, named once: what each is called, where a provider serves it,
//! the table it lives in, the time reconciliation counts it by, its bookmark column, the
//! JSON of one of its rows, and how a consumer upserts a page of them.

use crate::error::{PullsyncError, Result};

pub struct Stream {
    pub name: &'static str,
    /// Where a provider serves the whole stream.
    pub path: &'static str,
    pub table: &'static str,
    /// The time a provider and its consumers count rows by (`/stats`, reconciliation).
    pub counted_by: &'static str,
    /// The column of `sync_bookmarks` that holds a consumer's last cursor of it.
    pub bookmark_column: &'static str,
    /// A row as a provider serves it (an SQL expression over the table's columns).
    pub row_json: &'static str,
    /// Upserts a page: `$1` the items as a JSON array, `$2` the source they came from. An
    /// older version never overwrites a newer one.
    pub upsert: &'static str,
}

pub const CONVERSATIONS: Stream = Stream {
    name: "conversations",
    path: "/conversations",
    table: "pullsync.conversations",
    counted_by: "started_at",
    bookmark_column: "last_conversation_cursor",
    row_json: "jsonb_build_object('id', id, 'user_id', user_id, 'started_at', started_at,
    'ended_at', ended_at, 'last_message_at', last_message_at, 'updated_at', updated_at)",
    upsert: "
INSERT INTO pullsync.conversations AS c (feed_source, id, user_id, started_at, ended_at, last_message_at, updated_at)
SELECT $2, x.id, x.user_id, x.started_at, x.ended_at, x.last_message_at, x.updated_at
  FROM jsonb_to_recordset($1::jsonb) AS x(id text, user_id text, started_at timestamptz, ended_at timestamptz,
                                   last_message_at timestamptz, updated_at timestamptz)
ON CONFLICT (feed_source, id) DO UPDATE SET user_id = EXCLUDED.user_id, started_at = EXCLUDED.started_at,
       ended_at = EXCLUDED.ended_at, last_message_at = EXCLUDED.last_message_at, updated_at = EXCLUDED.updated_at
 WHERE c.updated_at <= EXCLUDED.updated_at",
};

pub const MESSAGES: Stream = Stream {
    name: "messages",
    path: "/messages",
    table: "pullsync.conversation_messages",
    counted_by: "created_at",
    bookmark_column: "last_message_cursor",
    row_json: "jsonb_build_object('id', id, 'conversation_id', conversation_id, 'role', role,
    'content_redacted', content_redacted, 'risk', jsonb_build_object('level', risk_level, 'categories', to_jsonb(risk_categories)),
    'created_at', created_at, 'updated_at', updated_at)",
    // The newest version of each id in the page; a message that moved to another
    // conversation loses its old row (the key holds the conversation), unless that row is
    // newer.
    upsert: "
WITH x AS (
    SELECT DISTINCT ON (x.id) x.*
      FROM jsonb_to_recordset($1::jsonb) AS x(id text, conversation_id text, role text, content_redacted text,
                                              risk jsonb, created_at timestamptz, updated_at timestamptz)
     ORDER BY x.id, x.updated_at DESC),
moved AS (
    DELETE FROM pullsync.conversation_messages m USING x
     WHERE m.feed_source = $2 AND m.id = x.id AND m.conversation_id IS DISTINCT FROM x.conversation_id
       AND m.updated_at <= x.updated_at)
INSERT INTO pullsync.conversation_messages AS m
       (feed_source, id, conversation_id, role, content_redacted, risk_level, risk_categories, created_at, updated_at)
SELECT $2, x.id, x.conversation_id, x.role, x.content_redacted, coalesce(x.risk->>'level', 'none'),
       coalesce(ARRAY(SELECT jsonb_array_elements_text(x.risk->'categories')), '{}'), x.created_at, x.updated_at
  FROM x
 WHERE NOT EXISTS (SELECT 1 FROM pullsync.conversation_messages o
                    WHERE o.feed_source = $2 AND o.id = x.id AND o.conversation_id IS DISTINCT FROM x.conversation_id
                      AND o.updated_at > x.updated_at)
ON CONFLICT (feed_source, conversation_id, id) DO UPDATE SET role = EXCLUDED.role,
       content_redacted = EXCLUDED.content_redacted, risk_level = EXCLUDED.risk_level,
       risk_categories = EXCLUDED.risk_categories, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
 WHERE m.updated_at <= EXCLUDED.updated_at",
};

/// Both, in the order a pull reads them.
pub const ALL: [&Stream; 2] = [&CONVERSATIONS, &MESSAGES];

/// The stream called `name` (a request's `kind`).
pub fn named(name: &str) -> Result<&'static Stream> {
    ALL.into_iter().find(|s| s.name == name).ok_or_else(|| {
        PullsyncError::invalid(
            format!("unknown kind {name:?}"),
            "Pass 'conversations' or 'messages'.",
        )
    })
}
