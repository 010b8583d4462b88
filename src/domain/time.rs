//! Times as amrelay stores them (milliseconds since the Unix epoch), as people and
//! programs read them.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, in milliseconds since the Unix epoch: how every stored time is kept.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// RFC 3339 in UTC with milliseconds (`2026-11-26T23:06:01.123Z`), for JSON and the CLI.
/// None for a time chrono cannot represent.
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `2026-11-26 23:06:01 UTC`, for messages people read.
pub(crate) fn human(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_forms_of_one_instant() {
        let ms = 1_795_734_361_123;
        assert_eq!(super::rfc3339(ms).unwrap(), "2026-11-26T23:06:01.123Z");
        assert_eq!(super::human(ms), "2026-11-26 23:06:01 UTC");
        assert_eq!(super::rfc3339(i64::MAX), None);
    }
}
