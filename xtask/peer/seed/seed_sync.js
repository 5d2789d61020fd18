// The seed's scheduled Threads sync, as the edge function it was, for `cargo xtask bench`.
//
// One invocation: all active accounts, in batches of BATCH_SIZE. The accounts of a batch run
// in parallel; an account's calls run one after another: list its posts, each post's
// insights, the account's insights, then one sync_logs row. BATCH_DELAY_MS between
// batches. The platform kills the invocation after INVOCATION_LIMIT_MS: accounts not
// started by then wait for the next invocation, and an account in flight is abandoned
// where it stands (what it already wrote stays, it gets no log row).
//
// Writes go straight into the pg_pullsync tables, one statement at a time and no
// transaction (as the edge function wrote through its database client): posts upserted
// page by page; per post and per account one L1 snapshot, its L2 delta (computed in the same
// statement against the previous snapshot: it costs no extra round trip) and the current
// values.
//
// Env: THREADS_API (base URL, e.g. http://127.0.0.1:8788/v1.0), PG_DSN, ACCOUNTS_FILE (JSON
// list of {user_id, username, token}, the simulator's GET /admin/accounts), optional
// INVOCATION_LIMIT_MS (60000), BATCH_SIZE (5), BATCH_DELAY_MS (2000).
//
// Prints one JSON line: {accounts_total, accounts_synced, accounts_failed, requests, rows,
// seconds, cut_off}. rows counts rows added or changed in posts, snapshots and deltas (as
// pg_pullsync's bench counts them); current values on those rows and log rows are not
// counted again. Exits 0 when cut off too (that is the behaviour being measured);
// non-zero only when it cannot start.

import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

const POST_FIELDS = [
  'id', 'media_product_type', 'media_type', 'media_url', 'permalink', 'owner', 'username',
  'text', 'timestamp', 'shortcode', 'thumbnail_url', 'children', 'is_quote_post',
  'quoted_post', 'reposted_post', 'alt_text', 'link_attachment_url', 'gif_url', 'topic_tag',
  'has_replies', 'reply_audience',
].join(',');
const POST_METRICS = 'views,likes,replies,reposts,quotes,shares';
const ACCOUNT_METRICS = 'views,likes,replies,reposts,quotes,clicks,followers_count';
// Accounts this program creates get one fixed workspace: the bench has no workspaces.
const WORKSPACE_ID = 'b0000000-0000-4000-8000-000000000001';
const JOB_TYPE = 'seed_sync';

// Post columns the listing sets; the rest (current_*, timestamps) belong to the sync.
const POST_COLUMNS = [
  'media_product_type', 'media_type', 'media_url', 'thumbnail_url', 'permalink', 'shortcode',
  'text', 'children_ids', 'is_quote_post', 'quoted_post_id', 'reposted_post_id', 'alt_text',
  'link_attachment_url', 'gif_url', 'topic_tag', 'has_replies', 'reply_audience',
  'published_at',
];

// A page of posts in one statement: the rows travel as one JSON array that Postgres turns
// into records of the table's type. A listed post that did not change is not rewritten, so
// `inserted`/updated counts only real changes.
const UPSERT_POSTS = `
  INSERT INTO pullsync.workspace_threads_posts AS p
         (workspace_threads_account_id, threads_post_id, ${POST_COLUMNS.join(', ')})
  SELECT $1, r.threads_post_id, ${POST_COLUMNS.map((c) => `r.${c}`).join(', ')}
    FROM jsonb_populate_recordset(NULL::pullsync.workspace_threads_posts, $2::jsonb) r
  ON CONFLICT (workspace_threads_account_id, threads_post_id) DO UPDATE
     SET ${POST_COLUMNS.map((c) => `${c} = excluded.${c}`).join(', ')}, updated_at = now()
   WHERE (${POST_COLUMNS.map((c) => `p.${c}`).join(', ')})
         IS DISTINCT FROM (${POST_COLUMNS.map((c) => `excluded.${c}`).join(', ')})
  RETURNING xmax = 0 AS inserted`;

