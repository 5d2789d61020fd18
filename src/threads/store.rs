//! SPI reads and writes of the Threads source. One account's posts, three metric layers,
//! account insights and its sync_logs row are written by `write_account`, set-based (one
//! array parameter per column, `unnest`), inside the caller's transaction.

use crate::error::{PullsyncError, Result};
use crate::pg_time::{to_chrono, to_pg};
use crate::plumbing::prepared;
use chrono::{DateTime, Utc};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::datum::{DatumWithOid, IntoDatum};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::Uuid;
use pullsync_core::outcome::Status;
use pullsync_core::pg_text::{array_literal, without_nul};
use pullsync_core::statement::parameter_count;
use pullsync_core::threads::layers::{decide, Decision, Previous};
use pullsync_core::threads::plan::ListingState;
use pullsync_core::threads::pull::{
    AccountPull, DemographicsReading, KnownAccount, KnownPost, PulledPost, Reading, Step,
};
use std::collections::{HashMap, HashSet};
use threads_model::MediaType;

/// An account the sync will pull, with its sealed primary token.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: Uuid,
    pub threads_user_id: String,
    pub token_id: Uuid,
    pub sealed_token: String,
    /// Until when Meta asked this account to wait, while that is still ahead.
    pub rate_limited_until: Option<DateTime<Utc>>,
}

/// One account, with its primary token if that is unrevoked, valid and unexpired.
const USABLE_ACCOUNT: &str = "
    SELECT a.id, a.threads_user_id, t.id, t.access_token_encrypted,
           CASE WHEN a.rate_limited_until > now() THEN a.rate_limited_until END
      FROM pullsync.workspace_threads_accounts a
      JOIN pullsync.workspace_threads_tokens t
        ON t.workspace_threads_account_id = a.id AND t.is_primary AND t.revoked_at IS NULL
       AND t.invalidated_at IS NULL AND t.expires_at > now()
     WHERE a.id = $1";

/// One account, if it exists and has a usable token.
pub fn usable_account(id: Uuid) -> Result<Option<AccountRow>> {
    Spi::connect(|client| {
        let rows = prepared::select(client, USABLE_ACCOUNT, Some(1), &[id.into()])?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        Ok(Some(AccountRow {
            id: row
                .get(1)?
                .ok_or_else(|| PullsyncError::Internal("account without id".into()))?,
            threads_user_id: row.get(2)?.unwrap_or_default(),
            token_id: row
                .get(3)?
                .ok_or_else(|| PullsyncError::Internal("token without id".into()))?,
            sealed_token: row.get(4)?.unwrap_or_default(),
            rate_limited_until: row.get::<TimestampWithTimeZone>(5)?.and_then(to_chrono),
        }))
    })
}

/// Threads refused the token (expired early, revoked, password changed): it is never
/// used again; the account counts as needing re-authorisation.
pub fn invalidate_token(token_id: Uuid) -> Result<()> {
    prepared::run(
        "UPDATE pullsync.workspace_threads_tokens SET invalidated_at = coalesce(invalidated_at, now())
          WHERE id = $1",
        &[token_id.into()],
    )?;
    Ok(())
}

pub fn account_exists(id: Uuid) -> Result<bool> {
    Ok(prepared::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pullsync.workspace_threads_accounts WHERE id = $1)",
        &[id.into()],
    )?
    .unwrap_or(false))
}

/// What the store knows of an account, for planning the pull: its posts, how far its
/// listing got, its follower count and which of `breakdowns` have no demographics
/// snapshot for the current UTC day.
pub fn known_account(account_id: Uuid, breakdowns: &[&'static str]) -> Result<KnownAccount> {
    Spi::connect(|client| {
        let state = prepared::select(
            client,
            "SELECT posts_listing_resume_after, posts_listing_completed_at IS NOT NULL,
                    current_followers_count,
                    ARRAY(SELECT d.breakdown FROM pullsync.workspace_threads_follower_demographics d
                           WHERE d.workspace_threads_account_id = a.id
                             AND d.snapshot_date = (now() AT TIME ZONE 'UTC')::date)
               FROM pullsync.workspace_threads_accounts a WHERE id = $1",
            Some(1),
            &[account_id.into()],
        )?;
        let (listing, followers_count, demographics_due) = if state.is_empty() {
            (ListingState::default(), None, Vec::new())
        } else {
            let row = state.first();
            let captured: Vec<String> = row
                .get::<Vec<Option<String>>>(4)?
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .collect();
            (
                ListingState {
                    resume_after: row.get(1)?,
                    complete: row.get(2)?.unwrap_or(false),
                },
                row.get::<i64>(3)?,
                breakdowns
                    .iter()
                    .copied()
                    .filter(|b| !captured.iter().any(|c| c == b))
                    .collect(),
            )
        };
        let rows = prepared::select(
            client,
            "SELECT threads_post_id, media_type, published_at, metrics_updated_at, content_hash,
                    deleted_at IS NOT NULL
               FROM pullsync.workspace_threads_posts WHERE workspace_threads_account_id = $1",
            None,
            &[account_id.into()],
        )?;
        let mut known = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.get(1)?.unwrap_or_default();
            let Some(media_type) = row.get::<String>(2)?.as_deref().map(MediaType::parse) else {
                continue;
            };
            let Some(published_at) = row.get::<TimestampWithTimeZone>(3)?.and_then(to_chrono)
            else {
                continue;
            };
            known.insert(
                id,
                KnownPost {
                    media_type,
                    published_at,
                    metrics_updated_at: row.get::<TimestampWithTimeZone>(4)?.and_then(to_chrono),
                    content_hash: row.get(5)?,
                    deleted: row.get(6)?.unwrap_or(false),
                },
            );
        }
        Ok(KnownAccount {
            posts: known,
            listing,
            followers_count,
            demographics_due,
        })
    })
}

