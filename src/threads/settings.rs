//! The Threads source's settings (`pullsync.threads_*`, the metrics refresh tiers, the
//! snapshot heartbeat), defined by its `SourceSpec`.

use crate::config::{check_proposed, text};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::{pg_guard, pg_sys};
use std::ffi::CString;

/// Threads' production API, with the version this library speaks.
const THREADS_API_URL_DEFAULT: &std::ffi::CStr = c"https://graph.threads.net/v1.0";
static THREADS_API_URL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(THREADS_API_URL_DEFAULT));
static THREADS_RATE_LIMIT: GucSetting<f64> = GucSetting::<f64>::new(0.0);
static THREADS_DEMOGRAPHICS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"country,city,age,gender"));
static METRICS_EVERY_RUN_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);
static METRICS_HOURLY_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
static METRICS_DAILY_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
static SNAPSHOT_HEARTBEAT_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);

pub fn define(_preloading: bool) {
    // Superuser-only: whoever sets the API URL receives the tokens.
    GucRegistry::define_string_guc(
        c"pullsync.threads_api_url",
        c"Base URL of the Threads Graph API, with its version.",
        c"Point it at a simulator for demos and tests.",
        &THREADS_API_URL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"pullsync.threads_rate_limit",
        c"Threads API requests per second per token; 0 means no limit beyond http_concurrency.",
        c"A token bucket per token; Threads also answers throttling with 429 and Retry-After, which runs honour.",
        &THREADS_RATE_LIMIT,
        0.0,
        10_000.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.metrics_every_run_age",
        c"Posts younger than this get their metrics refreshed on every run.",
        c"Young posts change fastest; docs/THREADS.md describes the refresh tiers.",
        &METRICS_EVERY_RUN_AGE_S,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pullsync.metrics_hourly_age",
        c"Posts younger than this (and older than metrics_every_run_age) are refreshed at most hourly.",
        c"docs/THREADS.md describes the refresh tiers.",
        &METRICS_HOURLY_AGE_S,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pullsync.metrics_daily_age",
        c"Posts younger than this are refreshed at most daily; older ones at most weekly.",
        c"docs/THREADS.md describes the refresh tiers.",
        &METRICS_DAILY_AGE_S,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pullsync.snapshot_heartbeat",
        c"An unchanged value still gets a new L1 snapshot once this much time has passed.",
        c"Keeps the L1 history dense enough to show that a value held, without a row per run.",
        &SNAPSHOT_HEARTBEAT_S,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    // SAFETY: the check hook is guarded and only reads its argument.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pullsync.threads_demographics",
            c"Follower demographics breakdowns a sync stores once a day: country, city, age, gender.",
            c"Comma-separated; empty stores none. Each costs one request a day per account with at least 100 followers.",
            &THREADS_DEMOGRAPHICS,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_demographics),
            None,
            None,
        );
    }
}

/// Refuses a `pullsync.threads_demographics` naming a breakdown Meta does not answer.
#[pg_guard]
unsafe extern "C-unwind" fn check_demographics(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by Postgres as a string check hook.
    unsafe {
        check_proposed(newval, |value| {
            threads_model::demographics::parse_breakdowns(value)
                .map(drop)
                .map_err(|why| format!("invalid pullsync.threads_demographics: {why}"))
        })
    }
}

pub fn api_url() -> String {
    text(&THREADS_API_URL).unwrap_or_else(|| THREADS_API_URL_DEFAULT.to_string_lossy().into_owned())
}

/// The metrics refresh tiers for the current GUC values.
pub fn tiers() -> pullsync_core::threads::plan::Tiers {
    pullsync_core::threads::plan::Tiers {
        every_run_age: i64::from(METRICS_EVERY_RUN_AGE_S.get()),
        hourly_age: i64::from(METRICS_HOURLY_AGE_S.get()),
        daily_age: i64::from(METRICS_DAILY_AGE_S.get()),
    }
}

/// `pullsync.threads_rate_limit`: requests per second per token; 0 means none.
pub fn rate_limit() -> f64 {
    THREADS_RATE_LIMIT.get()
}

/// `pullsync.threads_demographics`: the breakdowns to snapshot (its check hook refused
/// any other value).
pub fn demographics() -> Vec<&'static str> {
    threads_model::demographics::parse_breakdowns(&text(&THREADS_DEMOGRAPHICS).unwrap_or_default())
        .unwrap_or_default()
}

/// `pullsync.snapshot_heartbeat`, in seconds.
pub fn snapshot_heartbeat_secs() -> i64 {
    i64::from(SNAPSHOT_HEARTBEAT_S.get())
}
