//! UTC timestamps for reports, messages and the audit trail: RFC 3339 with millisecond
//! precision, `2026-11-21T10:32:40.123Z`, formatted by chrono.
//!
//! Pure: no I/O, no clock.

use chrono::{DateTime, SecondsFormat};

/// Formats milliseconds since the Unix epoch as UTC RFC 3339 with milliseconds.
///
/// Times before the epoch work (`-1` is `1969-12-31T23:59:59.999Z`). An instant chrono cannot
/// represent (about ±262,000 years away; no clock this program reads produces one) is clamped to
/// the nearest one it can, so the result is always a timestamp and never a panic.
pub fn rfc3339_ms(ms: i64) -> String {
    let instant = DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<chrono::Utc>::MIN_UTC
    } else {
        DateTime::<chrono::Utc>::MAX_UTC
    });
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_ms(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_257_160_123), "2026-11-21T10:32:40.123Z");
        assert_eq!(rfc3339_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z"); // 2100 is no leap year
        assert_eq!(rfc3339_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn times_before_the_epoch() {
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(-86_400_000), "1969-12-31T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-2_208_988_800_000), "1900-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-62_135_596_800_000), "0001-01-01T00:00:00.000Z");
    }

    #[test]
    fn the_extremes_do_not_panic() {
        assert!(rfc3339_ms(i64::MIN).ends_with('Z'));
        assert!(rfc3339_ms(i64::MAX).ends_with('Z'));
    }

    /// Every day from 1600-01-01 to 2400-03-01 at noon, against a plain day-by-day walk of the
    /// calendar: the format is chrono's, the dates must still be the ones accounting expects.
    #[test]
    fn agrees_with_a_day_by_day_walk() {
        fn leap(y: i64) -> bool {
            (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        }
        fn month_len(y: i64, m: i64) -> i64 {
            match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            }
        }
        // 1600-01-01 is 135_140 days before the epoch.
        let (mut y, mut m, mut d) = (1600, 1, 1);
        for days in -135_140i64..157_114 {
            let expected = format!("{y:04}-{m:02}-{d:02}T12:00:00.000Z");
            assert_eq!(rfc3339_ms(days * 86_400_000 + 43_200_000), expected, "day {days}");
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        // 157_114 days after the epoch is 2400-03-01, just past the 400-year leap day.
        assert_eq!((y, m, d), (2400, 3, 1));
    }
}