/// Counts of one account's write, for its sync_logs row and the caller's summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteCounts {
    pub posts_new: i64,
    pub posts_updated: i64,
    pub snapshots: i64,
    pub deltas: i64,
}

/// Where the sync_logs row belongs.
pub struct LogContext<'a> {
    pub job_log_id: Option<i64>,
    pub job_type: &'a str,
    pub started_at: DateTime<Utc>,
}

/// Listed posts (new, changed or back from deletion) in one statement, one array per
/// column. A post new to the store is inserted with its first metrics, snapshot and delta
/// when its metrics came with it (`captured_at` set), so a first sync writes each post's
/// row once; a stored post keeps its metrics here and gets its layers from POST_LAYERS.
const POST_WRITE: &str = "
WITH x AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::text[], $10::text[], $11::boolean[], $12::text[], $13::text[], $14::text[],
                         $15::text[], $16::text[], $17::text[], $18::boolean[], $19::text[],
                         $20::timestamptz[], $21::bigint[],
                         $22::bigint[], $23::bigint[], $24::bigint[], $25::bigint[], $26::bigint[], $27::bigint[],
                         $28::bigint[], $29::bigint[], $30::bigint[], $31::bigint[], $32::bigint[], $33::bigint[],
                         $34::timestamptz[], $35::timestamptz[], $36::jsonb[])
        AS x(threads_post_id, media_product_type, media_type, media_url, thumbnail_url, permalink, shortcode,
             text, children_ids, is_quote_post, quoted_post_id, reposted_post_id, alt_text,
             link_attachment_url, gif_url, topic_tag, has_replies, reply_audience,
             published_at, content_hash,
             views, likes, replies, reposts, quotes, shares,
             views_delta, likes_delta, replies_delta, reposts_delta, quotes_delta, shares_delta,
             captured_at, metrics_updated_at, other_fields)),
up AS (
    INSERT INTO pullsync.workspace_threads_posts AS p
           (workspace_threads_account_id, threads_post_id, media_product_type, media_type, media_url,
            thumbnail_url, permalink, shortcode, text, children_ids, is_quote_post, quoted_post_id,
            reposted_post_id, alt_text, link_attachment_url, gif_url, topic_tag, has_replies,
            reply_audience, published_at, content_hash, current_views, current_likes, current_replies,
            current_reposts, current_quotes, current_shares, metrics_snapshot_at, metrics_updated_at,
            other_fields)
    SELECT $1, x.threads_post_id, coalesce(x.media_product_type, 'THREADS'), x.media_type, x.media_url,
           x.thumbnail_url, x.permalink, x.shortcode, x.text, x.children_ids::text[], x.is_quote_post,
           x.quoted_post_id, x.reposted_post_id, x.alt_text, x.link_attachment_url, x.gif_url, x.topic_tag,
           x.has_replies, x.reply_audience, x.published_at, x.content_hash, coalesce(x.views, 0),
           coalesce(x.likes, 0), coalesce(x.replies, 0), coalesce(x.reposts, 0), coalesce(x.quotes, 0),
           coalesce(x.shares, 0), x.captured_at, x.metrics_updated_at, x.other_fields
      FROM x
    ON CONFLICT (workspace_threads_account_id, threads_post_id) DO UPDATE SET
           media_product_type = EXCLUDED.media_product_type, media_type = EXCLUDED.media_type,
           media_url = EXCLUDED.media_url, thumbnail_url = EXCLUDED.thumbnail_url,
           permalink = EXCLUDED.permalink, shortcode = EXCLUDED.shortcode, text = EXCLUDED.text,
           children_ids = EXCLUDED.children_ids, is_quote_post = EXCLUDED.is_quote_post,
           quoted_post_id = EXCLUDED.quoted_post_id, reposted_post_id = EXCLUDED.reposted_post_id,
           alt_text = EXCLUDED.alt_text, link_attachment_url = EXCLUDED.link_attachment_url,
           gif_url = EXCLUDED.gif_url, topic_tag = EXCLUDED.topic_tag, has_replies = EXCLUDED.has_replies,
           reply_audience = EXCLUDED.reply_audience, published_at = EXCLUDED.published_at,
           content_hash = EXCLUDED.content_hash, other_fields = EXCLUDED.other_fields,
           deleted_at = NULL, updated_at = now()
     WHERE p.content_hash IS DISTINCT FROM EXCLUDED.content_hash OR p.deleted_at IS NOT NULL
    RETURNING p.id, p.threads_post_id, (xmax = 0) AS inserted),
first AS (
    SELECT up.id, x.* FROM up JOIN x USING (threads_post_id) WHERE up.inserted AND x.captured_at IS NOT NULL),
snapshots AS (
    INSERT INTO pullsync.workspace_threads_post_metrics
           (workspace_threads_account_id, workspace_threads_post_id, views, likes, replies, reposts, quotes,
            shares, captured_at)
    SELECT $1, id, views, likes, replies, reposts, quotes, shares, captured_at FROM first
    RETURNING 1),
deltas AS (
    INSERT INTO pullsync.workspace_threads_post_metrics_deltas
           (workspace_threads_account_id, workspace_threads_post_id, period_end, views_delta, likes_delta,
            replies_delta, reposts_delta, quotes_delta, shares_delta)
    SELECT $1, id, captured_at, views_delta, likes_delta, replies_delta, reposts_delta, quotes_delta,
           shares_delta FROM first)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted), (SELECT count(*) FROM snapshots)
  FROM up";

