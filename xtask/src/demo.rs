//! `cargo xtask demo`: the demo cluster, the Threads simulator beside it, two syncs and a
//! short report: posts, clicks per link, follower demographics.

use crate::cluster::Cluster;
use crate::install::{build_and_install, Profile};
use crate::pg_tree::{demo_home, Major, PgTree};
use crate::prereqs;
use crate::process::{cmd, output_of, Result, StatusOk};
use crate::workspace::workspace_root;
use std::path::PathBuf;
use std::time::Duration;

const SIM_PORT: u16 = 28817;
const WORKSPACE: &str = "de300000-0000-4000-8000-000000000001";

/// The simulator's files (one simulator serves either demo).
fn home() -> PathBuf {
    workspace_root().join("target/demo")
}

/// The demo cluster of `major`: on 15 the system PostgreSQL, the machine's own server
/// installation; on 18, which has no system package here, a private tree. Its data lives
/// where the postgres OS user can reach it (`pg_tree::demo_home`).
pub fn cluster(major: Major) -> Cluster {
    match major {
        Major::Pg15 => Cluster::new(demo_home("demo"), 28815, PgTree::system()),
        Major::Pg18 => Cluster::new(
            demo_home("demo-18"),
            28915,
            PgTree::private(major, "18-demo"),
        ),
    }
}

/// The demo clusters of this checkout and of every other one whose data the postgres user
/// keeps (`pg_tree::demo_home`): a test run must leave each of them alone.
pub fn clusters_on_this_machine() -> Vec<Cluster> {
    let mut clusters: Vec<Cluster> = Major::ALL.into_iter().map(cluster).collect();
    let others = std::fs::read_dir("/var/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pullsync-"));
    for checkout in others {
        for major in Major::ALL {
            let ours = cluster(major);
            let name = ours.home.file_name().expect("a named home").to_owned();
            let home = checkout.path().join(name);
            if clusters.iter().all(|c| c.home != home) {
                clusters.push(Cluster::new(home, ours.port, ours.tree));
            }
        }
    }
    clusters
}

fn start_simulator() -> Result<()> {
    if crate::simulator::is_up(SIM_PORT) {
        println!("xtask: threads-sim already running on port {SIM_PORT}");
        return Ok(());
    }
    crate::workspace::build_release_bin("threads-sim")?;
    let args = ["--accounts", "20", "--posts", "200", "--seed", "42"].map(String::from);
    let child =
        crate::simulator::spawn("release", SIM_PORT, &args, &home().join("threads-sim.log"))?;
    std::fs::write(home().join("threads-sim.pid"), child.id().to_string())?;
    println!("xtask: threads-sim started on port {SIM_PORT} (20 accounts × 200 posts)");
    Ok(())
}

/// Queues a Threads run, waits for the workers to finish it, prints its result.
fn run_and_wait(cluster: &Cluster) -> Result<()> {
    let job = cluster
        .query(
            "postgres",
            "SELECT pullsync.threads_scheduled_sync()->>'job_id'",
        )
        .filter(|j| !j.is_empty())
        .ok_or("the run was not queued (is another one running?)")?;
    for _ in 0..1200 {
        let state = cluster.query(
            "postgres",
            &format!("SELECT pullsync.job_status({job})->>'state'"),
        );
        if !matches!(state.as_deref(), Some("queued") | Some("running")) {
            return cluster.psql(
                "postgres",
                &format!("SELECT jsonb_pretty(pullsync.job_status({job})->'result') AS run;"),
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(
        format!("job {job} did not finish in 5 minutes; see SELECT * FROM pullsync.jobs_running")
            .into(),
    )
}

pub fn stop_simulator() -> Result<()> {
    let pid_file = home().join("threads-sim.pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = cmd("kill").arg(pid.trim()).status();
        let _ = std::fs::remove_file(pid_file);
    }
    Ok(())
}

/// A demo cluster made by 0.1.0 holds its key as a setting, which 0.2.0 refuses: the key
/// moves into the cluster's key file, the step docs/OPERATIONS.md asks of operators.
fn move_literal_key_to_file(cluster: &Cluster) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let conf_path = cluster.pgdata().join("postgresql.conf");
    let conf = std::fs::read_to_string(&conf_path)?;
    let literal = |line: &str| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == "pullsync.encryption_key")
            .then(|| value.trim().trim_matches('\'').to_string())
    };
    let Some(key) = conf.lines().find_map(literal) else {
        return Ok(());
    };
    let key_file = cluster.key_file();
    std::fs::write(&key_file, &key)?;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
    cmd("chown")
        .arg("postgres:postgres")
        .arg(&key_file)
        .status_ok()?;
    let rewritten: Vec<String> = conf
        .lines()
        .map(|line| match literal(line) {
            Some(_) => format!("pullsync.encryption_key_file = '{}'", key_file.display()),
            None => line.to_string(),
        })
        .collect();
    std::fs::write(&conf_path, rewritten.join("\n") + "\n")?;
    println!(
        "moved the demo's encryption key into {}",
        key_file.display()
    );
    Ok(())
}

