-- pg_pullsync schema. Every object here, the schema included, is created by CREATE
-- EXTENSION and so belongs to the extension: DROP EXTENSION removes all of it.
-- Nothing is granted to PUBLIC; docs/SECURITY.md lists the grants an operator gives.

CREATE SCHEMA pullsync;
REVOKE ALL ON SCHEMA pullsync FROM PUBLIC;

------------------------------------------------------------------------------------------
-- Threads source
------------------------------------------------------------------------------------------

-- Every Threads table carries the account id and has it in each key, so the tables can be
-- distributed by account with Citus (docs/SCALING.md). threads_user_id is unique because
-- the functions derive a new account's id from it (the primary key holds it), not by a
-- unique constraint of its own.
CREATE TABLE pullsync.workspace_threads_accounts (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id            uuid NOT NULL,
    threads_user_id         text NOT NULL CHECK (threads_user_id ~ '^[0-9]+$'),
    username                text NOT NULL CHECK (btrim(username) <> ''),
    is_active               boolean NOT NULL DEFAULT true,
    -- L3: latest account insight values (equal to the newest L1 snapshot)
    current_followers_count bigint,
    current_views           bigint,
    current_likes           bigint,
    current_replies         bigint,
    current_reposts         bigint,
    current_quotes          bigint,
    current_clicks          bigint,
    -- when insights were last fetched, and when the newest L1 snapshot was taken
    insights_updated_at     timestamptz,
    insights_snapshot_at    timestamptz,
    last_posts_sync_at      timestamptz,
    last_metrics_sync_at    timestamptz,
    last_insights_sync_at   timestamptz,
    last_sync_status        text CHECK (last_sync_status IN ('completed', 'partial', 'failed', 'skipped')),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- How far the posts listing got, committed with the posts it produced: the cursor of
    -- the first page not yet stored (a gap below the newest stored posts), and when the
    -- posts below it were last known to reach the end of the listing. Until then a listing
    -- does not stop at a stored post.
    posts_listing_resume_after text,
    posts_listing_completed_at timestamptz,
    -- Meta asked this account to wait (Retry-After, or the time its usage headers give to
    -- regain access): no run calls for it before then (added in 0.3.0, hence last).
    rate_limited_until         timestamptz
);
CREATE INDEX workspace_threads_accounts_workspace_idx
    ON pullsync.workspace_threads_accounts (workspace_id);
CREATE INDEX workspace_threads_accounts_active_idx
    ON pullsync.workspace_threads_accounts (id) WHERE is_active;
CREATE INDEX workspace_threads_accounts_threads_user_idx
    ON pullsync.workspace_threads_accounts (threads_user_id);

-- Sealed tokens only (v1: AES-256-GCM). No role but the owner may read this table.
CREATE TABLE pullsync.workspace_threads_tokens (
    id                           uuid NOT NULL DEFAULT gen_random_uuid(),
    workspace_threads_account_id uuid NOT NULL
        REFERENCES pullsync.workspace_threads_accounts (id) ON DELETE CASCADE,
    access_token_encrypted       text NOT NULL CHECK (access_token_encrypted LIKE 'v1:%'),
    -- When the token was issued or last refreshed: Threads refuses a refresh before 24 h.
    issued_at                    timestamptz NOT NULL DEFAULT now(),
    expires_at                   timestamptz NOT NULL,
    is_primary                   boolean NOT NULL DEFAULT true,
    revoked_at                   timestamptz,
    refreshed_at                 timestamptz,
    expired_reported_at          timestamptz,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    -- Threads refused the token (revoked, password changed, expired early): never used
    -- again; the account needs re-authorisation.
    invalidated_at               timestamptz,
    CHECK (expires_at > issued_at),
    CHECK (NOT (is_primary AND revoked_at IS NOT NULL)),
    PRIMARY KEY (workspace_threads_account_id, id)
);
CREATE UNIQUE INDEX workspace_threads_tokens_one_primary
    ON pullsync.workspace_threads_tokens (workspace_threads_account_id)
    WHERE is_primary;
