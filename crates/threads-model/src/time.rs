//! Threads timestamps look like `2023-10-17T05:42:03+0000` (offset without a colon).

use chrono::{DateTime, Utc};

pub const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%z";

pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_str(text, FORMAT).map(|t| t.with_timezone(&Utc))
}

pub fn format(t: DateTime<Utc>) -> String {
    t.format(FORMAT).to_string()
}

/// Serde adapter for optional Threads timestamps.
pub mod threads_timestamp_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_offset_without_colon() {
        let t = parse("2023-10-17T05:42:03+0000").unwrap();
        assert_eq!(t.timestamp(), 1_697_521_323);
        assert_eq!(format(t), "2023-10-17T05:42:03+0000");
        let shifted = parse("2023-10-17T07:42:03+0200").unwrap();
        assert_eq!(shifted, t);
    }

    #[test]
    fn rejects_other_shapes() {
        assert!(parse("2023-10-17").is_err());
        assert!(parse("not a time").is_err());
    }
}