/// `cargo xtask demo [--pg 15|18]` (15 when not given).
pub fn demo(args: &[String]) -> Result<()> {
    let major = match crate::args::flag_value(args, "--pg")? {
        Some(v) => Major::parse(v)?,
        None => Major::Pg15,
    };
    prereqs::ensure(&[major])?;
    let cluster = cluster(major);
    if !cluster.tree.is_system() {
        cluster.tree.ensure_copied()?;
    }
    // On 15 the demo is the one install into the system PostgreSQL: renamed into place, so
    // a server running the previous build keeps running until the restart below.
    build_and_install(&cluster.tree, Profile::Release)?;
    std::fs::create_dir_all(home())?;
    if !cluster.exists() {
        let key = output_of(cmd("sh").args(["-c", "head -c 32 /dev/urandom | base64"]))
            .ok_or("cannot generate an encryption key")?;
        cluster.create(key.trim(), &crate::cluster::cluster_settings(major))?;
    }
    move_literal_key_to_file(&cluster)?;
    println!(
        "xtask: the demo cluster's data is in {}",
        cluster.pgdata().display()
    );
    if cluster.is_running() {
        cluster.restart()?;
    } else {
        crate::ports::ensure_free(cluster.port, "the demo cluster")?;
        cluster.start()?;
    }
    start_simulator()?;
    if major.has_pg_cron() {
        cluster.psql("postgres", "CREATE EXTENSION IF NOT EXISTS pg_cron")?;
    }
    cluster.psql(
        "postgres",
        &format!(
            "CREATE EXTENSION IF NOT EXISTS pg_pullsync;
             ALTER EXTENSION pg_pullsync UPDATE;
             ALTER SYSTEM SET pullsync.threads_api_url = 'http://127.0.0.1:{SIM_PORT}/v1.0';
             SELECT pg_reload_conf();"
        ),
    )?;

    let added = crate::simulator::add_accounts(&cluster, "postgres", SIM_PORT, WORKSPACE)?;
    println!(
        "\nxtask: first sync of {added} simulated accounts (queued; the background workers run it)"
    );
    run_and_wait(&cluster)?;

    crate::simulator::advance_clock(SIM_PORT, 86_400)?;
    println!("xtask: the simulator's clock moved one day; syncing again with every post due");
    cluster.psql(
        "postgres",
        "ALTER SYSTEM SET pullsync.metrics_every_run_age = '400d'; SELECT pg_reload_conf();",
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let second = run_and_wait(&cluster);
    cluster.psql(
        "postgres",
        "ALTER SYSTEM RESET pullsync.metrics_every_run_age; SELECT pg_reload_conf();",
    )?;
    second?;
    cluster.psql(
        "postgres",
        "SELECT (SELECT count(*) FROM pullsync.workspace_threads_accounts) AS accounts,
                (SELECT count(*) FROM pullsync.workspace_threads_posts) AS posts,
                (SELECT count(*) FROM pullsync.workspace_threads_post_metrics) AS snapshots,
                (SELECT count(*) FROM pullsync.workspace_threads_post_metrics_deltas) AS deltas;
         SELECT username, media_type, text_preview, views, views_24h, likes, likes_24h
           FROM pullsync.threads_post_stats ORDER BY views DESC LIMIT 10;
         SELECT username, link_url, clicks, clicks_24h
           FROM pullsync.threads_link_clicks ORDER BY clicks DESC, link_url LIMIT 6;
         SELECT username, breakdown, dimension_value, followers, percent
           FROM pullsync.threads_follower_demographics
          WHERE username = (SELECT min(username) FROM pullsync.threads_follower_demographics)
            AND breakdown IN ('age', 'gender')
          ORDER BY breakdown, dimension_value;",
    )?;
    println!(
        "\npg_pullsync demo cluster is running (data in {}), the simulator on port {SIM_PORT}.\n\
         Connect:  psql -h 127.0.0.1 -p {} -U postgres postgres\n\
         Try:      SELECT * FROM pullsync.threads_account_stats;\n\
         \x20         SELECT * FROM pullsync.threads_link_clicks;          -- today's clicks per link\n\
         \x20         SELECT * FROM pullsync.threads_follower_demographics; -- accounts with 100+ followers\n\
         Stop:     cargo xtask stop",
        cluster.pgdata().display(),
        cluster.port
    );
    Ok(())
}
