//! Serde helpers writing times as RFC 3339 in UTC with a `Z` suffix (Go's `time.Time` JSON form,
//! which checkpointctl parses), e.g. `2024-05-01T12:00:00Z` or `0001-01-01T00:00:00Z`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Formats `t` as RFC 3339 UTC (`Z`), with fractional seconds only when non-zero.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Serializes a `DateTime<Utc>` (use with `#[serde(with = "rfc3339")]`).
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

/// Deserializes any RFC 3339 time, converted to UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(serde::de::Error::custom)
}
