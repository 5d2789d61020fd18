-- Runs after every function exists: nothing of pg_pullsync is usable by PUBLIC.
-- docs/SECURITY.md shows the grants for operator and reader roles.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pullsync FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pullsync FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pullsync FROM PUBLIC;
