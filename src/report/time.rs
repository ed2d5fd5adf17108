//! UTC timestamps for reports: RFC 3339 with millisecond precision, `2026-11-21T10:32:40.123Z`.
//!
//! Written here rather than pulled from a date crate: reports need exactly one format, and the
//! proleptic Gregorian calendar fits in a few lines (Howard Hinnant's `civil_from_days`).
//!
//! Pure: no I/O, no clock.

const MS_PER_DAY: i64 = 86_400_000;

/// Formats milliseconds since the Unix epoch as UTC RFC 3339 with milliseconds.
///
/// Times before the epoch work (`-1` is `1969-12-31T23:59:59.999Z`). Years outside 0000–9999
/// cannot be written in RFC 3339; they come out with more digits or a sign rather than wrong, and
/// no clock this program reads produces them.
pub fn rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000,
    );
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// Year, month (1–12) and day (1–31) of the day `days` after 1970-01-01.
///
/// Counts in 400-year eras starting on 0000-03-01, so the leap day is the last day of its
/// "year" and the month lengths from March on follow a fixed pattern (153 days per 5 months).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // |days| ≤ i64::MAX / 86_400_000 ≈ 1.07e11, so none of this can overflow.
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

    /// Every day from 1600-01-01 to 2400-02-29 against a plain day-by-day walk of the calendar.
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
        for days in -135_140..157_114 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
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
