//! How a piece of work ended: a unit (one account), a job, a run of many units.

/// The status recorded in `pullsync.jobs.state`, `system_job_logs.status`,
/// `sync_logs.status` and `sync_metrics.status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    /// The default: work in which nothing failed.
    #[default]
    Completed,
    Partial,
    Failed,
    /// Nothing to do, or nothing that may be done now (no usable token): no failure.
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Partial => "partial",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }

    /// Work of which `successes` parts succeeded and `errors` failed: completed when
    /// nothing failed, failed when nothing succeeded, partial otherwise.
    pub fn of(successes: usize, errors: usize) -> Status {
        match (successes, errors) {
            (_, 0) => Status::Completed,
            (0, _) => Status::Failed,
            _ => Status::Partial,
        }
    }

    /// What a job or unit row records: a skipped unit counts as done.
    pub fn as_job_state(self) -> Status {
        match self {
            Status::Skipped => Status::Completed,
            other => other,
        }
    }

    /// Whether this is no failure (completed or skipped).
    pub fn succeeded(self) -> bool {
        matches!(self, Status::Completed | Status::Skipped)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_folds_into_completed_partial_or_failed() {
        assert_eq!(Status::of(3, 0), Status::Completed);
        assert_eq!(Status::of(0, 0), Status::Completed);
        assert_eq!(Status::of(0, 2), Status::Failed);
        assert_eq!(Status::of(1, 2), Status::Partial);
    }

    #[test]
    fn a_skipped_unit_is_a_completed_job_row() {
        assert_eq!(Status::Skipped.as_job_state(), Status::Completed);
        assert_eq!(Status::Partial.as_job_state(), Status::Partial);
        assert!(Status::Skipped.succeeded() && !Status::Failed.succeeded());
    }
}
