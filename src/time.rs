//! Timestamps as the API shows them: RFC 3339, UTC, milliseconds.

use std::time::{Duration, UNIX_EPOCH};

/// Formats milliseconds since the Unix epoch as `2026-11-25T15:33:07.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(
            super::rfc3339_ms(1_764_085_000_123),
            "2025-11-25T15:36:40.123Z"
        );
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