CREATE INDEX workspace_threads_tokens_expiry_idx
    ON pullsync.workspace_threads_tokens (expires_at) WHERE is_primary;

CREATE TABLE pullsync.workspace_threads_posts (
    id                           uuid NOT NULL DEFAULT gen_random_uuid(),
    workspace_threads_account_id uuid NOT NULL
        REFERENCES pullsync.workspace_threads_accounts (id) ON DELETE CASCADE,
    threads_post_id              text NOT NULL,
    media_product_type           text NOT NULL DEFAULT 'THREADS',
    media_type                   text NOT NULL,
    media_url                    text,
    thumbnail_url                text,
    permalink                    text,
    shortcode                    text,
    text                         text,
    children_ids                 text[],
    is_quote_post                boolean,
    quoted_post_id               text,
    reposted_post_id             text,
    alt_text                     text,
    link_attachment_url          text,
    gif_url                      text,
    topic_tag                    text,
    has_replies                  boolean,
    reply_audience               text,
    published_at                 timestamptz NOT NULL,
    -- L3: latest post metrics (equal to the newest L1 snapshot)
    current_views                bigint NOT NULL DEFAULT 0,
    current_likes                bigint NOT NULL DEFAULT 0,
    current_replies              bigint NOT NULL DEFAULT 0,
    current_reposts              bigint NOT NULL DEFAULT 0,
    current_quotes               bigint NOT NULL DEFAULT 0,
    current_shares               bigint NOT NULL DEFAULT 0,
    -- when metrics were last fetched, and when the newest L1 snapshot was taken
    metrics_updated_at           timestamptz,
    metrics_snapshot_at          timestamptz,
    -- hash of the post as the API last listed it: an unchanged post stops the paging
    content_hash                 bigint,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    -- when Threads said the post does not exist (any more); it keeps its history
    deleted_at                   timestamptz,
    -- Fields Meta sends that no dashboard filters on, as sent (poll_attachment); added in
    -- 0.3.0, hence after the others. NULL when the post has none of them.
    other_fields                 jsonb,
    PRIMARY KEY (workspace_threads_account_id, id),
    CONSTRAINT workspace_threads_posts_account_post_key
        UNIQUE (workspace_threads_account_id, threads_post_id)
);
COMMENT ON COLUMN pullsync.workspace_threads_posts.media_type IS
    'As Threads sends it. Documented today: TEXT_POST, IMAGE, VIDEO, CAROUSEL_ALBUM, AUDIO, REPOST_FACADE; a type Meta adds later is stored as sent.';
-- Newest-first listing per account. No index holds metrics_updated_at or the current
-- metrics, which every sync updates: those updates can stay on their page (HOT) and write
-- no index entry.
CREATE INDEX workspace_threads_posts_account_published_idx
    ON pullsync.workspace_threads_posts (workspace_threads_account_id, published_at DESC);

-- L1: one immutable row per capture.
CREATE TABLE pullsync.workspace_threads_post_metrics (
    id                        bigint GENERATED ALWAYS AS IDENTITY,
    workspace_threads_post_id uuid NOT NULL,
    views                     bigint NOT NULL CHECK (views >= 0),
    likes                     bigint NOT NULL CHECK (likes >= 0),
    replies                   bigint NOT NULL CHECK (replies >= 0),
    reposts                   bigint NOT NULL CHECK (reposts >= 0),
    quotes                    bigint NOT NULL CHECK (quotes >= 0),
    shares                    bigint NOT NULL CHECK (shares >= 0),
    captured_at               timestamptz NOT NULL,
    -- the post's account (added in 0.2.0, hence last)
    workspace_threads_account_id uuid NOT NULL,
    PRIMARY KEY (workspace_threads_account_id, id),
    CONSTRAINT workspace_threads_post_metrics_post_captured_key
        UNIQUE (workspace_threads_account_id, workspace_threads_post_id, captured_at),
    CONSTRAINT workspace_threads_post_metrics_post_fkey
        FOREIGN KEY (workspace_threads_account_id, workspace_threads_post_id)
        REFERENCES pullsync.workspace_threads_posts (workspace_threads_account_id, id) ON DELETE CASCADE
);
CREATE INDEX workspace_threads_post_metrics_captured_idx
    ON pullsync.workspace_threads_post_metrics (captured_at);

