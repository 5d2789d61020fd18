-- pg_pullsync 0.1.0 → 0.2.0. Every schema change of 0.2.0 goes here and into the fresh
-- install (sql/*.sql); the upgrade test compares the two catalogs object by object.
\echo Use "ALTER EXTENSION pg_pullsync UPDATE TO '0.2.0'" to load this file. \quit

-- Backups keep pg_pullsync's rows (sql/backup.sql).
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_accounts', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_posts', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_post_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_post_metrics_deltas', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_insights', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_threads_account_insights_deltas', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.system_job_logs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_logs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.conversations', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.conversation_messages', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.feed_consumers', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_bookmarks', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.feed_sources', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.reconciliation_runs', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.sync_metric_totals', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('pullsync.workspace_roles', '');

-- The identity sequences, so restored tables go on numbering after their last row.
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_post_metrics', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_post_metrics_deltas', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_insights', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.workspace_threads_account_insights_deltas', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.system_job_logs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.jobs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.sync_logs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.sync_checkpoints', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.reconciliation_runs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.sync_metrics', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pullsync.alerts', 'id')::regclass, '');

-- A run's units go with it through a trigger, not a self-referencing foreign key: pg_dump
-- warns about that on every dump, and a --inserts dump can fail to restore.
ALTER TABLE pullsync.jobs DROP CONSTRAINT jobs_parent_id_fkey;
CREATE FUNCTION pullsync.delete_units() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM pullsync.jobs WHERE parent_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER delete_units AFTER DELETE ON pullsync.jobs
    FOR EACH ROW WHEN (OLD.parent_id IS NULL) EXECUTE FUNCTION pullsync.delete_units();
REVOKE ALL ON FUNCTION pullsync.delete_units() FROM PUBLIC;

-- Where the server has no pg_cron, schedule_defaults() says how to schedule from outside.
-- The default pg_cron jobs, named pullsync-…, in this database. Idempotent: pg_cron
-- replaces a job of the same name. Runs with the caller's rights (pg_cron's own checks).
CREATE OR REPLACE FUNCTION pullsync.schedule_defaults(OUT jobname text, OUT schedule text, OUT command text, OUT jobid bigint)
RETURNS SETOF record
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  HINT = CASE WHEN EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron')
                         THEN 'Add pg_cron to shared_preload_libraries, set cron.database_name, then CREATE EXTENSION pg_cron.'
                         ELSE 'pg_cron is not available on this server: call the same functions from any scheduler '
                              '(cron, a systemd timer, a Kubernetes CronJob); see docs/OPERATIONS.md, Scheduling without pg_cron.'
                         END;
    END IF;
    FOR d IN SELECT * FROM (VALUES
            ('pullsync-threads-sync', '0,15,30,45 * * * *', 'SELECT pullsync.threads_scheduled_sync()'),
            ('pullsync-token-refresh', '17 3 * * *', 'SELECT pullsync.threads_refresh_tokens(''7 days'')'),
            ('pullsync-feed-incremental', '*/5 * * * *', 'SELECT pullsync.feed_scheduled_sync(''incremental'')'),
            ('pullsync-feed-full', '0 2 * * *', 'SELECT pullsync.feed_scheduled_sync(''full'')'),
            -- The last day up to an hour ago: newer rows may still be on their way.
            ('pullsync-reconcile', '40 * * * *',
             'SELECT pullsync.sync_reconcile(now() - interval ''25 hours'', now() - interval ''1 hour'', repair => true) '
             || 'WHERE EXISTS (SELECT 1 FROM pullsync.feed_sources WHERE is_active)'),
            ('pullsync-alerts', '*/5 * * * *', 'SELECT pullsync.check_alerts()'),
            ('pullsync-cleanup', '0 3 * * 0', 'SELECT pullsync.cleanup()')
        ) AS v(jobname, schedule, command)
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

-- The workspace views are security barriers: a reader's own function in a query over them
-- runs only on rows of the reader's workspaces.
ALTER VIEW pullsync.threads_post_stats SET (security_barrier = true);
ALTER VIEW pullsync.threads_account_stats SET (security_barrier = true);

-- job_status() runs with the owner's rights, so the documented operator grants suffice.
ALTER FUNCTION pullsync.job_status(bigint) SECURITY DEFINER;
