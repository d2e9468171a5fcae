//! Time as the ledger writes it: microseconds since the Unix epoch and their
//! RFC 3339 UTC form (`2026-11-26T00:29:40.123456Z`), in the proleptic
//! Gregorian calendar, before 1970 included.

/// Now, by the system clock, in microseconds since 1970-01-01T00:00:00Z
/// (0 before it, `i64::MAX` past what fits).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
///
/// ```
/// assert_eq!(capfence_compiler::time::rfc3339(0), "1970-01-01T00:00:00.000000Z");
/// assert_eq!(capfence_compiler::time::rfc3339(1_795_652_980_123_456), "2026-11-26T00:29:40.123456Z");
/// ```
pub fn rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses the form [`rfc3339`] writes (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) back to
/// microseconds since the epoch; `None` for anything else.
///
/// ```
/// use capfence_compiler::time::{parse_rfc3339, rfc3339};
/// assert_eq!(parse_rfc3339("2026-11-26T00:29:40.123456Z"), Some(1_795_652_980_123_456));
/// assert_eq!(parse_rfc3339(&rfc3339(-1)), Some(-1));
/// assert_eq!(parse_rfc3339("2026-11-26 00:29:40Z"), None);
/// ```
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 27
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
        || b.get(19) != Some(&b'.')
        || b.get(26) != Some(&b'Z')
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, frac) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    secs.checked_mul(1_000_000)?.checked_add(frac)
}

/// Parses an RFC 3339 UTC time with 0 to 6 fractional digits
/// (`2026-11-27T10:00:00Z`, `2026-11-27T10:00:00.5Z`), as people write it in
/// a history file; `None` for anything else (offsets other than `Z`
/// included).
///
/// ```
/// use capfence_compiler::time::parse_time;
/// assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000));
/// assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1_500_000));
/// assert_eq!(parse_time("1970-01-01T00:00:01+01:00"), None);
/// ```
pub fn parse_time(text: &str) -> Option<i64> {
    let body = text.strip_suffix('Z')?;
    let (seconds, frac) = match body.split_once('.') {
        Some((s, f)) if (1..=6).contains(&f.len()) => (s, f),
        Some(_) => return None,
        None => (body, ""),
    };
    parse_rfc3339(&format!("{seconds}.{frac:0<6}Z"))
}

/// (year, month, day) in the proleptic Gregorian calendar to days since 1970-01-01.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            rfc3339(4_107_542_399_999_999),
            "2100-02-28T23:59:59.999999Z"
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parse_round_trips() {
        for micros in [
            0,
            -1,
            951_782_400_000_000,
            4_107_542_399_999_999,
            1_795_652_980_123_456,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(micros)), Some(micros));
        }
        assert_eq!(parse_rfc3339("2026-02-30T00:00:00.000000Z"), None);
        assert_eq!(parse_rfc3339("2026-11-26T24:00:00.000000Z"), None);
    }
}