-- L2: change between consecutive snapshots; the first counts from zero. Negative allowed.
CREATE TABLE pullsync.workspace_threads_post_metrics_deltas (
    id                        bigint GENERATED ALWAYS AS IDENTITY,
    workspace_threads_post_id uuid NOT NULL,
    period_start              timestamptz,
    period_end                timestamptz NOT NULL,
    views_delta               bigint NOT NULL,
    likes_delta               bigint NOT NULL,
    replies_delta             bigint NOT NULL,
    reposts_delta             bigint NOT NULL,
    quotes_delta              bigint NOT NULL,
    shares_delta              bigint NOT NULL,
    CHECK (period_start IS NULL OR period_start < period_end),
    -- the post's account (added in 0.2.0, hence last)
    workspace_threads_account_id uuid NOT NULL,
    PRIMARY KEY (workspace_threads_account_id, id),
    CONSTRAINT workspace_threads_post_metrics_deltas_post_end_key
        UNIQUE (workspace_threads_account_id, workspace_threads_post_id, period_end),
    CONSTRAINT workspace_threads_post_metrics_deltas_post_fkey
        FOREIGN KEY (workspace_threads_account_id, workspace_threads_post_id)
        REFERENCES pullsync.workspace_threads_posts (workspace_threads_account_id, id) ON DELETE CASCADE
);
CREATE INDEX workspace_threads_post_metrics_deltas_end_idx
    ON pullsync.workspace_threads_post_metrics_deltas (period_end);

CREATE TABLE pullsync.workspace_threads_account_insights (
    id                           bigint GENERATED ALWAYS AS IDENTITY,
    workspace_threads_account_id uuid NOT NULL
        REFERENCES pullsync.workspace_threads_accounts (id) ON DELETE CASCADE,
    followers_count              bigint NOT NULL CHECK (followers_count >= 0),
    views                        bigint NOT NULL CHECK (views >= 0),
    likes                        bigint NOT NULL CHECK (likes >= 0),
    replies                      bigint NOT NULL CHECK (replies >= 0),
    reposts                      bigint NOT NULL CHECK (reposts >= 0),
    quotes                       bigint NOT NULL CHECK (quotes >= 0),
    clicks                       bigint NOT NULL CHECK (clicks >= 0),
    captured_at                  timestamptz NOT NULL,
    UNIQUE (workspace_threads_account_id, captured_at),
    PRIMARY KEY (workspace_threads_account_id, id)
);
CREATE INDEX workspace_threads_account_insights_captured_idx
    ON pullsync.workspace_threads_account_insights (captured_at);

CREATE TABLE pullsync.workspace_threads_account_insights_deltas (
    id                           bigint GENERATED ALWAYS AS IDENTITY,
    workspace_threads_account_id uuid NOT NULL
        REFERENCES pullsync.workspace_threads_accounts (id) ON DELETE CASCADE,
    period_start                 timestamptz,
    period_end                   timestamptz NOT NULL,
    followers_count_delta        bigint NOT NULL,
    views_delta                  bigint NOT NULL,
    likes_delta                  bigint NOT NULL,
    replies_delta                bigint NOT NULL,
    reposts_delta                bigint NOT NULL,
    quotes_delta                 bigint NOT NULL,
    clicks_delta                 bigint NOT NULL,
    UNIQUE (workspace_threads_account_id, period_end),
    CHECK (period_start IS NULL OR period_start < period_end),
    PRIMARY KEY (workspace_threads_account_id, id)
);

-- Link clicks (account `clicks`, per link URL) in the same three layers as the other
-- account insights: values are the current UTC day's, like the account's own clicks, and
-- the links' current clicks add up to the account's current_clicks.
-- L3: each link the account's posts were clicked through, with its latest value.
CREATE TABLE pullsync.workspace_threads_account_links (
    workspace_threads_account_id uuid NOT NULL
        REFERENCES pullsync.workspace_threads_accounts (id) ON DELETE CASCADE,
    link_url                     text NOT NULL,
    current_clicks               bigint NOT NULL CHECK (current_clicks >= 0),
    -- when the newest L1 snapshot was taken (the account's insights_updated_at says when
    -- clicks were last fetched)
    clicks_snapshot_at           timestamptz NOT NULL,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_threads_account_id, link_url)
);

