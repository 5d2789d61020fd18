//! `cargo xtask bench --only rest [--records N] [--page-sizes N,N] [--paginations cursor,page_number]`:
//! a paged JSON API (`paged-api`, 20 ms a page, pages served concurrently) read into one
//! table by pg_pullsync's REST source, by dlt's `rest_api` source tuned by dlt's
//! performance guide, and, for the ceiling, COPY of the same rows; at 100 and 1,000
//! records a page (1,000,000 records unless told), each by a cursor (the next position in
//! the answer: pg_pullsync requests one page ahead) and by page numbers (known ahead:
//! pg_pullsync requests up to `concurrency`, 16, the most its configuration allows, at
//! once; dlt's page-number paginator reads one after another); then a fan-out over 1,000
//! parents × 100 children. One run of each, side by side; prints the figures (docs/BENCHMARKS.md
//! holds them, written by hand, like the other `--only` benches).

use super::memory::{Peak, Sampler};
use super::{peer, Bench, BENCH_PORT, DB};
use crate::process::{cmd, Result, StatusOk};
use crate::simulator::http;
use crate::workspace::{build_release_bin, workspace_root};
use std::process::Child;
use std::time::{Duration, Instant};

const API_PORT: u16 = 28823;
const LATENCY_MS: u64 = 20;
/// The small listing whose pull's memory is set beside the large one's.
const SMALL: u64 = 10_000;
const PARENTS: u64 = 1_000;
const CHILDREN: u64 = 100;
/// The title of the background process a `rest_pull` runs in.
const SESSION_CALL: &str = "pg_pullsync session call";
const RECORDS_TABLE: &str = "bench_records (id bigint PRIMARY KEY, title text NOT NULL, \
     status text NOT NULL, amount numeric NOT NULL, updated_at timestamptz NOT NULL)";
const RECORDS_COLUMNS: &str = "id, title, status, amount, updated_at";
const CHILDREN_TABLE: &str =
    "bench_children (id bigint PRIMARY KEY, parent_id bigint NOT NULL, title text NOT NULL)";

/// The API process, stopped when dropped.
struct Api(Child);

