//! The provider end of the conversation feed: pages of this database's own conversations
//! and messages (`feed_source = ''`, never rows pulled from elsewhere) in (change_xid, id)
//! order with opaque cursors, per-consumer bookmarks, counts and ids for reconciliation.
//! SPI; the SQL functions and the HTTP feed server both call these.

use super::streams::{self, CONVERSATIONS, MESSAGES};
use crate::config;
use crate::error::{PullsyncError, Result};
use crate::pg_time::to_pg;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pullsync_core::feed::cursor::{self, Cursor, CursorError, Position};
use pullsync_core::feed::page_fill::PageFill;
use serde_json::{json, Value};

pub const MAX_PAGE: i32 = 5000;
const IDS_PAGE: i64 = 1000;

fn bad_cursor(e: CursorError) -> PullsyncError {
    match e {
        CursorError::OtherProvider => PullsyncError::CursorFromOtherProvider(e),
        _ => PullsyncError::InvalidCursor(e),
    }
}

/// Who serves: the identity cursors are bound to, and the first transaction id not yet
/// handed out.
pub(crate) struct Identity {
    pub origin: String,
    pub next_xid: u64,
    /// Every transaction below it has ended: rows at lower xids are all served or never.
    pub horizon_xid: u64,
}

/// The system identifier, the timeline (from the current WAL file name: it changes on
/// promotion and point-in-time recovery at once) and the feed epoch. A standby's timeline
/// lags a promotion it follows, so what it issues is marked as a standby's and accepted
/// by no primary, nor the primary's by it.
const IDENTITY: &str = "
SELECT (SELECT system_identifier FROM pg_control_system())::text || ':' ||
       CASE WHEN pg_is_in_recovery()
            THEN 'standby-' || lpad(upper(to_hex((pg_control_checkpoint()).timeline_id)), 8, '0')
            ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END || ':' ||
       coalesce((SELECT epoch FROM pullsync.feed_epoch)::text, '0'),
       pg_snapshot_xmax(pg_current_snapshot())::text,
       pg_snapshot_xmin(pg_current_snapshot())::text";

pub(crate) fn identity() -> Result<Identity> {
    // `select`, not Spi::get_*: a read must not assign a transaction id.
    let (origin, next_xid, horizon_xid) = Spi::connect(|client| {
        client
            .select(IDENTITY, Some(1), &[])?
            .first()
            .get_three::<String, String, String>()
    })?;
    // Cursors are readable by their holders: they carry a digest, not the identifiers.
    let origin = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(origin.unwrap_or_default().as_bytes());
        digest[..12].iter().map(|b| format!("{b:02x}")).collect()
    };
    let xid = |x: Option<String>| x.and_then(|x| x.parse().ok());
    Ok(Identity {
        origin,
        next_xid: xid(next_xid).unwrap_or(u64::MAX),
        horizon_xid: xid(horizon_xid).unwrap_or(0),
    })
}

/// Opens a cursor of `stream` issued by this provider. A position at or past the next
/// transaction id is one this provider never handed out: it was issued before the
/// provider's history was rewound (a file-level restore), whatever the identity says.
fn open(text: &str, key: &[u8], stream: &str, who: &Identity, now: i64) -> Result<Cursor> {
    let cursor = cursor::decode(text, key, stream, &who.origin, now).map_err(bad_cursor)?;
    if cursor.position.xid >= who.next_xid {
        return Err(bad_cursor(CursorError::OtherProvider));
    }
    Ok(cursor)
}

pub(crate) fn cursor_key() -> Result<[u8; 32]> {
    Ok(config::sealing_key()?.derive("pg_pullsync feed cursor v1"))
}

fn salt() -> u64 {
    use rand::RngCore;
    rand::rngs::OsRng.next_u64()
}

/// Checks that the consumer exists and is active.
pub fn require_consumer(consumer_id: &str) -> Result<()> {
    let active = Spi::get_one_with_args::<bool>(
        "SELECT (SELECT is_active FROM pullsync.feed_consumers WHERE consumer_id = $1)",
        &[consumer_id.into()],
    )?;
    match active {
        Some(true) => Ok(()),
        Some(false) => Err(PullsyncError::invalid(
            format!("feed consumer {consumer_id} is disabled"),
            "Enable it again: UPDATE pullsync.feed_consumers SET is_active = true …",
        )),
        None => Err(PullsyncError::NotFound {
            message: format!("feed consumer {consumer_id} does not exist"),
            hint: "Add it with pullsync.feed_add_consumer(consumer_id, api_key).".into(),
        }),
    }
}