-- L1: one immutable row per capture of a link whose clicks changed (or whose heartbeat
-- was due). A link the answer no longer names has 0 clicks in the day.
CREATE TABLE pullsync.workspace_threads_account_link_clicks (
    id                           bigint GENERATED ALWAYS AS IDENTITY,
    workspace_threads_account_id uuid NOT NULL,
    link_url                     text NOT NULL,
    clicks                       bigint NOT NULL CHECK (clicks >= 0),
    captured_at                  timestamptz NOT NULL,
    PRIMARY KEY (workspace_threads_account_id, id),
    CONSTRAINT workspace_threads_account_link_clicks_link_captured_key
        UNIQUE (workspace_threads_account_id, link_url, captured_at),
    CONSTRAINT workspace_threads_account_link_clicks_link_fkey
        FOREIGN KEY (workspace_threads_account_id, link_url)
        REFERENCES pullsync.workspace_threads_account_links (workspace_threads_account_id, link_url)
        ON DELETE CASCADE
);
CREATE INDEX workspace_threads_account_link_clicks_captured_idx
    ON pullsync.workspace_threads_account_link_clicks (captured_at);

-- L2: change between consecutive snapshots of a link; the first counts from zero.
CREATE TABLE pullsync.workspace_threads_account_link_clicks_deltas (
    id                           bigint GENERATED ALWAYS AS IDENTITY,
    workspace_threads_account_id uuid NOT NULL,
    link_url                     text NOT NULL,
    period_start                 timestamptz,
    period_end                   timestamptz NOT NULL,
    clicks_delta                 bigint NOT NULL,
    CHECK (period_start IS NULL OR period_start < period_end),
    PRIMARY KEY (workspace_threads_account_id, id),
    CONSTRAINT workspace_threads_account_link_clicks_deltas_link_end_key
        UNIQUE (workspace_threads_account_id, link_url, period_end),
    CONSTRAINT workspace_threads_account_link_clicks_deltas_link_fkey
        FOREIGN KEY (workspace_threads_account_id, link_url)
        REFERENCES pullsync.workspace_threads_account_links (workspace_threads_account_id, link_url)
        ON DELETE CASCADE
);

-- Follower demographics: one snapshot a UTC day per account and breakdown (Meta answers
-- one breakdown a call, only for accounts with at least 100 followers). `followers` maps
-- each dimension value (a country code, a city, an age range, a gender) to its followers;
-- when Meta refused the breakdown that day, `followers` is NULL and `error` says why.
CREATE TABLE pullsync.workspace_threads_follower_demographics (
    workspace_threads_account_id uuid NOT NULL
        REFERENCES pullsync.workspace_threads_accounts (id) ON DELETE CASCADE,
    snapshot_date                date NOT NULL,
    breakdown                    text NOT NULL CHECK (breakdown IN ('country', 'city', 'age', 'gender')),
    followers                    jsonb CHECK (jsonb_typeof(followers) = 'object'),
    error                        text,
    captured_at                  timestamptz NOT NULL,
    CHECK ((followers IS NULL) <> (error IS NULL)),
    PRIMARY KEY (workspace_threads_account_id, snapshot_date, breakdown)
);
CREATE INDEX workspace_threads_follower_demographics_date_idx
    ON pullsync.workspace_threads_follower_demographics (snapshot_date);

-- L1 snapshots are history: never updated, deleted only by the retention path
-- (pullsync.cleanup sets pullsync.allow_snapshot_delete locally) or together with their
-- post or account.
CREATE FUNCTION pullsync.guard_snapshot() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'rows of %.% are immutable snapshots', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Insert a new snapshot instead; pg_pullsync derives deltas and current values from them.';
    END IF;
    IF pg_trigger_depth() > 1
       OR coalesce(current_setting('pullsync.allow_snapshot_delete', true), 'off') = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'rows of %.% are deleted only by the retention path', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Use pullsync.cleanup() with a snapshot retention, or delete the post or account.';