/// Snapshots and deltas of stored posts whose metrics changed (or whose heartbeat is due),
/// and their current metrics, one array per column.
const POST_LAYERS: &str = "
WITH x AS (
    SELECT * FROM unnest($1::uuid[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                         $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[],
                         $14::bigint[], $15::bigint[], $16::timestamptz[], $17::timestamptz[])
        AS x(post_id, views, likes, replies, reposts, quotes, shares, views_delta, likes_delta, replies_delta,
             reposts_delta, quotes_delta, shares_delta, period_start, captured_at)),
snapshots AS (
    INSERT INTO pullsync.workspace_threads_post_metrics
           (workspace_threads_account_id, workspace_threads_post_id, views, likes, replies, reposts, quotes,
            shares, captured_at)
    SELECT $2, post_id, views, likes, replies, reposts, quotes, shares, captured_at FROM x),
deltas AS (
    INSERT INTO pullsync.workspace_threads_post_metrics_deltas
           (workspace_threads_account_id, workspace_threads_post_id, period_start, period_end, views_delta,
            likes_delta, replies_delta, reposts_delta, quotes_delta, shares_delta)
    SELECT $2, post_id, period_start, captured_at, views_delta, likes_delta, replies_delta, reposts_delta, quotes_delta,
           shares_delta FROM x)
UPDATE pullsync.workspace_threads_posts p
   SET current_views = x.views, current_likes = x.likes, current_replies = x.replies,
       current_reposts = x.reposts, current_quotes = x.quotes, current_shares = x.shares,
       metrics_snapshot_at = x.captured_at, metrics_updated_at = $3
  FROM x WHERE p.workspace_threads_account_id = $2 AND p.id = x.post_id";

/// The account's part of a write, in one statement: its insights snapshot and delta when
/// the insights changed ($25 is their capture time, NULL when nothing is to be stored), its
/// sync_logs row, and its row: sync timestamps, status, current insights and, when this
/// pull listed posts ($8), the listing's state committed with them.
const ACCOUNT_WRITE: &str = "
WITH snapshot AS (
    INSERT INTO pullsync.workspace_threads_account_insights
           (workspace_threads_account_id, followers_count, views, likes, replies, reposts, quotes, clicks, captured_at)
    SELECT $1, $11, $12, $13, $14, $15, $16, $17, $25 WHERE $25 IS NOT NULL),
delta AS (
    INSERT INTO pullsync.workspace_threads_account_insights_deltas
           (workspace_threads_account_id, period_start, period_end, followers_count_delta, views_delta,
            likes_delta, replies_delta, reposts_delta, quotes_delta, clicks_delta)
    SELECT $1, $26, $25, $18, $19, $20, $21, $22, $23, $24 WHERE $25 IS NOT NULL),
log AS (
    INSERT INTO pullsync.sync_logs
           (job_log_id, job_type, source, workspace_threads_account_id, status, steps_completed,
            items_new, items_updated, snapshots, deltas, api_calls, error, started_at, notes)
    VALUES ($27, $28, 'threads', $1, $6, $29, $30, $31, $32, $33, $34, $35, $36, $37))
UPDATE pullsync.workspace_threads_accounts
   SET last_posts_sync_at = CASE WHEN $2 THEN $5 ELSE last_posts_sync_at END,
       last_metrics_sync_at = CASE WHEN $3 THEN $5 ELSE last_metrics_sync_at END,
       last_insights_sync_at = CASE WHEN $4 THEN $5 ELSE last_insights_sync_at END,
       insights_updated_at = CASE WHEN $4 THEN $5 ELSE insights_updated_at END,
       last_sync_status = CASE WHEN $7 THEN $6 ELSE last_sync_status END,
       posts_listing_resume_after = CASE WHEN $8 THEN $9 ELSE posts_listing_resume_after END,
       posts_listing_completed_at = CASE WHEN NOT $8 THEN posts_listing_completed_at
           WHEN NOT $10 THEN NULL
           WHEN $9::text IS NULL THEN $5 ELSE coalesce(posts_listing_completed_at, $5) END,
       current_followers_count = CASE WHEN $25 IS NULL THEN current_followers_count ELSE $11 END,
       current_views = CASE WHEN $25 IS NULL THEN current_views ELSE $12 END,
       current_likes = CASE WHEN $25 IS NULL THEN current_likes ELSE $13 END,
       current_replies = CASE WHEN $25 IS NULL THEN current_replies ELSE $14 END,
       current_reposts = CASE WHEN $25 IS NULL THEN current_reposts ELSE $15 END,
       current_quotes = CASE WHEN $25 IS NULL THEN current_quotes ELSE $16 END,
       current_clicks = CASE WHEN $25 IS NULL THEN current_clicks ELSE $17 END,
       insights_snapshot_at = coalesce($25, insights_snapshot_at),
       updated_at = now()
 WHERE id = $1";

/// The account insights a write stores: values, their change, and the period.
struct InsightsRow {
    values: [i64; 7],
    delta: [i64; 7],
    captured_at: DateTime<Utc>,
    period_start: Option<DateTime<Utc>>,
}

/// ACCOUNT_WRITE's parameters by name, in the statement's order: `datums` binds them, and
/// a debug build checks that they are as many as the statement's highest `$n`.
struct AccountWriteParams<'a> {
    /// $1
    account_id: Uuid,
    /// $2, $3, $4: the steps completed, whose sync timestamps the write sets.
    posts_done: bool,
    metrics_done: bool,
    insights_done: bool,
    /// $5
    written_at: TimestampWithTimeZone,
    /// $6: the outcome, for the account and its sync_logs row.
    status: &'a str,
    /// $7: whether the account's sync status is set (a repair, with no step and no
    /// failure, leaves it alone).
    sets_status: bool,
    /// $8, $9, $10: whether this pull listed posts, and the listing's state if it did.
    listed: bool,
    resume_after: Option<String>,
    listing_complete: bool,
    /// $11–$17: followers_count, views, likes, replies, reposts, quotes, clicks of the
    /// insights snapshot; None when none is stored.
    insights: [Option<i64>; 7],
    /// $18–$24: their deltas, in the same order.
    insights_delta: [Option<i64>; 7],
    /// $25: the snapshot's capture time, None when no snapshot is stored.
    captured_at: Option<TimestampWithTimeZone>,
    /// $26
    period_start: Option<TimestampWithTimeZone>,
    /// $27–$37: the sync_logs row.
    job_log_id: Option<i64>,
    job_type: &'a str,
    steps: Vec<String>,
    items_new: i32,
    items_updated: i32,
    snapshots: i32,
    deltas: i32,
    api_calls: i32,
    error: Option<String>,
    started_at: TimestampWithTimeZone,
    notes: Vec<String>,
}

