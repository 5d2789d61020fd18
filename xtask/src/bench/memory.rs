//! Peak memory of the pg_pullsync background workers, sampled from /proc while a run goes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Peaks over all workers, in KiB: `anon` is the worker's own memory (RssAnon), `hwm` the
/// kernel's high-water mark of its whole RSS (VmHWM), which also counts the shared buffers
/// it touched.
#[derive(Debug, Default, Clone, Copy)]
pub struct Peak {
    pub anon_kib: u64,
    pub hwm_kib: u64,
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Peak>,
}

impl Sampler {
    pub fn start() -> Sampler {
        Sampler::start_for("pg_pullsync worker", Duration::from_millis(100))
    }

    /// Samples the processes whose title holds `title`, every `period`.
    pub fn start_for(title: &'static str, period: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = Peak::default();
            loop {
                for status in statuses_of(title) {
                    peak.anon_kib = peak.anon_kib.max(field_kib(&status, "RssAnon:"));
                    peak.hwm_kib = peak.hwm_kib.max(field_kib(&status, "VmHWM:"));
                }
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(period);
            }
        });
        Sampler { stop, thread }
    }

    pub fn finish(self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// /proc/<pid>/status of every process whose title holds `title`.
fn statuses_of(title: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(title))
                .unwrap_or(false)
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .collect()
}

/// "VmHWM:  123456 kB" → 123456.
fn field_kib(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::field_kib;

    #[test]
    fn reads_kib_fields_of_proc_status() {
        let status = "Name:\tpostgres\nVmHWM:\t  151232 kB\nRssAnon:\t    8420 kB\n";
        assert_eq!(field_kib(status, "VmHWM:"), 151_232);
        assert_eq!(field_kib(status, "RssAnon:"), 8_420);
        assert_eq!(field_kib(status, "RssFile:"), 0);
    }
}
