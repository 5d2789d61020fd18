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

-- Monitoring figures per source, for pullsync.metrics(), pullsync.health() and
-- postgres_exporter (docs/MONITORING.md). A source is one its state view says is
-- configured, or any that has recorded runs ('maintenance'). The columns after
-- alerts_open are 0.2.0's, read from the sources' details, null where a source has none.
CREATE VIEW pullsync.source_metrics AS
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
