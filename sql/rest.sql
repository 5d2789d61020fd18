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