impl<'a> AccountWriteParams<'a> {
    fn of(write: &AccountWrite<'a>, insights: Option<&InsightsRow>, log: &LogContext<'a>) -> Self {
        let pull = write.pull;
        let done = |step: Step| pull.steps_completed.contains(&step);
        let listing = pull.listing.as_ref();
        let counts = write.counts;
        AccountWriteParams {
            account_id: write.account_id,
            posts_done: done(Step::Posts),
            metrics_done: done(Step::Metrics),
            insights_done: done(Step::Insights),
            written_at: write.at,
            status: pull.outcome.as_str(),
            sets_status: !pull.steps_completed.is_empty() || pull.error.is_some(),
            listed: listing.is_some(),
            resume_after: listing.and_then(|l| l.resume_after.clone()),
            listing_complete: listing.is_some_and(|l| l.complete),
            insights: std::array::from_fn(|i| insights.map(|r| r.values[i])),
            insights_delta: std::array::from_fn(|i| insights.map(|r| r.delta[i])),
            captured_at: insights.map(|r| to_pg(r.captured_at)),
            period_start: insights.and_then(|r| r.period_start.map(to_pg)),
            job_log_id: log.job_log_id,
            job_type: log.job_type,
            steps: pull
                .steps_completed
                .iter()
                .map(|s| s.name().to_string())
                .collect(),
            items_new: counts.posts_new as i32,
            items_updated: counts.posts_updated as i32,
            snapshots: counts.snapshots as i32,
            deltas: counts.deltas as i32,
            api_calls: pull.api_calls as i32,
            error: pull.error.clone(),
            started_at: to_pg(log.started_at),
            notes: pull.notes.clone(),
        }
    }

    /// The parameters as datums, `$1` first. Every field is named here once: one left out
    /// does not compile.
    fn datums(self) -> Vec<DatumWithOid<'a>> {
        let AccountWriteParams {
            account_id,
            posts_done,
            metrics_done,
            insights_done,
            written_at,
            status,
            sets_status,
            listed,
            resume_after,
            listing_complete,
            insights,
            insights_delta,
            captured_at,
            period_start,
            job_log_id,
            job_type,
            steps,
            items_new,
            items_updated,
            snapshots,
            deltas,
            api_calls,
            error,
            started_at,
            notes,
        } = self;
        let mut datums: Vec<DatumWithOid<'a>> = vec![
            account_id.into(),
            posts_done.into(),
            metrics_done.into(),
            insights_done.into(),
            written_at.into(),
            status.into(),
            sets_status.into(),
            listed.into(),
            resume_after.into(),
            listing_complete.into(),
        ];
        datums.extend(insights.map(DatumWithOid::from));
        datums.extend(insights_delta.map(DatumWithOid::from));
        datums.extend([
            captured_at.into(),
            period_start.into(),
            job_log_id.into(),
            job_type.into(),
            steps.into(),
            items_new.into(),
            items_updated.into(),
            snapshots.into(),
            deltas.into(),
            api_calls.into(),
            error.into(),
            started_at.into(),
            notes.into(),
        ]);
        debug_assert_eq!(datums.len(), parameter_count(ACCOUNT_WRITE));
        datums
    }
}

/// A reading's values, a missing one taken from the previous snapshot (or 0 without one),
/// so a metric the answer left out makes no delta.
fn filled<const N: usize>(reading: &Reading<N>, previous: Option<&Previous<N>>) -> [i64; N] {
    std::array::from_fn(|i| {
        reading.values[i].unwrap_or_else(|| previous.map_or(0, |p| p.values[i]))
    })
}

/// Writes one account's pull: posts (L0), post metrics (L1→L2→L3), account insights
/// (L1→L2→L3), deleted posts, the listing's state, the account's sync timestamps and its
/// sync_logs row. Runs in the caller's transaction; the account row lock serialises
/// concurrent writers of one account. Snapshots are captured when the API answered, and one
/// older than the newest stored changes nothing.
pub fn write_account(
    account_id: Uuid,
    pull: &AccountPull,
    written_at: DateTime<Utc>,
    heartbeat_secs: i64,
    log: &LogContext,
) -> Result<WriteCounts> {
    Spi::connect_mut(|client| {
        let mut write = AccountWrite {
            account_id,
            pull,
            at: to_pg(written_at),
            heartbeat_secs,
            counts: WriteCounts::default(),
        };
        let previous_insights = write.lock_account(client)?;
        write.posts(client)?;
        let insights = write.insights_row(previous_insights.as_ref());
        write.links(client, previous_insights.as_ref())?;
        write_demographics(client, account_id, &pull.demographics)?;
        let params = AccountWriteParams::of(&write, insights.as_ref(), log);
        prepared::update(client, ACCOUNT_WRITE, None, &params.datums())?;
        write.rate_limit(client)?;
        Ok(write.counts)
    })
}

