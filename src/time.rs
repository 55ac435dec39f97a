//! Timestamps as the API shows them: RFC 3339, UTC, milliseconds.

use std::time::{Duration, UNIX_EPOCH};

/// Formats milliseconds since the Unix epoch as `2026-11-25T15:33:07.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses an RFC 3339 timestamp (`2026-12-01T20:00:00Z`, fractions of a
/// second and a `+01:00` style offset allowed) as milliseconds since the
/// Unix epoch; `None` for anything else or a time before 1970.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    // humantime reads UTC ("Z") only: an offset is taken off and applied.
    let (base, offset_secs) = match s.len().checked_sub(6).map(|i| s.split_at(i)) {
        Some((base, off))
            if (off.starts_with('+') || off.starts_with('-')) && off.as_bytes()[3] == b':' =>
        {
            let h: i64 = off[1..3].parse().ok()?;
            let m: i64 = off[4..6].parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            let sign = if off.starts_with('-') { -1 } else { 1 };
            (format!("{base}Z"), sign * (h * 3600 + m * 60))
        }
        _ => (s.to_string(), 0),
    };
    if !base.ends_with('Z') && !base.ends_with('z') {
        return None;
    }
    let t = humantime::parse_rfc3339(&base.replace('z', "Z")).ok()?;
    let ms = i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    u64::try_from(ms.checked_sub(offset_secs * 1000)?).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_utc_and_offsets() {
        let p = super::parse_rfc3339_ms;
        assert_eq!(p("2025-11-25T15:36:40.123Z"), Some(1_764_085_000_123));
        assert_eq!(p("2025-11-25T16:36:40.123+01:00"), Some(1_764_085_000_123));
        assert_eq!(p("2025-11-25T14:36:40.123-01:00"), Some(1_764_085_000_123));
        for bad in [
            "",
            "tomorrow",
            "2025-11-25T15:36:40",
            "2025-11-25T15:36:40+25:00",
            "1764085000",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(
            super::rfc3339_ms(1_764_085_000_123),
            "2025-11-25T15:36:40.123Z"
        );
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
