-- Job progress for people and pg_cron scheduling. Plain SQL over pullsync.jobs.

-- Runs queued or under way, with their units' progress.
CREATE VIEW pullsync.jobs_running AS
SELECT r.id                              AS job_id,
       r.kind,
       r.state,
       r.phase,
       r.units_done,
       r.units_total,
       r.claimed_at                      AS started_at,
       r.created_at                      AS queued_at,
       jsonb_array_length(r.errors)      AS errors_so_far,
       (SELECT array_agg(DISTINCT u.worker_pid ORDER BY u.worker_pid) FROM pullsync.jobs u
         WHERE u.parent_id = r.id AND u.worker_pid IS NOT NULL) AS worker_pids
  FROM pullsync.jobs r
 WHERE r.parent_id IS NULL AND r.state IN ('queued', 'running');

-- With the owner's rights: an operator granted EXECUTE reads a run's status without a grant
-- on pullsync.jobs.
CREATE FUNCTION pullsync.job_status(job_id bigint) RETURNS jsonb
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

-- The default pg_cron jobs, named pullsync-…, in this database. Idempotent: pg_cron
-- replaces a job of the same name. Runs with the caller's rights (pg_cron's own checks).
CREATE FUNCTION pullsync.schedule_defaults(OUT jobname text, OUT schedule text, OUT command text, OUT jobid bigint)
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

-- Removes every pg_cron job named pullsync-…; returns how many. Idempotent.
CREATE FUNCTION pullsync.unschedule_all() RETURNS integer
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
