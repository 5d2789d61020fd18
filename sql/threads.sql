-- The Threads source: accounts, sealed tokens, posts and their metrics in three layers
-- (L1 snapshots, L2 deltas, L3 current values), account insights, link clicks, follower
-- demographics, row security by workspace, the views for people, and its parts of the
-- shared tables. docs/THREADS.md.

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

CREATE TRIGGER immutable_snapshot
    BEFORE UPDATE OR DELETE ON pullsync.workspace_threads_post_metrics
    FOR EACH ROW EXECUTE FUNCTION pullsync.guard_snapshot();
CREATE TRIGGER immutable_snapshot
    BEFORE UPDATE OR DELETE ON pullsync.workspace_threads_account_insights
    FOR EACH ROW EXECUTE FUNCTION pullsync.guard_snapshot();
CREATE TRIGGER immutable_snapshot
    BEFORE UPDATE OR DELETE ON pullsync.workspace_threads_account_link_clicks
    FOR EACH ROW EXECUTE FUNCTION pullsync.guard_snapshot();

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

-- The shared log tables' subject of a Threads row is its account: whichever of the two a
-- writer gives, the other is filled.
CREATE FUNCTION pullsync.threads_subject() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    NEW.subject := coalesce(NEW.subject, NEW.workspace_threads_account_id::text);
    NEW.workspace_threads_account_id := coalesce(NEW.workspace_threads_account_id, NEW.subject::uuid);
    RETURN NEW;
END
$$;
CREATE TRIGGER threads_subject BEFORE INSERT ON pullsync.sync_logs
    FOR EACH ROW WHEN (NEW.source = 'threads') EXECUTE FUNCTION pullsync.threads_subject();
CREATE TRIGGER threads_subject BEFORE INSERT ON pullsync.reconciliation_runs
    FOR EACH ROW WHEN (NEW.source = 'threads') EXECUTE FUNCTION pullsync.threads_subject();
ALTER TABLE pullsync.sync_logs
    ADD CONSTRAINT sync_logs_check CHECK ((source = 'threads') = (workspace_threads_account_id IS NOT NULL));
CREATE INDEX sync_logs_account_idx ON pullsync.sync_logs (workspace_threads_account_id, started_at DESC);
ALTER TABLE pullsync.reconciliation_runs
    ADD CONSTRAINT reconciliation_runs_check2 CHECK ((source = 'threads') = (workspace_threads_account_id IS NOT NULL));
CREATE INDEX reconciliation_runs_account_idx ON pullsync.reconciliation_runs (workspace_threads_account_id)
    WHERE workspace_threads_account_id IS NOT NULL;

------------------------------------------------------------------------------------------
-- Row level security by workspace (pullsync.workspace_roles)
------------------------------------------------------------------------------------------

-- Whether the current role may read `account` (through the accounts' own policy). The
-- tables below use a subquery for this, which plans as one hashed lookup; Citus takes no
-- subquery in a policy, so docs/SCALING.md switches them to this function on Citus.
CREATE FUNCTION pullsync.account_visible(account uuid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pullsync.workspace_threads_accounts WHERE id = account)
$$;
-- It answers only for the caller, within what the caller's own row security already lets
-- it see: every role may ask.
REVOKE ALL ON FUNCTION pullsync.account_visible(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pullsync.account_visible(uuid) TO PUBLIC;

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

------------------------------------------------------------------------------------------
-- Its state, for pullsync.source_metrics (sql/monitor.sql)
------------------------------------------------------------------------------------------

CREATE VIEW pullsync.threads_source_state AS
SELECT s.*,
       -- what only this source has, for source_metrics.details
       jsonb_build_object('accounts_without_token', s.accounts_without_token,
                          'accounts_needing_reauthorization', to_jsonb(s.accounts_needing_reauthorization),
                          'accounts_rate_limited', s.accounts_rate_limited) AS details
  FROM (SELECT 'threads'::text                                AS source,
              (SELECT min(created_at) FROM pullsync.workspace_threads_accounts WHERE is_active) AS configured_at,
              (SELECT count(*) FROM pullsync.jobs j
                WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'threads_sync') AS jobs_running,
              cardinality(r.usernames)::bigint               AS accounts_without_token,
              r.usernames                                    AS accounts_needing_reauthorization,
              NULL::bigint                                   AS items_quarantined,
              -- Active accounts whose latest sync waited for Meta's rate limit (deferred to the
              -- next run, no error).
              (SELECT count(*) FROM pullsync.workspace_threads_accounts a
                 CROSS JOIN LATERAL (SELECT l.status, l.error FROM pullsync.sync_logs l
                                      WHERE l.workspace_threads_account_id = a.id
                                      ORDER BY l.started_at DESC, l.id DESC LIMIT 1) last
                WHERE a.is_active AND last.status = 'skipped' AND last.error LIKE 'rate\_limited%') AS accounts_rate_limited
         -- Active accounts without a usable token (expired, or refused by Threads), by username:
         -- whoever must authorise the app again.
         FROM (SELECT coalesce(array_agg(a.username ORDER BY a.username), '{}') AS usernames
                 FROM pullsync.workspace_threads_accounts a
                WHERE a.is_active AND NOT EXISTS (
                      SELECT 1 FROM pullsync.workspace_threads_tokens k
                       WHERE k.workspace_threads_account_id = a.id AND k.is_primary
                         AND k.revoked_at IS NULL AND k.invalidated_at IS NULL AND k.expires_at > now())) r) s;

-- Its tables' rows go into pg_dump's backups (sql/backup.sql says why).
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_accounts', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_posts', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_post_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_post_metrics_deltas', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_insights', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_insights_deltas', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_links', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_link_clicks', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_link_clicks_deltas', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_follower_demographics', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_post_metrics', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_post_metrics_deltas', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_insights', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_insights_deltas', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_link_clicks', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_link_clicks_deltas', 'id')::regclass, '');
