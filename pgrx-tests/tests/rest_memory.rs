//! What one REST page costs the backend that pulls it: the peak resident memory of that
//! backend (its kernel high-water mark, VmHWM, a fresh connection per page, warmed by a
//! pull of an empty page so that loading the library and the HTTP stack is not counted)
//! less what it held before the pull, divided by the page's bytes, for pages of 1 MB, just under the
//! 4 MB default cap and 16 MB (the cap raised), of ordinary records and of tiny objects.
//! The figures are printed (docs/BENCHMARKS.md quotes them); the run fails when a page
//! costs more than a small multiple of its bytes. A page of more records than a page may
//! hold ends the run. A memory target is a benchmark's, not a test's: `cargo xtask bench
//! --only rest-memory` runs it.

use axum::routing::get;
use pullsync_tests::db::{connect, fresh_extension_database};
use pullsync_tests::local_server::LocalServer;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const MB: usize = 1024 * 1024;

/// Peak backend memory over page bytes that a page may cost at most. Before pages were
/// read as slices of their text, every page here cost 38 to 225 times its bytes;
/// now 1 to 14 (a 1 MB page also pays a fixed few MB of shared buffers it touches).
const MAX_RATIO: f64 = 20.0;

/// pullsync_core::rest::paging::MAX_RECORDS_PER_PAGE.
const MAX_RECORDS_PER_PAGE: usize = 1_000_000;

type Record = fn(usize) -> String;

/// A page `{"data": [...]}` of about `bytes` bytes, records made by `record(i)`, and how
/// many records it holds.
fn page(bytes: usize, record: Record) -> (String, usize) {
    let mut body = String::with_capacity(bytes + 1024);
    body.push_str("{\"data\":[");
    let mut i = 0;
    while body.len() < bytes - 2 {
        let r = record(i);
        if body.len() + r.len() + 3 > bytes {
            break;
        }
        if i > 0 {
            body.push(',');
        }
        body.push_str(&r);
        i += 1;
    }
    body.push_str("]}");
    (body, i)
}

fn ordinary(i: usize) -> String {
    json!({
        "id": i,
        "title": format!("Issue number {i} about the widget"),
        "updated_at": format!("2024-01-{:02}T10:{:02}:00Z", 1 + i % 28, i % 60),
        "labels": ["bug", "triage"],
        "user": { "login": format!("user{}", i % 97), "site_admin": false },
        "body": "Steps to reproduce: open the widget, press the button twice, see the error.",
    })
    .to_string()
}

fn tiny(i: usize) -> String {
    format!("{{\"a\":{i}}}")
}

fn field_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    field_kib(&status, field)
}

/// The largest RssAnon (the backend's own memory, without the shared buffers VmHWM also
/// counts) seen while `work` runs, sampled every millisecond.
fn peak_anon_kib<T>(pid: i32, work: impl FnOnce() -> T) -> (T, u64) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(status_kib(pid, "RssAnon:"));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        peak
    });
    let out = work();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, sampler.join().unwrap())
}