fn check_limit(lim: i32) -> Result<i64> {
    if !(1..=MAX_PAGE).contains(&lim) {
        return Err(PullsyncError::invalid(
            format!("lim must be between 1 and {MAX_PAGE}, not {lim}"),
            "Pass a page size such as 500.",
        ));
    }
    Ok(i64::from(lim))
}

/// Which rows a page reads.
pub enum Stream<'a> {
    Conversations {
        updated_after: Option<DateTime<Utc>>,
        user_id: Option<&'a str>,
    },
    ConversationMessages {
        conversation_id: &'a str,
    },
    AllMessages {
        updated_after: Option<DateTime<Utc>>,
    },
}

impl Stream<'_> {
    /// The stream a cursor belongs to. Filters are part of it: a position within a
    /// filtered order must not be resumed without the filter, or rows would be skipped.
    fn name(&self) -> String {
        let filtered = |base: &str, after: &Option<DateTime<Utc>>, user: Option<&str>| {
            let mut name = base.to_string();
            if let Some(t) = after {
                name.push_str(&format!("?updated_after={}", t.timestamp_micros()));
            }
            if let Some(u) = user {
                name.push_str(&format!("?user_id={u}"));
            }
            name
        };
        match self {
            Stream::Conversations {
                updated_after,
                user_id,
            } => filtered(CONVERSATIONS.name, updated_after, *user_id),
            Stream::ConversationMessages { conversation_id } => {
                format!("messages:{conversation_id}")
            }
            Stream::AllMessages { updated_after } => filtered(MESSAGES.name, updated_after, None),
        }
    }

    /// For a whole stream filtered by updated_after alone: the unfiltered stream's name.
    fn unfiltered_name(&self) -> Option<&'static str> {
        match self {
            Stream::Conversations {
                updated_after: Some(_),
                user_id: None,
            } => Some(CONVERSATIONS.name),
            Stream::AllMessages {
                updated_after: Some(_),
            } => Some(MESSAGES.name),
            _ => None,
        }
    }

    /// Only the unfiltered whole streams move a consumer's bookmark.
    fn is_whole(&self) -> bool {
        matches!(
            self,
            Stream::Conversations {
                updated_after: None,
                user_id: None
            } | Stream::AllMessages {
                updated_after: None
            }
        )
    }
}

/// Reads up to `limit` rows of (item JSON text, position xid, id) within the page byte
/// budget: the items, the last row's position, and whether there is more.
fn read_bounded(
    sql: &str,
    args: &[pgrx::datum::DatumWithOid],
    limit: usize,
) -> Result<(Vec<Value>, Option<Position>, bool)> {
    Spi::connect(|client| {
        let mut rows = client.try_open_cursor(sql, args)?;
        let mut page = PageFill::new(limit, super::settings::page_max_bytes());
        let mut last: Option<Position> = None;
        // Fetched a few rows at a time, sized by the largest row seen so far, so a page of
        // big rows never holds much more than its byte budget.
        while let Some(chunk) = page.next_fetch() {
            let fetched = rows.fetch(chunk as libc::c_long)?;
            if fetched.is_empty() {
                break;
            }
            for row in fetched {
                let item: String = row.get(1)?.unwrap_or_default();
                if !page.admit(item.len()) {
                    break;
                }
                let xid: Option<String> = row.get(2)?;
                let id: Option<String> = row.get(3)?;
                page.items
                    .push(serde_json::from_str(&item).unwrap_or(Value::Null));
                last = Some(Position {
                    xid: xid.and_then(|x| x.parse().ok()).unwrap_or(0),
                    id: id.unwrap_or_default(),
                });
            }
            // SPI keeps every fetched batch until the connection ends; this one is read.
            // SAFETY: SPI_tuptable is the batch just fetched, no longer referenced.
            unsafe { pgrx::pg_sys::SPI_freetuptable(pgrx::pg_sys::SPI_tuptable) };
        }
        Ok((page.items, last, page.more))
    })
}

