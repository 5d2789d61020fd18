-- pg_pullsync 0.1.0 → 0.2.0. Every schema change of 0.2.0 goes here and into the fresh
-- install (sql/*.sql); the upgrade test compares the two catalogs object by object.
\echo Use "ALTER EXTENSION pg_pullsync UPDATE TO '0.2.0'" to load this file. \quit

-- Backups keep pg_pullsync's rows (sql/backup.sql).
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_accounts', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_posts', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_post_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_post_metrics_deltas', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_insights', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_insights_deltas', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.system_job_logs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_logs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.conversations', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.conversation_messages', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.feed_consumers', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_bookmarks', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.feed_sources', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.reconciliation_runs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_metric_totals', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_roles', '');

-- The identity sequences, so restored tables go on numbering after their last row.
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_post_metrics', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_post_metrics_deltas', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_insights', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_insights_deltas', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.system_job_logs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.jobs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.sync_logs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.sync_checkpoints', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.reconciliation_runs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.sync_metrics', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.alerts', 'id')::regclass, '');

-- A run's units go with it through a trigger, not a self-referencing foreign key: pg_dump
-- warns about that on every dump, and a --inserts dump can fail to restore.
ALTER TABLE pullsync.jobs DROP CONSTRAINT jobs_parent_id_fkey;
CREATE FUNCTION pullsync.delete_units() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM pullsync.jobs WHERE parent_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER delete_units AFTER DELETE ON pullsync.jobs
    FOR EACH ROW WHEN (OLD.parent_id IS NULL) EXECUTE FUNCTION pullsync.delete_units();
REVOKE ALL ON FUNCTION pullsync.delete_units() FROM PUBLIC;

-- Where the server has no pg_cron, schedule_defaults() says how to schedule from outside.
-- The default pg_cron jobs, named pullsync-…, in this database. Idempotent: pg_cron
-- replaces a job of the same name. Runs with the caller's rights (pg_cron's own checks).
CREATE OR REPLACE FUNCTION pullsync.schedule_defaults(OUT jobname text, OUT schedule text, OUT command text, OUT jobid bigint)
RETURNS SETOF record
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  HINT = CASE WHEN EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron')
                         THEN 'Add pg_cron to shared_preload_libraries, set cron.database_name, then CREATE EXTENSION pg_cron.'
                         ELSE 'pg_cron is not available on this server: call the same functions from any scheduler '
                              '(cron, a systemd timer, a Kubernetes CronJob); see docs/OPERATIONS.md, Scheduling without pg_cron.'
                         END;
    END IF;
    FOR d IN SELECT * FROM (VALUES
            ('pullsync-threads-sync', '0,15,30,45 * * * *', 'SELECT pullsync.threads_scheduled_sync()'),
            ('pullsync-token-refresh', '17 3 * * *', 'SELECT pullsync.threads_refresh_tokens(''7 days'')'),
            ('pullsync-feed-incremental', '*/5 * * * *', 'SELECT pullsync.feed_scheduled_sync(''incremental'')'),
            ('pullsync-feed-full', '0 2 * * *', 'SELECT pullsync.feed_scheduled_sync(''full'')'),
            -- The last day up to an hour ago: newer rows may still be on their way.
            ('pullsync-reconcile', '40 * * * *',
             'SELECT pullsync.sync_reconcile(now() - interval ''25 hours'', now() - interval ''1 hour'', repair => true) '
             || 'WHERE EXISTS (SELECT 1 FROM pullsync.feed_sources WHERE is_active)'),
            -- The safety net of the Threads listing: the last 30 days of every account
            -- with a usable token, missing posts written, vanished ones marked deleted.
            ('pullsync-threads-reconcile', '23 4 * * *',
             'SELECT pullsync.threads_reconcile(a.id, now() - interval ''30 days'', now()) '
             || 'FROM pullsync.workspace_threads_accounts a WHERE a.is_active AND EXISTS ('
             || 'SELECT 1 FROM pullsync.workspace_threads_tokens t WHERE t.workspace_threads_account_id = a.id '
             || 'AND t.is_primary AND t.revoked_at IS NULL AND t.invalidated_at IS NULL AND t.expires_at > now())'),
            ('pullsync-alerts', '*/5 * * * *', 'SELECT pullsync.check_alerts()'),
            ('pullsync-cleanup', '0 3 * * 0', 'SELECT pullsync.cleanup()')
        ) AS v(jobname, schedule, command)
    LOOP
        jobname := d.jobname;
        schedule := d.schedule;
        command := d.command;
        EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, current_database())'
           INTO jobid USING d.jobname, d.schedule, d.command;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The workspace views are security barriers: a reader's own function in a query over them
