//! Timestamps: milliseconds since the Unix epoch, written and read as ISO 8601 (UTC).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2022-11-15T18:25:44.442000Z` (microsecond precision, as D1 writes `created_at`).
pub(crate) fn format_iso(millis: i64) -> String {
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let hours = in_day / 3_600_000;
    let minutes = in_day / 60_000 % 60;
    let seconds = in_day / 1000 % 60;
    let micros = in_day % 1000 * 1000;
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{micros:06}Z")
}

/// Parses an ISO 8601 / RFC 3339 timestamp (`2024-01-15T12:00:00Z`, optional fraction, `Z` or
/// `±HH:MM` offset, or a bare date) or a number of Unix seconds, into milliseconds.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return seconds.checked_mul(1000);
    }
    let number = |slice: Option<&str>| -> Option<i64> {
        let slice = slice?;
        if slice.is_empty() || !slice.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        slice.parse().ok()
    };
    let year = number(text.get(0..4))?;
    if text.get(4..5)? != "-" || text.get(7..8)? != "-" {
        return None;
    }
    let month = number(text.get(5..7))?;
    let day = number(text.get(8..10))?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let date_millis = days_from_civil(year, month, day) * 86_400_000;
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(date_millis);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let hours = number(rest.get(0..2))?;
    if rest.get(2..3)? != ":" {
        return None;
    }
    let minutes = number(rest.get(3..5))?;
    let (seconds, mut rest) = if rest.get(5..6) == Some(":") {
        (number(rest.get(6..8))?, &rest[8..])
    } else {
        (0, &rest[5..])
    };
    if hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    let mut fraction_millis = 0;
    if let Some(fraction) = rest.strip_prefix(['.', ',']) {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        fraction_millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_millis = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let offset = &rest[1..];
            let (offset_hours, offset_minutes) = match offset.len() {
                5 if offset.get(2..3) == Some(":") => {
                    (number(offset.get(0..2))?, number(offset.get(3..5))?)
                }
                4 => (number(offset.get(0..2))?, number(offset.get(2..4))?),
                2 => (number(offset.get(0..2))?, 0),
                _ => return None,
            };
            sign * (offset_hours * 3_600_000 + offset_minutes * 60_000)
        }
    };
    Some(
        date_millis + hours * 3_600_000 + minutes * 60_000 + seconds * 1000 + fraction_millis
            - offset_millis,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let millis = 1_668_536_744_442;
        assert_eq!(format_iso(millis), "2022-11-15T18:25:44.442000Z");
        assert_eq!(parse_timestamp("2022-11-15T18:25:44.442000Z"), Some(millis));
        assert_eq!(parse_timestamp("2022-11-15T18:25:44.442Z"), Some(millis));
        assert_eq!(format_iso(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_iso(951_782_400_000), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn parses_offsets_dates_and_seconds() {
        assert_eq!(
            parse_timestamp("2024-01-15T13:00:00+01:00"),
            parse_timestamp("2024-01-15T12:00:00Z")
        );
        assert_eq!(
            parse_timestamp("2024-01-15"),
            parse_timestamp("2024-01-15T00:00:00Z")
        );
        assert_eq!(parse_timestamp("1705320000"), Some(1_705_320_000_000));
        assert_eq!(
            parse_timestamp("2024-01-15T12:00Z"),
            Some(1_705_320_000_000)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2024-13-01T00:00:00Z"), None);
    }
}