/// One account's write in progress: what every phase reads, and the rows counted so far.
struct AccountWrite<'p> {
    account_id: Uuid,
    pull: &'p AccountPull,
    at: TimestampWithTimeZone,
    heartbeat_secs: i64,
    counts: WriteCounts,
}

impl<'p> AccountWrite<'p> {
    /// Locks the account's row, which serialises its writers, and reads its newest
    /// insights snapshot.
    fn lock_account(&self, client: &mut SpiClient<'_>) -> Result<Option<Previous<7>>> {
        let account_id = self.account_id;
        let account = prepared::update(
            client,
            "SELECT current_followers_count, current_views, current_likes, current_replies, current_reposts,
                    current_quotes, current_clicks, insights_snapshot_at
               FROM pullsync.workspace_threads_accounts WHERE id = $1 FOR UPDATE",
            Some(1),
            &[account_id.into()],
        )?;
        if account.is_empty() {
            return Err(PullsyncError::NotFound {
                message: format!("account {account_id} no longer exists"),
                hint: "It was deleted while the sync ran.".into(),
            });
        }
        let row = account.first();
        Ok(
            match row.get::<TimestampWithTimeZone>(8)?.and_then(to_chrono) {
                Some(captured) => Some(Previous {
                    values: [
                        row.get(1)?.unwrap_or(0),
                        row.get(2)?.unwrap_or(0),
                        row.get(3)?.unwrap_or(0),
                        row.get(4)?.unwrap_or(0),
                        row.get(5)?.unwrap_or(0),
                        row.get(6)?.unwrap_or(0),
                        row.get(7)?.unwrap_or(0),
                    ],
                    captured_at: captured,
                }),
                None => None,
            },
        )
    }

    /// The posts and their metrics: listed posts, deleted ones, snapshots of stored ones,
    /// and the checked mark of the rest.
    fn posts(&mut self, client: &mut SpiClient<'_>) -> Result<()> {
        // Under the account's lock, the store says which pulled posts are new to it.
        let stored = stored_posts(client, self.account_id, self.pull)?;
        // Posts whose `metrics_updated_at` this write sets along with their metrics: new
        // ones in POST_WRITE, stored ones with a snapshot in POST_LAYERS. The rest of the
        // checked ones are only marked checked.
        let mut recorded = self.listed_posts(client, &stored)?;
        self.deleted_posts(client)?;
        recorded.extend(self.post_layers(client, &stored)?);
        self.checked_posts(client, &recorded)
    }