// One post's capture in one round trip: the L1 snapshot, the L2 delta against the previous
// snapshot (read in the statement's own snapshot, so it is the one before this capture; the
// first delta counts from zero) and the current values on the post.
const RECORD_POST_METRICS = `
  WITH post AS (
    SELECT id FROM pullsync.workspace_threads_posts
     WHERE workspace_threads_account_id = $8 AND threads_post_id = $1
  ), previous AS (
    SELECT m.* FROM pullsync.workspace_threads_post_metrics m, post
     WHERE m.workspace_threads_account_id = $8 AND m.workspace_threads_post_id = post.id
     ORDER BY m.captured_at DESC LIMIT 1
  ), snapshot AS (
    INSERT INTO pullsync.workspace_threads_post_metrics
           (workspace_threads_account_id, workspace_threads_post_id, views, likes, replies, reposts,
            quotes, shares, captured_at)
    SELECT $8, id, $2, $3, $4, $5, $6, $7, now() FROM post
  ), delta AS (
    INSERT INTO pullsync.workspace_threads_post_metrics_deltas
           (workspace_threads_account_id, workspace_threads_post_id, period_start, period_end,
            views_delta, likes_delta, replies_delta, reposts_delta, quotes_delta, shares_delta)
    SELECT $8, post.id, previous.captured_at, now(),
           $2 - coalesce(previous.views, 0), $3 - coalesce(previous.likes, 0),
           $4 - coalesce(previous.replies, 0), $5 - coalesce(previous.reposts, 0),
           $6 - coalesce(previous.quotes, 0), $7 - coalesce(previous.shares, 0)
      FROM post LEFT JOIN previous ON true
  )
  UPDATE pullsync.workspace_threads_posts p
     SET current_views = $2, current_likes = $3, current_replies = $4, current_reposts = $5,
         current_quotes = $6, current_shares = $7,
         metrics_updated_at = now(), metrics_snapshot_at = now(), updated_at = now()
    FROM post WHERE p.workspace_threads_account_id = $8 AND p.id = post.id`;

// The account's capture, the same way: snapshot, delta, current values.
const RECORD_ACCOUNT_INSIGHTS = `
  WITH previous AS (
    SELECT * FROM pullsync.workspace_threads_account_insights
     WHERE workspace_threads_account_id = $1
     ORDER BY captured_at DESC LIMIT 1
  ), snapshot AS (
    INSERT INTO pullsync.workspace_threads_account_insights
           (workspace_threads_account_id, followers_count, views, likes, replies, reposts,
            quotes, clicks, captured_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
  ), delta AS (
    INSERT INTO pullsync.workspace_threads_account_insights_deltas
           (workspace_threads_account_id, period_start, period_end, followers_count_delta,
            views_delta, likes_delta, replies_delta, reposts_delta, quotes_delta, clicks_delta)
    SELECT $1, previous.captured_at, now(),
           $2 - coalesce(previous.followers_count, 0), $3 - coalesce(previous.views, 0),
           $4 - coalesce(previous.likes, 0), $5 - coalesce(previous.replies, 0),
           $6 - coalesce(previous.reposts, 0), $7 - coalesce(previous.quotes, 0),
           $8 - coalesce(previous.clicks, 0)
      FROM (SELECT) one LEFT JOIN previous ON true
  )
  UPDATE pullsync.workspace_threads_accounts
     SET current_followers_count = $2, current_views = $3, current_likes = $4,
         current_replies = $5, current_reposts = $6, current_quotes = $7, current_clicks = $8,
         insights_updated_at = now(), insights_snapshot_at = now(),
         last_insights_sync_at = now(), updated_at = now()
   WHERE id = $1`;