END
$$;

CREATE TRIGGER immutable_snapshot
    BEFORE UPDATE OR DELETE ON pullsync.workspace_threads_post_metrics
    FOR EACH ROW EXECUTE FUNCTION pullsync.guard_snapshot();
CREATE TRIGGER immutable_snapshot
    BEFORE UPDATE OR DELETE ON pullsync.workspace_threads_account_insights
    FOR EACH ROW EXECUTE FUNCTION pullsync.guard_snapshot();
CREATE TRIGGER immutable_snapshot
    BEFORE UPDATE OR DELETE ON pullsync.workspace_threads_account_link_clicks
    FOR EACH ROW EXECUTE FUNCTION pullsync.guard_snapshot();

------------------------------------------------------------------------------------------
-- Jobs, locks and logs (shared by every source)
------------------------------------------------------------------------------------------

CREATE TABLE pullsync.system_job_locks (
    name         text PRIMARY KEY,
    holder_pid   integer NOT NULL,
    -- pid plus backend start time tell a live holder from a reused pid
    holder_start timestamptz NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    CHECK (expires_at > acquired_at)
);

CREATE TABLE pullsync.system_job_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_type    text NOT NULL,
    status      text NOT NULL CHECK (status IN ('running', 'completed', 'partial', 'failed', 'skipped')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    metadata    jsonb NOT NULL DEFAULT '{}',
    error       text,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX system_job_logs_type_started_idx ON pullsync.system_job_logs (job_type, started_at DESC);

-- The queue the background workers claim (FOR UPDATE SKIP LOCKED). A run is a parent job;
-- its units (one per account or feed stream) are child rows several workers share.
CREATE TABLE pullsync.jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the run of a unit; no foreign key (see delete_units below)
    parent_id     bigint,
    kind          text NOT NULL,
    state         text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'completed', 'partial', 'failed', 'cancelled')),
    payload       jsonb NOT NULL DEFAULT '{}',
    phase         text,
    units_total   integer NOT NULL DEFAULT 0 CHECK (units_total >= 0),
    units_done    integer NOT NULL DEFAULT 0 CHECK (units_done >= 0),
    errors        jsonb NOT NULL DEFAULT '[]',
    attempts      integer NOT NULL DEFAULT 0,
    worker_pid    integer,
    job_log_id    bigint REFERENCES pullsync.system_job_logs (id) ON DELETE SET NULL,
    result        jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    claimed_at    timestamptz,
    heartbeat_at  timestamptz,
    finished_at   timestamptz
);
CREATE INDEX jobs_queued_idx ON pullsync.jobs (created_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running_idx ON pullsync.jobs (heartbeat_at) WHERE state = 'running';
CREATE INDEX jobs_parent_idx ON pullsync.jobs (parent_id, state);
-- Claiming and giving up read queued units by attempts: fresh ones of a run in id order,
-- retries and spent ones by their count. Without it each worker step read every queued
-- unit of a run, so a run's cost grew with the square of its accounts.
CREATE INDEX jobs_queued_units_idx ON pullsync.jobs (attempts, parent_id, id)
    WHERE state = 'queued';
CREATE INDEX jobs_finished_idx ON pullsync.jobs (finished_at) WHERE finished_at IS NOT NULL;

-- A run's units go with it. A trigger, not a foreign key: pg_dump warns on every dump that
-- an extension table referencing itself may not restore, and with --inserts a unit can
-- come before its run and fail.
CREATE FUNCTION pullsync.delete_units() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM pullsync.jobs WHERE parent_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER delete_units AFTER DELETE ON pullsync.jobs
    FOR EACH ROW WHEN (OLD.parent_id IS NULL) EXECUTE FUNCTION pullsync.delete_units();

-- One row per account or feed stream per run.
CREATE TABLE pullsync.sync_logs (
    id                           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_log_id                   bigint REFERENCES pullsync.system_job_logs (id) ON DELETE SET NULL,
    job_type                     text NOT NULL,
    -- a registered source (sources.sql)
    source                       text NOT NULL,
    -- the account's rows go with it (forget_account below), not by a foreign key: logs stay
    -- on one node when the Threads tables are distributed
    workspace_threads_account_id uuid,
    consumer_id                  text,
    status                       text NOT NULL CHECK (status IN ('completed', 'partial', 'failed', 'skipped')),
    steps_completed              text[] NOT NULL DEFAULT '{}',
    items_new                    integer NOT NULL DEFAULT 0,
    items_updated                integer NOT NULL DEFAULT 0,
    snapshots                    integer NOT NULL DEFAULT 0,
    deltas                       integer NOT NULL DEFAULT 0,
    api_calls                    integer NOT NULL DEFAULT 0,
    error                        text,
    started_at                   timestamptz NOT NULL,
    finished_at                  timestamptz NOT NULL DEFAULT now(),
    -- what the API answered that this version does not know (stored as sent), each once
    notes                        text[] NOT NULL DEFAULT '{}',
    CHECK ((source = 'threads') = (workspace_threads_account_id IS NOT NULL))
);
CREATE INDEX sync_logs_account_idx ON pullsync.sync_logs (workspace_threads_account_id, started_at DESC);
CREATE INDEX sync_logs_consumer_idx ON pullsync.sync_logs (consumer_id, started_at DESC);
CREATE INDEX sync_logs_started_idx ON pullsync.sync_logs (started_at);

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

-- One row per reconciliation call and source: what differed and what was repaired.
-- missing_ids / extra_ids name records as '<stream>:<id>'; details has them per stream and
-- the narrowed windows that differed.
CREATE TABLE pullsync.reconciliation_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- a registered source (sources.sql)
    source        text NOT NULL,
    consumer_id   text REFERENCES pullsync.feed_sources (consumer_id) ON DELETE CASCADE,
    -- no foreign key, as in sync_logs
    workspace_threads_account_id uuid,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    status        text NOT NULL CHECK (status IN ('success', 'mismatch', 'repaired', 'failed')),
    source_counts jsonb NOT NULL DEFAULT '{}',
    target_counts jsonb NOT NULL DEFAULT '{}',
    discrepancies integer NOT NULL DEFAULT 0 CHECK (discrepancies >= 0),
    missing_ids   text[] NOT NULL DEFAULT '{}',
    extra_ids     text[] NOT NULL DEFAULT '{}',
    repaired      integer NOT NULL DEFAULT 0 CHECK (repaired >= 0),
    details       jsonb NOT NULL DEFAULT '{}',
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (window_start <= window_end),
    CHECK ((source = 'feed') = (consumer_id IS NOT NULL)),
    CHECK ((source = 'threads') = (workspace_threads_account_id IS NOT NULL))
);
CREATE INDEX reconciliation_runs_started_idx ON pullsync.reconciliation_runs (started_at);
CREATE INDEX reconciliation_runs_account_idx ON pullsync.reconciliation_runs (workspace_threads_account_id)
    WHERE workspace_threads_account_id IS NOT NULL;

