//! CPU time of the bench cluster: the postmaster and every process it started (the
//! pg_pullsync workers, backends, WAL writer, checkpointer), read from /proc. Children
//! that exited were reaped by the postmaster, so their time is in its cutime/cstime.

use crate::process::{cmd, output_of, Result};

pub struct ClusterCpu {
    postmaster: u32,
    ticks_per_second: f64,
}

impl ClusterCpu {
    /// The cluster whose postmaster is `postmaster`.
    pub fn of(postmaster: u32) -> Result<ClusterCpu> {
        let ticks_per_second = output_of(cmd("getconf").arg("CLK_TCK"))
            .and_then(|t| t.trim().parse().ok())
            .ok_or("getconf CLK_TCK failed")?;
        Ok(ClusterCpu {
            postmaster,
            ticks_per_second,
        })
    }

    /// CPU seconds used so far by the postmaster, its live children and its reaped ones.
    pub fn seconds(&self) -> f64 {
        let mut ticks = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0.0;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|s| Stat::parse(&s))
            else {
                continue;
            };
            if pid == self.postmaster {
                ticks += stat.own + stat.reaped_children;
            } else if stat.parent == self.postmaster {
                ticks += stat.own;
            }
        }
        ticks as f64 / self.ticks_per_second
    }
}

/// The fields of /proc/<pid>/stat the clock needs, in clock ticks.
#[derive(Debug, PartialEq)]
struct Stat {
    parent: u32,
    /// utime + stime
    own: u64,
    /// cutime + cstime
    reaped_children: u64,
}

impl Stat {
    /// The command name (field 2) may hold spaces and parentheses, so the fields are
    /// counted from its last ')'.
    fn parse(stat: &str) -> Option<Stat> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state); utime is field 14.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            parent: u32::try_from(field(4)?).ok()?,
            own: field(14)? + field(15)?,
            reaped_children: field(16)? + field(17)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Stat;

    #[test]
    fn reads_parent_and_times_past_a_command_name_with_spaces() {
        let line = "4242 (postgres: pg_pullsync worker (1)) S 4200 4200 4200 0 -1 4194368 \
                    900 0 0 0 321 45 7 3 20 0 1 0 12345 1000000 500 18446744073709551615";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                parent: 4200,
                own: 366,
                reaped_children: 10
            })
        );
        assert_eq!(Stat::parse("7 (x) S 1"), None);
    }
}
