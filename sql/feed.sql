-- The conversation feed: the tables a provider serves and a consumer pulls into (shared),
-- the provider's consumers, bookmarks and epoch, the consumer's sources, checkpoints and
-- quarantine, its views, and its parts of the shared tables. docs/FEED.md.

------------------------------------------------------------------------------------------
-- Conversation feed (provider and consumer share the tables)
------------------------------------------------------------------------------------------

-- change_xid is the writing transaction's id, set by trigger on every insert and update.
-- The feed serves rows in (change_xid, id) order and only below the oldest transaction
-- still running, so a late commit is never skipped.
-- feed_source says whose row it is: '' for this database's own rows (the ones its feed
-- serves), otherwise the feed source (feed_sources.consumer_id) it was pulled from. So
-- partners with overlapping ids, and a database that both serves and pulls, keep their
-- rows apart. Rows of a feed source that is removed stay.
CREATE TABLE pullsync.conversations (
    id              text NOT NULL CHECK (id <> ''),
    user_id         text NOT NULL,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    last_message_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    change_xid      xid8 NOT NULL DEFAULT pg_current_xact_id(),
    feed_source     text NOT NULL DEFAULT '',
    CHECK (ended_at IS NULL OR ended_at >= started_at),
    PRIMARY KEY (feed_source, id)
);
CREATE INDEX conversations_change_idx ON pullsync.conversations (feed_source, change_xid, id);
CREATE INDEX conversations_updated_idx ON pullsync.conversations (feed_source, updated_at, id);
CREATE INDEX conversations_user_idx ON pullsync.conversations (feed_source, user_id, change_xid, id);
CREATE INDEX conversations_started_idx ON pullsync.conversations (feed_source, started_at, id);

-- No foreign key to conversations: the feed delivers conversations and messages as two
-- independent streams, so a message may arrive before its conversation. The key holds the
-- conversation, so messages can be distributed with their conversation (docs/SCALING.md); a
-- message id is still one row per feed source: a pull that moves a message to another
-- conversation deletes its old row.
CREATE TABLE pullsync.conversation_messages (
    id               text NOT NULL CHECK (id <> ''),
    conversation_id  text NOT NULL,
    role             text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content_redacted text,
    risk_level       text NOT NULL DEFAULT 'none'
        CHECK (risk_level IN ('none', 'low', 'medium', 'high', 'critical')),
    risk_categories  text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    change_xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    feed_source      text NOT NULL DEFAULT '',
    PRIMARY KEY (feed_source, conversation_id, id)
);
CREATE INDEX conversation_messages_id_idx ON pullsync.conversation_messages (feed_source, id);
CREATE INDEX conversation_messages_change_idx ON pullsync.conversation_messages (feed_source, change_xid, id);
CREATE INDEX conversation_messages_conversation_idx
    ON pullsync.conversation_messages (feed_source, conversation_id, change_xid, id);
CREATE INDEX conversation_messages_updated_idx ON pullsync.conversation_messages (feed_source, updated_at, id);
CREATE INDEX conversation_messages_created_idx ON pullsync.conversation_messages (feed_source, created_at, id);

CREATE FUNCTION pullsync.stamp_change_xid() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    NEW.change_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
CREATE TRIGGER stamp_change_xid BEFORE INSERT OR UPDATE ON pullsync.conversations
    FOR EACH ROW EXECUTE FUNCTION pullsync.stamp_change_xid();
CREATE TRIGGER stamp_change_xid BEFORE INSERT OR UPDATE ON pullsync.conversation_messages
    FOR EACH ROW EXECUTE FUNCTION pullsync.stamp_change_xid();
-- Always, also under session_replication_role = replica (logical replication apply, bulk
-- loaders): a write that kept its old change_xid would never be served.
ALTER TABLE pullsync.conversations ENABLE ALWAYS TRIGGER stamp_change_xid;
ALTER TABLE pullsync.conversation_messages ENABLE ALWAYS TRIGGER stamp_change_xid;

