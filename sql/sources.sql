-- A source is any this library registers (src/lib.rs): the check asks the library, so a
-- new source needs no change here. The constraints keep the names PostgreSQL gave the
-- literal lists they replace.
ALTER TABLE pullsync.sync_logs
    ADD CONSTRAINT sync_logs_source_check CHECK (pullsync.is_source(source));
ALTER TABLE pullsync.reconciliation_runs
    ADD CONSTRAINT reconciliation_runs_source_check CHECK (pullsync.is_source(source));
