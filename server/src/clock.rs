//! Wall-clock time as the store keeps it (Unix milliseconds) and as the API shows it (RFC 3339).
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::store::Millis;

pub fn now_millis() -> Millis {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

pub fn rfc3339(millis: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(millis as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn millis_format_as_rfc3339_utc() {
        assert_eq!(super::rfc3339(1_764_108_000_123), "2025-11-25T22:00:00.123Z");
    }
}
