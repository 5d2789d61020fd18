-- pg_pullsync schema. Every object here, the schema included, is created by CREATE
-- EXTENSION and so belongs to the extension: DROP EXTENSION removes all of it.
-- Nothing is granted to PUBLIC; docs/SECURITY.md lists the grants an operator gives.

CREATE SCHEMA pullsync;
REVOKE ALL ON SCHEMA pullsync FROM PUBLIC;

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

-- One row per run of a source's subject (an account, a feed source, a REST source).
-- Each source's SQL file adds what its own columns need (their checks, indexes, and a
-- trigger that keeps them and `subject` the same).
CREATE TABLE pullsync.sync_logs (
    id                           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_log_id                   bigint REFERENCES pullsync.system_job_logs (id) ON DELETE SET NULL,
    job_type                     text NOT NULL,
    -- a registered source (sources.sql)
    source                       text NOT NULL,
    -- 0.2.0's columns for the subject, kept for their readers: the Threads account (its
    -- rows go with it, not by a foreign key: logs stay on one node when the Threads tables
    -- are distributed) and the feed source
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
    -- what the run was about, as its source names it (an account id, a source's name)
    subject                      text NOT NULL
);
CREATE INDEX sync_logs_subject_idx ON pullsync.sync_logs (source, subject, started_at DESC);
CREATE INDEX sync_logs_started_idx ON pullsync.sync_logs (started_at);

-- L1 snapshots are history: never updated, deleted only by the retention path
-- (pullsync.cleanup sets pullsync.allow_snapshot_delete locally) or together with what
-- they are snapshots of. A source puts this trigger on its snapshot tables.
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

-- One row per reconciliation call and source: what differed and what was repaired.
-- missing_ids / extra_ids name records as '<stream>:<id>'; details has them per stream and
-- the narrowed windows that differed.
CREATE TABLE pullsync.reconciliation_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- a registered source (sources.sql)
    source        text NOT NULL,
    -- 0.2.0's columns for the subject, as in sync_logs
    consumer_id   text,
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
    -- what was reconciled, as in sync_logs
    subject       text NOT NULL,
    CHECK (window_start <= window_end)
);
CREATE INDEX reconciliation_runs_started_idx ON pullsync.reconciliation_runs (started_at);

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

-- Which roles read which workspace's data; a null workspace_id means every
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