/// One page of a stream for a consumer: `{"items": […], "next_cursor": …, "checkpoint": …}`.
/// `next_cursor` is null on the last page; `checkpoint` always marks where the page ended,
/// for resuming later.
pub fn page(
    consumer_id: &str,
    stream: Stream,
    cursor_text: Option<&str>,
    lim: i32,
) -> Result<Value> {
    require_consumer(consumer_id)?;
    let limit = check_limit(lim)?;
    let key = cursor_key()?;
    let who = identity()?;
    let name = stream.name();
    let now = Utc::now().timestamp();
    let from = match cursor_text {
        Some(text) => resume_from(text, &stream, &name, &key, &who, now)?,
        None => Position::start(),
    };
    let (items, last, more) = stream.query().read(&from, limit)?;
    let (end, checkpoint_stream) = page_end(&stream, &name, last.unwrap_or(from), more, &who);
    let checkpoint = cursor::encode(
        &Cursor {
            position: end,
            stream: checkpoint_stream,
            origin: who.origin.clone(),
            issued_at: now,
        },
        &key,
        salt(),
    );
    let served = items.len() as i64;
    if stream.is_whole() {
        record_bookmark(consumer_id, &name, &checkpoint, served)?;
    }
    Ok(json!({
        "items": items,
        "next_cursor": if more { Some(checkpoint.clone()) } else { None },
        "checkpoint": checkpoint,
    }))
}

/// The position a cursor of `stream` (named `name`) goes on from. A filtered request may
/// go on from a position of the unfiltered order (the end of an earlier filtered read hands
/// one out, see `page_end`): the filter only drops rows.
fn resume_from(
    text: &str,
    stream: &Stream,
    name: &str,
    key: &[u8],
    who: &Identity,
    now: i64,
) -> Result<Position> {
    match (open(text, key, name, who, now), stream.unfiltered_name()) {
        (Err(PullsyncError::InvalidArgument { .. }), Some(whole)) => {
            Ok(open(text, key, whole, who, now)?.position)
        }
        (opened, _) => Ok(opened?.position),
    }
}

/// Where a page's checkpoint stands, and the stream it belongs to: the last row served
/// (`end`) in the page's own stream. Once a read of changes after updated_after has reached
/// the end, what follows is every later change: its checkpoint goes on in the unfiltered
/// order, from where the read could see (every row below the horizon it skipped is older
/// than the filter).
fn page_end(
    stream: &Stream,
    name: &str,
    end: Position,
    more: bool,
    who: &Identity,
) -> (Position, String) {
    match stream.unfiltered_name() {
        Some(whole) if !more => {
            let horizon = Position {
                xid: who.horizon_xid,
                id: String::new(),
            };
            let end = if (horizon.xid, &horizon.id) > (end.xid, &end.id) {
                horizon
            } else {
                end
            };
            (end, whole.to_string())
        }
        _ => (end, name.to_string()),
    }
}

/// A page's statement and the filters it binds: `$4` (updated_after) and `$5` (the user or
/// the conversation).
struct PageQuery {
    sql: String,
    updated_after: Option<pgrx::datum::TimestampWithTimeZone>,
    id_filter: Option<String>,
}