function readConfig() {
  return {
    api: requiredEnv('THREADS_API').replace(/\/+$/, ''),
    dsn: requiredEnv('PG_DSN'),
    accountsFile: requiredEnv('ACCOUNTS_FILE'),
    invocationLimitMs: numberEnv('INVOCATION_LIMIT_MS', 60000),
    batchSize: numberEnv('BATCH_SIZE', 5, 1),
    batchDelayMs: numberEnv('BATCH_DELAY_MS', 2000),
  };
}

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function numberEnv(name, fallback, min = 0) {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name} must be a whole number of at least ${min}`);
  }
  return value;
}

// What every step of the invocation shares: the pool, the platform's deadline, the Threads
// API and the tallies for the closing line.
function newRun(config) {
  const run = {
    pool: new pg.Pool({ connectionString: config.dsn, max: config.batchSize }),
    // Stands in for the platform's kill: every call and every write checks it.
    deadline: AbortSignal.timeout(config.invocationLimitMs),
    requests: 0,
    rows: 0,
    // One GET, one attempt, as the seed made it: a failed call fails the account, and the
    // next invocation tries the account again. The deadline aborts calls in flight.
    async get(path, params, token) {
      run.deadline.throwIfAborted();
      const url = new URL(`${config.api}/${path}`);
      for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
      run.requests += 1;
      const response = await fetch(url, {
        headers: { Authorization: `Bearer ${token}` },
        signal: run.deadline,
      });
      const body = await response.json().catch(() => null);
      if (!response.ok || body === null || body.error) {
        const reason = body?.error
          ? `code ${body.error.code}: ${body.error.message}`
          : `HTTP ${response.status}`;
        throw new Error(`GET ${path}: ${reason}`);
      }
      return body;
    },
    // A write, unless the platform has killed the invocation by now.
    async query(sql, values) {
      run.deadline.throwIfAborted();
      return run.pool.query(sql, values);
    },
  };
  // An idle connection that breaks must not take the process down with it.
  run.pool.on('error', (error) => console.error(`seed_sync: idle connection: ${error.message}`));
  return run;
}

// {name: value} from an insights answer: lifetime values, daily series (summed over the
// window), total_value, or clicks per link (summed).
function metricValues(answer) {
  const sum = (entries) => entries.reduce((total, entry) => total + (entry.value ?? 0), 0);
  const values = {};
  for (const metric of answer.data ?? []) {
    if (metric.total_value) values[metric.name] = metric.total_value.value ?? 0;
    else if (metric.link_total_values) values[metric.name] = sum(metric.link_total_values);
    else if (metric.values) values[metric.name] = sum(metric.values);
  }
  return values;
}

function postRow(post) {
  return {
    threads_post_id: post.id,
    media_product_type: post.media_product_type ?? 'THREADS',
    media_type: post.media_type,
    media_url: post.media_url,
    thumbnail_url: post.thumbnail_url,
    permalink: post.permalink,
    shortcode: post.shortcode,
    text: post.text,
    children_ids: post.children?.data.map((child) => child.id),
    is_quote_post: post.is_quote_post,
    quoted_post_id: post.quoted_post?.id,
    reposted_post_id: post.reposted_post?.id,
    alt_text: post.alt_text,
    link_attachment_url: post.link_attachment_url,
    gif_url: post.gif_url,
    topic_tag: post.topic_tag,
    has_replies: post.has_replies,
    reply_audience: post.reply_audience,
    // Threads writes `+0000`; Postgres reads that offset as it is.
    published_at: post.timestamp,
  };
}

// Step 1: every page of the account's posts, each page upserted as it arrives. The seed
// listed all posts on every run (no early stop at known posts): that is what it did, and
// it is what lets every run refresh every post's metrics below.
async function syncPosts(run, account, log) {
  const posts = [];
  let after;
  do {
    log.api_calls += 1;
    const page = await run.get(
      `${account.threads_user_id}/threads`,
      { fields: POST_FIELDS, limit: 100, ...(after && { after }) },
      account.token,
    );
    const data = page.data ?? [];
    if (data.length > 0) {
      const { rows } = await run.query(UPSERT_POSTS, [account.id, JSON.stringify(data.map(postRow))]);
      const inserted = rows.filter((row) => row.inserted).length;
      log.items_new += inserted;
      log.items_updated += rows.length - inserted;
      run.rows += rows.length;
      posts.push(...data);
    }
    after = page.paging?.next ? page.paging.cursors?.after : undefined;
  } while (after);
  await markSynced(run, account, 'last_posts_sync_at');
  log.steps_completed.push('posts');
  return posts;
}

// Step 2: each post's insights, one after another. Repost facades have none.
async function syncPostMetrics(run, account, posts, log) {
  for (const post of posts) {
    if (post.media_type === 'REPOST_FACADE') continue;
    log.api_calls += 1;
    const answer = await run.get(`${post.id}/insights`, { metric: POST_METRICS }, account.token);
    const v = metricValues(answer);
    await run.query(RECORD_POST_METRICS, [
      post.id, v.views ?? 0, v.likes ?? 0, v.replies ?? 0, v.reposts ?? 0, v.quotes ?? 0,
      v.shares ?? 0, account.id,
    ]);
    log.snapshots += 1;
    log.deltas += 1;
    run.rows += 2;
  }
  await markSynced(run, account, 'last_metrics_sync_at');
  log.steps_completed.push('metrics');
}

// Step 3: today's account insights (UTC day start to now) and the follower count.
async function syncAccountInsights(run, account, log) {
  const now = Math.floor(Date.now() / 1000);
  log.api_calls += 1;
  const answer = await run.get(
    `${account.threads_user_id}/threads_insights`,
    { metric: ACCOUNT_METRICS, since: now - (now % 86400), until: now },
    account.token,
  );
  const v = metricValues(answer);
  await run.query(RECORD_ACCOUNT_INSIGHTS, [
    account.id, v.followers_count ?? 0, v.views ?? 0, v.likes ?? 0, v.replies ?? 0,
    v.reposts ?? 0, v.quotes ?? 0, v.clicks ?? 0,
  ]);
  log.snapshots += 1;
  log.deltas += 1;
  run.rows += 2;
  log.steps_completed.push('insights');
}

// Each step stamps its own time, so an account cut short shows how far it got.
async function markSynced(run, account, column) {
  await run.query(
    `UPDATE pullsync.workspace_threads_accounts SET ${column} = now(), updated_at = now() WHERE id = $1`,
    [account.id],
  );
}

// Step 4: the account's sync_logs row, and its status on the account.
async function writeSyncLog(run, account, log) {
  await run.query(
    `WITH entry AS (
       INSERT INTO pullsync.sync_logs
              (job_type, source, workspace_threads_account_id, status, steps_completed,
               items_new, items_updated, snapshots, deltas, api_calls, error, started_at)
       VALUES ($1, 'threads', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     )
     UPDATE pullsync.workspace_threads_accounts SET last_sync_status = $3 WHERE id = $2`,
    [
      JOB_TYPE, account.id, log.status, log.steps_completed, log.items_new, log.items_updated,
      log.snapshots, log.deltas, log.api_calls, log.error, log.started_at,
    ],
  );
}

// 'completed', 'failed', or 'abandoned' when the platform's deadline struck while it ran.
async function syncAccount(run, account) {
  const log = {
    status: 'completed', steps_completed: [], items_new: 0, items_updated: 0, snapshots: 0,
    deltas: 0, api_calls: 0, error: null, started_at: new Date(),
  };
  try {
    const posts = await syncPosts(run, account, log);
    await syncPostMetrics(run, account, posts, log);
    await syncAccountInsights(run, account, log);
  } catch (error) {
    if (run.deadline.aborted) return 'abandoned';
    log.status = 'failed';
    log.error = error.message;
    console.error(`seed_sync: account ${account.threads_user_id}: ${error.message}`);
  }
  try {
    await writeSyncLog(run, account, log);
  } catch (error) {
    if (run.deadline.aborted) return 'abandoned';
    console.error(`seed_sync: account ${account.threads_user_id}: sync log: ${error.message}`);
    return 'failed';
  }
  return log.status;
}

// The accounts of the tokens file, created if missing, and returned with their tokens:
// never synced first, then the longest unsynced, so successive invocations walk the fleet.
async function loadAccounts(run, accountsFile) {
  const entries = JSON.parse(await readFile(accountsFile, 'utf8'));
  await run.pool.query(
    `INSERT INTO pullsync.workspace_threads_accounts (workspace_id, threads_user_id, username)
     SELECT $1, user_id, username FROM jsonb_to_recordset($2::jsonb) AS e(user_id text, username text)
      WHERE NOT EXISTS (SELECT 1 FROM pullsync.workspace_threads_accounts a
                         WHERE a.threads_user_id = e.user_id)`,
    [WORKSPACE_ID, JSON.stringify(entries)],
  );
  const tokens = new Map(entries.map((entry) => [String(entry.user_id), entry.token]));
  const { rows } = await run.pool.query(
    `SELECT id, threads_user_id FROM pullsync.workspace_threads_accounts
      WHERE is_active AND threads_user_id = ANY($1)
      ORDER BY last_posts_sync_at NULLS FIRST, id`,
    [[...tokens.keys()]],
  );
  return rows.map((row) => ({ ...row, token: tokens.get(row.threads_user_id) }));
}

async function main() {
  const started = performance.now();
  const config = readConfig();
  const run = newRun(config);
  const accounts = await loadAccounts(run, config.accountsFile);

  const outcomes = [];
  for (let i = 0; i < accounts.length && !run.deadline.aborted; i += config.batchSize) {
    const batch = accounts.slice(i, i + config.batchSize);
    outcomes.push(...(await Promise.all(batch.map((account) => syncAccount(run, account)))));
    if (i + config.batchSize < accounts.length) {
      // Rejects only when the deadline strikes during the pause; the loop then ends.
      await sleep(config.batchDelayMs, undefined, { signal: run.deadline }).catch(() => {});
    }
  }
  await run.pool.end();

  const count = (status) => outcomes.filter((outcome) => outcome === status).length;
  console.log(JSON.stringify({
    accounts_total: accounts.length,
    accounts_synced: count('completed'),
    accounts_failed: count('failed'),
    requests: run.requests,
    rows: run.rows,
    seconds: Number(((performance.now() - started) / 1000).toFixed(3)),
    cut_off: count('completed') + count('failed') < accounts.length,
  }));
}

main().catch((error) => {
  console.error(`seed_sync: ${error.message}`);
  process.exit(1);
});