-- runs only on rows of the reader's workspaces.
ALTER VIEW pullsync.threads_post_stats SET (security_barrier = true);
ALTER VIEW pullsync.threads_account_stats SET (security_barrier = true);

-- job_status() runs with the owner's rights, so the documented operator grants suffice.
ALTER FUNCTION pullsync.job_status(bigint) SECURITY DEFINER;

-- Threads: a listing cut short resumes (its state is committed with its posts); posts
-- deleted on Threads are marked, not failed on; media types Meta adds are stored as sent;
-- tokens Threads refuses are marked; values this version does not know are noted.
-- Accounts start with no listing state: each lists its posts to the end once, which also
-- recovers posts 0.1.0 lost to a listing cut short.
ALTER TABLE pullsync.workspace_threads_accounts
    ADD COLUMN posts_listing_resume_after text,
    ADD COLUMN posts_listing_completed_at timestamptz;
ALTER TABLE pullsync.workspace_threads_tokens ADD COLUMN invalidated_at timestamptz;
ALTER TABLE pullsync.workspace_threads_posts
    DROP CONSTRAINT workspace_threads_posts_media_type_check,
    ADD COLUMN deleted_at timestamptz;
COMMENT ON COLUMN pullsync.workspace_threads_posts.media_type IS
    'As Threads sends it. Documented today: TEXT_POST, IMAGE, VIDEO, CAROUSEL_ALBUM, AUDIO, REPOST_FACADE; a type Meta adds later is stored as sent.';
ALTER TABLE pullsync.sync_logs ADD COLUMN notes text[] NOT NULL DEFAULT '{}';

-- Snapshots and deltas of a post carry its account (filled and keyed below).
ALTER TABLE pullsync.workspace_threads_post_metrics ADD COLUMN workspace_threads_account_id uuid;
ALTER TABLE pullsync.workspace_threads_post_metrics_deltas ADD COLUMN workspace_threads_account_id uuid;

-- Posts with their current metrics and the change over the last 24 hours (sum of L2).
-- Posts deleted on Threads are left out (their rows and history stay in the tables). A
-- first snapshot counts from zero, so it is the last 24 hours only for a post published
-- within them: a newly connected account's older posts start with nothing in *_24h.
CREATE OR REPLACE VIEW pullsync.threads_post_stats WITH (security_barrier) AS
SELECT p.id,
       p.workspace_threads_account_id,
       a.workspace_id,
       a.username,
       p.threads_post_id,
       p.media_type,
       p.permalink,
       left(p.text, 80)            AS text_preview,
       p.published_at,
       p.current_views             AS views,
       p.current_likes             AS likes,
       p.current_replies           AS replies,
       p.current_reposts           AS reposts,
       p.current_quotes            AS quotes,
       p.current_shares            AS shares,
       coalesce(d.views, 0)        AS views_24h,
       coalesce(d.likes, 0)        AS likes_24h,
       coalesce(d.replies, 0)      AS replies_24h,
       coalesce(d.reposts, 0)      AS reposts_24h,
       coalesce(d.quotes, 0)       AS quotes_24h,
       coalesce(d.shares, 0)       AS shares_24h,
       p.metrics_updated_at
  FROM pullsync.workspace_threads_posts p
  JOIN pullsync.workspace_threads_accounts a ON a.id = p.workspace_threads_account_id
  LEFT JOIN LATERAL (
       SELECT sum(views_delta) AS views, sum(likes_delta) AS likes, sum(replies_delta) AS replies,
              sum(reposts_delta) AS reposts, sum(quotes_delta) AS quotes, sum(shares_delta) AS shares
         FROM pullsync.workspace_threads_post_metrics_deltas d
        WHERE d.workspace_threads_account_id = p.workspace_threads_account_id
          AND d.workspace_threads_post_id = p.id AND d.period_end > now() - interval '24 hours'
          AND (d.period_start IS NOT NULL OR p.published_at > now() - interval '24 hours')) d ON true
 WHERE p.deleted_at IS NULL AND pullsync.workspace_visible(a.workspace_id);