-- An account's logs and reconciliation records go with it (what the foreign keys of 0.1.0
-- did). On Citus this trigger is dropped (docs/SCALING.md) and retention ages them out.
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

------------------------------------------------------------------------------------------
-- Monitoring
------------------------------------------------------------------------------------------

-- One row per job run. source is 'threads', 'feed:<consumer_id>' or 'maintenance';
-- attempts is the work tried (accounts, pages, windows) and errors the part that failed,
-- so errors / attempts over the last runs is the error rate alerts watch.
CREATE TABLE pullsync.sync_metrics (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL,
    job_type    text NOT NULL,
    job_log_id  bigint REFERENCES pullsync.system_job_logs (id) ON DELETE SET NULL,
    status      text NOT NULL CHECK (status IN ('completed', 'partial', 'failed')),
    items       bigint NOT NULL DEFAULT 0 CHECK (items >= 0),
    attempts    bigint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    errors      bigint NOT NULL DEFAULT 0 CHECK (errors >= 0 AND errors <= greatest(attempts, 1)),
    duration_ms bigint NOT NULL CHECK (duration_ms >= 0),
    lag_seconds double precision CHECK (lag_seconds >= 0),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_metrics_source_idx ON pullsync.sync_metrics (source, recorded_at DESC, id DESC);
CREATE INDEX sync_metrics_recorded_idx ON pullsync.sync_metrics (recorded_at);

-- Running totals per source, kept apart from sync_metrics so retention never makes a
-- Prometheus counter go backwards.
CREATE TABLE pullsync.sync_metric_totals (
    source           text PRIMARY KEY,
    runs             bigint NOT NULL DEFAULT 0,
    items            bigint NOT NULL DEFAULT 0,
    attempts         bigint NOT NULL DEFAULT 0,
    errors           bigint NOT NULL DEFAULT 0,
    last_run_at      timestamptz,
    last_success_at  timestamptz,
    last_duration_ms bigint
);

CREATE TABLE pullsync.alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_type  text NOT NULL CHECK (alert_type IN ('lag', 'error_rate', 'duration', 'token_expired', 'quarantine', 'throttled')),
    source      text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CHECK (resolved_at IS NULL OR resolved_at >= created_at)
);
-- One open alert per type and source: a breach that persists does not flood.
CREATE UNIQUE INDEX alerts_one_open_idx ON pullsync.alerts (alert_type, source) WHERE resolved_at IS NULL;
CREATE INDEX alerts_resolved_idx ON pullsync.alerts (resolved_at) WHERE resolved_at IS NOT NULL;