    /// POST_WRITE: the listed posts, new ones with their first metrics. Returns the new
    /// posts whose metrics it recorded.
    fn listed_posts(
        &mut self,
        client: &mut SpiClient<'_>,
        stored: &HashMap<String, StoredPost>,
    ) -> Result<HashSet<&'p str>> {
        let pull = self.pull;
        let mut recorded = HashSet::new();
        if pull.posts.is_empty() {
            return Ok(recorded);
        }
        let readings: HashMap<&str, &Reading<6>> = pull
            .metrics
            .iter()
            .map(|(id, r)| (id.as_str(), r))
            .collect();
        let checked: HashSet<&str> = pull.metrics_checked.iter().map(String::as_str).collect();
        let firsts: Vec<Option<FirstMetrics>> = pull
            .posts
            .iter()
            .map(|p| {
                let id = p.post.id.as_str();
                if stored.contains_key(id) {
                    return None;
                }
                recorded.insert(id);
                let reading = readings.get(id).copied();
                Some(FirstMetrics::of(
                    reading,
                    checked.contains(id),
                    self.heartbeat_secs,
                ))
            })
            .collect();
        let written = prepared::update(
            client,
            POST_WRITE,
            None,
            &post_write_args(self.account_id, &pull.posts, &firsts, self.at),
        )?;
        let (new, updated, snapshots) = written.first().get_three::<i64, i64, i64>()?;
        self.counts.posts_new = new.unwrap_or(0);
        self.counts.posts_updated = updated.unwrap_or(0);
        self.counts.snapshots += snapshots.unwrap_or(0);
        self.counts.deltas += snapshots.unwrap_or(0);
        Ok(recorded)
    }

    fn deleted_posts(&self, client: &mut SpiClient<'_>) -> Result<()> {
        if self.pull.deleted.is_empty() {
            return Ok(());
        }
        prepared::update(
            client,
            "UPDATE pullsync.workspace_threads_posts SET deleted_at = $3, updated_at = now()
                  WHERE workspace_threads_account_id = $1 AND threads_post_id = ANY($2)
                    AND deleted_at IS NULL",
            None,
            &[
                self.account_id.into(),
                self.pull.deleted.clone().into(),
                self.at.into(),
            ],
        )?;
        Ok(())
    }

    /// POST_LAYERS: snapshots and deltas of the stored posts whose metrics changed (or
    /// whose heartbeat is due). Returns those posts.
    fn post_layers(
        &mut self,
        client: &mut SpiClient<'_>,
        stored: &HashMap<String, StoredPost>,
    ) -> Result<Vec<&'p str>> {
        let mut layers = Layers::default();
        let mut recorded = Vec::new();
        for (threads_id, reading) in &self.pull.metrics {
            let Some(post) = stored.get(threads_id) else {
                continue;
            };
            let values = filled(reading, post.previous.as_ref());
            if let Decision::Snapshot {
                delta,
                period_start,
            } = decide(
                post.previous.as_ref(),
                values,
                reading.fetched_at,
                self.heartbeat_secs,
            ) {
                recorded.push(threads_id.as_str());
                layers.push(post.id, values, delta, period_start, reading.fetched_at);
            }
        }
        if !layers.post_id.is_empty() {
            self.counts.snapshots += layers.post_id.len() as i64;
            self.counts.deltas += layers.post_id.len() as i64;
            let args = layers.into_args(self.account_id, self.at);
            prepared::update(client, POST_LAYERS, None, &args)?;
        }
        Ok(recorded)
    }

    /// Marks checked the posts whose metrics were asked for and not recorded with them. A
    /// snapshot's write marked its post checked: each post row is written once, not twice
    /// (every update of a post writes all its index entries again).
    fn checked_posts(&self, client: &mut SpiClient<'_>, recorded: &HashSet<&str>) -> Result<()> {
        let unchanged: Vec<&str> = self
            .pull
            .metrics_checked
            .iter()
            .map(String::as_str)
            .filter(|id| !recorded.contains(id))
            .collect();
        if unchanged.is_empty() {
            return Ok(());
        }
        prepared::update(
            client,
            "UPDATE pullsync.workspace_threads_posts SET metrics_updated_at = $3
                  WHERE workspace_threads_account_id = $1 AND threads_post_id = ANY($2)",
            None,
            &[self.account_id.into(), unchanged.into(), self.at.into()],
        )?;
        Ok(())
    }

    /// The account insights to store, if they changed (or their heartbeat is due).
    fn insights_row(&mut self, previous: Option<&Previous<7>>) -> Option<InsightsRow> {
        let insights = self.pull.insights.as_ref()?;
        let values = filled(insights, previous);
        let Decision::Snapshot {
            delta,
            period_start,
        } = decide(previous, values, insights.fetched_at, self.heartbeat_secs)
        else {
            return None;
        };
        self.counts.snapshots += 1;
        self.counts.deltas += 1;
        Some(InsightsRow {
            values,
            delta,
            captured_at: insights.fetched_at,
            period_start,
        })
    }

    /// The clicks per link. The links' current clicks add up to the account's: with none
    /// stored and none answered there is nothing to read or write (most accounts, most
    /// runs).
    fn links(&mut self, client: &mut SpiClient<'_>, previous: Option<&Previous<7>>) -> Result<()> {
        let pull = self.pull;
        let clicks_before = previous.map_or(0, |p| p.values[6]);
        let links = pull
            .link_clicks
            .as_ref()
            .filter(|links| !links.is_empty() || clicks_before != 0);
        if let (Some(insights), Some(links)) = (&pull.insights, links) {
            let written = write_link_clicks(
                client,
                self.account_id,
                links,
                insights.fetched_at,
                self.heartbeat_secs,
            )?;
            self.counts.snapshots += written;
            self.counts.deltas += written;
        }
        Ok(())
    }

    /// How long Meta asked the account to wait, when it rate limited it.
    fn rate_limit(&self, client: &mut SpiClient<'_>) -> Result<()> {
        let (Some(_), Some(wait)) = (self.pull.rate_limited, self.pull.retry_after) else {
            return Ok(());
        };
        prepared::update(
            client,
            "UPDATE pullsync.workspace_threads_accounts
                    SET rate_limited_until = greatest(rate_limited_until, $2 + make_interval(secs => $3))
                  WHERE id = $1",
            None,
            &[self.account_id.into(), self.at.into(), wait.as_secs_f64().into()],
        )?;
        Ok(())
    }
}

/// Clicks per link in the three layers: a snapshot and delta for each link whose clicks
/// changed (or whose heartbeat is due), its current value with it. A stored link the
/// answer no longer names had no clicks in the answer's day.
const LINK_CLICKS_WRITE: &str = "
WITH x AS (
    SELECT * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[])
        AS x(link_url, clicks, clicks_delta, period_start)),
current AS (
    INSERT INTO pullsync.workspace_threads_account_links AS l
           (workspace_threads_account_id, link_url, current_clicks, clicks_snapshot_at)
    SELECT $1, link_url, clicks, $6 FROM x
    ON CONFLICT (workspace_threads_account_id, link_url) DO UPDATE
       SET current_clicks = EXCLUDED.current_clicks, clicks_snapshot_at = EXCLUDED.clicks_snapshot_at
    RETURNING l.link_url),
snapshots AS (
    INSERT INTO pullsync.workspace_threads_account_link_clicks
           (workspace_threads_account_id, link_url, clicks, captured_at)
    SELECT $1, x.link_url, x.clicks, $6 FROM x JOIN current USING (link_url))
INSERT INTO pullsync.workspace_threads_account_link_clicks_deltas
       (workspace_threads_account_id, link_url, period_start, period_end, clicks_delta)
SELECT $1, x.link_url, x.period_start, $6, x.clicks_delta FROM x JOIN current USING (link_url)";