-- Accounts with current insights, their 24-hour change (the first snapshot, which counts
-- from zero, is no change), post count, last sync and whether the token needs
-- re-authorisation.
CREATE OR REPLACE VIEW pullsync.threads_account_stats WITH (security_barrier) AS
SELECT a.id,
       a.workspace_id,
       a.threads_user_id,
       a.username,
       a.is_active,
       a.current_followers_count          AS followers_count,
       coalesce(d.followers_count, 0)     AS followers_24h,
       a.current_views                    AS views,
       a.current_likes                    AS likes,
       a.current_replies                  AS replies,
       a.current_reposts                  AS reposts,
       a.current_quotes                   AS quotes,
       a.current_clicks                   AS clicks,
       (SELECT count(*) FROM pullsync.workspace_threads_posts p
         WHERE p.workspace_threads_account_id = a.id AND p.deleted_at IS NULL) AS posts,
       t.expires_at                       AS token_expires_at,
       a.last_sync_status,
       greatest(a.last_posts_sync_at, a.last_metrics_sync_at, a.last_insights_sync_at) AS last_sync_at,
       t.invalidated_at                   AS token_invalidated_at
  FROM pullsync.workspace_threads_accounts a
  LEFT JOIN pullsync.workspace_threads_tokens t
         ON t.workspace_threads_account_id = a.id AND t.is_primary
  LEFT JOIN LATERAL (
       SELECT sum(followers_count_delta) AS followers_count
         FROM pullsync.workspace_threads_account_insights_deltas d
        WHERE d.workspace_threads_account_id = a.id AND d.period_end > now() - interval '24 hours'
          AND d.period_start IS NOT NULL) d ON true
 WHERE pullsync.workspace_visible(a.workspace_id);

-- Feed: items that cannot be stored go to quarantine (the page's other rows and its
-- checkpoint commit), and the change-xid trigger fires under replica mode too.
-- Consumer side: feed items that could not be stored (a role, risk level or timestamp the
-- schema refuses, an empty id, a field of the wrong type), kept as sent with the reason and
-- the cursor of their page, so the page's other rows and its checkpoint commit and the pull
-- goes on. pullsync.feed_retry_quarantined() re-applies them once the cause is fixed.
CREATE TABLE pullsync.feed_quarantine (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer_id    text NOT NULL REFERENCES pullsync.feed_sources (consumer_id) ON DELETE CASCADE,
    stream         text NOT NULL CHECK (stream IN ('conversations', 'messages')),
    item_id        text,
    reason         text NOT NULL,
    item           jsonb NOT NULL,
    page_cursor    text,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    retried_at     timestamptz,
    resolved_at    timestamptz
);
CREATE INDEX feed_quarantine_open_idx
    ON pullsync.feed_quarantine (consumer_id, id) WHERE resolved_at IS NULL;
REVOKE ALL ON TABLE pullsync.feed_quarantine FROM PUBLIC;
REVOKE ALL ON SEQUENCE pullsync.feed_quarantine_id_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pullsync.feed_quarantine', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.feed_quarantine', 'id')::regclass, '');
ALTER TABLE pullsync.conversations ENABLE ALWAYS TRIGGER stamp_change_xid;
ALTER TABLE pullsync.conversation_messages ENABLE ALWAYS TRIGGER stamp_change_xid;
-- Feed rows carry their source: '' for this database's own rows, otherwise the feed source
-- they were pulled from. 0.1.0 kept no such mark. A database without feed consumers whose
-- rows can only have come from one source (the one source that ever stored items) gets
-- them marked as that source's; otherwise they stay this database's own and a notice says
-- how to mark them. The change-xid trigger is off meanwhile: the rows' content is the same.
ALTER TABLE pullsync.conversations ADD COLUMN feed_source text NOT NULL DEFAULT '';
ALTER TABLE pullsync.conversation_messages ADD COLUMN feed_source text NOT NULL DEFAULT '';
DO $$
DECLARE
    pulling text[] := ARRAY(
        SELECT s.consumer_id FROM pullsync.feed_sources s
         WHERE EXISTS (SELECT 1 FROM pullsync.sync_metric_totals t
                        WHERE t.source = 'feed:' || s.consumer_id AND t.items > 0)
            OR EXISTS (SELECT 1 FROM pullsync.sync_checkpoints c
                        WHERE c.consumer_id = s.consumer_id AND c.items > 0)
         ORDER BY s.consumer_id);
    serving boolean := EXISTS (SELECT 1 FROM pullsync.feed_consumers);
    has_rows boolean := EXISTS (SELECT 1 FROM pullsync.conversations)
                        OR EXISTS (SELECT 1 FROM pullsync.conversation_messages);
