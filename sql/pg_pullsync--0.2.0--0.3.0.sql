-- pg_pullsync 0.2.0 → 0.3.0. Every schema change of 0.3.0 goes here and into the fresh
-- install (sql/*.sql); the upgrade test compares the two catalogs object by object.
\echo Use "ALTER EXTENSION pg_pullsync UPDATE TO '0.3.0'" to load this file. \quit

-- REST sources belong to the role whose code called (issue 36): the REST functions run as
-- their caller (SECURITY INVOKER) and switch to the extension's owner themselves after
-- noting it, so a role reached by spoofing (a SECURITY DEFINER function's caller, the
-- superuser whose ANALYZE evaluates an index expression) is never taken for the owner.
ALTER FUNCTION pullsync.rest_add_source(text, jsonb) SECURITY INVOKER;
ALTER FUNCTION pullsync.rest_alter_source(text, jsonb) SECURITY INVOKER;
ALTER FUNCTION pullsync.rest_drop_source(text) SECURITY INVOKER;
ALTER FUNCTION pullsync.rest_pull(text) SECURITY INVOKER;
ALTER FUNCTION pullsync.rest_enqueue(text) SECURITY INVOKER;
ALTER FUNCTION pullsync.rest_retry_quarantined(text) SECURITY INVOKER;
ALTER FUNCTION pullsync.rest_reconcile(text, text) SECURITY INVOKER;
CREATE FUNCTION pullsync."rest_check_access"("name" TEXT) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_check_access_wrapper';
REVOKE ALL ON FUNCTION pullsync.rest_check_access(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pullsync.rest_check_access(text) TO PUBLIC;
-- rest_schedule refuses a source of another role's up front, and on a standby.
CREATE OR REPLACE FUNCTION pullsync.rest_schedule(name text, schedule text DEFAULT '*/15 * * * *')
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pullsync.rest_schedule() writes, and this server is a standby (in recovery), which is read-only'
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Call it on the primary. When this server is promoted it takes writes, and its background workers start working by themselves.';
    END IF;
    IF name IS NULL OR schedule IS NULL THEN
        RAISE EXCEPTION 'name and schedule must not be null' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass the source''s name and a cron schedule such as ''*/15 * * * *''.';
    END IF;
    BEGIN
        PERFORM pullsync.rest_check_access(name);
    EXCEPTION WHEN undefined_object THEN
        NULL;  -- no such source (yet): each queued pull is checked when the job runs
    END;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database' USING ERRCODE = 'undefined_object',
            HINT = 'Install pg_cron, or call SELECT pullsync.rest_enqueue(name) from any scheduler.';
    END IF;
    RETURN cron.schedule('pullsync-rest-' || name, schedule,
                         format('SELECT pullsync.rest_enqueue(%L)', name));
END
$$;

-- Rate limits defer instead of failing (issue 37): a rate-limited account is `skipped`
-- (its error starts with `rate_limited`), `source_metrics.accounts_rate_limited` counts
-- the active accounts whose latest sync waited for one, and they open a `throttled`
-- alert rather than `error_rate`. Each view gains the column at its end.
ALTER TABLE pullsync.alerts DROP CONSTRAINT alerts_alert_type_check,
    ADD CONSTRAINT alerts_alert_type_check
    CHECK (alert_type IN ('lag', 'error_rate', 'duration', 'token_expired', 'quarantine', 'throttled'));
CREATE OR REPLACE VIEW pullsync.threads_source_state AS
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

CREATE OR REPLACE VIEW pullsync.feed_source_state AS
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

CREATE OR REPLACE VIEW pullsync.rest_source_state AS
SELECT s.*,
       -- what only this source has, for source_metrics.details
       jsonb_build_object('items_quarantined', s.items_quarantined) AS details
  FROM (SELECT 'rest:' || r.name                              AS source,
              CASE WHEN r.is_active THEN r.created_at END    AS configured_at,
              (SELECT count(*) FROM pullsync.jobs j
                WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'rest_pull'
                  AND j.payload->>'name' = r.name)           AS jobs_running,
              NULL::bigint                                   AS accounts_without_token,
              NULL::text[]                                   AS accounts_needing_reauthorization,
              -- Records the target would not take, waiting in pullsync.rest_quarantine.
              (SELECT count(*) FROM pullsync.rest_quarantine q
                WHERE q.source_name = r.name AND q.resolved_at IS NULL) AS items_quarantined,
              NULL::bigint                                   AS accounts_rate_limited
         FROM pullsync.rest_sources r) s;

-- A source is one folder (issue 39): each state view gains `details`, the figures only
-- its source has, and source_metrics reads them all through source_states, which lists
-- the registered sources' state views.
-- Each source states, in a view of its own (its `SourceSpec::state_view`), when each of
-- its instances was configured (null: it is not), its jobs queued or running, and in
-- `details` the figures only it has. source_states is all of them: CREATE EXTENSION
-- defines it from the registered sources once every source's SQL has run
-- (define_source_states() in sql/privileges.sql); until then it is empty.
CREATE VIEW pullsync.source_states AS
SELECT NULL::text AS source, NULL::timestamptz AS configured_at, NULL::bigint AS jobs_running,
       NULL::jsonb AS details
 WHERE false;

-- source_states from every registered source's state view; run again by an upgrade that
-- adds a source.
CREATE FUNCTION pullsync.define_source_states() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    body text;
BEGIN
    SELECT string_agg(format('SELECT source, configured_at, jobs_running, details FROM %s', v.name::regclass),
                      ' UNION ALL ' ORDER BY v.n)
      INTO body
      FROM pullsync.source_state_views() WITH ORDINALITY AS v(name, n);
    EXECUTE 'CREATE OR REPLACE VIEW pullsync.source_states AS '
         || coalesce(body, 'SELECT NULL::text, NULL::timestamptz, NULL::bigint, NULL::jsonb WHERE false');
END
$$;

CREATE FUNCTION pullsync."source_state_views"() RETURNS SETOF TEXT
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'source_state_views_wrapper';

-- Monitoring figures per source, for pullsync.metrics(), pullsync.health() and
-- postgres_exporter (docs/MONITORING.md). A source is one its state view says is
-- configured, or any that has recorded runs ('maintenance'). The columns after
-- alerts_open are 0.2.0's, read from the sources' details, null where a source has none.
CREATE OR REPLACE VIEW pullsync.source_metrics AS
WITH states AS (SELECT * FROM pullsync.source_states),
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
       (c.details->>'accounts_without_token')::bigint AS accounts_without_token,
       CASE WHEN c.details ? 'accounts_needing_reauthorization'
            THEN ARRAY(SELECT jsonb_array_elements_text(c.details->'accounts_needing_reauthorization'))
       END                                            AS accounts_needing_reauthorization,
       (c.details->>'items_quarantined')::bigint      AS items_quarantined,
       (c.details->>'accounts_rate_limited')::bigint  AS accounts_rate_limited,
       c.details
  FROM sources s
  LEFT JOIN states c USING (source)
  LEFT JOIN pullsync.sync_metric_totals t USING (source);
SELECT pullsync.define_source_states();
REVOKE ALL ON pullsync.source_states FROM PUBLIC;
REVOKE ALL ON FUNCTION pullsync.define_source_states(), pullsync.source_state_views() FROM PUBLIC;

-- Threads as Meta serves it in 2026 (issue 37): link clicks per URL in three layers,
-- follower demographics a day per breakdown, the post fields without a column of their
-- own, and an account's wait that Meta asked for, kept across runs.
ALTER TABLE pullsync.workspace_threads_accounts ADD COLUMN rate_limited_until timestamptz;
ALTER TABLE pullsync.workspace_threads_posts ADD COLUMN other_fields jsonb;
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
    BEFORE UPDATE OR DELETE ON pullsync.workspace_threads_account_link_clicks
    FOR EACH ROW EXECUTE FUNCTION pullsync.guard_snapshot();
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

REVOKE ALL ON pullsync.workspace_threads_account_links, pullsync.workspace_threads_account_link_clicks,
              pullsync.workspace_threads_account_link_clicks_deltas,
              pullsync.workspace_threads_follower_demographics,
              pullsync.threads_link_clicks, pullsync.threads_follower_demographics FROM PUBLIC;
REVOKE ALL ON SEQUENCE pullsync.workspace_threads_account_link_clicks_id_seq,
              pullsync.workspace_threads_account_link_clicks_deltas_id_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_links', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_link_clicks', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_link_clicks_deltas', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_follower_demographics', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_link_clicks', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_link_clicks_deltas', 'id')::regclass, '');

