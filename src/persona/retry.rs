//! When to try a Persona call again, and how long to wait first: exponential backoff with full
//! jitter, unless Persona said how long (`Retry-After`, or `RateLimit-Reset`, which Persona
//! documents and `Retry-After`, which it may not send).

use std::time::Duration;

use http::{HeaderMap, StatusCode};

/// Worth another attempt: rate limited or a server-side failure. Everything else (4xx) will
/// fail the same way again.
pub(super) fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The wait before retry number `attempt` (1 for the first retry): a random duration up to
/// `initial * 2^(attempt-1)`, capped at `max`. Full jitter spreads replicas that failed together.
pub(super) fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let ceiling = initial
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(0..=millis))
}

/// The wait Persona asked for, if it said: `Retry-After` (delta seconds) first, then, on a 429
/// only, `RateLimit-Reset` (seconds until the window resets). Persona sends `RateLimit-Reset` on
/// every answer, so on a 5xx it says nothing about when to retry.
pub(super) fn server_wait(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let names: &[&str] = if status == StatusCode::TOO_MANY_REQUESTS {
        &["retry-after", "ratelimit-reset"]
    } else {
        &["retry-after"]
    };
    names.iter().find_map(|name| {
        let text = headers.get(*name)?.to_str().ok()?;
        let secs: f64 = text.trim().parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(250));
        for attempt in 1..10 {
            let wait = backoff(attempt, initial, max);
            assert!(wait <= max, "attempt {attempt}: {wait:?}");
        }
        assert!(backoff(1, initial, max) <= initial);
    }

    #[test]
    fn retry_after_wins_over_ratelimit_reset() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-reset", "7".parse().expect("header"));
        let limited = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(server_wait(limited, &h), Some(Duration::from_secs(7)));
        assert_eq!(server_wait(StatusCode::INTERNAL_SERVER_ERROR, &h), None);
        h.insert("retry-after", "2".parse().expect("header"));
        assert_eq!(server_wait(limited, &h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"));
        assert_eq!(server_wait(limited, &h), Some(Duration::from_secs(7)));
    }

    #[test]
    fn only_429_and_5xx_are_retried() {
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable(StatusCode::BAD_GATEWAY));
        assert!(!is_retryable(StatusCode::NOT_FOUND));
        assert!(!is_retryable(StatusCode::CONFLICT));
    }
}
