//! Persona's environment rate limit, enforced: a fixed window of a minute that starts with the
//! first request and allows `limit` requests in it; the next request after it starts a new one.
//! Every authenticated `/api/v1` request is counted, refused ones included, before the
//! idempotency layer (so a replay counts, and a 429 is never stored as a key's answer). The
//! emulator has one API key, so "per key" and "per environment" are the same here.

use super::clock::{MINUTE, Millis, SECOND};

/// What Persona reports on every answer: `RateLimit-Limit`, `-Remaining`, `-Reset` (seconds
/// until the window resets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset: u64,
}

impl RateHeaders {
    /// The window as a spent one resetting in `reset` seconds: what an injected 429 reports.
    pub(super) fn exhausted(self, reset: u64) -> RateHeaders {
        RateHeaders {
            remaining: 0,
            reset,
            ..self
        }
    }
}

#[derive(Debug)]
pub(super) struct RateWindow {
    limit: u64,
    /// Start of the current window and the requests counted in it.
    window: Option<(Millis, u64)>,
}

impl RateWindow {
    pub(super) fn new(limit: u32) -> RateWindow {
        RateWindow {
            limit: u64::from(limit),
            window: None,
        }
    }

    /// Counts one request at `now`: `Ok` with the headers if it is within the limit, `Err` with
    /// them (remaining 0) if it is over.
    pub(super) fn admit(&mut self, now: Millis) -> Result<RateHeaders, RateHeaders> {
        let (start, count) = match self.window {
            Some((start, count)) if now < start + MINUTE => (start, count + 1),
            _ => (now, 1),
        };
        self.window = Some((start, count));
        let headers = RateHeaders {
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset: (start + MINUTE - now).div_ceil(SECOND),
        };
        if count > self.limit { Err(headers) } else { Ok(headers) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_with_the_first_request_and_lasts_a_minute() {
        let mut window = RateWindow::new(3);
        let t0 = 1_000_000;
        assert_eq!(
            window.admit(t0),
            Ok(RateHeaders {
                limit: 3,
                remaining: 2,
                reset: 60
            })
        );
        assert_eq!(window.admit(t0 + 1).map(|h| h.remaining), Ok(1));
        assert_eq!(
            window.admit(t0 + 10 * SECOND).map(|h| (h.remaining, h.reset)),
            Ok((0, 50))
        );
        assert_eq!(
            window.admit(t0 + 59 * SECOND).map_err(|h| (h.remaining, h.reset)),
            Err((0, 1))
        );
        assert_eq!(window.admit(t0 + MINUTE).map(|h| (h.remaining, h.reset)), Ok((2, 60)));
    }
}