-- Provider side: who may pull, with a sealed API key.
CREATE TABLE pullsync.feed_consumers (
    consumer_id           text PRIMARY KEY CHECK (consumer_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    api_key_encrypted     text NOT NULL CHECK (api_key_encrypted LIKE 'v1:%'),
    rate_limit_per_minute integer NOT NULL DEFAULT 600 CHECK (rate_limit_per_minute > 0),
    is_active             boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Provider side: each consumer's position in the feed.
CREATE TABLE pullsync.sync_bookmarks (
    consumer_id              text PRIMARY KEY REFERENCES pullsync.feed_consumers (consumer_id) ON DELETE CASCADE,
    last_conversation_cursor text,
    last_message_cursor      text,
    last_sync_at             timestamptz,
    sync_stats               jsonb NOT NULL DEFAULT '{}'
);

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

-- Consumer side: where to pull from (the seed's SyncConfig).
CREATE TABLE pullsync.feed_sources (
    consumer_id       text PRIMARY KEY CHECK (consumer_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    base_url          text NOT NULL CHECK (base_url ~ '^https?://[^\s/]+'),
    api_key_encrypted text NOT NULL CHECK (api_key_encrypted LIKE 'v1:%'),
    batch_size        integer NOT NULL DEFAULT 500 CHECK (batch_size BETWEEN 1 AND 5000),
    rate_limit        integer NOT NULL DEFAULT 5 CHECK (rate_limit BETWEEN 1 AND 10000),
    timeout           interval NOT NULL DEFAULT '30 s' CHECK (timeout > '0' AND timeout <= '10 min'),
    max_retries       integer NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 20),
    retry_delay       interval NOT NULL DEFAULT '5 s' CHECK (retry_delay >= '0' AND retry_delay <= '10 min'),
    is_active         boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Consumer side: the cursor after each committed page, written in the page's transaction.
CREATE TABLE pullsync.sync_checkpoints (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer_id  text NOT NULL REFERENCES pullsync.feed_sources (consumer_id) ON DELETE CASCADE,
    stream       text NOT NULL CHECK (stream IN ('conversations', 'messages')),
    mode         text NOT NULL CHECK (mode IN ('incremental', 'full', 'catch_up', 'repair')),
    cursor       text,
    window_start timestamptz,
    window_end   timestamptz,
    items        integer NOT NULL DEFAULT 0 CHECK (items >= 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_checkpoints_latest_idx
    ON pullsync.sync_checkpoints (consumer_id, stream, id DESC);
CREATE INDEX sync_checkpoints_created_idx ON pullsync.sync_checkpoints (created_at);

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

-- The shared log tables' subject of a feed row is its source's consumer_id: whichever of
-- the two a writer gives, the other is filled.
CREATE FUNCTION pullsync.feed_subject() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    NEW.subject := coalesce(NEW.subject, NEW.consumer_id);
    NEW.consumer_id := coalesce(NEW.consumer_id, NEW.subject);
    RETURN NEW;
END
$$;
CREATE TRIGGER feed_subject BEFORE INSERT ON pullsync.sync_logs
    FOR EACH ROW WHEN (NEW.source = 'feed') EXECUTE FUNCTION pullsync.feed_subject();
CREATE TRIGGER feed_subject BEFORE INSERT ON pullsync.reconciliation_runs
    FOR EACH ROW WHEN (NEW.source = 'feed') EXECUTE FUNCTION pullsync.feed_subject();
CREATE INDEX sync_logs_consumer_idx ON pullsync.sync_logs (consumer_id, started_at DESC);
ALTER TABLE pullsync.reconciliation_runs
    ADD CONSTRAINT reconciliation_runs_consumer_id_fkey FOREIGN KEY (consumer_id)
        REFERENCES pullsync.feed_sources (consumer_id) ON DELETE CASCADE,
    ADD CONSTRAINT reconciliation_runs_check1 CHECK ((source = 'feed') = (consumer_id IS NOT NULL));

-- Per consumer (feed source): last sync, lag, totals, errors and state.
CREATE VIEW pullsync.sync_status AS
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

-- Its state, for pullsync.source_metrics (sql/monitor.sql).
CREATE VIEW pullsync.feed_source_state AS
SELECT s.*,
       -- what only this source has, for source_metrics.details
       jsonb_build_object('items_quarantined', s.items_quarantined) AS details
  FROM (SELECT 'feed:' || f.consumer_id                       AS source,
              CASE WHEN f.is_active THEN f.created_at END    AS configured_at,
              (SELECT count(*) FROM pullsync.jobs j
                WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'feed_pull'
                  AND j.payload->>'consumer_id' = f.consumer_id) AS jobs_running,
              NULL::bigint                                   AS accounts_without_token,
              NULL::text[]                                   AS accounts_needing_reauthorization,
              -- Items that could not be stored and wait in pullsync.feed_quarantine.
              (SELECT count(*) FROM pullsync.feed_quarantine q
                WHERE q.consumer_id = f.consumer_id AND q.resolved_at IS NULL) AS items_quarantined,
              NULL::bigint                                   AS accounts_rate_limited
         FROM pullsync.feed_sources f) s;

-- Its tables' rows go into pg_dump's backups (sql/backup.sql says why); feed_epoch is
-- drawn anew in a restored database, so that cursors handed out before are refused.
SELECT pg_catalog.pg_extension_config_dump('pullsync.conversations', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.conversation_messages', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.feed_consumers', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_bookmarks', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.feed_sources', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.feed_quarantine', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.sync_checkpoints', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.feed_quarantine', 'id')::regclass, '');
