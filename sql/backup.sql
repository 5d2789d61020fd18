-- pg_dump writes the rows of an extension's tables only when the extension registers
-- them: without this a backup holds none of pg_pullsync's accounts, tokens, posts,
-- snapshots, feed bookmarks or logs. Every table is registered but system_job_locks,
-- whose rows are leases of running processes and mean nothing in a restored database, and
-- feed_epoch, which a restored database draws anew so that cursors handed out before the
-- restore are refused.
-- A new table is added here and in the version's upgrade script.
SELECT pg_catalog.pg_extension_config_dump('pullsync.system_job_logs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_logs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.reconciliation_runs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_metric_totals', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_roles', '');

-- The identity sequences, so restored tables go on numbering after their last row.
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.system_job_logs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.jobs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.sync_logs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.reconciliation_runs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.sync_metrics', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.alerts', 'id')::regclass, '');