BEGIN
    IF NOT has_rows OR cardinality(pulling) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(pulling) = 1 AND NOT serving THEN
        ALTER TABLE pullsync.conversations DISABLE TRIGGER stamp_change_xid;
        ALTER TABLE pullsync.conversation_messages DISABLE TRIGGER stamp_change_xid;
        UPDATE pullsync.conversations SET feed_source = pulling[1];
        UPDATE pullsync.conversation_messages SET feed_source = pulling[1];
        ALTER TABLE pullsync.conversations ENABLE ALWAYS TRIGGER stamp_change_xid;
        ALTER TABLE pullsync.conversation_messages ENABLE ALWAYS TRIGGER stamp_change_xid;
        RAISE NOTICE 'pg_pullsync: the conversations and messages stored before 0.2.0 are marked as pulled from feed source %', pulling[1];
    ELSE
        RAISE NOTICE 'pg_pullsync: the conversations and messages stored before 0.2.0 are kept as this database''s own (feed_source = '''')'
            USING DETAIL = format('Feed sources that stored items: %s; feed consumers exist: %s.',
                                  array_to_string(pulling, ', '), serving),
                  HINT = 'Mark the rows pulled from a source with UPDATE pullsync.conversations SET feed_source = ''<consumer_id>'' WHERE … (the same for pullsync.conversation_messages), then run pullsync.sync_reconcile.';
    END IF;
END
$$;
ALTER TABLE pullsync.conversations DROP CONSTRAINT conversations_pkey,
    ALTER COLUMN id SET NOT NULL, ADD PRIMARY KEY (feed_source, id);
-- A message's key holds its conversation, so messages can be distributed with it
-- (docs/SCALING.md); one row per id and feed source is kept by the pull.
ALTER TABLE pullsync.conversation_messages DROP CONSTRAINT conversation_messages_pkey,
    ALTER COLUMN id SET NOT NULL, ADD PRIMARY KEY (feed_source, conversation_id, id);
CREATE INDEX conversation_messages_id_idx ON pullsync.conversation_messages (feed_source, id);
DROP INDEX pullsync.conversations_change_idx, pullsync.conversations_updated_idx,
    pullsync.conversations_user_idx, pullsync.conversations_started_idx,
    pullsync.conversation_messages_change_idx, pullsync.conversation_messages_conversation_idx,
    pullsync.conversation_messages_updated_idx, pullsync.conversation_messages_created_idx;
CREATE INDEX conversations_change_idx ON pullsync.conversations (feed_source, change_xid, id);
CREATE INDEX conversations_updated_idx ON pullsync.conversations (feed_source, updated_at, id);
CREATE INDEX conversations_user_idx ON pullsync.conversations (feed_source, user_id, change_xid, id);
CREATE INDEX conversations_started_idx ON pullsync.conversations (feed_source, started_at, id);
CREATE INDEX conversation_messages_change_idx ON pullsync.conversation_messages (feed_source, change_xid, id);
CREATE INDEX conversation_messages_conversation_idx
    ON pullsync.conversation_messages (feed_source, conversation_id, change_xid, id);
CREATE INDEX conversation_messages_updated_idx ON pullsync.conversation_messages (feed_source, updated_at, id);
CREATE INDEX conversation_messages_created_idx ON pullsync.conversation_messages (feed_source, created_at, id);
-- Provider side: the feed epoch, one part of the identity every cursor carries (with the
-- cluster's system identifier and timeline). It starts random and is not in backups, so a
-- database restored from a dump refuses the cursors handed out before; bump it with
-- pullsync.feed_new_epoch() after restoring a file-level copy of the cluster.
CREATE TABLE pullsync.feed_epoch (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch      bigint NOT NULL DEFAULT (floor(random() * 1e15))::bigint + 1 CHECK (epoch > 0),
    changed_at timestamptz NOT NULL DEFAULT now(),
    reason     text
);
INSERT INTO pullsync.feed_epoch DEFAULT VALUES;
REVOKE ALL ON TABLE pullsync.feed_epoch FROM PUBLIC;

-- Starts a new feed epoch (src/feed/functions.rs).
CREATE FUNCTION pullsync."feed_new_epoch"("reason" TEXT DEFAULT NULL) RETURNS bigint
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'feed_new_epoch_wrapper';
REVOKE ALL ON FUNCTION pullsync.feed_new_epoch(text) FROM PUBLIC;

-- Quarantined items open an alert of their own.
ALTER TABLE pullsync.alerts DROP CONSTRAINT alerts_alert_type_check,
    ADD CONSTRAINT alerts_alert_type_check
        CHECK (alert_type IN ('lag', 'error_rate', 'duration', 'token_expired', 'quarantine'));

CREATE OR REPLACE VIEW pullsync.sync_status AS
SELECT s.consumer_id,
       s.base_url,
       s.is_active,
       cp.last_sync_at,
       now() - cp.last_sync_at                  AS lag,
       -- Totals survive retention; pages are those whose checkpoints are still kept.
       coalesce(t.items, 0)                     AS total_items,
       coalesce(cp.pages, 0)                    AS total_pages,
       coalesce(l.errors_24h, 0)                AS errors_24h,
       CASE
           WHEN EXISTS (SELECT 1 FROM pullsync.jobs j
                         WHERE j.kind = 'feed_pull' AND j.state IN ('queued', 'running')
                           AND j.payload->>'consumer_id' = s.consumer_id) THEN 'running'
           WHEN last.status IS NULL THEN 'idle'
           WHEN last.status = 'failed' THEN 'failed'
           ELSE 'completed'
       END                                      AS state,
       last.error                               AS last_error,
       (SELECT count(*) FROM pullsync.feed_quarantine q
         WHERE q.consumer_id = s.consumer_id AND q.resolved_at IS NULL) AS quarantined
  FROM pullsync.feed_sources s
  LEFT JOIN pullsync.sync_metric_totals t ON t.source = 'feed:' || s.consumer_id
  LEFT JOIN LATERAL (SELECT max(created_at) AS last_sync_at, count(*) AS pages
                       FROM pullsync.sync_checkpoints c WHERE c.consumer_id = s.consumer_id) cp ON true
  LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE status = 'failed' AND started_at > now() - interval '24 hours') AS errors_24h
                       FROM pullsync.sync_logs g WHERE g.consumer_id = s.consumer_id) l ON true
  LEFT JOIN LATERAL (SELECT status, error FROM pullsync.sync_logs g
                      WHERE g.consumer_id = s.consumer_id ORDER BY id DESC LIMIT 1) last ON true;

-- The REST source (docs/REST.md).
-- A REST source (docs/REST.md): its checked configuration (without the secret), the
-- sealed secret, the role whose rights every write into its target has, and where its
-- runs stand. A run's position and marks are written with each page it commits.
CREATE TABLE pullsync.rest_sources (
    name             text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    config           jsonb NOT NULL,
    secret_encrypted text CHECK (secret_encrypted LIKE 'v1:%'),
    owner_role       name NOT NULL,
    is_active        boolean NOT NULL DEFAULT true,
    -- the high-water mark the next run sends (incremental sources)
    high_water       text,
    -- an unfinished run: where it resumes, the mark it sends, the highest value it wrote
    run_position     jsonb,
    run_since        text,
    run_high_water   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('pullsync.rest_sources', '');
REVOKE ALL ON TABLE pullsync.rest_sources FROM PUBLIC;
-- Records of a REST source its target would not take (a value of the wrong type, a
-- constraint): kept as mapped rows with the reason, so the run goes on and nothing is
-- lost; pullsync.rest_retry_quarantined() applies them again once the cause is fixed.
CREATE TABLE pullsync.rest_quarantine (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_name    text NOT NULL REFERENCES pullsync.rest_sources (name) ON DELETE CASCADE,
    record_key     text,
    reason         text NOT NULL,
    row_data       jsonb NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    retried_at     timestamptz,
    resolved_at    timestamptz
);
CREATE INDEX rest_quarantine_open_idx
    ON pullsync.rest_quarantine (source_name, id) WHERE resolved_at IS NULL;
REVOKE ALL ON TABLE pullsync.rest_quarantine FROM PUBLIC;
REVOKE ALL ON SEQUENCE pullsync.rest_quarantine_id_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pullsync.rest_quarantine', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.rest_quarantine', 'id')::regclass, '');

-- Each source states, in a view of its own, when it was configured (null: it is not), its
-- jobs queued or running, and the figures only it has; source_metrics joins them with the
-- metric totals. A new source adds its state view and one line to `states` below.
CREATE VIEW pullsync.threads_source_state AS
SELECT 'threads'::text                                AS source,
       (SELECT min(created_at) FROM pullsync.workspace_threads_accounts WHERE is_active) AS configured_at,
       (SELECT count(*) FROM pullsync.jobs j
         WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'threads_sync') AS jobs_running,
       cardinality(r.usernames)::bigint               AS accounts_without_token,
       r.usernames                                    AS accounts_needing_reauthorization,
       NULL::bigint                                   AS items_quarantined
  -- Active accounts without a usable token (expired, or refused by Threads), by username:
  -- whoever must authorise the app again.
  FROM (SELECT coalesce(array_agg(a.username ORDER BY a.username), '{}') AS usernames
          FROM pullsync.workspace_threads_accounts a
         WHERE a.is_active AND NOT EXISTS (
               SELECT 1 FROM pullsync.workspace_threads_tokens k
                WHERE k.workspace_threads_account_id = a.id AND k.is_primary
                  AND k.revoked_at IS NULL AND k.invalidated_at IS NULL AND k.expires_at > now())) r;

CREATE VIEW pullsync.feed_source_state AS
SELECT 'feed:' || f.consumer_id                       AS source,
       CASE WHEN f.is_active THEN f.created_at END    AS configured_at,
       (SELECT count(*) FROM pullsync.jobs j
         WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'feed_pull'
           AND j.payload->>'consumer_id' = f.consumer_id) AS jobs_running,
       NULL::bigint                                   AS accounts_without_token,
       NULL::text[]                                   AS accounts_needing_reauthorization,
       -- Items that could not be stored and wait in pullsync.feed_quarantine.
       (SELECT count(*) FROM pullsync.feed_quarantine q
         WHERE q.consumer_id = f.consumer_id AND q.resolved_at IS NULL) AS items_quarantined
  FROM pullsync.feed_sources f;

CREATE VIEW pullsync.rest_source_state AS
SELECT 'rest:' || r.name                              AS source,
       CASE WHEN r.is_active THEN r.created_at END    AS configured_at,
       (SELECT count(*) FROM pullsync.jobs j
         WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'rest_pull'
           AND j.payload->>'name' = r.name)           AS jobs_running,
       NULL::bigint                                   AS accounts_without_token,
       NULL::text[]                                   AS accounts_needing_reauthorization,
       -- Records the target would not take, waiting in pullsync.rest_quarantine.
       (SELECT count(*) FROM pullsync.rest_quarantine q
         WHERE q.source_name = r.name AND q.resolved_at IS NULL) AS items_quarantined
  FROM pullsync.rest_sources r;

-- Monitoring figures per source, for pullsync.metrics(), pullsync.health() and
-- postgres_exporter (docs/MONITORING.md). A source is one its state view says is
-- configured ('threads' with any active account, 'feed:<consumer_id>' for an active feed
-- source, 'rest:<name>' for an active REST source) or any source that has recorded runs ('maintenance').
CREATE OR REPLACE VIEW pullsync.source_metrics AS
WITH states AS (
    SELECT * FROM pullsync.threads_source_state
    UNION ALL
    SELECT * FROM pullsync.feed_source_state
    UNION ALL
    SELECT * FROM pullsync.rest_source_state),
sources AS (
    SELECT source FROM states WHERE configured_at IS NOT NULL
    UNION
    SELECT source FROM pullsync.sync_metric_totals)
SELECT s.source,
       c.configured_at IS NOT NULL OR s.source = 'maintenance' AS active,
       coalesce(t.runs, 0)                            AS runs_total,
       coalesce(t.items, 0)                           AS items_total,
       coalesce(t.attempts, 0)                        AS attempts_total,
       coalesce(t.errors, 0)                          AS errors_total,
       t.last_run_at,
       t.last_success_at,
       t.last_duration_ms / 1000.0                    AS last_duration_seconds,
       -- Lag: time since the last successful pull, or since the source was configured
       -- when it never had one. Only configured sources have a lag.
       CASE WHEN c.configured_at IS NOT NULL
            THEN extract(epoch FROM now() - coalesce(t.last_success_at, c.configured_at))::float8
       END                                            AS lag_seconds,
       coalesce(c.jobs_running, 0)                    AS jobs_running,
       (SELECT count(*) FROM pullsync.alerts a
         WHERE a.source = s.source AND a.resolved_at IS NULL) AS alerts_open,
       c.accounts_without_token,
       c.accounts_needing_reauthorization,
       c.items_quarantined
  FROM sources s
  LEFT JOIN states c USING (source)
  LEFT JOIN pullsync.sync_metric_totals t USING (source);
REVOKE ALL ON pullsync.threads_source_state, pullsync.feed_source_state, pullsync.rest_source_state FROM PUBLIC;

-- Re-applies a source's quarantined feed items (src/feed/functions.rs).
CREATE FUNCTION pullsync."feed_retry_quarantined"("consumer_id" TEXT) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'feed_retry_quarantined_wrapper';
REVOKE ALL ON FUNCTION pullsync.feed_retry_quarantined(text) FROM PUBLIC;

-- A source is any the library registers (sql/sources.sql).
CREATE FUNCTION pullsync."is_source"("name" TEXT) RETURNS bool
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'is_source_wrapper';
REVOKE ALL ON FUNCTION pullsync.is_source(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pullsync.is_source(text) TO PUBLIC;
ALTER TABLE pullsync.sync_logs
    DROP CONSTRAINT sync_logs_source_check,
    ADD CONSTRAINT sync_logs_source_check CHECK (pullsync.is_source(source));
ALTER TABLE pullsync.reconciliation_runs
    DROP CONSTRAINT reconciliation_runs_source_check,
    ADD CONSTRAINT reconciliation_runs_source_check CHECK (pullsync.is_source(source));

-- The REST source's functions (src/rest/functions.rs, sql/rest.sql).
CREATE FUNCTION pullsync."rest_add_source"("name" TEXT, "config" jsonb) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_add_source_wrapper';
CREATE FUNCTION pullsync."rest_alter_source"("name" TEXT, "config" jsonb) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_alter_source_wrapper';
CREATE FUNCTION pullsync."rest_drop_source"("name" TEXT) RETURNS void
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_drop_source_wrapper';
CREATE FUNCTION pullsync."rest_pull"("name" TEXT) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_pull_wrapper';
CREATE FUNCTION pullsync."rest_enqueue"("name" TEXT) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_enqueue_wrapper';
CREATE FUNCTION pullsync."rest_retry_quarantined"("name" TEXT) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_retry_quarantined_wrapper';
CREATE FUNCTION pullsync."rest_reconcile"("name" TEXT, "since" TEXT DEFAULT NULL) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_reconcile_wrapper';
-- Scheduling a REST source with pg_cron: a job named pullsync-rest-<name> that queues its
-- pull (rest_enqueue refuses a name that is not a source). Idempotent (pg_cron replaces a job of the same name); runs with the caller's
-- rights, as schedule_defaults() does.
CREATE FUNCTION pullsync.rest_schedule(name text, schedule text DEFAULT '*/15 * * * *')
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name IS NULL OR schedule IS NULL THEN
        RAISE EXCEPTION 'name and schedule must not be null' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass the source''s name and a cron schedule such as ''*/15 * * * *''.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database' USING ERRCODE = 'undefined_object',
            HINT = 'Install pg_cron, or call SELECT pullsync.rest_enqueue(name) from any scheduler.';
    END IF;
    RETURN cron.schedule('pullsync-rest-' || name, schedule,
                         format('SELECT pullsync.rest_enqueue(%L)', name));
END
$$;
REVOKE ALL ON FUNCTION pullsync.rest_add_source(text, jsonb), pullsync.rest_alter_source(text, jsonb),
    pullsync.rest_drop_source(text), pullsync.rest_pull(text), pullsync.rest_enqueue(text),
    pullsync.rest_reconcile(text, text), pullsync.rest_retry_quarantined(text),
    pullsync.rest_schedule(text, text) FROM PUBLIC;

-- Keys that hold the account, so the Threads tables can be distributed by account with
-- Citus (docs/SCALING.md). One row per Threads user: new accounts' ids derive from it.
ALTER TABLE pullsync.workspace_threads_accounts
    DROP CONSTRAINT workspace_threads_accounts_threads_user_id_key;
CREATE INDEX workspace_threads_accounts_threads_user_idx
    ON pullsync.workspace_threads_accounts (threads_user_id);
ALTER TABLE pullsync.workspace_threads_tokens DROP CONSTRAINT workspace_threads_tokens_pkey,
    ADD PRIMARY KEY (workspace_threads_account_id, id);
ALTER TABLE pullsync.workspace_threads_account_insights
    DROP CONSTRAINT workspace_threads_account_insights_pkey,
    ADD PRIMARY KEY (workspace_threads_account_id, id);
ALTER TABLE pullsync.workspace_threads_account_insights_deltas
    DROP CONSTRAINT workspace_threads_account_insights_deltas_pkey,
    ADD PRIMARY KEY (workspace_threads_account_id, id);

-- The post tables' snapshots and deltas carry their post's account (the columns are added
-- above, before the views that use them).
ALTER TABLE pullsync.workspace_threads_post_metrics DISABLE TRIGGER immutable_snapshot;
UPDATE pullsync.workspace_threads_post_metrics m SET workspace_threads_account_id = p.workspace_threads_account_id
  FROM pullsync.workspace_threads_posts p WHERE p.id = m.workspace_threads_post_id;
ALTER TABLE pullsync.workspace_threads_post_metrics ENABLE TRIGGER immutable_snapshot;
UPDATE pullsync.workspace_threads_post_metrics_deltas d SET workspace_threads_account_id = p.workspace_threads_account_id
  FROM pullsync.workspace_threads_posts p WHERE p.id = d.workspace_threads_post_id;
ALTER TABLE pullsync.workspace_threads_post_metrics
    DROP CONSTRAINT workspace_threads_post_metrics_workspace_threads_post_id_fkey,
    DROP CONSTRAINT workspace_threads_post_metric_workspace_threads_post_id_cap_key,
    DROP CONSTRAINT workspace_threads_post_metrics_pkey,
    ALTER COLUMN workspace_threads_account_id SET NOT NULL;
ALTER TABLE pullsync.workspace_threads_post_metrics_deltas
    DROP CONSTRAINT workspace_threads_post_metrics_d_workspace_threads_post_id_fkey,
    DROP CONSTRAINT workspace_threads_post_metric_workspace_threads_post_id_per_key,
    DROP CONSTRAINT workspace_threads_post_metrics_deltas_pkey,
    ALTER COLUMN workspace_threads_account_id SET NOT NULL;
ALTER TABLE pullsync.workspace_threads_posts
    DROP CONSTRAINT workspace_threads_posts_threads_post_id_key,
    DROP CONSTRAINT workspace_threads_posts_pkey,
    ADD PRIMARY KEY (workspace_threads_account_id, id),
    ADD CONSTRAINT workspace_threads_posts_account_post_key
        UNIQUE (workspace_threads_account_id, threads_post_id);
ALTER TABLE pullsync.workspace_threads_post_metrics
    ADD PRIMARY KEY (workspace_threads_account_id, id),
    ADD CONSTRAINT workspace_threads_post_metrics_post_captured_key
        UNIQUE (workspace_threads_account_id, workspace_threads_post_id, captured_at),
    ADD CONSTRAINT workspace_threads_post_metrics_post_fkey
        FOREIGN KEY (workspace_threads_account_id, workspace_threads_post_id)
        REFERENCES pullsync.workspace_threads_posts (workspace_threads_account_id, id) ON DELETE CASCADE;
ALTER TABLE pullsync.workspace_threads_post_metrics_deltas
    ADD PRIMARY KEY (workspace_threads_account_id, id),
    ADD CONSTRAINT workspace_threads_post_metrics_deltas_post_end_key
        UNIQUE (workspace_threads_account_id, workspace_threads_post_id, period_end),
    ADD CONSTRAINT workspace_threads_post_metrics_deltas_post_fkey
        FOREIGN KEY (workspace_threads_account_id, workspace_threads_post_id)
        REFERENCES pullsync.workspace_threads_posts (workspace_threads_account_id, id) ON DELETE CASCADE;

-- Logs and reconciliation records stay on one node, so they follow their account by a
-- trigger, not a foreign key.
ALTER TABLE pullsync.sync_logs DROP CONSTRAINT sync_logs_workspace_threads_account_id_fkey;
ALTER TABLE pullsync.reconciliation_runs DROP CONSTRAINT reconciliation_runs_workspace_threads_account_id_fkey;
CREATE INDEX reconciliation_runs_account_idx ON pullsync.reconciliation_runs (workspace_threads_account_id)
    WHERE workspace_threads_account_id IS NOT NULL;
CREATE FUNCTION pullsync.forget_account() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM pullsync.sync_logs WHERE workspace_threads_account_id = OLD.id;
    DELETE FROM pullsync.reconciliation_runs WHERE workspace_threads_account_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER forget_account AFTER DELETE ON pullsync.workspace_threads_accounts
    FOR EACH ROW EXECUTE FUNCTION pullsync.forget_account();
REVOKE ALL ON FUNCTION pullsync.forget_account() FROM PUBLIC;
-- Snapshot and delta rows are visible with their account (a join on the key they share).
ALTER POLICY workspace_member ON pullsync.workspace_threads_post_metrics
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER POLICY workspace_member ON pullsync.workspace_threads_post_metrics_deltas
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
-- A worker step reads only the queued units it claims or gives up on.
CREATE INDEX jobs_queued_units_idx ON pullsync.jobs (attempts, parent_id, id)
    WHERE state = 'queued';
-- Every sync updates a post's metrics_updated_at; no query reads posts by it, and while an
-- index holds it no such update can stay on its page (HOT).
DROP INDEX pullsync.workspace_threads_posts_account_refreshed_idx;
-- Row security's checks in the form Citus takes (docs/SCALING.md switches the policies to
-- them there); each answers only for the caller, within what its row security shows.
CREATE FUNCTION pullsync.account_visible(account uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pullsync.workspace_threads_accounts WHERE id = account)
$$;
CREATE FUNCTION pullsync.role_held(role name) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_roles g
                    WHERE g.rolname = role AND pg_has_role(current_user, g.oid, 'USAGE'))
$$;
REVOKE ALL ON FUNCTION pullsync.account_visible(uuid), pullsync.role_held(name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pullsync.account_visible(uuid), pullsync.role_held(name) TO PUBLIC;
