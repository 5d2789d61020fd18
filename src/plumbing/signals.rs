//! Threads other than the main one must never run Postgres' signal handlers: those may
//! only run where Postgres runs.

/// Blocks every signal on the calling thread.
pub fn block_all() {
    // SAFETY: changes only the calling thread's signal mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// Starts a named thread with every signal blocked from its first instruction (the mask
/// is inherited at creation, so no signal can reach it before it could block them).
pub fn spawn_without_signals(
    name: &str,
    work: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    // SAFETY: plain signal-mask calls around the thread spawn, on the calling thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
        let spawned = std::thread::Builder::new().name(name.into()).spawn(work);
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned.map(|_| ())
    }
}