fn write_link_clicks(
    client: &mut SpiClient<'_>,
    account_id: Uuid,
    links: &[(String, i64)],
    fetched_at: DateTime<Utc>,
    heartbeat_secs: i64,
) -> Result<i64> {
    let stored = prepared::select(
        client,
        "SELECT link_url, current_clicks, clicks_snapshot_at
           FROM pullsync.workspace_threads_account_links WHERE workspace_threads_account_id = $1",
        None,
        &[account_id.into()],
    )?;
    let mut previous: HashMap<String, Previous<1>> = HashMap::with_capacity(stored.len());
    for row in stored {
        if let (Some(url), Some(clicks), Some(at)) = (
            row.get::<String>(1)?,
            row.get::<i64>(2)?,
            row.get::<TimestampWithTimeZone>(3)?.and_then(to_chrono),
        ) {
            previous.insert(
                url,
                Previous {
                    values: [clicks],
                    captured_at: at,
                },
            );
        }
    }
    let answered: HashMap<String, i64> = links
        .iter()
        .map(|(url, clicks)| (without_nul(url).into_owned(), *clicks))
        .collect();
    // A link already at zero that the answer leaves out has nothing new to say.
    let gone = previous
        .iter()
        .filter(|(url, p)| !answered.contains_key(*url) && p.values[0] != 0)
        .map(|(url, _)| (url.clone(), 0));
    let mut rows = LinkRows::default();
    for (url, clicks) in answered.clone().into_iter().chain(gone) {
        if let Decision::Snapshot {
            delta,
            period_start,
        } = decide(previous.get(&url), [clicks], fetched_at, heartbeat_secs)
        {
            rows.link_url.push(url);
            rows.clicks.push(clicks);
            rows.delta.push(delta[0]);
            rows.period_start.push(period_start.map(to_pg));
        }
    }
    let written = rows.link_url.len() as i64;
    if written == 0 {
        return Ok(0);
    }
    prepared::update(
        client,
        LINK_CLICKS_WRITE,
        None,
        &[
            account_id.into(),
            rows.link_url.into(),
            rows.clicks.into(),
            rows.delta.into(),
            rows.period_start.into(),
            to_pg(fetched_at).into(),
        ],
    )?;
    Ok(written)
}

/// LINK_CLICKS_WRITE's rows, one array per column.
#[derive(Default)]
struct LinkRows {
    link_url: Vec<String>,
    clicks: Vec<i64>,
    delta: Vec<i64>,
    period_start: Vec<Option<TimestampWithTimeZone>>,
}

/// Each demographics breakdown's snapshot of the day it was taken (UTC); a breakdown
/// another run stored that day first keeps that run's.
fn write_demographics(
    client: &mut SpiClient<'_>,
    account_id: Uuid,
    readings: &[DemographicsReading],
) -> Result<()> {
    if readings.is_empty() {
        return Ok(());
    }
    let followers: Vec<Option<pgrx::JsonB>> = readings
        .iter()
        .map(|r| {
            r.followers.as_ref().ok().map(|values| {
                pgrx::JsonB(serde_json::Value::Object(
                    values
                        .iter()
                        .map(|(k, v)| (without_nul(k).into_owned(), (*v).into()))
                        .collect(),
                ))
            })
        })
        .collect();
    prepared::update(
        client,
        "INSERT INTO pullsync.workspace_threads_follower_demographics
                (workspace_threads_account_id, snapshot_date, breakdown, followers, error, captured_at)
         SELECT $1, (x.captured_at AT TIME ZONE 'UTC')::date, x.breakdown, x.followers, x.error, x.captured_at
           FROM unnest($2::text[], $3::jsonb[], $4::text[], $5::timestamptz[])
                AS x(breakdown, followers, error, captured_at)
         ON CONFLICT DO NOTHING",
        None,
        &[
            account_id.into(),
            readings
                .iter()
                .map(|r| r.breakdown)
                .collect::<Vec<_>>()
                .into(),
            followers.into(),
            readings
                .iter()
                .map(|r| r.followers.as_ref().err().map(|e| without_nul(e).into_owned()))
                .collect::<Vec<_>>()
                .into(),
            readings
                .iter()
                .map(|r| to_pg(r.fetched_at))
                .collect::<Vec<_>>()
                .into(),
        ],
    )?;
    Ok(())
}

/// A sync_logs row for an account that could not be pulled at all.
pub fn log_unpulled(account_id: Uuid, status: Status, error: &str, log: &LogContext) -> Result<()> {
    Spi::connect_mut(|client| {
        prepared::update(
            client,
            "INSERT INTO pullsync.sync_logs (job_log_id, job_type, source, workspace_threads_account_id, status, error, started_at)
             VALUES ($1, $2, 'threads', $3, $4, $5, $6)",
            None,
            &[
                log.job_log_id.into(),
                log.job_type.into(),
                account_id.into(),
                status.as_str().into(),
                error.into(),
                to_pg(log.started_at).into(),
            ],
        )?;
        Ok(())
    })
}

/// A post of the pull the store already has: its id and its newest snapshot.
struct StoredPost {
    id: Uuid,
    previous: Option<Previous<6>>,
}

/// The pulled posts (listed or with metrics) the store has.
fn stored_posts(
    client: &SpiClient<'_>,
    account_id: Uuid,
    pull: &AccountPull,
) -> Result<HashMap<String, StoredPost>> {
    let ids: Vec<&str> = pull
        .posts
        .iter()
        .map(|p| p.post.id.as_str())
        .chain(pull.metrics.iter().map(|(id, _)| id.as_str()))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = prepared::select(
        client,
        "SELECT threads_post_id, id, current_views, current_likes, current_replies, current_reposts,
                current_quotes, current_shares, metrics_snapshot_at
           FROM pullsync.workspace_threads_posts
          WHERE workspace_threads_account_id = $1 AND threads_post_id = ANY($2)",
        None,
        &[account_id.into(), ids.into()],
    )?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let threads_id: String = row.get(1)?.unwrap_or_default();
        let id: Uuid = row
            .get(2)?
            .ok_or_else(|| PullsyncError::Internal("post without id".into()))?;
        let previous = row
            .get::<TimestampWithTimeZone>(9)?
            .and_then(to_chrono)
            .map(|captured_at| Previous {
                values: std::array::from_fn(|i| row.get::<i64>(i + 3).ok().flatten().unwrap_or(0)),
                captured_at,
            });
        stored.insert(threads_id, StoredPost { id, previous });
    }
    Ok(stored)
}

/// What a post new to the store is inserted with: its first snapshot and delta when its
/// metrics came with the pull, and whether its metrics were checked.
struct FirstMetrics {
    snapshot: Option<([i64; 6], [i64; 6], DateTime<Utc>)>,
    checked: bool,
}

