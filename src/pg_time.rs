//! Conversions between Postgres timestamps and chrono, for the pure modules.

use chrono::{DateTime, TimeZone, Utc};
use pgrx::datum::TimestampWithTimeZone;

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// None for ±infinity, which no sync value can mean.
pub fn to_chrono(ts: TimestampWithTimeZone) -> Option<DateTime<Utc>> {
    if !ts.is_finite() {
        return None;
    }
    let micros = ts.into_inner().checked_add(PG_EPOCH_OFFSET_MICROS)?;
    Utc.timestamp_micros(micros).single()
}

pub fn to_pg(dt: DateTime<Utc>) -> TimestampWithTimeZone {
    let micros = dt.timestamp_micros() - PG_EPOCH_OFFSET_MICROS;
    TimestampWithTimeZone::try_from(micros).expect("a chrono timestamp is within Postgres' range")
}
