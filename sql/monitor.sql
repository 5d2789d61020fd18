-- Each source states, in a view of its own, when it was configured (null: it is not), its
-- jobs queued or running, and the figures only it has; source_metrics joins them with the
-- metric totals. A new source adds its state view and one line to `states` below.
CREATE VIEW pullsync.threads_source_state AS
SELECT 'threads'::text                                AS source,
       (SELECT min(created_at) FROM pullsync.workspace_threads_accounts WHERE is_active) AS configured_at,
       (SELECT count(*) FROM pullsync.jobs j
         WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'threads_sync') AS jobs_running,
       cardinality(r.usernames)::bigint               AS accounts_without_token,
       r.usernames                                    AS accounts_needing_reauthorization,
       NULL::bigint                                   AS items_quarantined,
       -- Active accounts whose latest sync waited for Meta's rate limit (deferred to the
       -- next run, no error).
       (SELECT count(*) FROM pullsync.workspace_threads_accounts a
          CROSS JOIN LATERAL (SELECT l.status, l.error FROM pullsync.sync_logs l
                               WHERE l.workspace_threads_account_id = a.id
                               ORDER BY l.started_at DESC, l.id DESC LIMIT 1) last
         WHERE a.is_active AND last.status = 'skipped' AND last.error LIKE 'rate\_limited%') AS accounts_rate_limited
  -- Active accounts without a usable token (expired, or refused by Threads), by username:
  -- whoever must authorise the app again.
  FROM (SELECT coalesce(array_agg(a.username ORDER BY a.username), '{}') AS usernames
          FROM pullsync.workspace_threads_accounts a
         WHERE a.is_active AND NOT EXISTS (
               SELECT 1 FROM pullsync.workspace_threads_tokens k
                WHERE k.workspace_threads_account_id = a.id AND k.is_primary
                  AND k.revoked_at IS NULL AND k.invalidated_at IS NULL AND k.expires_at > now())) r;

CREATE VIEW pullsync.feed_source_state AS
SELECT 'feed:' || f.consumer_id                       AS source,
       CASE WHEN f.is_active THEN f.created_at END    AS configured_at,
       (SELECT count(*) FROM pullsync.jobs j
         WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'feed_pull'
           AND j.payload->>'consumer_id' = f.consumer_id) AS jobs_running,
       NULL::bigint                                   AS accounts_without_token,
       NULL::text[]                                   AS accounts_needing_reauthorization,
       -- Items that could not be stored and wait in pullsync.feed_quarantine.
       (SELECT count(*) FROM pullsync.feed_quarantine q
         WHERE q.consumer_id = f.consumer_id AND q.resolved_at IS NULL) AS items_quarantined,
       NULL::bigint                                   AS accounts_rate_limited
  FROM pullsync.feed_sources f;

CREATE VIEW pullsync.rest_source_state AS
SELECT 'rest:' || r.name                              AS source,
       CASE WHEN r.is_active THEN r.created_at END    AS configured_at,
       (SELECT count(*) FROM pullsync.jobs j
         WHERE j.parent_id IS NULL AND j.state IN ('queued', 'running') AND j.kind = 'rest_pull'
           AND j.payload->>'name' = r.name)           AS jobs_running,
       NULL::bigint                                   AS accounts_without_token,
       NULL::text[]                                   AS accounts_needing_reauthorization,
       -- Records the target would not take, waiting in pullsync.rest_quarantine.
       (SELECT count(*) FROM pullsync.rest_quarantine q
         WHERE q.source_name = r.name AND q.resolved_at IS NULL) AS items_quarantined,
       NULL::bigint                                   AS accounts_rate_limited
  FROM pullsync.rest_sources r;

-- Monitoring figures per source, for pullsync.metrics(), pullsync.health() and
-- postgres_exporter (docs/MONITORING.md). A source is one its state view says is
-- configured ('threads' with any active account, 'feed:<consumer_id>' for an active feed
-- source, 'rest:<name>' for an active REST source) or any source that has recorded runs ('maintenance').
CREATE VIEW pullsync.source_metrics AS
WITH states AS (
    SELECT * FROM pullsync.threads_source_state
    UNION ALL
    SELECT * FROM pullsync.feed_source_state
    UNION ALL
    SELECT * FROM pullsync.rest_source_state),
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
       c.accounts_without_token,
       c.accounts_needing_reauthorization,
       c.items_quarantined,
       c.accounts_rate_limited
  FROM sources s
  LEFT JOIN states c USING (source)
  LEFT JOIN pullsync.sync_metric_totals t USING (source);