impl Stream<'_> {
    /// The statement of a page of this stream. Rows written by transactions still running
    /// are not served yet: everything below the oldest running transaction is final, so
    /// nothing can appear behind a cursor later. The text copy of change_xid has its own
    /// name: ORDER BY change_xid must mean the xid8 column (numeric order, the index), not
    /// the text ('10000' < '9999').
    fn query(&self) -> PageQuery {
        match self {
            Stream::Conversations { updated_after, user_id } => PageQuery {
                sql: format!(
                    "SELECT {}::text, change_xid::text AS position_xid, id FROM pullsync.conversations
                  WHERE feed_source = '' AND (change_xid, id) > ($1::text::xid8, $2) AND change_xid < pg_snapshot_xmin(pg_current_snapshot())
                    AND ($4::timestamptz IS NULL OR updated_at > $4) {}
                  ORDER BY change_xid, id LIMIT $3",
                    CONVERSATIONS.row_json,
                    if user_id.is_some() { "AND user_id = $5" } else { "AND $5::text IS NULL" }
                ),
                updated_after: updated_after.map(to_pg),
                id_filter: user_id.map(str::to_string),
            },
            Stream::ConversationMessages { conversation_id } => PageQuery {
                sql: format!(
                    "SELECT {}::text, change_xid::text AS position_xid, id FROM pullsync.conversation_messages
                  WHERE feed_source = '' AND conversation_id = $5 AND (change_xid, id) > ($1::text::xid8, $2)
                    AND change_xid < pg_snapshot_xmin(pg_current_snapshot()) AND $4::timestamptz IS NULL
                  ORDER BY change_xid, id LIMIT $3",
                    MESSAGES.row_json
                ),
                updated_after: None,
                id_filter: Some(conversation_id.to_string()),
            },
            Stream::AllMessages { updated_after } => PageQuery {
                sql: format!(
                    "SELECT {}::text, change_xid::text AS position_xid, id FROM pullsync.conversation_messages
                  WHERE feed_source = '' AND (change_xid, id) > ($1::text::xid8, $2) AND change_xid < pg_snapshot_xmin(pg_current_snapshot())
                    AND ($4::timestamptz IS NULL OR updated_at > $4) AND $5::text IS NULL
                  ORDER BY change_xid, id LIMIT $3",
                    MESSAGES.row_json
                ),
                updated_after: updated_after.map(to_pg),
                id_filter: None,
            },
        }
    }
}

impl PageQuery {
    /// Up to `limit` rows after `from`: the items, the last row's position, and whether
    /// there is more.
    fn read(self, from: &Position, limit: i64) -> Result<(Vec<Value>, Option<Position>, bool)> {
        read_bounded(
            &self.sql,
            &[
                from.xid.to_string().into(),
                from.id.clone().into(),
                (limit + 1).into(),
                self.updated_after.into(),
                self.id_filter.into(),
            ],
            limit as usize,
        )
    }
}

fn record_bookmark(consumer_id: &str, stream: &str, checkpoint: &str, served: i64) -> Result<()> {
    let column = streams::named(stream)?.bookmark_column;
    Spi::run_with_args(
        &format!(
            "INSERT INTO pullsync.sync_bookmarks AS b (consumer_id, {column}, last_sync_at, sync_stats)
             VALUES ($1, $2, now(), jsonb_build_object($3::text, $4::bigint))
             ON CONFLICT (consumer_id) DO UPDATE SET {column} = EXCLUDED.{column}, last_sync_at = now(),
                    sync_stats = b.sync_stats || jsonb_build_object($3::text, coalesce((b.sync_stats->>$3)::bigint, 0) + $4)"
        ),
        &[consumer_id.into(), checkpoint.into(), format!("{stream}_served").into(), served.into()],
    )?;
    Ok(())
}

