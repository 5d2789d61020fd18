//! The conversation feed's settings (`pullsync.feed_*`), defined by its `SourceSpec`. The
//! feed server reads its own at start and restarts itself when one changes on reload,
//! except a renewed certificate in the same files, which it takes in place.

use crate::config::text;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;
use std::time::Duration;

/// kB. Below the consumers' response limit, so a page always fits.
static FEED_PAGE_MAX_KB: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024);
static FEED_LISTEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static FEED_TLS_CERT_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static FEED_TLS_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static FEED_MAX_CONNECTIONS: GucSetting<i32> = GucSetting::<i32>::new(256);
static FEED_HEADER_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static FEED_IDLE_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);

/// Defines the settings; the server's address only at server start.
pub fn define(preloading: bool) {
    GucRegistry::define_int_guc(
        c"pullsync.feed_page_max_size",
        c"A feed page ends early once its rows reach this size (it always holds at least one row).",
        c"Keep it below the consumers' pullsync.http_max_response_size.",
        &FEED_PAGE_MAX_KB,
        64,
        1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_string_guc(
        c"pullsync.feed_tls_cert_file",
        c"PEM certificate chain of the feed server; with pullsync.feed_tls_key_file it serves HTTPS only.",
        c"A renewed certificate in the same files is taken on reload, without a restart.",
        &FEED_TLS_CERT_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pullsync.feed_tls_key_file",
        c"PEM private key of the feed server's certificate.",
        c"Only the server's operating-system user may read it (mode 0600), or root-owned with mode 0640.",
        &FEED_TLS_KEY_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.feed_max_connections",
        c"Connections the feed server holds at once; more are answered 503 and closed.",
        c"Bounds the feed server's memory and file descriptors under a flood of connections.",
        &FEED_MAX_CONNECTIONS,
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pullsync.feed_header_timeout",
        c"A feed client must send its request headers (and finish the TLS handshake) within this time.",
        c"Slow clients (slowloris) are cut off instead of holding a connection slot.",
        &FEED_HEADER_TIMEOUT_MS,
        100,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pullsync.feed_idle_timeout",
        c"A feed connection that moves no byte for this long is closed.",
        c"Frees the slots of clients that went away without closing.",
        &FEED_IDLE_TIMEOUT_MS,
        100,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    if preloading {
        GucRegistry::define_string_guc(
            c"pullsync.feed_listen",
            c"Address of the built-in HTTP feed server, e.g. 127.0.0.1:8787; empty = off.",
            c"Serves pullsync.database's conversation feed to consumers with API keys.",
            &FEED_LISTEN,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
}

pub fn listen() -> Option<String> {
    text(&FEED_LISTEN)
}

pub fn tls_cert_file() -> Option<String> {
    text(&FEED_TLS_CERT_FILE)
}

pub fn tls_key_file() -> Option<String> {
    text(&FEED_TLS_KEY_FILE)
}

pub fn front_settings() -> pullsync_core::feed::front::FrontSettings {
    pullsync_core::feed::front::FrontSettings {
        max_connections: FEED_MAX_CONNECTIONS.get() as usize,
        header_timeout: Duration::from_millis(FEED_HEADER_TIMEOUT_MS.get() as u64),
        idle_timeout: Duration::from_millis(FEED_IDLE_TIMEOUT_MS.get() as u64),
    }
}

pub fn page_max_bytes() -> usize {
    FEED_PAGE_MAX_KB.get().max(1) as usize * 1024
}
