//! Where the supported PostgreSQL versions' APIs differ, as pgrx binds them: the one place
//! with `#[cfg(feature = "pgNN")]`.

use pgrx::pg_sys;

/// Ends this background process with `code` (1: the postmaster restarts it after its
/// restart time). pgrx binds PostgreSQL 18's `proc_exit` as returning `()` (its headers
/// spell "does not return" in a way bindgen does not carry over); this never returns on
/// any version.
pub fn exit_process(code: i32) -> ! {
    // SAFETY: called from a background process's main thread, outside any transaction.
    #[cfg(feature = "pg15")]
    unsafe {
        pg_sys::proc_exit(code)
    }
    #[cfg(feature = "pg18")]
    {
        unsafe { pg_sys::proc_exit(code) };
        unreachable!("proc_exit returned")
    }
}
