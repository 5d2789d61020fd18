//! Every GUC of pg_pullsync (`pullsync.*`), in one place. Postgres checks units and ranges.

use crate::error::{PullsyncError, Result};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::{pg_guard, pg_sys};
use pullsync_core::crypto::SealingKey;
use pullsync_core::monitor::evaluate::Thresholds;
use std::ffi::CString;
use std::time::Duration;

static ENCRYPTION_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static ENCRYPTION_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static HTTP_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
static HTTP_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(8);
/// kB. Large enough for a 5,000-row feed page of 12 kB rows.
static HTTP_MAX_RESPONSE_KB: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);
static MAX_SESSION_CALLS: GucSetting<i32> = GucSetting::<i32>::new(4);
static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(50);
static BATCH_DELAY_MS: GucSetting<i32> = GucSetting::<i32>::new(0);
static ACCOUNT_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(0);
static LOCK_TTL_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 60);
static WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);
static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static HTTP_MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(3);
static HTTP_RETRY_DELAY_MS: GucSetting<i32> = GucSetting::<i32>::new(500);
static HTTP_CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static HTTP_ALLOWED_HOSTS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static UNIT_TIMEOUT_S: GucSetting<i32> = GucSetting::<i32>::new(600);
static UNIT_MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);
static ALLOW_SNAPSHOT_DELETE: GucSetting<bool> = GucSetting::<bool>::new(false);
static ALERT_LAG_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
static ALERT_ERROR_RATE: GucSetting<f64> = GucSetting::<f64>::new(0.10);
static ALERT_ERROR_RUNS: GucSetting<i32> = GucSetting::<i32>::new(10);
static ALERT_DURATION_S: GucSetting<i32> = GucSetting::<i32>::new(300);
static RECONCILE_MAX_WINDOW_S: GucSetting<i32> = GucSetting::<i32>::new(90 * 86_400);
static RECONCILE_MAX_IDS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static LOG_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
static CHECKPOINT_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
static SNAPSHOT_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Defines the GUCs. Server-start settings (workers, database) exist only when the
/// library is preloaded: Postgres refuses to define them later, and without preloading
/// there are no workers for them to configure.
pub fn register(preloading: bool) {
    register_key();
    register_http();
    register_jobs();
    register_monitoring();
    register_retention();
    if preloading {
        register_server_start();
    }
}

/// The sealing key: only its file.
fn register_key() {
    // 0.1.0 took the key itself as a setting. Any value is refused now, so the key can no
    // longer sit where pg_read_all_settings (and so pg_monitor) reads it.
    // SAFETY: the check hook is guarded and only reads its argument.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pullsync.encryption_key",
            c"No longer accepted: use pullsync.encryption_key_file.",
            c"Settings are readable by members of pg_read_all_settings; the key belongs in a private file.",
            &ENCRYPTION_KEY,
            GucContext::Suset,
            GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL | GucFlags::NO_RESET_ALL,
            Some(refuse_literal_key),
            None,
            None,
        );
    }
    // Superuser-settable, so a superuser session can point at another file (key rotation
    // checks, tests); the path itself is no secret.
    GucRegistry::define_string_guc(
        c"pullsync.encryption_key_file",
        c"File holding the sealing key (base64 of 32 bytes).",
        c"Only the server's operating-system user may read it (mode 0600), or root-owned with mode 0640.",
        &ENCRYPTION_KEY_FILE,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
}