#[test]
#[ignore = "a benchmark: cargo xtask bench --only rest-memory"]
fn a_page_costs_the_backend_a_small_multiple_of_its_bytes() {
    let body: Arc<Mutex<Arc<String>>> = Arc::default();
    let served = body.clone();
    let app = axum::Router::new()
        .route("/empty", get(|| async { "{\"data\":[]}" }))
        .route(
            "/page",
            get(move || {
                let page = served.lock().unwrap().clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        page.as_str().to_owned(),
                    )
                }
            }),
        );
    let server = LocalServer::start(app, 0, 2, "rest-memory").expect("page server");
    let mut admin = fresh_extension_database("rest_memory");
    admin
        .batch_execute(
            "CREATE TABLE public.ordinary (id bigint PRIMARY KEY, title text, raw jsonb);
             CREATE TABLE public.tiny (a bigint PRIMARY KEY);",
        )
        .unwrap();
    let cases: [(&str, usize, Record); 6] = [
        ("ordinary", MB, ordinary),
        ("ordinary", 4 * MB - 1024, ordinary),
        ("ordinary", 16 * MB, ordinary),
        ("tiny", MB, tiny),
        ("tiny", 4 * MB - 1024, tiny),
        ("tiny", 16 * MB, tiny),
    ];
    let empty = json!({
        "base_url": server.base_url,
        "path": "/empty",
        "records": "data",
        "primary_key": "a",
        "pagination": { "style": "none" },
        "target": { "table": "public.tiny", "columns": { "a": "a" } },
    });
    admin
        .query_one("SELECT pullsync.rest_add_source('empty', $1)", &[&empty])
        .unwrap();
    let mut worst = 0.0f64;
    for (n, (shape, bytes, record)) in cases.into_iter().enumerate() {
        let (text, records) = page(bytes, record);
        let len = text.len();
        *body.lock().unwrap() = Arc::new(text);
        let (table, columns, extra) = match shape {
            "ordinary" => (
                "public.ordinary",
                json!({ "id": "id", "title": "title" }),
                json!("raw"),
            ),
            _ => ("public.tiny", json!({ "a": "a" }), Value::Null),
        };
        let key = if shape == "tiny" { "a" } else { "id" };
        let mut target = json!({ "table": table, "columns": columns });
        if !extra.is_null() {
            target["extra"] = extra;
        }
        let config = json!({
            "base_url": server.base_url,
            "path": "/page",
            "records": "data",
            "primary_key": key,
            "pagination": { "style": "none" },
            "target": target,
        });
        let name = format!("mem{n}");
        admin
            .query_one("SELECT pullsync.rest_add_source($1, $2)", &[&name, &config])
            .unwrap();
        // A fresh backend: its high-water mark is this page's alone.
        let mut db = connect("rest_memory");
        db.batch_execute("SET pullsync.rest_max_response_size = '32MB'")
            .unwrap();
        let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        let warm: Value = db
            .query_one("SELECT pullsync.rest_pull('empty')", &[])
            .unwrap()
            .get(0);
        assert_eq!(warm["status"], "completed", "{warm}");
        let before = status_kib(pid, "VmHWM:");
        let anon_before = status_kib(pid, "RssAnon:");
        let (result, anon) = peak_anon_kib(pid, || -> Value {
            db.query_one("SELECT pullsync.rest_pull($1)", &[&name])
                .unwrap()
                .get(0)
        });
        let after = status_kib(pid, "VmHWM:");
        let anon_ratio = (anon.saturating_sub(anon_before) * 1024) as f64 / len as f64;
        let ratio = (after.saturating_sub(before) * 1024) as f64 / len as f64;
        eprintln!(
            "rest page memory: {shape} page of {:.2} MB, {records} records: backend peak {} MB before the pull, {} MB during it: {ratio:.1}x the page; own memory (RssAnon) {} MB before, {} MB at most during it: {anon_ratio:.1}x ({})",
            len as f64 / MB as f64,
            before / 1024,
            after / 1024,
            anon_before / 1024,
            anon / 1024,
            result["status"]
        );
        if records > MAX_RECORDS_PER_PAGE {
            assert_eq!(result["status"], "failed", "{result}");
            let error = result["error"].as_str().unwrap_or_default();
            assert!(error.contains("more than 1000000 records"), "{result}");
        } else {
            assert_eq!(result["status"], "completed", "{result}");
            let count: i64 = admin
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .unwrap()
                .get(0);
            assert_eq!(count, records as i64, "{result}");
            admin.batch_execute(&format!("TRUNCATE {table}")).unwrap();
        }
        worst = worst.max(ratio);
        drop(db);
    }
    assert!(
        worst <= MAX_RATIO,
        "a page cost the backend {worst:.1}x its bytes (at most {MAX_RATIO}x)"
    );
}
