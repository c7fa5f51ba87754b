//! Time as Persona keeps and writes it: milliseconds since the epoch inside the emulator,
//! ISO-8601 UTC with milliseconds (`2024-02-15T23:48:17.732Z`) on the wire.
//!
//! The emulator runs on its own [`Clock`]: the wall clock plus an offset that the control API
//! moves forward, so a test can let a day pass (expiry, idempotency retention, rate-limit
//! windows) without waiting for it. Webhook signatures alone use the wall clock, because the
//! receiver checks their timestamp against its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub(super) type Millis = u64;

pub(super) const SECOND: Millis = 1_000;
pub(super) const MINUTE: Millis = 60 * SECOND;
pub(super) const DAY: Millis = 86_400 * SECOND;

/// The emulator's time: never behind the wall clock, moved ahead only by [`Clock::advance`].
#[derive(Debug, Default)]
pub(super) struct Clock {
    offset: AtomicU64,
}

impl Clock {
    pub(super) fn now(&self) -> Millis {
        wall().saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// Moves the emulator's time forward by `by`.
    pub(super) fn advance(&self, by: Millis) {
        self.offset.fetch_add(by, Ordering::Relaxed);
    }
}

/// The wall clock.
pub(super) fn wall() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn unix_seconds(at: Millis) -> u64 {
    at / SECOND
}

/// `2024-02-15T23:48:17.732Z`.
pub(super) fn iso(at: Millis) -> String {
    let (days, ms_of_day) = (at / DAY, at % DAY);
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / SECOND;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % SECOND
    )
}

/// Howard Hinnant's `civil_from_days`, restricted to dates after 1970 (all the emulator needs).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// True for a real calendar date written `YYYY-MM-DD`, the format of Persona's `date` fields.
pub(super) fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    let digits = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
        return false;
    }
    let (Ok(year), Ok(month), Ok(day)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_milliseconds_and_utc() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_708_040_897_732), "2024-02-15T23:48:17.732Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_clock_only_moves_forward() {
        let clock = Clock::default();
        let before = clock.now();
        clock.advance(DAY);
        assert!(clock.now() >= before + DAY);
        assert!(wall() < clock.now());
    }

    #[test]
    fn dates_are_checked_against_the_calendar() {
        assert!(is_date("1995-09-08"));
        assert!(is_date("2000-02-29"));
        assert!(!is_date("1900-02-29"));
        assert!(!is_date("1995-13-01"));
        assert!(!is_date("1995-9-8"));
        assert!(!is_date("08/09/1995"));
    }
}
