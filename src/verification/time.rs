//! Wall-clock instants as the ledger orders them: milliseconds since the Unix epoch, read from
//! the local clock or from Persona's ISO-8601 timestamps (`2024-02-15T23:48:17.732Z`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub fn now() -> Millis {
    millis(SystemTime::now())
}

/// Before 1970 only on a broken clock; 0 then orders the value before everything else.
pub fn millis(at: SystemTime) -> Millis {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`); `None` for anything
/// else or for instants before 1970.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    let (date, rest) = text.split_at_checked(10)?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let days = days_from_date(date)?;
    let (clock, rest) = rest.split_at_checked(8)?;
    let seconds = seconds_of_day(clock)?;
    let (fraction_ms, offset) = fraction(rest);
    let offset_seconds = offset_seconds(offset)?;
    let total_ms = (days * 86_400 + seconds - offset_seconds) * 1000 + fraction_ms;
    u64::try_from(total_ms).ok()
}

fn number(text: &str, len: usize) -> Option<i64> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD` -> days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_date(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let year = number(parts.next()?, 4)?;
    let month = number(parts.next()?, 2)?;
    let day = number(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * shifted_month + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `HH:MM:SS` -> seconds; a leap second (`:60`) counts as the next second.
fn seconds_of_day(clock: &str) -> Option<i64> {
    let mut parts = clock.split(':');
    let h = number(parts.next()?, 2)?;
    let m = number(parts.next()?, 2)?;
    let s = number(parts.next()?, 2)?;
    (parts.next().is_none() && h < 24 && m < 60 && s <= 60).then_some(h * 3600 + m * 60 + s)
}

/// `.123456Z` -> (123, "Z"): milliseconds of the optional fraction, and what follows it.
fn fraction(rest: &str) -> (i64, &str) {
    let Some(digits) = rest.strip_prefix('.') else {
        return (0, rest);
    };
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    let ms = digits[..end]
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + i64::from(b - b'0'));
    (ms, &digits[end..])
}

/// `Z` -> 0, `+02:00` -> 7200, `-05:30` -> -19800.
fn offset_seconds(offset: &str) -> Option<i64> {
    if offset == "Z" || offset == "z" {
        return Some(0);
    }
    let sign = match offset.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = offset[1..].split_once(':')?;
    let (h, m) = (number(h, 2)?, number(m, 2)?);
    (h < 24 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_persona_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-15T23:48:17.732Z"), Some(1_708_040_897_732));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(parse_rfc3339("2024-02-15T23:48:17.7321999Z"), Some(1_708_040_897_732));
        assert_eq!(parse_rfc3339("2024-02-16T01:48:17.732+02:00"), Some(1_708_040_897_732));
        assert_eq!(parse_rfc3339("2024-02-15T18:48:17.7-05:00"), Some(1_708_040_897_700));
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for text in [
            "",
            "2024-02-15",
            "2024-02-15T23:48:17",
            "2024-13-15T23:48:17Z",
            "2024-02-15T24:00:00Z",
            "24-02-15T23:48:17Z",
            "1969-12-31T23:59:59Z",
            "2024-02-15T23:48:17.732Zjunk",
            "2024-02-15é23:48:17Z",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }
}