/// Every HTTP request: timeouts, retries, sizes, certificates, where it may go.
fn register_http() {
    GucRegistry::define_int_guc(
        c"pullsync.http_timeout",
        c"Timeout of one HTTP request.",
        c"Covers connecting, sending and reading the whole answer; a request that times out is retried as transient.",
        &HTTP_TIMEOUT_MS,
        100,
        600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pullsync.http_concurrency",
        c"HTTP requests in flight at once per backend or worker.",
        c"Bounds the Threads requests of one batch together; a feed pull has one request in flight and its next page prefetched.",
        &HTTP_CONCURRENCY,
        1,
        256,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.http_max_response_size",
        c"An HTTP answer larger than this is refused while it is read.",
        c"Bounds a worker's memory. A feed provider's pages stay below pullsync.feed_page_max_size.",
        &HTTP_MAX_RESPONSE_KB,
        64,
        1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"pullsync.http_max_retries",
        c"Retries of a request that failed transiently (5xx, timeout, reset).",
        c"Authentication failures, refusals and bad answers are never retried; throttling waits for Retry-After.",
        &HTTP_MAX_RETRIES,
        0,
        10,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.http_retry_delay",
        c"Base delay of the exponential backoff between retries (full jitter).",
        c"The n-th retry waits a random time up to this times 2^n, capped at 30 s.",
        &HTTP_RETRY_DELAY_MS,
        0,
        60_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"pullsync.http_ca_file",
        c"PEM file of CA certificates trusted besides the public roots, e.g. a feed provider's private CA.",
        c"For providers whose certificate no public root signs; the public roots stay trusted.",
        &HTTP_CA_FILE,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Superuser-only: it decides which of the server's neighbours a role may reach.
    // SAFETY: the check hook is guarded and only reads its argument.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pullsync.http_allowed_hosts",
            c"Non-public destinations HTTP requests may go to (empty: public addresses only).",
            c"A comma list of loopback, private, link-local, addresses or CIDR blocks, host names with an optional :port; docs/SECURITY.md.",
            &HTTP_ALLOWED_HOSTS,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_allowed_hosts),
            None,
            None,
        );
    }
}

