//! Reconciliation's pure part: narrowing a differing window and diffing ids.

pub mod narrow;
