//! A database with pg_pullsync pointed at an in-process Threads simulator, its accounts
//! added through `threads_add_account`, as a user would.

use crate::db::fresh_extension_database;
use crate::sim::{SimConfig, SimServer};
use postgres::Client;
use serde_json::Value;
use uuid::Uuid;

pub struct ThreadsFixture {
    pub db: Client,
    pub sim: SimServer,
    /// (account id in the database, Threads user id)
    pub accounts: Vec<(Uuid, String)>,
}

/// Adds every account of the simulator's world through `threads_add_account`, as a user
/// would; returns (account id, Threads user id) in world order.
pub fn add_sim_accounts(db: &mut Client, sim: &SimServer, workspace: &str) -> Vec<(Uuid, String)> {
    let world = sim.accounts();
    let workspace: Uuid = workspace.parse().expect("a workspace uuid");
    world
        .into_iter()
        .map(|(user_id, username, token)| {
            let id: Uuid = db
                .query_one(
                    "SELECT pullsync.threads_add_account($1, $2, $3, $4, now() + interval '58 days')",
                    &[&workspace, &user_id, &username, &token],
                )
                .unwrap()
                .get(0);
            (id, user_id)
        })
        .collect()
}

pub fn run_scheduled_sync(db: &mut Client) -> Value {
    let queued: Value = db
        .query_one("SELECT pullsync.threads_scheduled_sync()", &[])
        .unwrap()
        .get(0);
    let Some(job_id) = queued["job_id"]
        .as_i64()
        .filter(|_| queued.get("skipped").is_none())
    else {
        return queued;
    };
    run_here(db, job_id)
}

/// Works the queue in this backend (`run_jobs()`) and returns `job_id`'s result.
fn run_here(db: &mut Client, job_id: i64) -> Value {
    db.batch_execute("SELECT pullsync.run_jobs()").unwrap();
    let status: Value = db
        .query_one("SELECT pullsync.job_status($1)", &[&job_id])
        .unwrap()
        .get(0);
    status["result"].clone()
}

/// Queues a token refresh, runs it in this backend (`run_jobs()`) and returns its result.
pub fn run_token_refresh(db: &mut Client) -> Value {
    let queued: Value = db
        .query_one("SELECT pullsync.threads_refresh_tokens()", &[])
        .unwrap()
        .get(0);
    run_here(db, queued["job_id"].as_i64().expect("a queued refresh"))
}

/// Session settings that keep tests quick: short timeouts and retry delays.
pub const QUICK_HTTP: &str = "SET pullsync.http_timeout = '2s'; SET pullsync.http_retry_delay = 5;";

pub fn threads_fixture(database: &str, config: &SimConfig) -> ThreadsFixture {
    let sim = SimServer::start(config);
    let mut db = fresh_extension_database(database);
    db.batch_execute(&format!(
        "SET pullsync.threads_api_url = '{}'; {QUICK_HTTP}",
        sim.api_url()
    ))
    .unwrap();
    let accounts = add_sim_accounts(&mut db, &sim, "11111111-1111-1111-1111-111111111111");
    ThreadsFixture { db, sim, accounts }
}

impl ThreadsFixture {
    /// Queues a run and works it in this session (`run_jobs`); returns the run's result,
    /// or the answer when it was skipped.
    pub fn scheduled_sync(&mut self) -> Value {
        run_scheduled_sync(&mut self.db)
    }

    pub fn sync_account(&mut self, index: usize) -> Value {
        let id = self.accounts[index].0;
        self.db
            .query_one("SELECT pullsync.threads_sync_account($1)", &[&id])
            .unwrap()
            .get(0)
    }

    pub fn count(&mut self, sql: &str) -> i64 {
        count(&mut self.db, sql)
    }

