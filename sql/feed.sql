-- Per consumer (feed source): last sync, lag, totals, errors and state.
CREATE VIEW pullsync.sync_status AS
SELECT s.consumer_id,
       s.base_url,
       s.is_active,
       cp.last_sync_at,
       now() - cp.last_sync_at                  AS lag,
       -- Totals survive retention; pages are those whose checkpoints are still kept.
       coalesce(t.items, 0)                     AS total_items,
       coalesce(cp.pages, 0)                    AS total_pages,
       coalesce(l.errors_24h, 0)                AS errors_24h,
       CASE
           WHEN EXISTS (SELECT 1 FROM pullsync.jobs j
                         WHERE j.kind = 'feed_pull' AND j.state IN ('queued', 'running')
                           AND j.payload->>'consumer_id' = s.consumer_id) THEN 'running'
           WHEN last.status IS NULL THEN 'idle'
           WHEN last.status = 'failed' THEN 'failed'
           ELSE 'completed'
       END                                      AS state,
       last.error                               AS last_error,
       (SELECT count(*) FROM pullsync.feed_quarantine q
         WHERE q.consumer_id = s.consumer_id AND q.resolved_at IS NULL) AS quarantined
  FROM pullsync.feed_sources s
  LEFT JOIN pullsync.sync_metric_totals t ON t.source = 'feed:' || s.consumer_id
  LEFT JOIN LATERAL (SELECT max(created_at) AS last_sync_at, count(*) AS pages
                       FROM pullsync.sync_checkpoints c WHERE c.consumer_id = s.consumer_id) cp ON true
  LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE status = 'failed' AND started_at > now() - interval '24 hours') AS errors_24h
                       FROM pullsync.sync_logs g WHERE g.consumer_id = s.consumer_id) l ON true
  LEFT JOIN LATERAL (SELECT status, error FROM pullsync.sync_logs g
                      WHERE g.consumer_id = s.consumer_id ORDER BY id DESC LIMIT 1) last ON true;
