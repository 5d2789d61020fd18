-- Runs after every function exists: nothing of pg_pullsync is usable by PUBLIC.
-- docs/SECURITY.md shows the grants for operator and reader roles.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pullsync FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pullsync FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pullsync FROM PUBLIC;
-- Checked on every write of a source name (sources.sql), whoever writes; it tells only
-- which sources this library has.
GRANT EXECUTE ON FUNCTION pullsync.is_source(text) TO PUBLIC;
-- Row security's checks in the form Citus takes: each answers only for the caller, within
-- what the caller's own row security already lets it see.
GRANT EXECUTE ON FUNCTION pullsync.account_visible(uuid), pullsync.role_held(name) TO PUBLIC;
-- Whether the calling role may use a REST source (rest_schedule asks it with the caller's
-- rights); it tells only that, for the caller alone.
GRANT EXECUTE ON FUNCTION pullsync.rest_check_access(text) TO PUBLIC;
