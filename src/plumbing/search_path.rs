//! The `search_path` the extension's statements, and the code of other roles it runs, see:
//! `pg_catalog, pg_temp`, the value PostgreSQL's own sandboxed operations use
//! (`RestrictSearchPath()`, PostgreSQL 17). With it an unqualified operator or function
//! resolves to the catalog's, never to one a role created in a schema it controls.

use pgrx::pg_sys;

const SAFE: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Pins the setting in the current GUC nest level (as a function's `SET` clause does): it
/// ends when that level ends. Call right after `NewGUCNestLevel()`.
pub fn restrict_in_nest_level() {
    // SAFETY: a valid setting and value; GUC_ACTION_SAVE ties it to the current nest level.
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            SAFE.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// Pins the setting for a background process's session, over whatever the database's or
/// role's settings (`ALTER DATABASE … SET search_path`, which a database's owner may run)
/// gave it.
pub fn restrict_for_session() {
    // SAFETY: outside a transaction search_path's check only parses the list; the value is
    // a constant.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            SAFE.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    }
}