-- The scheduling functions refuse on a standby as the others do (SQLSTATE 25006, issue 38).
-- schedule_defaults() takes the default jobs from the registered sources (issue 39).
CREATE FUNCTION pullsync."default_schedules"() RETURNS TABLE (
	"jobname" TEXT,
	"schedule" TEXT,
	"command" TEXT
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'default_schedules_wrapper';
REVOKE ALL ON FUNCTION pullsync.default_schedules() FROM PUBLIC;
-- Their fixed text: schedule_defaults() reads it with its caller's rights.
GRANT EXECUTE ON FUNCTION pullsync.default_schedules() TO PUBLIC;
CREATE OR REPLACE FUNCTION pullsync.schedule_defaults(OUT jobname text, OUT schedule text, OUT command text, OUT jobid bigint)
RETURNS SETOF record
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d record;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pullsync.schedule_defaults() writes, and this server is a standby (in recovery), which is read-only'
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Call it on the primary. When this server is promoted it takes writes, and its background workers start working by themselves.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  HINT = CASE WHEN EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron')
                         THEN 'Add pg_cron to shared_preload_libraries, set cron.database_name, then CREATE EXTENSION pg_cron.'
                         ELSE 'pg_cron is not available on this server: call the same functions from any scheduler '
                              '(cron, a systemd timer, a Kubernetes CronJob); see docs/OPERATIONS.md, Scheduling without pg_cron.'
                         END;
    END IF;
    -- Each source's (its SourceSpec::schedules), then the general ones.
    FOR d IN SELECT * FROM pullsync.default_schedules()
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

CREATE OR REPLACE FUNCTION pullsync.unschedule_all() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    removed integer := 0;
    id bigint;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pullsync.unschedule_all() writes, and this server is a standby (in recovery), which is read-only'
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Call it on the primary. When this server is promoted it takes writes, and its background workers start working by themselves.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  HINT = 'Nothing to unschedule: pg_pullsync jobs live in pg_cron.';
    END IF;
    FOR id IN EXECUTE 'SELECT jobid FROM cron.job WHERE jobname LIKE ''pullsync-%'' AND database = current_database()'
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING id;
        removed := removed + 1;
    END LOOP;
    RETURN removed;
END
$$;

-- The shared log tables speak of subjects (issue 39): `subject` is what a run or a
-- reconciliation was about, as its source names it. 0.2.0's columns stay for their
-- readers, filled by each source's trigger. A REST source's name, which 0.2.0 wrote into
-- consumer_id (the feed's column), is its subject from now on; rows already written keep
-- what they hold.
ALTER TABLE pullsync.sync_logs ADD COLUMN subject text;
UPDATE pullsync.sync_logs SET subject = coalesce(workspace_threads_account_id::text, consumer_id, '');
ALTER TABLE pullsync.sync_logs ALTER COLUMN subject SET NOT NULL;
CREATE INDEX sync_logs_subject_idx ON pullsync.sync_logs (source, subject, started_at DESC);
ALTER TABLE pullsync.reconciliation_runs ADD COLUMN subject text;
UPDATE pullsync.reconciliation_runs
   SET subject = coalesce(workspace_threads_account_id::text, consumer_id,
                          (SELECT min(s.value->>'rest_source') FROM jsonb_each(details->'streams') s), '');
ALTER TABLE pullsync.reconciliation_runs ALTER COLUMN subject SET NOT NULL;
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
REVOKE ALL ON FUNCTION pullsync.threads_subject(), pullsync.feed_subject() FROM PUBLIC;

-- job_status() no longer names a source in its hint.
CREATE OR REPLACE FUNCTION pullsync.job_status(job_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pullsync.jobs;
BEGIN
    IF job_id IS NULL THEN
        RAISE EXCEPTION 'job_id must not be null' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass the job_id that the function which queued the job returned.';
    END IF;
    SELECT * INTO r FROM pullsync.jobs j WHERE j.id = job_status.job_id AND j.parent_id IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', job_id USING ERRCODE = 'undefined_object',
            HINT = 'See pullsync.jobs_running for runs under way, or pullsync.system_job_logs for past runs.';
    END IF;
    RETURN jsonb_build_object(
        'job_id', r.id, 'kind', r.kind, 'state', r.state, 'phase', r.phase,
        'units_done', r.units_done, 'units_total', r.units_total,
        'queued_at', r.created_at, 'started_at', r.claimed_at, 'finished_at', r.finished_at,
        'errors', r.errors, 'errors_so_far', jsonb_array_length(r.errors),
        'worker_pids', (SELECT coalesce(jsonb_agg(DISTINCT u.worker_pid), '[]') FROM pullsync.jobs u
                         WHERE u.parent_id = r.id AND u.worker_pid IS NOT NULL),
        'result', r.result);
END
$$;

-- A listing sampled before a source exists (issue 40): rest_preview reads a few pages of a
-- configuration's listing and writes nothing; rest_infer_table proposes a table for it.
CREATE FUNCTION pullsync."rest_preview"("config" jsonb, "pages" INT DEFAULT 1) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_preview_wrapper';
CREATE FUNCTION pullsync."rest_infer_table"("config" jsonb) RETURNS TEXT
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'rest_infer_table_wrapper';
REVOKE ALL ON FUNCTION pullsync.rest_preview(jsonb, integer), pullsync.rest_infer_table(jsonb) FROM PUBLIC;

-- OAuth 2 for REST sources (issue 40): the refresh token (rotated ones replace it), the
-- access token in use and its expiry, sealed like the secret; a source whose grant the
-- authorization server refused (invalid_grant) waits for new credentials, and its state
-- view counts it as a credential to authorise again (the token_expired alert).
ALTER TABLE pullsync.rest_sources
    ADD COLUMN refresh_token_encrypted text CHECK (refresh_token_encrypted LIKE 'v1:%'),
    ADD COLUMN access_token_encrypted  text CHECK (access_token_encrypted LIKE 'v1:%'),
    ADD COLUMN access_token_expires_at timestamptz,
    ADD COLUMN needs_reauth_at         timestamptz,
    ADD COLUMN needs_reauth_reason     text;
CREATE OR REPLACE VIEW pullsync.rest_source_state AS
SELECT s.source, s.configured_at, s.jobs_running, s.accounts_without_token,
       s.accounts_needing_reauthorization, s.items_quarantined, s.accounts_rate_limited,
       -- what only this source has, for source_metrics.details; a source whose grant the
       -- authorization server refused counts as a credential to authorise again
       jsonb_build_object('items_quarantined', s.items_quarantined)
       || CASE WHEN s.accounts_without_token > 0
               THEN jsonb_build_object('accounts_without_token', s.accounts_without_token,
                                       'accounts_needing_reauthorization', to_jsonb(s.accounts_needing_reauthorization),
                                       'needs_reauthorization', s.needs_reauthorization)
               ELSE '{}'::jsonb END AS details
  FROM (SELECT 'rest:' || r.name                              AS source,
              CASE WHEN r.is_active THEN r.created_at END    AS configured_at,
              (SELECT count(*) FROM pullsync.jobs j
                WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'rest_pull'
                  AND j.payload->>'name' = r.name)           AS jobs_running,
              CASE WHEN r.needs_reauth_at IS NOT NULL THEN 1::bigint END AS accounts_without_token,
              CASE WHEN r.needs_reauth_at IS NOT NULL THEN ARRAY[r.name] END AS accounts_needing_reauthorization,
              -- Records the target would not take, waiting in pullsync.rest_quarantine.
              (SELECT count(*) FROM pullsync.rest_quarantine q
                WHERE q.source_name = r.name AND q.resolved_at IS NULL) AS items_quarantined,
              NULL::bigint                                   AS accounts_rate_limited,
              CASE WHEN r.needs_reauth_at IS NOT NULL
                   THEN jsonb_build_object('since', r.needs_reauth_at, 'reason', r.needs_reauth_reason)
              END                                            AS needs_reauthorization
         FROM pullsync.rest_sources r) s;

-- REST fan-out: each parent's position and high-water mark (sql/rest.sql says more).
CREATE TABLE pullsync.rest_parent_state (
    source_name    text NOT NULL REFERENCES pullsync.rest_sources (name) ON DELETE CASCADE,
    parent_key     jsonb NOT NULL,
    high_water     text,
    run_position   jsonb,
    run_since      text,
    run_high_water text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_name, parent_key)
);
SELECT pg_catalog.pg_extension_config_dump('pullsync.rest_parent_state', '');
