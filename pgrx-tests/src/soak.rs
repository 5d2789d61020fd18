//! What the fault soak (tests/soak.rs) and the failover soak (tests/failover_soak.rs)
//! share: the seeded generator, the Threads world and its API faults, feed pulls that go on
//! through crashes, and the truth every run must end with.

use crate::feed::Digests;
use crate::sim::faults::{Endpoint, FaultKind, FaultSpec, Faults, Malformation};
use crate::sim::world::{World, WorldConfig};
use crate::sim::SimServer;
use crate::wait::Deadline;
use crate::workers::{differences_where, finished, queue, wait_for};
use postgres::Client;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// SplitMix64: a seeded generator, so a failing seed can be run again.
pub struct Seeded(pub u64);

impl Seeded {
    pub fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.draw() % n
    }
}

/// A world of `accounts` accounts of 0 to 350 posts (one without any, one with several
/// pages of 100), listing pages of 25 on every third seed, and latency, so that a sync
/// lasts seconds and crashes land in the middle of it.
pub fn listing_world(sim: &SimServer, seed: u64, rng: &mut Seeded, accounts: usize) {
    let posts: Vec<usize> = (0..accounts)
        .map(|i| match i {
            0 => 0,
            1 => 250 + rng.below(101) as usize,
            _ => rng.below(351) as usize,
        })
        .collect();
    *sim.sim.world.write().unwrap() = World::generate_with_posts(
        &WorldConfig {
            seed,
            accounts,
            posts_per_account: 0,
            start: chrono::Utc::now().timestamp() / 60 * 60,
        },
        |i| posts[i],
    );
    let cap = if seed.is_multiple_of(3) { 25 } else { 100 };
    sim.sim.listing_cap.store(cap, Ordering::Relaxed);
    *sim.sim.latency.lock().unwrap() = (20 + rng.below(30), 10);
}

/// The Threads API's faults, drawn from `seed`: 5xx, throttling, hangs, malformed and cut
/// bodies, text Meta cuts or escapes wrongly, the application's rate limit now and then, and
/// listings throttled on pages 2 to 6 (cut between pages, resumed by a later run).
pub fn api_faults(sim: &SimServer, seed: u64) {
    let mut faults = sim.sim.faults.lock().unwrap();
    *faults = Faults::new(seed);
    for spec in [
        FaultSpec::everywhere(FaultKind::ServerError { status: 500 }, 0.05),
        FaultSpec::everywhere(FaultKind::TooManyRequests { retry_after: 1 }, 0.02),
        FaultSpec::everywhere(FaultKind::Hang, 0.01),
        FaultSpec::everywhere(FaultKind::MalformedJson, 0.01),
        FaultSpec::everywhere(FaultKind::TruncatedBody, 0.01),
    ] {
        faults.add(spec);
    }
    // Read with U+FFFD, never a lost page.
    for malformation in Malformation::ALL
        .into_iter()
        .filter(|m| *m != Malformation::Unreadable)
    {
        faults.add(FaultSpec {
            endpoint: Some(Endpoint::Threads),
            ..FaultSpec::everywhere(FaultKind::MalformedText { malformation }, 0.01)
        });
    }
    // The rest of that run waits for the next.
    faults.add(FaultSpec::everywhere(
        FaultKind::Throttle {
            code: 4,
            status: 403,
        },
        0.002,
    ));
    for page in 2..=6 {
        faults.add(FaultSpec {
            endpoint: Some(Endpoint::Threads),
            page: Some(page),
            ..FaultSpec::everywhere(
                FaultKind::Throttle {
                    code: 613,
                    status: 400,
                },
                0.25,
            )
        });
    }
}

/// The API faults that fired so far.
pub fn api_faults_fired(sim: &SimServer) -> u64 {
    sim.sim
        .faults
        .lock()
        .unwrap()
        .list()
        .iter()
        .map(|f| f.fired)
        .sum()
}

/// How long the feed may go on failing once the chaos is over: a completed pull of each
/// source takes seconds then.
pub const FEED_AFTER_CHAOS: Duration = Duration::from_secs(600);

