//! Monitoring rules: thresholds to breaches to health, and the Prometheus text format.

pub mod evaluate;
pub mod prometheus;