/// The job runner: batches, locks, units, the calls made in sessions.
fn register_jobs() {
    GucRegistry::define_int_guc(
        c"pullsync.max_session_calls",
        c"How many calls made in sessions (a pull, sync or reconciliation called in SQL, run_jobs) may run at once.",
        c"Each runs in a background process of its own, a slot of max_worker_processes; beyond this a call is refused (53000) rather than taking the slots parallel query, replication and pg_cron need.",
        &MAX_SESSION_CALLS,
        1,
        1000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.batch_size",
        c"Accounts synced per batch of a scheduled run.",
        c"Each worker claims this many units at once, pulls them concurrently and writes them in one transaction (a subtransaction each); larger batches mean fewer transactions and more memory per worker.",
        &BATCH_SIZE,
        1,
        10_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.batch_delay",
        c"Pause after each batch of a scheduled run, in every worker.",
        c"Spreads a run's requests over time, as the seed's 2 s between batches did; 0 runs batches back to back.",
        &BATCH_DELAY_MS,
        0,
        600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pullsync.account_concurrency",
        c"Metrics requests in flight at once for one account; 0 means up to http_concurrency.",
        c"Keeps one account with many due posts from taking every request slot of a batch.",
        &ACCOUNT_CONCURRENCY,
        0,
        256,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.lock_ttl",
        c"How long a job lock lives before another run may take it over.",
        c"A run that makes no progress for this long is failed, so a lost worker cannot block new runs for ever.",
        &LOCK_TTL_S,
        10,
        24 * 3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pullsync.unit_timeout",
        c"A claimed unit whose worker is silent this long goes back to the queue.",
        c"Units of a worker that is gone are requeued at once.",
        &UNIT_TIMEOUT_S,
        10,
        24 * 3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pullsync.unit_max_attempts",
        c"Claims of one account's unit that may end without a result before the unit is failed.",
        c"A unit whose worker stops, crashes or goes silent is retried up to this many times in all.",
        &UNIT_MAX_ATTEMPTS,
        1,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Server-start settings: the workers and their database.
fn register_server_start() {
    GucRegistry::define_int_guc(
        c"pullsync.workers",
        c"Number of background workers that run sync jobs.",
        c"Needs pg_pullsync in shared_preload_libraries; takes effect at server start.",
        &WORKERS,
        0,
        64,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pullsync.database",
        c"Database the background workers connect to.",
        c"pg_pullsync must be installed in it; the workers and the feed server wait until it is.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

fn register_monitoring() {
    GucRegistry::define_int_guc(
        c"pullsync.alert_lag",
        c"A source whose last successful pull is older than this opens a lag alert.",
        c"Four times this makes the alert critical.",
        &ALERT_LAG_S,
        60,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_float_guc(
        c"pullsync.alert_error_rate",
        c"Share of failed work over a source's last runs that opens an error-rate alert.",
        c"Work is accounts for Threads and pages for a feed; see pullsync.alert_error_runs.",
        &ALERT_ERROR_RATE,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.alert_error_runs",
        c"How many of a source's latest runs the error rate is taken over.",
        c"A larger number smooths over a single bad run; a smaller one alerts sooner.",
        &ALERT_ERROR_RUNS,
        1,
        1000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.alert_duration",
        c"A run that takes longer than this opens a duration alert.",
        c"Catches runs slowed by throttling or a growing fleet before they overrun their schedule.",
        &ALERT_DURATION_S,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pullsync.reconcile_max_window",
        c"The widest window one reconciliation call may cover.",
        c"Bounds the work and the provider requests of one call; the default schedule reconciles the last day.",
        &RECONCILE_MAX_WINDOW_S,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pullsync.reconcile_max_ids",
        c"At most this many missing or extra ids are listed (and repaired) per reconciliation.",
        c"A run that finds more says truncated; run it again, or over narrower windows, to repair the rest.",
        &RECONCILE_MAX_IDS,
        1,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
}

fn register_retention() {
    GucRegistry::define_bool_guc(
        c"pullsync.allow_snapshot_delete",
        c"Lets the retention path delete L1 snapshot rows in this transaction.",
        c"Set locally by pullsync.cleanup(); leave it off otherwise.",
        &ALLOW_SNAPSHOT_DELETE,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_int_guc(
        c"pullsync.log_retention",
        c"pullsync.cleanup() removes logs, finished jobs, metrics, reconciliation runs, resolved alerts and resolved quarantined items older than this.",
        c"Run pullsync.cleanup() from pg_cron (schedule_defaults() does, weekly).",
        &LOG_RETENTION_S,
        3600,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pullsync.checkpoint_retention",
        c"pullsync.cleanup() removes feed checkpoints older than this, keeping each stream's newest.",
        c"A stream's newest checkpoint is always kept, so a pull can always resume.",
        &CHECKPOINT_RETENTION_S,
        3600,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pullsync.snapshot_retention",
        c"pullsync.cleanup() removes L1 snapshots older than this, keeping each post's and account's newest; 0 keeps them forever.",
        c"Deltas and current values stay, so their invariants hold.",
        &SNAPSHOT_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
}

pub(crate) fn text(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.trim().is_empty())
}

/// The value a check hook is asked about; None for NULL.
///
/// # Safety
/// `newval` is the pointer Postgres passes to a string check hook.
unsafe fn proposed(newval: *mut *mut std::ffi::c_char) -> Option<String> {
    // SAFETY: Postgres passes a valid pointer to the proposed value (NULL or a C string).
    unsafe {
        match *newval {
            p if p.is_null() => None,
            p => Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()),
        }
    }
}

/// A string check hook's answer: true for NULL or a value `check` accepts; otherwise false,
/// with `check`'s reason for Postgres to show.
///
/// # Safety
/// `newval` is the pointer Postgres passes to a string check hook.
pub(crate) unsafe fn check_proposed(
    newval: *mut *mut std::ffi::c_char,
    check: impl FnOnce(&str) -> std::result::Result<(), String>,
) -> bool {
    // SAFETY: as the caller promises.
    match unsafe { proposed(newval) } {
        None => true,
        Some(value) => check(&value).map_or_else(refuse, |()| true),
    }
}

/// Refuses a proposed value, saying why (always false, the check hook's answer).
fn refuse(message: String) -> bool {
    let message =
        CString::new(message.replace('\0', "")).unwrap_or_else(|_| c"invalid value".into());
    // SAFETY: pstrdup copies into the current memory context, where Postgres expects it;
    // this is the documented way for a check hook to explain a refusal.
    unsafe {
        pg_sys::GUC_check_errmsg_string = pg_sys::pstrdup(message.as_ptr());
    }
    false
}

/// Refuses a `pullsync.http_allowed_hosts` that does not parse, naming the entry.
#[pg_guard]
unsafe extern "C-unwind" fn check_allowed_hosts(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by Postgres as a string check hook.
    unsafe {
        check_proposed(newval, |value| {
            pullsync_core::http::Destinations::parse(value)
                .map(drop)
                .map_err(|why| format!("invalid pullsync.http_allowed_hosts entry {why}"))
        })
    }
}

/// Refuses every non-empty `pullsync.encryption_key`, from any source, with the way out.
#[pg_guard]
unsafe extern "C-unwind" fn refuse_literal_key(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: Postgres passes a valid pointer to the proposed value (NULL or a C string).
    let empty = unsafe { (*newval).is_null() || **newval == 0 };
    if empty {
        return true;
    }
    let say = |text: &str| {
        let text = CString::new(text).expect("no NUL in a constant");
        // SAFETY: pstrdup copies into the current memory context, where Postgres expects it.
        unsafe { pg_sys::pstrdup(text.as_ptr()) }
    };
    // SAFETY: the documented way for a check hook to explain a refusal.
    unsafe {
        pg_sys::GUC_check_errmsg_string =
            say("pullsync.encryption_key is no longer accepted: the key must not be a setting");
        pg_sys::GUC_check_errdetail_string =
            say("Members of pg_read_all_settings, such as pg_monitor, can read every setting.");
        pg_sys::GUC_check_errhint_string = say(
            "Write the key into a file only the server's operating-system user can read (mode 0600), \
             set pullsync.encryption_key_file to its path and remove pullsync.encryption_key.",
        );
    }
    false
}

/// The sealing key, from the private file `pullsync.encryption_key_file`.
pub fn sealing_key() -> Result<SealingKey> {
    let path = text(&ENCRYPTION_KEY_FILE).ok_or(PullsyncError::KeyNotConfigured)?;
    let text = pullsync_core::key_file::read("pullsync.encryption_key_file", &path)?;
    SealingKey::from_base64(&text).map_err(|e| PullsyncError::KeyUnusable(e.to_string()))
}

fn http_ca_file() -> Option<String> {
    text(&HTTP_CA_FILE)
}

/// What a source sets for its own requests in place of the `pullsync.http_*` settings;
/// each None keeps the setting's value.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpOverrides {
    pub timeout: Option<Duration>,
    pub retry: Option<pullsync_core::http::RetryPolicy>,
    pub concurrency: Option<usize>,
    /// The cap on an answer's size, with the setting that says so (for the message).
    pub max_response: Option<(usize, &'static str)>,
}

/// The HTTP settings for the current GUC values, with the overrides in their place.
fn http_settings(overrides: HttpOverrides) -> pullsync_core::http::HttpSettings {
    let (max_response_bytes, max_response_setting) = overrides
        .max_response
        .unwrap_or((http_max_response_bytes(), "pullsync.http_max_response_size"));
    pullsync_core::http::HttpSettings {
        timeout: overrides
            .timeout
            .unwrap_or(Duration::from_millis(HTTP_TIMEOUT_MS.get() as u64)),
        retry: overrides.retry.unwrap_or(pullsync_core::http::RetryPolicy {
            max_retries: HTTP_MAX_RETRIES.get() as u32,
            base_delay: Duration::from_millis(HTTP_RETRY_DELAY_MS.get() as u64),
            max_delay: Duration::from_secs(30),
        }),
        concurrency: overrides
            .concurrency
            .unwrap_or(HTTP_CONCURRENCY.get() as usize),
        ca_file: http_ca_file(),
        max_response_bytes,
        max_response_setting,
        destinations: http_destinations(),
    }
}

/// `pullsync.http_allowed_hosts`, parsed; its check hook refused any value that does not
/// parse, so the fallback (public addresses only) is never reached in practice.
fn http_destinations() -> std::sync::Arc<pullsync_core::http::Destinations> {
    let text = text(&HTTP_ALLOWED_HOSTS).unwrap_or_default();
    std::sync::Arc::new(pullsync_core::http::Destinations::parse(&text).unwrap_or_default())
}

/// Refuses, before a run starts, a URL whose host the destination policy does not allow
/// (resolving it here as the connection would; the connection checks again).
pub fn check_destination(url: &str) -> Result<()> {
    http_destinations()
        .check_url(url)
        .map_err(|refused| PullsyncError::Forbidden {
            message: refused.to_string(),
            hint: pullsync_core::http::DestinationRefused::hint(),
        })
}

fn http_max_response_bytes() -> usize {
    HTTP_MAX_RESPONSE_KB.get().max(1) as usize * 1024
}

/// `pullsync.max_session_calls`: how many calls made in sessions may run at once.
pub fn max_session_calls() -> i64 {
    i64::from(MAX_SESSION_CALLS.get())
}

/// The one way an HTTP client is made: the `pullsync.http_*` settings, with what the source
/// sets for itself in their place. A bad CA file is a setting to fix, not an internal error.
pub fn http_client(overrides: HttpOverrides) -> Result<pullsync_core::http::HttpClient> {
    pullsync_core::http::HttpClient::new(http_settings(overrides)).map_err(|e| {
        PullsyncError::invalid(
            e.message,
            "pullsync.http_ca_file must name a readable PEM file of CA certificates, or be empty.",
        )
    })
}

/// `pullsync.workers`: background workers started with the server.
pub fn workers() -> i32 {
    WORKERS.get()
}

/// `pullsync.database`: where the background processes connect.
pub fn database() -> String {
    text(&DATABASE).unwrap_or_else(|| "postgres".into())
}

/// `pullsync.batch_size`: units a worker claims at once.
pub fn batch_size() -> i32 {
    BATCH_SIZE.get().max(1)
}

/// `pullsync.batch_delay`: the pause after each batch.
pub fn batch_delay() -> Duration {
    Duration::from_millis(BATCH_DELAY_MS.get().max(0) as u64)
}

/// `pullsync.account_concurrency`: 0 means up to `http_concurrency`.
pub fn account_concurrency() -> usize {
    ACCOUNT_CONCURRENCY.get().max(0) as usize
}

/// `pullsync.lock_ttl`, in seconds.
pub fn lock_ttl_secs() -> i32 {
    LOCK_TTL_S.get()
}

/// `pullsync.unit_timeout`.
pub fn unit_timeout() -> Duration {
    Duration::from_secs(unit_timeout_secs().max(1) as u64)
}

pub fn unit_timeout_secs() -> i32 {
    UNIT_TIMEOUT_S.get()
}

/// `pullsync.unit_max_attempts`.
pub fn unit_max_attempts() -> i32 {
    UNIT_MAX_ATTEMPTS.get()
}

/// The alert thresholds for the current settings.
pub fn alert_thresholds() -> Thresholds {
    Thresholds {
        lag_seconds: f64::from(ALERT_LAG_S.get()),
        error_rate: ALERT_ERROR_RATE.get(),
        duration_seconds: f64::from(ALERT_DURATION_S.get()),
    }
}

/// `pullsync.alert_error_runs`.
pub fn alert_error_runs() -> i64 {
    i64::from(ALERT_ERROR_RUNS.get())
}

/// `pullsync.reconcile_max_window`, in seconds.
pub fn reconcile_max_window_secs() -> i64 {
    i64::from(RECONCILE_MAX_WINDOW_S.get())
}

/// `pullsync.reconcile_max_ids`.
pub fn reconcile_max_ids() -> usize {
    RECONCILE_MAX_IDS.get().max(1) as usize
}

/// Retention of (logs, checkpoints, snapshots) in seconds; a snapshot retention of 0
/// keeps snapshots forever.
pub fn retention_secs() -> [f64; 3] {
    [
        f64::from(LOG_RETENTION_S.get()),
        f64::from(CHECKPOINT_RETENTION_S.get()),
        f64::from(SNAPSHOT_RETENTION_S.get()),
    ]
}
