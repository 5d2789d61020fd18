-- The REST source: its sources and quarantine, scheduling, its state. docs/REST.md.

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
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- OAuth 2: the refresh token (rotated ones replace it as they come), the access token
    -- in use and its expiry, all sealed but the expiry
    refresh_token_encrypted text CHECK (refresh_token_encrypted LIKE 'v1:%'),
    access_token_encrypted  text CHECK (access_token_encrypted LIKE 'v1:%'),
    access_token_expires_at timestamptz,
    -- the authorization server refused the grant (invalid_grant): no request is made until
    -- rest_alter_source gives new credentials
    needs_reauth_at         timestamptz,
    needs_reauth_reason     text
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

-- Whether the calling role may use a REST source (rest_schedule asks it with the caller's
-- rights): it tells only that, for the caller alone, so every role may ask.
REVOKE ALL ON FUNCTION pullsync.rest_check_access(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pullsync.rest_check_access(text) TO PUBLIC;

-- Scheduling a REST source with pg_cron: a job named pullsync-rest-<name> that queues its
-- pull (rest_enqueue refuses a name that is not a source). Idempotent (pg_cron replaces a job of the same name); runs with the caller's
-- rights, as schedule_defaults() does. A source of another role's is refused up front
-- (rest_check_access, 42501), as its queued pulls would be.
CREATE FUNCTION pullsync.rest_schedule(name text, schedule text DEFAULT '*/15 * * * *')
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

-- Its state, for pullsync.source_metrics (sql/monitor.sql).
CREATE VIEW pullsync.rest_source_state AS
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

-- Its tables' rows go into pg_dump's backups (sql/backup.sql says why).
SELECT pg_catalog.pg_extension_config_dump('pullsync.rest_sources', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.rest_quarantine', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.rest_quarantine', 'id')::regclass, '');

-- Fan-out (docs/REST.md, "Fan-out"): where each parent's listing of children stands, by
-- the parent's values (`{"repo": "42"}`): the mark its next run sends, and its unfinished
-- run, written with each page of its children.
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
