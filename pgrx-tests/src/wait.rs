//! Bounded waits. Every wait of the tests has a ceiling that turns a hang into a failure
//! naming what it waited for. The ceilings are generous: they are no timing assertions,
//! only the end of a wait that would otherwise last until someone kills the run.

use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);
/// How often a long wait says it is still waiting (seen with --nocapture, as in the soak).
const NOTE_EVERY: Duration = Duration::from_secs(60);

/// The end of a wait for `what`.
pub struct Deadline {
    what: String,
    limit: Duration,
    started: Instant,
    noted: Instant,
}

impl Deadline {
    pub fn after(limit: Duration, what: impl Into<String>) -> Deadline {
        let now = Instant::now();
        Deadline {
            what: what.into(),
            limit,
            started: now,
            noted: now,
        }
    }

    pub fn passed(&self) -> bool {
        self.started.elapsed() >= self.limit
    }

    /// Panics, naming what was waited for, once the deadline has passed; says every
    /// minute that the wait goes on.
    pub fn check(&mut self) {
        self.check_with(String::new)
    }

    /// `check`, the failure saying `context()` too (what was seen last, say).
    pub fn check_with(&mut self, context: impl FnOnce() -> String) {
        if self.passed() {
            let context = context();
            let separator = if context.is_empty() { "" } else { "; " };
            panic!(
                "gave up after {} s waiting for: {}{separator}{context}",
                self.limit.as_secs(),
                self.what
            );
        }
        if self.noted.elapsed() >= NOTE_EVERY {
            self.noted = Instant::now();
            println!(
                "still waiting for: {} ({} s of at most {} s)",
                self.what,
                self.started.elapsed().as_secs(),
                self.limit.as_secs()
            );
        }
    }
}

/// Polls `done` until it holds; fails naming `what` after `limit`.
pub fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let mut deadline = Deadline::after(limit, what);
    while !done() {
        deadline.check();
        std::thread::sleep(POLL);
    }
}

/// Joins `thread`, passing on its panic; fails naming `what` when it has not ended after
/// `limit` (the thread is left running).
pub fn join<T>(thread: JoinHandle<T>, what: &str, limit: Duration) -> T {
    until(what, limit, || thread.is_finished());
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `command` to its end, its standard streams as configured, like
/// `Command::status`; kills it and fails naming `what` when it runs longer than `limit`.
pub fn status(command: &mut Command, what: &str, limit: Duration) -> ExitStatus {
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", command.get_program()));
    finish(child, what, limit)
}

/// Like `Command::output`, bounded as `status` is.
pub fn output(command: &mut Command, what: &str, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", command.get_program()));
    // Both pipes are read while the program runs: one left full would stall it.
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    let status = finish(child, what, limit);
    // A process the program left behind may hold a pipe open.
    let streams = format!("the output of {what}");
    Output {
        status,
        stdout: join(stdout, &streams, Duration::from_secs(60)),
        stderr: join(stderr, &streams, Duration::from_secs(60)),
    }
}

fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn finish(mut child: Child, what: &str, limit: Duration) -> ExitStatus {
    let mut deadline = Deadline::after(limit, what);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if deadline.passed() => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what}: still running after {} s; killed it",
                    limit.as_secs()
                );
            }
            Ok(None) => {
                deadline.check();
                std::thread::sleep(POLL);
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_that_never_ends_fails_naming_what_it_waited_for() {
        let failed = std::panic::catch_unwind(|| {
            until("the impossible", Duration::from_millis(300), || false)
        })
        .unwrap_err();
        let message = failed.downcast_ref::<String>().unwrap();
        assert!(message.contains("waiting for: the impossible"), "{message}");
    }

    #[test]
    fn a_program_past_its_limit_is_killed_and_named() {
        let started = Instant::now();
        let failed = std::panic::catch_unwind(|| {
            status(
                Command::new("sleep").arg("30"),
                "a sleeper",
                Duration::from_millis(300),
            )
        })
        .unwrap_err();
        let message = failed.downcast_ref::<String>().unwrap();
        assert!(message.contains("a sleeper: still running"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn a_program_within_its_limit_gives_its_output() {
        let out = output(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            "a shell",
            Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn a_thread_that_does_not_end_fails_the_join() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let stuck = std::thread::spawn(move || rx.recv().ok());
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            join(stuck, "a stuck thread", Duration::from_millis(300))
        }))
        .unwrap_err();
        drop(tx);
        let message = failed.downcast_ref::<String>().unwrap();
        assert!(message.contains("a stuck thread"), "{message}");
    }
}