impl Api {
    fn spawn(log: &std::path::Path) -> Result<Api> {
        crate::ports::ensure_free(API_PORT, "the REST bench's API")?;
        let log = std::fs::File::create(log)?;
        let binary = workspace_root().join("target/release/paged-api");
        let child = cmd(binary.to_str().expect("utf-8 path"))
            .args(["--port", &API_PORT.to_string()])
            .args(["--latency-ms", &LATENCY_MS.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let api = Api(child);
        for _ in 0..100 {
            if api.requests().is_ok() {
                return Ok(api);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("paged-api did not start within 10 s".into())
    }

    fn requests(&self) -> Result<u64> {
        let body: serde_json::Value =
            serde_json::from_str(&http(API_PORT, "GET", "/admin/requests", "")?)?;
        body["requests"]
            .as_u64()
            .ok_or_else(|| "paged-api: no request count".into())
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One load: its seconds, API requests and rows.
struct Load {
    seconds: f64,
    requests: u64,
    rows: u64,
}

impl Load {
    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let numbers = |flag: &str, default: &str| -> Result<Vec<u64>> {
        crate::args::flag_value(args, flag)?
            .unwrap_or(default)
            .split(',')
            .map(|n| {
                n.parse()
                    .map_err(|_| format!("{flag}: {n:?} is not a number").into())
            })
            .collect()
    };
    let records = numbers("--records", "1000000")?[0];
    let page_sizes = numbers("--page-sizes", "100,1000")?;
    let paginations: Vec<String> = crate::args::flag_value(args, "--paginations")?
        .unwrap_or("cursor,page_number")
        .split(',')
        .map(str::to_string)
        .collect();
    if let Some(bad) = paginations
        .iter()
        .find(|p| !["cursor", "page_number"].contains(&p.as_str()))
    {
        return Err(format!("--paginations: {bad:?} is neither cursor nor page_number").into());
    }
    let tree = super::bench_tree();
    tree.ensure_copied()?;
    crate::install::build_and_install(&tree, crate::install::Profile::Release)?;
    build_release_bin("paged-api")?;
    let home = workspace_root().join("target/bench");
    peer::prepare(&home)?;

    let bench = Bench::create()?;
    // A listing of 10,000 pages at 20 ms each outlasts the default run budget (600 s).
    bench.configure(&[("pullsync.rest_run_budget", "86400")])?;
    bench.cluster.psql_quiet(
        DB,
        &format!(
            "CREATE EXTENSION pg_pullsync;
             CREATE TABLE bench_parents (id bigint PRIMARY KEY);
             INSERT INTO bench_parents SELECT generate_series(1, {PARENTS});"
        ),
    )?;
    let api = Api::spawn(&bench.home.join("paged-api.log"))?;
    let outcome = measure(&bench, &api, records, &page_sizes, &paginations);
    drop(api);
    bench.cluster.stop()?;
    outcome
}

fn measure(
    bench: &Bench,
    api: &Api,
    records: u64,
    page_sizes: &[u64],
    paginations: &[String],
) -> Result<()> {
    let mut lines = Vec::new();
    let mut copy_per_second = None;
    for (pagination, &limit) in paginations
        .iter()
        .flat_map(|p| page_sizes.iter().map(move |l| (p, l)))
    {
        let (_, small_peak) = pullsync_listing(bench, api, SMALL, limit, pagination)?;
        let (pull, peak) = pullsync_listing(bench, api, records, limit, pagination)?;
        if copy_per_second.is_none() {
            copy_per_second = Some(copy(bench, records)?.rows_per_second());
        }
        let dlt = dlt_load(
            bench,
            api,
            "listing",
            &[
                ("TOTAL", records.to_string()),
                ("LIMIT", limit.to_string()),
                ("PAGINATION", pagination.clone()),
            ],
            "bench_records",
            RECORDS_TABLE,
            records,
        )?;
        let copy_rate = copy_per_second.expect("measured above");
        let floor = (records.div_ceil(limit) * LATENCY_MS) as f64 / 1000.0;
        lines.push(format!(
            "| {pagination} | {limit} | {} | {:.0}% | {floor:.1} | {} / {} | {} |",
            versus(&pull, &dlt),
            100.0 * pull.rows_per_second() / copy_rate,
            pull.requests,
            dlt.requests,
            memory(small_peak, peak),
        ));
        println!("xtask: REST bench so far:\n{}", lines.join("\n"));
    }
    let copy_rate = copy_per_second.expect("measured above");
    println!(
        "\nxtask: REST bench, {records} records, {LATENCY_MS} ms a page; COPY {copy_rate:.0} rows/s\n\
         | pagination | records a page | pg_pullsync, s | rows/s | dlt rest_api, s | rows/s | pg_pullsync ÷ dlt, time | pg_pullsync ÷ COPY, rows/s | latency floor, s | requests: pg_pullsync / dlt | session process own memory, MiB: {SMALL} → {records} records | its peak RSS, MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n{}",
        lines.join("\n")
    );
    fan_out(bench, api)
}

/// pg_pullsync's load beside dlt's, as table cells: each one's seconds and rows/s, then
/// their ratio.
fn versus(pull: &Load, dlt: &Load) -> String {
    format!(
        "{:.1} | {:.0} | {:.1} | {:.0} | {:.2} ({:.1}× faster)",
        pull.seconds,
        pull.rows_per_second(),
        dlt.seconds,
        dlt.rows_per_second(),
        pull.seconds / dlt.seconds,
        dlt.seconds / pull.seconds
    )
}

/// The small pull's figure → the large one's, in MiB: own memory, then peak RSS.
fn memory(small: Peak, large: Peak) -> String {
    let mib = |kib: u64| kib as f64 / 1024.0;
    format!(
        "{:.1} → {:.1} | {:.0} → {:.0}",
        mib(small.anon_kib),
        mib(large.anon_kib),
        mib(small.hwm_kib),
        mib(large.hwm_kib)
    )
}

/// Runs `SELECT pullsync.rest_pull(source)` with the session process sampled; checks the
/// run completed and the table holds `rows`.
fn timed_pull(
    bench: &Bench,
    api: &Api,
    source: &str,
    table: &str,
    rows: u64,
) -> Result<(Load, Peak)> {
    bench.cluster.psql_quiet(DB, "CHECKPOINT;")?;
    let before = api.requests()?;
    let sampler = Sampler::start_for(SESSION_CALL, Duration::from_millis(20));
    let started = Instant::now();
    let result = bench.query(DB, &format!("SELECT pullsync.rest_pull('{source}')"))?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = sampler.finish();
    let requests = api.requests()? - before;
    let answer: serde_json::Value = serde_json::from_str(&result)?;
    let stored: u64 = bench
        .query(DB, &format!("SELECT count(*) FROM {table}"))?
        .parse()?;
    if answer["status"] != "completed" || stored != rows {
        return Err(format!(
            "the pull of {source} answered {result}, with {stored} of {rows} rows"
        )
        .into());
    }
    let size = bench.query(
        DB,
        &format!("SELECT pg_size_pretty(pg_total_relation_size('{table}'))"),
    )?;
    println!(
        "xtask: pg_pullsync {source}: {rows} rows ({size} with the index) in {seconds:.2} s ({:.0} rows/s), {requests} requests, session process own {:.1} MiB, peak RSS {:.0} MiB",
        rows as f64 / seconds,
        peak.anon_kib as f64 / 1024.0,
        peak.hwm_kib as f64 / 1024.0
    );
    Ok((
        Load {
            seconds,
            requests,
            rows,
        },
        peak,
    ))
}

/// A fresh extension and an empty `public.bench_records`, then one pull of `records` at
/// `limit` a page.
fn pullsync_listing(
    bench: &Bench,
    api: &Api,
    records: u64,
    limit: u64,
    pagination: &str,
) -> Result<(Load, Peak)> {
    let source = format!("records_{records}_{limit}_{pagination}");
    let (paging, concurrency) = match pagination {
        "page_number" => (
            serde_json::json!({"style": "page_number", "param": "page", "size": limit}),
            16,
        ),
        _ => (
            serde_json::json!({"style": "cursor", "param": "cursor", "cursor_path": "next_cursor"}),
            1,
        ),
    };
    let config = serde_json::json!({
        "base_url": format!("http://127.0.0.1:{API_PORT}"),
        "path": "/records",
        "query": {"total": records.to_string(), "limit": limit.to_string()},
        "records": "data",
        "primary_key": "id",
        "pagination": paging,
        "concurrency": concurrency,
        "target": {
            "table": "public.bench_records",
            "columns": {"id": "id", "title": "title", "status": "status", "amount": "amount", "updated_at": "updated_at"},
        },
        "max_pages": 1_000_000,
    });
    bench.cluster.psql_quiet(
        DB,
        &format!(
            "DROP TABLE IF EXISTS public.bench_records;
             CREATE TABLE public.{RECORDS_TABLE};
             SELECT pullsync.rest_add_source('{source}', '{config}');"
        ),
    )?;
    timed_pull(bench, api, &source, "public.bench_records", records)
}

/// COPY of the rows pg_pullsync stored, from a file, into the same emptied table.
fn copy(bench: &Bench, records: u64) -> Result<Load> {
    let file = bench.cluster.home.join("bench_records.copy");
    let file = file.display();
    bench.cluster.psql_quiet(
        DB,
        &format!(
            "COPY (SELECT {RECORDS_COLUMNS} FROM public.bench_records) TO '{file}';
             TRUNCATE public.bench_records; CHECKPOINT;"
        ),
    )?;
    let started = Instant::now();
    bench.query(
        DB,
        &format!("COPY public.bench_records ({RECORDS_COLUMNS}) FROM '{file}'"),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let rows: u64 = bench
        .query(DB, "SELECT count(*) FROM public.bench_records")?
        .parse()?;
    if rows != records {
        return Err(format!("COPY stored {rows} of {records} rows").into());
    }
    println!(
        "xtask: COPY: {rows} rows in {seconds:.2} s ({:.0} rows/s)",
        rows as f64 / seconds
    );
    Ok(Load {
        seconds,
        requests: 0,
        rows,
    })
}

/// dlt's pipeline (xtask/peer/dlt_rest.py) in `mode` into `dlt_rest.<table>`, created
/// empty beforehand as pg_pullsync's target is; its time includes starting Python.
fn dlt_load(
    bench: &Bench,
    api: &Api,
    mode: &str,
    env: &[(&str, String)],
    table: &str,
    definition: &str,
    rows: u64,
) -> Result<Load> {
    let state = bench.home.join("dlt-rest-pipelines");
    if state.exists() {
        std::fs::remove_dir_all(&state)?;
    }
    bench.cluster.psql_quiet(
        DB,
        &format!(
            "DROP SCHEMA IF EXISTS dlt_rest CASCADE; DROP SCHEMA IF EXISTS dlt_rest_staging CASCADE;
             CREATE SCHEMA dlt_rest; CREATE TABLE dlt_rest.{definition}; CHECKPOINT;"
        ),
    )?;
    let python = peer::venv(&bench.home).join("bin/python");
    let mut command = cmd(python.to_str().expect("utf-8 path"));
    command
        .arg(workspace_root().join("xtask/peer/dlt_rest.py"))
        .env("REST_API", format!("http://127.0.0.1:{API_PORT}"))
        .env("REST_MODE", mode)
        // Trust authentication: the password is only there to satisfy dlt's parser.
        .env(
            "PG_DSN",
            format!("postgresql://postgres:bench@127.0.0.1:{BENCH_PORT}/{DB}"),
        )
        .env("PIPELINES_DIR", &state)
        .env("RUNTIME__LOG_LEVEL", "WARNING");
    for (name, value) in env {
        command.env(name, value);
    }
    let before = api.requests()?;
    let started = Instant::now();
    command.status_ok()?;
    let seconds = started.elapsed().as_secs_f64();
    let requests = api.requests()? - before;
    let stored: u64 = bench
        .query(DB, &format!("SELECT count(*) FROM dlt_rest.{table}"))?
        .parse()?;
    if stored != rows {
        return Err(format!("dlt stored {stored} of {rows} rows in dlt_rest.{table}").into());
    }
    println!(
        "xtask: dlt rest_api {mode}: {rows} rows in {seconds:.2} s ({:.0} rows/s), {requests} requests",
        rows as f64 / seconds
    );
    Ok(Load {
        seconds,
        requests,
        rows,
    })
}

/// `PARENTS` × `CHILDREN`: a source whose path names each id of `bench_parents`, against
/// dlt's child resource. Said and skipped when this build refuses `for_each`.
fn fan_out(bench: &Bench, api: &Api) -> Result<()> {
    let config = serde_json::json!({
        "base_url": format!("http://127.0.0.1:{API_PORT}"),
        "path": "/parents/{parent}/children",
        "query": {"per_parent": CHILDREN.to_string()},
        "for_each": {"query": "SELECT id FROM public.bench_parents", "as": {"parent": "id"}},
        "records": "data",
        "primary_key": "id",
        "pagination": {"style": "cursor", "param": "cursor", "cursor_path": "next_cursor"},
        "target": {
            "table": "public.bench_children",
            "columns": {"id": "id", "parent_id": "parent_id", "title": "title"},
        },
        "concurrency": 16,
        "max_pages": 1_000_000,
    });
    let rows = PARENTS * CHILDREN;
    bench.cluster.psql_quiet(
        DB,
        &format!(
            "DROP TABLE IF EXISTS public.bench_children;
             CREATE TABLE public.{CHILDREN_TABLE};
             SELECT pullsync.rest_add_source('children', '{config}');"
        ),
    )?;
    let (pull, peak) = timed_pull(bench, api, "children", "public.bench_children", rows)?;
    let dlt = dlt_load(
        bench,
        api,
        "fanout",
        &[("PER_PARENT", CHILDREN.to_string())],
        "bench_children",
        CHILDREN_TABLE,
        rows,
    )?;
    let floor = (PARENTS * LATENCY_MS) as f64 / 1000.0;
    println!(
        "\nxtask: REST fan-out, {PARENTS} parents × {CHILDREN} children ({LATENCY_MS} ms a page, one page each; {floor:.0} s of latency one after another)\n\
         | pg_pullsync, s | rows/s | dlt rest_api, s | rows/s | pg_pullsync ÷ dlt, time | requests: pg_pullsync / dlt | pg_pullsync's own memory, MiB |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} / {} | {:.1} |",
        versus(&pull, &dlt),
        pull.requests,
        dlt.requests,
        peak.anon_kib as f64 / 1024.0
    );
    Ok(())
}
