//! The feed end to end — provider tables → HTTP feed server → consumer tables — against the
//! machine's ceiling measured in the same run: COPY of the same rows into the same tables.

use super::stats::Summary;
use super::{Bench, Plan, CONSUMER_DB, DB, FEED_PORT};
use crate::process::Result;
use std::time::Instant;

pub const KEY: &str = "bench-consumer-key-0123456789";
/// Messages per conversation in the generated data.
const MESSAGES_PER_CONVERSATION: usize = 50;
const COLUMNS_CONVERSATIONS: &str =
    "id, user_id, started_at, ended_at, last_message_at, updated_at";
const COLUMNS_MESSAGES: &str =
    "id, conversation_id, role, content_redacted, risk_level, risk_categories, created_at, updated_at";

/// One size, `reps` side-by-side pairs of (pull, COPY) seconds.
pub struct Size {
    pub messages: usize,
    pub rows: usize,
    pub pull_seconds: Vec<f64>,
    pub copy_seconds: Vec<f64>,
}

impl Size {
    fn rows_per_second(&self, seconds: &[f64]) -> Summary {
        let rates: Vec<f64> = seconds.iter().map(|s| self.rows as f64 / s).collect();
        Summary::of(&rates)
    }
    pub fn pull_rows_per_second(&self) -> Summary {
        self.rows_per_second(&self.pull_seconds)
    }
    pub fn copy_rows_per_second(&self) -> Summary {
        self.rows_per_second(&self.copy_seconds)
    }
    /// The pull's speed as a fraction of COPY's, pair by pair.
    pub fn fraction_of_copy(&self) -> Summary {
        Summary::of_ratios(&self.copy_seconds, &self.pull_seconds)
    }
}

pub fn measure(bench: &Bench, plan: &Plan) -> Result<Vec<Size>> {
    let mut sizes = Vec::new();
    for &messages in &plan.feed_messages {
        let conversations = (messages / MESSAGES_PER_CONVERSATION).max(1);
        provide(bench, conversations, messages)?;
        let mut size = Size {
            messages,
            rows: messages + conversations,
            pull_seconds: Vec::new(),
            copy_seconds: Vec::new(),
        };
        for rep in 1..=plan.reps {
            let pull = pull(bench, size.rows)?;
            let copy = copy(bench)?;
            println!(
                "xtask: feed run {rep}, {messages} messages + {conversations} conversations: pull {pull:.2} s ({:.0} rows/s), COPY {copy:.2} s ({:.0} rows/s)",
                size.rows as f64 / pull,
                size.rows as f64 / copy
            );
            size.pull_seconds.push(pull);
            size.copy_seconds.push(copy);
        }
        sizes.push(size);
    }
    Ok(sizes)
}

/// The provider rows of the smallest feed size, for the attack benchmark on its own.
pub fn provide_for_attack(bench: &Bench) -> Result<()> {
    provide(bench, 200, 10_000)
}

fn copy_file(bench: &Bench, table: &str) -> String {
    bench
        .cluster
        .home
        .join(format!("{table}.copy"))
        .display()
        .to_string()
}

/// The provider's rows (in the database the feed server serves), and the same rows as
/// COPY files for the ceiling.
fn provide(bench: &Bench, conversations: usize, messages: usize) -> Result<()> {
    bench.cluster.psql_quiet(
        DB,
        &format!(
            "CREATE EXTENSION IF NOT EXISTS pg_pullsync;
             TRUNCATE pullsync.conversations, pullsync.conversation_messages, pullsync.feed_consumers CASCADE;
             SELECT pullsync.feed_add_consumer('bench', '{KEY}', 1000000000);
             INSERT INTO pullsync.conversations ({COLUMNS_CONVERSATIONS})
             SELECT 'c' || g, 'u' || (g % 997), t, t + interval '5 min', t + interval '4 min', t
               FROM generate_series(1, {conversations}) g,
                    LATERAL (SELECT timestamptz '2026-06-01 00:00:00+00' + g * interval '1 s' AS t) ts;
             INSERT INTO pullsync.conversation_messages ({COLUMNS_MESSAGES})
             SELECT 'm' || g, 'c' || (g % {conversations} + 1), (ARRAY['user', 'assistant'])[g % 2 + 1],
                    'redacted message text number ' || g || ', about as long as a short chat reply',
                    (ARRAY['none', 'low', 'high'])[g % 3 + 1],
                    CASE WHEN g % 3 = 2 THEN ARRAY['pii'] ELSE '{{}}' END, t, t
               FROM generate_series(1, {messages}) g,
                    LATERAL (SELECT timestamptz '2026-06-01 00:00:00+00' + g * interval '10 ms' AS t) ts;
             VACUUM ANALYZE pullsync.conversations, pullsync.conversation_messages;
             COPY (SELECT {COLUMNS_CONVERSATIONS} FROM pullsync.conversations) TO '{}';
             COPY (SELECT {COLUMNS_MESSAGES} FROM pullsync.conversation_messages) TO '{}';",
            copy_file(bench, "conversations"),
            copy_file(bench, "messages"),
        ),
    )
}

/// A fresh consumer pulls everything over HTTP; returns seconds.
fn pull(bench: &Bench, rows: usize) -> Result<f64> {
    bench.cluster.psql_quiet(
        CONSUMER_DB,
        &format!(
            "DROP EXTENSION IF EXISTS pg_pullsync CASCADE; CREATE EXTENSION pg_pullsync;
             SELECT pullsync.feed_add_source('bench', 'http://127.0.0.1:{FEED_PORT}', '{KEY}',
                    batch_size => 5000, rate_limit => 10000, timeout => '60 s');
             CHECKPOINT;"
        ),
    )?;
    let started = Instant::now();
    let status = bench.query(
        CONSUMER_DB,
        "SELECT pullsync.feed_pull('bench', 'incremental')->>'status'",
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let stored: usize = bench
        .query(
            CONSUMER_DB,
            "SELECT (SELECT count(*) FROM pullsync.conversations) + (SELECT count(*) FROM pullsync.conversation_messages)",
        )?
        .parse()?;
    if status != "completed" || stored != rows {
        return Err(format!("the feed pull ended {status} with {stored} of {rows} rows").into());
    }
    Ok(seconds)
}

/// COPY of the same rows into the same (emptied) consumer tables; returns seconds.
fn copy(bench: &Bench) -> Result<f64> {
    bench.cluster.psql_quiet(
        CONSUMER_DB,
        "TRUNCATE pullsync.conversations, pullsync.conversation_messages; CHECKPOINT;",
    )?;
    let started = Instant::now();
    bench.query(
        CONSUMER_DB,
        &format!(
            "COPY pullsync.conversations ({COLUMNS_CONVERSATIONS}) FROM '{}';
             COPY pullsync.conversation_messages ({COLUMNS_MESSAGES}) FROM '{}';",
            copy_file(bench, "conversations"),
            copy_file(bench, "messages"),
        ),
    )?;
    Ok(started.elapsed().as_secs_f64())
}
