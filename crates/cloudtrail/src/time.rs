//! CloudTrail event times: RFC 3339 as CloudTrail writes it, and the
//! space-separated forms some exporters (and rule test corpora) use.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Milliseconds since the Unix epoch, or `None` when `s` is not a time.
///
/// Accepts `2024-07-31T13:06:24Z`, fractional seconds, a numeric offset,
/// `2025-01-21 17:49:47.000000000` and no zone at all (taken as UTC).
pub fn parse_event_time(s: &str) -> Option<i64> {
    if let Some(ms) = fast_rfc3339_utc(s.as_bytes()) {
        return Some(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    let trimmed = s.trim_end_matches('Z');
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(trimmed, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// The exact shape CloudTrail writes (`YYYY-MM-DDTHH:MM:SSZ`), without a
/// general parser: it is on the hot path of every event.
fn fast_rfc3339_utc(b: &[u8]) -> Option<i64> {
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let t = date.and_hms_opt(h, m, s)?;
    Some(t.and_utc().timestamp_millis())
}

/// Format milliseconds since the epoch as CloudTrail does.
pub fn format_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape_seen_in_the_corpora() {
        let base = 1_722_431_184_000; // 2024-07-31T13:06:24Z
        assert_eq!(parse_event_time("2024-07-31T13:06:24Z"), Some(base));
        assert_eq!(
            parse_event_time("2024-07-31T13:06:24.250Z"),
            Some(base + 250)
        );
        assert_eq!(parse_event_time("2024-07-31T15:06:24+02:00"), Some(base));
        assert_eq!(parse_event_time("2024-07-31 13:06:24"), Some(base));
        assert_eq!(parse_event_time("2024-07-31 13:06:24Z"), Some(base));
        assert_eq!(
            parse_event_time("2024-07-31 13:06:24.000000000"),
            Some(base)
        );
        assert_eq!(parse_event_time("redacted"), None);
        assert_eq!(parse_event_time("2024-13-31T13:06:24Z"), None);
        assert_eq!(format_ms(base), "2024-07-31T13:06:24Z");
    }
}