------------------------------------------------------------------------------------------
-- Tenants: row level security by workspace
------------------------------------------------------------------------------------------

-- Which roles read which workspace's Threads data; a null workspace_id means every
-- workspace. A role reads the workspaces mapped to any role it is a member of.
-- Superusers, roles with BYPASSRLS and the extension itself (its SECURITY DEFINER
-- functions and background workers run as the owner) are not filtered. docs/SECURITY.md.
CREATE TABLE pullsync.workspace_roles (
    role_name    name NOT NULL,
    workspace_id uuid,
    UNIQUE NULLS NOT DISTINCT (role_name, workspace_id)
);

-- Whether the current role may read `workspace`. Roles that no longer exist match nothing.
CREATE FUNCTION pullsync.workspace_visible(workspace uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user), false)
        OR EXISTS (SELECT 1
                     FROM pullsync.workspace_roles r
                     JOIN pg_roles g ON g.rolname = r.role_name
                    WHERE (r.workspace_id IS NULL OR r.workspace_id = workspace)
                      AND pg_has_role(current_user, g.oid, 'USAGE'))
$$;

-- Whether the current role may read `account` (through the accounts' own policy). The
-- tables below use a subquery for this, which plans as one hashed lookup; Citus takes no
-- subquery in a policy, so docs/SCALING.md switches them to this function on Citus.
CREATE FUNCTION pullsync.account_visible(account uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pullsync.workspace_threads_accounts WHERE id = account)
$$;

-- Whether the current role is a member of `role`; roles that no longer exist match nothing.
-- workspace_roles' policy in the form Citus takes (docs/SCALING.md).
CREATE FUNCTION pullsync.role_held(role name) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_roles g
                    WHERE g.rolname = role AND pg_has_role(current_user, g.oid, 'USAGE'))
$$;

ALTER TABLE pullsync.workspace_roles ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_mappings ON pullsync.workspace_roles FOR SELECT
    USING (EXISTS (SELECT 1 FROM pg_roles g
                    WHERE g.rolname = role_name AND pg_has_role(current_user, g.oid, 'USAGE')));

-- Readers only (SELECT policies): writes go through the extension's functions.
ALTER TABLE pullsync.workspace_threads_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_accounts FOR SELECT
    USING (pullsync.workspace_visible(workspace_id));