impl FirstMetrics {
    fn of(reading: Option<&Reading<6>>, checked: bool, heartbeat_secs: i64) -> Self {
        let snapshot = reading.and_then(|reading| {
            let values = filled(reading, None);
            match decide(None, values, reading.fetched_at, heartbeat_secs) {
                Decision::Snapshot { delta, .. } => Some((values, delta, reading.fetched_at)),
                Decision::Unchanged => None,
            }
        });
        FirstMetrics {
            checked: checked || snapshot.is_some(),
            snapshot,
        }
    }
}

/// One array parameter from a column's values.
fn column<'a, T: IntoDatum + 'a>(values: impl Iterator<Item = T>) -> DatumWithOid<'a> {
    values.collect::<Vec<T>>().into()
}

/// A text column of the posts; NUL characters, which Postgres text cannot hold, dropped.
fn text_column<'a>(
    posts: &'a [PulledPost],
    field: impl Fn(&'a threads_model::Post) -> Option<&'a str>,
) -> DatumWithOid<'a> {
    column(
        posts
            .iter()
            .map(|p| field(&p.post).map(|s| without_nul(s).into_owned())),
    )
}

/// POST_WRITE's parameters: the account, then one array per column.
fn post_write_args<'a>(
    account_id: Uuid,
    posts: &'a [PulledPost],
    firsts: &[Option<FirstMetrics>],
    written_at: TimestampWithTimeZone,
) -> Vec<DatumWithOid<'a>> {
    let mut args = vec![
        account_id.into(),
        text_column(posts, |p| Some(p.id.as_str())),
        text_column(posts, |p| p.media_product_type.as_deref()),
        text_column(posts, |p| p.media_type.as_ref().map(MediaType::as_str)),
        text_column(posts, |p| p.media_url.as_deref()),
        text_column(posts, |p| p.thumbnail_url.as_deref()),
        text_column(posts, |p| p.permalink.as_deref()),
        text_column(posts, |p| p.shortcode.as_deref()),
        text_column(posts, |p| p.text.as_deref()),
        column(posts.iter().map(|p| {
            p.post
                .children
                .as_ref()
                .map(|c| array_literal(&c.data.iter().map(|i| i.id.as_str()).collect::<Vec<_>>()))
        })),
        column(posts.iter().map(|p| p.post.is_quote_post)),
        text_column(posts, |p| p.quoted_post.as_ref().map(|q| q.id.as_str())),
        text_column(posts, |p| p.reposted_post.as_ref().map(|q| q.id.as_str())),
        text_column(posts, |p| p.alt_text.as_deref()),
        text_column(posts, |p| p.link_attachment_url.as_deref()),
        text_column(posts, |p| p.gif_url.as_deref()),
        text_column(posts, |p| p.topic_tag.as_deref()),
        column(posts.iter().map(|p| p.post.has_replies)),
        text_column(posts, |p| p.reply_audience.as_deref()),
        column(posts.iter().map(|p| p.post.timestamp.map(to_pg))),
        column(posts.iter().map(|p| p.content_hash)),
    ];
    let snapshot = |f: &Option<FirstMetrics>| f.as_ref().and_then(|f| f.snapshot);
    // The six values, then the six deltas.
    for i in 0..12 {
        args.push(column(firsts.iter().map(|f| {
            snapshot(f).map(|(values, delta, _)| if i < 6 { values[i] } else { delta[i - 6] })
        })));
    }
    args.push(column(
        firsts
            .iter()
            .map(|f| snapshot(f).map(|(_, _, at)| to_pg(at))),
    ));
    args.push(column(
        firsts
            .iter()
            .map(|f| f.as_ref().filter(|f| f.checked).map(|_| written_at)),
    ));
    args.push(column(posts.iter().map(|p| other_fields(&p.post))));
    debug_assert_eq!(args.len(), parameter_count(POST_WRITE));
    args
}

/// The fields of a post that have no column of their own, as one object; None without
/// any. NUL characters, which Postgres jsonb cannot hold, are dropped from its strings.
fn other_fields(post: &threads_model::Post) -> Option<pgrx::JsonB> {
    let poll = post.poll_attachment.as_ref()?;
    Some(pgrx::JsonB(
        serde_json::json!({ "poll_attachment": storable(poll) }),
    ))
}

fn storable(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(without_nul(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(storable).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (without_nul(k).into_owned(), storable(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// POST_LAYERS' rows, one array per column.
#[derive(Default)]
struct Layers {
    post_id: Vec<Uuid>,
    values: [Vec<i64>; 6],
    delta: [Vec<i64>; 6],
    period_start: Vec<Option<TimestampWithTimeZone>>,
    captured_at: Vec<TimestampWithTimeZone>,
}

impl Layers {
    fn push(
        &mut self,
        post_id: Uuid,
        values: [i64; 6],
        delta: [i64; 6],
        period_start: Option<DateTime<Utc>>,
        captured_at: DateTime<Utc>,
    ) {
        self.post_id.push(post_id);
        for i in 0..6 {
            self.values[i].push(values[i]);
            self.delta[i].push(delta[i]);
        }
        self.period_start.push(period_start.map(to_pg));
        self.captured_at.push(to_pg(captured_at));
    }

    fn into_args(self, account_id: Uuid, at: TimestampWithTimeZone) -> Vec<DatumWithOid<'static>> {
        let mut args: Vec<DatumWithOid> = vec![self.post_id.into(), account_id.into(), at.into()];
        args.extend(self.values.into_iter().map(DatumWithOid::from));
        args.extend(self.delta.into_iter().map(DatumWithOid::from));
        args.push(self.period_start.into());
        args.push(self.captured_at.into());
        debug_assert_eq!(args.len(), parameter_count(POST_LAYERS));
        args
    }
}