/// Pulls every source (`feed_pull(source, 'incremental')` over a connection from `connect`)
/// until a pull of each completes after `chaos_over` is set; connections lost to crashes
/// are simply made again. Returns the rounds it took.
pub fn pull_until_complete(
    sources: Vec<String>,
    chaos_over: Arc<AtomicBool>,
    mut connect: impl FnMut() -> Result<Client, postgres::Error>,
) -> u64 {
    let mut attempts = 0;
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut last: Vec<String> = Vec::new();
    let mut deadline: Option<Deadline> = None;
    loop {
        let over = chaos_over.load(Ordering::SeqCst);
        attempts += 1;
        last.clear();
        for source in &sources {
            let answer = connect().and_then(|mut c| {
                c.query_one("SELECT pullsync.feed_pull($1, 'incremental')", &[source])
            });
            let completed = match answer {
                Ok(row) => {
                    let answer: serde_json::Value = row.get(0);
                    last.push(format!("{source}: {answer}"));
                    answer["status"] == "completed"
                }
                Err(e) => {
                    last.push(format!("{source}: {e}"));
                    false
                }
            };
            if completed && over {
                done.insert(source);
            }
        }
        if done.len() == sources.len() {
            return attempts;
        }
        if over {
            deadline
                .get_or_insert_with(|| {
                    Deadline::after(
                        FEED_AFTER_CHAOS,
                        format!("a completed feed pull of each of {sources:?} after the chaos"),
                    )
                })
                .check_with(|| format!("the last answers: {}", last.join("; ")));
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// How the rows pulled from a feed differ from the provider's ((conversations, messages)
/// as `feed::rows` gives them), one line per stream that differs, named `label`.
pub fn feed_differences(
    label: &str,
    provided: &(Digests, Digests),
    pulled: &(Digests, Digests),
) -> Vec<String> {
    let mut found = Vec::new();
    for (stream, provided, pulled) in [
        ("conversations", &provided.0, &pulled.0),
        ("messages", &provided.1, &pulled.1),
    ] {
        if provided == pulled {
            continue;
        }
        let missing = provided.keys().filter(|k| !pulled.contains_key(*k)).count();
        let differ = provided
            .iter()
            .filter(|(k, v)| pulled.get(*k).is_some_and(|p| p != *v))
            .count();
        let extra = pulled.keys().filter(|k| !provided.contains_key(*k)).count();
        found.push(format!(
            "{label} {stream}: {missing} missing, {differ} differ, {extra} extra of {}",
            provided.len()
        ));
    }
    found
}

/// Connects again, as their users would, the accounts whose token Threads refused: the one
/// whose token was replaced, and any whose refreshed token was lost to a crash before it
/// was stored (the simulator, stricter than Meta, drops the old token on refresh).
pub fn reconnect_refused_accounts(
    db: &mut Client,
    sim: &SimServer,
    workspace: &str,
    replaced: Option<usize>,
) {
    let refused: Vec<String> = db
        .query(
            "SELECT a.threads_user_id FROM pullsync.workspace_threads_accounts a
              WHERE NOT EXISTS (SELECT 1 FROM pullsync.workspace_threads_tokens t
                                 WHERE t.workspace_threads_account_id = a.id AND t.is_primary
                                   AND t.invalidated_at IS NULL)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let workspace: uuid::Uuid = workspace.parse().unwrap();
    for (index, (user_id, username, token)) in sim.accounts().into_iter().enumerate() {
        if refused.contains(&user_id) || replaced == Some(index) {
            db.execute(
                "SELECT pullsync.threads_add_account($1, $2, $3, $4, now() + interval '58 days')",
                &[&workspace, &user_id, &username, &token],
            )
            .unwrap();
        }
    }
}

/// How the Threads data differ from what the API serves now: `differences` over the posts
/// not marked deleted, and every deleted post that was stored marked as deleted.
pub fn threads_differences(
    db: &mut Client,
    sim: &SimServer,
    deleted: &[String],
    legacy: bool,
) -> Vec<String> {
    if legacy {
        return differences_where(db, sim, "true");
    }
    let mut found = differences_where(db, sim, "deleted_at IS NULL");
    let unmarked: Vec<String> = db
        .query(
            "SELECT threads_post_id FROM pullsync.workspace_threads_posts
              WHERE threads_post_id = ANY($1) AND deleted_at IS NULL ORDER BY 1",
            &[&deleted],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    found.extend(
        unmarked
            .into_iter()
            .map(|id| format!("post {id} deleted but not marked")),
    );
    found
}

/// Once the faults are off: up to five further runs (each followed by what the daily
/// reconcile job does) while the Threads data differ from the API's. Returns what still
/// differs and the runs it took. `log` names where to look when a run does not end.
pub fn settle_threads(
    db: &mut Client,
    sim: &SimServer,
    workspace: &str,
    deleted: &[String],
    legacy: bool,
    log: &str,
    step: &dyn Fn(&str),
) -> (Vec<String>, u64) {
    let mut found = threads_differences(db, sim, deleted, legacy);
    let mut cycles = 0;
    for cycle in 1..=5 {
        if found.is_empty() {
            break;
        }
        cycles += 1;
        step(&format!(
            "recovery run {cycle} for {} differences (first: {})",
            found.len(),
            found[0]
        ));
        if !legacy {
            // A refresh answered by Threads but lost to a crash before its commit leaves a
            // retired token, found refused only when a run uses it: its user connects the
            // account again once the monitor lists it.
            reconnect_refused_accounts(db, sim, workspace, None);
        }
        let job = queue(db);
        wait_for(
            db,
            &format!(
                "the recovery run {job} to end (SELECT pullsync.job_status({job}); see {log})"
            ),
            Duration::from_secs(300),
            |db| finished(db, job),
        );
        if !legacy {
            // What the daily pullsync-threads-reconcile job does (sql/jobs.sql), over the
            // accounts with a usable token, the ones the monitor does not list: a deleted
            // post whose metrics are never asked for (a repost has none) is found missing
            // from the listing and marked.
            db.batch_execute(
                "SELECT pullsync.threads_reconcile(a.id, now() - interval '30 days', now())
                   FROM pullsync.workspace_threads_accounts a
                  WHERE a.is_active AND a.username NOT IN (
                        SELECT unnest(accounts_needing_reauthorization) FROM pullsync.threads_source_state)",
            )
            .unwrap();
        }
        found = threads_differences(db, sim, deleted, legacy);
    }
    (found, cycles)
}

/// Threads listings left cut short: an account with a resume position or a listing never
/// completed. Zero once every run has resumed its listings to their end.
pub fn unfinished_listings(db: &mut Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pullsync.workspace_threads_accounts
          WHERE posts_listing_resume_after IS NOT NULL OR posts_listing_completed_at IS NULL",
        &[],
    )
    .unwrap()
    .get(0)
}
