-- Monitoring figures per source, for pullsync.metrics(), pullsync.health() and
-- postgres_exporter (docs/MONITORING.md). A source is 'threads' (any active account),
-- 'feed:<consumer_id>' (an active feed source) or any source that has recorded runs.
CREATE VIEW pullsync.source_metrics AS
WITH configured AS (
    SELECT 'threads'::text AS source, min(created_at) AS configured_at
      FROM pullsync.workspace_threads_accounts WHERE is_active
    HAVING count(*) > 0
    UNION ALL
    SELECT 'feed:' || consumer_id, created_at FROM pullsync.feed_sources WHERE is_active),
sources AS (
    SELECT source FROM configured
    UNION
    SELECT source FROM pullsync.sync_metric_totals)
SELECT s.source,
       c.source IS NOT NULL OR s.source = 'maintenance' AS active,
       coalesce(t.runs, 0)                            AS runs_total,
       coalesce(t.items, 0)                           AS items_total,
       coalesce(t.attempts, 0)                        AS attempts_total,
       coalesce(t.errors, 0)                          AS errors_total,
       t.last_run_at,
       t.last_success_at,
       t.last_duration_ms / 1000.0                    AS last_duration_seconds,
       -- Lag: time since the last successful pull, or since the source was configured
       -- when it never had one. Only configured sources have a lag.
       CASE WHEN c.source IS NOT NULL
            THEN extract(epoch FROM now() - coalesce(t.last_success_at, c.configured_at))::float8
       END                                            AS lag_seconds,
       (SELECT count(*) FROM pullsync.jobs j
         WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running')
           AND CASE WHEN s.source = 'threads' THEN j.kind = 'threads_sync'
                    ELSE j.kind = 'feed_pull' AND 'feed:' || (j.payload->>'consumer_id') = s.source
               END)                                   AS jobs_running,
       (SELECT count(*) FROM pullsync.alerts a
         WHERE a.source = s.source AND a.resolved_at IS NULL) AS alerts_open,
       cardinality(r.usernames)::bigint               AS accounts_without_token,
       r.usernames                                    AS accounts_needing_reauthorization,
       -- Feed items that could not be stored and wait in pullsync.feed_quarantine.
       CASE WHEN s.source LIKE 'feed:%' THEN
            (SELECT count(*) FROM pullsync.feed_quarantine q
              WHERE 'feed:' || q.consumer_id = s.source AND q.resolved_at IS NULL)
       END                                            AS items_quarantined
  FROM sources s
  LEFT JOIN configured c USING (source)
  LEFT JOIN pullsync.sync_metric_totals t USING (source)
  -- Threads: active accounts without a usable token (expired, or refused by Threads), by
  -- username: whoever must authorise the app again.
  LEFT JOIN LATERAL (
       SELECT coalesce(array_agg(a.username ORDER BY a.username), '{}') AS usernames
         FROM pullsync.workspace_threads_accounts a
        WHERE a.is_active AND NOT EXISTS (
              SELECT 1 FROM pullsync.workspace_threads_tokens k
               WHERE k.workspace_threads_account_id = a.id AND k.is_primary
                 AND k.revoked_at IS NULL AND k.invalidated_at IS NULL AND k.expires_at > now())) r
         ON s.source = 'threads';