-- The other tables follow their account, itself filtered by the policy above.
ALTER TABLE pullsync.workspace_threads_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_tokens FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER TABLE pullsync.workspace_threads_posts ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_posts FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER TABLE pullsync.workspace_threads_account_insights ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_account_insights FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER TABLE pullsync.workspace_threads_account_insights_deltas ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_account_insights_deltas FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER TABLE pullsync.workspace_threads_account_links ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_account_links FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER TABLE pullsync.workspace_threads_account_link_clicks ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_account_link_clicks FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER TABLE pullsync.workspace_threads_account_link_clicks_deltas ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_account_link_clicks_deltas FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER TABLE pullsync.workspace_threads_follower_demographics ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_follower_demographics FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER TABLE pullsync.workspace_threads_post_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_post_metrics FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));
ALTER TABLE pullsync.workspace_threads_post_metrics_deltas ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_member ON pullsync.workspace_threads_post_metrics_deltas FOR SELECT
    USING (workspace_threads_account_id IN (SELECT id FROM pullsync.workspace_threads_accounts));

------------------------------------------------------------------------------------------
-- Views for people
------------------------------------------------------------------------------------------

-- The views read with their owner's rights (a reader needs no grant on the tables, and
-- never on tokens), so each filters by workspace itself, as a security barrier: the planner
-- must not run a reader's function (which could print or fail on what it sees) on rows
-- before the workspace filter has dropped them.

-- Posts with their current metrics and the change over the last 24 hours (sum of L2).
-- Posts deleted on Threads are left out (their rows and history stay in the tables). A
-- first snapshot counts from zero, so it is the last 24 hours only for a post published
-- within them: a newly connected account's older posts start with nothing in *_24h.
CREATE VIEW pullsync.threads_post_stats WITH (security_barrier) AS
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
CREATE VIEW pullsync.threads_account_stats WITH (security_barrier) AS
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

-- Clicks per link URL: the current UTC day's clicks through each link of the account's
-- posts, and their change over the last 24 hours (sum of L2; a link's first snapshot
-- counts from zero, as for the account's own insights).
CREATE VIEW pullsync.threads_link_clicks WITH (security_barrier) AS
SELECT l.workspace_threads_account_id,
       a.workspace_id,
       a.username,
       l.link_url,
       l.current_clicks              AS clicks,
       coalesce(d.clicks, 0)         AS clicks_24h,
       a.insights_updated_at         AS clicks_updated_at
  FROM pullsync.workspace_threads_account_links l
  JOIN pullsync.workspace_threads_accounts a ON a.id = l.workspace_threads_account_id
  LEFT JOIN LATERAL (
       SELECT sum(clicks_delta) AS clicks
         FROM pullsync.workspace_threads_account_link_clicks_deltas d
        WHERE d.workspace_threads_account_id = l.workspace_threads_account_id
          AND d.link_url = l.link_url AND d.period_end > now() - interval '24 hours'
          AND d.period_start IS NOT NULL) d ON true
 WHERE pullsync.workspace_visible(a.workspace_id);

-- Follower demographics as of each account's latest snapshot of each breakdown: one row
-- per dimension value, with its share of the breakdown's followers.
CREATE VIEW pullsync.threads_follower_demographics WITH (security_barrier) AS
SELECT f.workspace_threads_account_id,
       a.workspace_id,
       a.username,
       f.breakdown,
       v.key                                       AS dimension_value,
       v.value::bigint                             AS followers,
       round(100.0 * v.value::bigint / nullif(sum(v.value::bigint)
             OVER (PARTITION BY f.workspace_threads_account_id, f.breakdown), 0), 1) AS percent,
       f.snapshot_date
  FROM pullsync.workspace_threads_follower_demographics f
  JOIN pullsync.workspace_threads_accounts a ON a.id = f.workspace_threads_account_id
 CROSS JOIN LATERAL jsonb_each_text(f.followers) v
 WHERE f.snapshot_date = (SELECT max(n.snapshot_date) FROM pullsync.workspace_threads_follower_demographics n
                           WHERE n.workspace_threads_account_id = f.workspace_threads_account_id
                             AND n.breakdown = f.breakdown AND n.followers IS NOT NULL)
   AND pullsync.workspace_visible(a.workspace_id);
