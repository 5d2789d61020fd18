-- Runs after every source's SQL: source_states from their state views (sql/monitor.sql).
SELECT pullsync.define_source_states();

-- Runs after every function exists: nothing of pg_pullsync is usable by PUBLIC but what a
-- file granted on purpose (a function whose privileges were never set is revoked; the
-- sources' SQL files grant their own). docs/SECURITY.md shows the grants for operator and
-- reader roles.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pullsync'::regnamespace AND p.proacl IS NULL
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
REVOKE ALL ON ALL TABLES IN SCHEMA pullsync FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pullsync FROM PUBLIC;
-- Checked on every write of a source name (sources.sql), whoever writes; it tells only
-- which sources this library has.
GRANT EXECUTE ON FUNCTION pullsync.is_source(text) TO PUBLIC;
-- Row security's check in the form Citus takes: it answers only for the caller.
GRANT EXECUTE ON FUNCTION pullsync.role_held(name) TO PUBLIC;
-- The default pg_cron jobs' fixed text: schedule_defaults() reads it with its caller's rights.
GRANT EXECUTE ON FUNCTION pullsync.default_schedules() TO PUBLIC;