pub fn check_window(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<()> {
    if start > end {
        return Err(PullsyncError::invalid(
            "start is after end",
            "Pass a window with start <= end.",
        ));
    }
    Ok(())
}

/// Counts for reconciliation: conversations by started_at, messages by created_at, in
/// [start, end).
pub fn stats(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Value> {
    check_window(start, end)?;
    // `select`, not Spi::get_*: a read must not assign a transaction id.
    let (conversations, messages) = Spi::connect(|client| {
        let rows = client.select(
            "SELECT (SELECT count(*) FROM pullsync.conversations WHERE feed_source = '' AND started_at >= $1 AND started_at < $2),
                    (SELECT count(*) FROM pullsync.conversation_messages WHERE feed_source = '' AND created_at >= $1 AND created_at < $2)",
            Some(1),
            &[to_pg(start).into(), to_pg(end).into()],
        )?;
        rows.first().get_two::<i64, i64>()
    })?;
    Ok(json!({
        "start": start.to_rfc3339(),
        "end": end.to_rfc3339(),
        "conversations": conversations.unwrap_or(0),
        "messages": messages.unwrap_or(0),
    }))
}

/// Ids in [start, end) for finding missing records, 1000 per page, by id.
pub fn ids(
    kind: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    cursor_text: Option<&str>,
) -> Result<Value> {
    check_window(start, end)?;
    let stream = streams::named(kind)?;
    let (table, column) = (stream.table, stream.counted_by);
    let key = cursor_key()?;
    let who = identity()?;
    let name = format!(
        "ids:{kind}:{}:{}",
        start.timestamp_micros(),
        end.timestamp_micros()
    );
    let now = Utc::now().timestamp();
    let after = match cursor_text {
        Some(text) => open(text, &key, &name, &who, now)?.position.id,
        None => String::new(),
    };
    let mut ids: Vec<String> = Spi::connect(|client| {
        let rows = client.select(
            &format!("SELECT id FROM {table} WHERE feed_source = '' AND {column} >= $1 AND {column} < $2 AND id > $3 ORDER BY id LIMIT $4"),
            None,
            &[to_pg(start).into(), to_pg(end).into(), after.into(), (IDS_PAGE + 1).into()],
        )?;
        let mut ids = Vec::new();
        for row in rows {
            ids.push(row.get::<String>(1)?.unwrap_or_default());
        }
        Ok::<_, PullsyncError>(ids)
    })?;
    let more = ids.len() as i64 > IDS_PAGE;
    ids.truncate(IDS_PAGE as usize);
    let next = (more).then(|| ids.last().cloned()).flatten().map(|id| {
        cursor::encode(
            &Cursor {
                position: Position { xid: 0, id },
                stream: name,
                origin: who.origin.clone(),
                issued_at: now,
            },
            &key,
            salt(),
        )
    });
    Ok(json!({ "ids": ids, "next_cursor": next }))
}

/// At most this many ids per `items` call.
pub const MAX_ITEM_IDS: usize = 500;

/// The rows with these ids, in the page shapes and in byte order of id, for repairing a
/// consumer: `{"items": […], "more": …}`. Ids that do not exist are left out. Within the page
/// byte budget: `more` says the answer stopped early, and the ids after the last item
/// returned are to be asked for again.
pub fn items(consumer_id: &str, kind: &str, ids: &[String]) -> Result<Value> {
    require_consumer(consumer_id)?;
    let stream = streams::named(kind)?;
    let (table, shape) = (stream.table, stream.row_json);
    if ids.len() > MAX_ITEM_IDS {
        return Err(PullsyncError::invalid(
            format!("at most {MAX_ITEM_IDS} ids per call, not {}", ids.len()),
            "Ask in several calls.",
        ));
    }
    // In byte order, so a caller can ask again for the ids after the last one returned.
    let (items, _, more) = read_bounded(
        &format!(
            "SELECT {shape}::text, '0', id FROM {table} WHERE feed_source = '' AND id = ANY($1)
              ORDER BY id COLLATE \"C\""
        ),
        &[ids.to_vec().into()],
        ids.len(),
    )?;
    Ok(json!({ "items": items, "more": more }))
}

/// Creates or updates a consumer allowed to pull, with its sealed API key.
pub fn add_consumer(consumer_id: &str, api_key: &str, rate_limit_per_minute: i32) -> Result<()> {
    pullsync_core::feed::validate::consumer_id(consumer_id)?;
    pullsync_core::feed::validate::api_key(api_key)?;
    if rate_limit_per_minute < 1 {
        return Err(PullsyncError::invalid(
            "rate_limit_per_minute must be at least 1",
            "Pass requests per minute, e.g. 600.",
        ));
    }
    let sealed = config::sealing_key()?.seal(api_key);
    Spi::run_with_args(
        "INSERT INTO pullsync.feed_consumers (consumer_id, api_key_encrypted, rate_limit_per_minute)
         VALUES ($1, $2, $3)
         ON CONFLICT (consumer_id) DO UPDATE SET api_key_encrypted = EXCLUDED.api_key_encrypted,
                rate_limit_per_minute = EXCLUDED.rate_limit_per_minute, is_active = true, updated_at = now()",
        &[consumer_id.into(), sealed.into(), rate_limit_per_minute.into()],
    )?;
    Ok(())
}