    /// The latest sync_logs row of account `index`: (status, error, notes).
    pub fn last_log(&mut self, index: usize) -> (String, Option<String>, Vec<String>) {
        let row = self
            .db
            .query_one(
                "SELECT status, error, notes FROM pullsync.sync_logs
                  WHERE workspace_threads_account_id = $1 ORDER BY id DESC LIMIT 1",
                &[&self.accounts[index].0],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }

    pub fn layer_violations(&mut self) -> i64 {
        layer_violations(&mut self.db)
    }
}

pub fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

/// Violations of the three-layer invariants (must be zero): current = newest snapshot,
/// sum of deltas = current, one delta per snapshot; for posts, accounts and each link's
/// clicks. And the links' current clicks add up to their account's (the simulator always
/// splits clicks by link).
pub fn layer_violations(db: &mut Client) -> i64 {
    count(
        db,
            "SELECT
               (SELECT count(*) FROM pullsync.workspace_threads_posts p
                  LEFT JOIN LATERAL (SELECT * FROM pullsync.workspace_threads_post_metrics m
                                      WHERE m.workspace_threads_post_id = p.id
                                      ORDER BY captured_at DESC LIMIT 1) s ON true
                 WHERE s.id IS NOT NULL AND (s.views, s.likes, s.replies, s.reposts, s.quotes, s.shares)
                       IS DISTINCT FROM (p.current_views, p.current_likes, p.current_replies,
                                         p.current_reposts, p.current_quotes, p.current_shares))
             + (SELECT count(*) FROM pullsync.workspace_threads_posts p
                  JOIN (SELECT workspace_threads_post_id, sum(views_delta) v, sum(likes_delta) l, sum(replies_delta) r,
                               sum(reposts_delta) rp, sum(quotes_delta) q, sum(shares_delta) s, count(*) n
                          FROM pullsync.workspace_threads_post_metrics_deltas GROUP BY 1) d
                    ON d.workspace_threads_post_id = p.id
                 WHERE (d.v, d.l, d.r, d.rp, d.q, d.s) IS DISTINCT FROM
                       (p.current_views, p.current_likes, p.current_replies, p.current_reposts, p.current_quotes, p.current_shares)
                    OR d.n <> (SELECT count(*) FROM pullsync.workspace_threads_post_metrics m WHERE m.workspace_threads_post_id = p.id))
             + (SELECT count(*) FROM pullsync.workspace_threads_accounts a
                  LEFT JOIN LATERAL (SELECT * FROM pullsync.workspace_threads_account_insights i
                                      WHERE i.workspace_threads_account_id = a.id
                                      ORDER BY captured_at DESC LIMIT 1) s ON true
                 WHERE s.id IS NOT NULL AND (s.followers_count, s.views, s.likes, s.replies, s.reposts, s.quotes, s.clicks)
                       IS DISTINCT FROM (a.current_followers_count, a.current_views, a.current_likes, a.current_replies,
                                         a.current_reposts, a.current_quotes, a.current_clicks))
             + (SELECT count(*) FROM pullsync.workspace_threads_accounts a
                  JOIN (SELECT workspace_threads_account_id, sum(followers_count_delta) f, sum(views_delta) v,
                               sum(likes_delta) l, sum(replies_delta) r, sum(reposts_delta) rp, sum(quotes_delta) q,
                               sum(clicks_delta) c
                          FROM pullsync.workspace_threads_account_insights_deltas GROUP BY 1) d
                    ON d.workspace_threads_account_id = a.id
                 WHERE (d.f, d.v, d.l, d.r, d.rp, d.q, d.c) IS DISTINCT FROM
                       (a.current_followers_count, a.current_views, a.current_likes, a.current_replies,
                        a.current_reposts, a.current_quotes, a.current_clicks))
             + (SELECT count(*) FROM pullsync.workspace_threads_account_links l
                  LEFT JOIN LATERAL (SELECT * FROM pullsync.workspace_threads_account_link_clicks c
                                      WHERE c.workspace_threads_account_id = l.workspace_threads_account_id
                                        AND c.link_url = l.link_url
                                      ORDER BY captured_at DESC LIMIT 1) s ON true
                 WHERE (s.clicks, s.captured_at) IS DISTINCT FROM (l.current_clicks, l.clicks_snapshot_at))
             + (SELECT count(*) FROM pullsync.workspace_threads_account_links l
                  LEFT JOIN (SELECT workspace_threads_account_id, link_url, sum(clicks_delta) c, count(*) n
                               FROM pullsync.workspace_threads_account_link_clicks_deltas GROUP BY 1, 2) d
                    USING (workspace_threads_account_id, link_url)
                 WHERE d.c IS DISTINCT FROM l.current_clicks
                    OR d.n IS DISTINCT FROM (SELECT count(*) FROM pullsync.workspace_threads_account_link_clicks c
                                              WHERE c.workspace_threads_account_id = l.workspace_threads_account_id
                                                AND c.link_url = l.link_url))
             + (SELECT count(*) FROM pullsync.workspace_threads_accounts a
                  JOIN (SELECT workspace_threads_account_id AS id, sum(current_clicks) c
                          FROM pullsync.workspace_threads_account_links GROUP BY 1) l USING (id)
                 WHERE l.c IS DISTINCT FROM a.current_clicks)",
    )
}
