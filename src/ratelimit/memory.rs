//! The in-process backend: one governor keyed GCRA limiter per policy. Keys are 64-bit hashes of
//! the user id or address (a few bytes per tracked key instead of a copy of the string), and keys
//! whose limit has fully refilled are evicted periodically, so memory follows the number of
//! recently active clients, not the number ever seen.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::decision::Decision;
use crate::config::PolicyConfig;

type Keyed<C> = RateLimiter<u64, DashMapStateStore<u64>, C, StateInformationMiddleware>;

/// The clock is a parameter so tests can drive time with governor's `FakeRelativeClock`.
pub struct MemoryLimiter<C: Clock + Clone = DefaultClock> {
    limiter: Keyed<C>,
    clock: C,
    burst: u32,
    interval: std::time::Duration,
}

impl MemoryLimiter {
    pub fn new(policy: &PolicyConfig) -> Self {
        Self::with_clock(policy, DefaultClock::default())
    }
}

impl<C: Clock + Clone> MemoryLimiter<C> {
    pub fn with_clock(policy: &PolicyConfig, clock: C) -> Self {
        let burst = NonZeroU32::new(policy.burst).unwrap_or(NonZeroU32::MIN);
        // Config validation guarantees a non-zero interval; the fallback is never used.
        let quota = Quota::with_period(policy.interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let limiter: Keyed<C> = RateLimiter::new(quota, DashMapStateStore::default(), clock.clone());
        Self {
            limiter,
            clock,
            burst: burst.get(),
            interval: policy.interval(),
        }
    }

    pub fn check(&self, key: u64) -> Decision {
        match self.limiter.check_key(&key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    remaining,
                    reset: self.interval.saturating_mul(self.burst.saturating_sub(remaining)),
                }
            }
            Err(not_until) => Decision {
                allowed: false,
                remaining: 0,
                reset: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    /// Drops keys that are indistinguishable from fresh ones and returns the memory.
    pub fn evict(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::config::PolicyKey;

    fn policy(requests: u32, period: Duration, burst: u32) -> PolicyConfig {
        PolicyConfig {
            name: "p".into(),
            requests,
            period,
            burst,
            key: PolicyKey::User,
            routes: vec![crate::target::PathPrefix::root()],
            headers: false,
        }
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let l = MemoryLimiter::with_clock(&policy(5, Duration::from_secs(60), 2), clock.clone());
        let first = l.check(1);
        assert!(first.allowed);
        assert_eq!(first.remaining, 1);
        assert_eq!(first.reset, Duration::from_secs(12));
        assert!(l.check(1).allowed);
        let denied = l.check(1);
        assert!(!denied.allowed);
        assert_eq!(denied.reset, Duration::from_secs(12));
        clock.advance(Duration::from_secs(6));
        assert_eq!(l.check(1).reset, Duration::from_secs(6));
        clock.advance(Duration::from_secs(6));
        assert!(l.check(1).allowed);
        assert!(!l.check(1).allowed);
    }

    #[test]
    fn keys_are_independent() {
        let clock = FakeRelativeClock::default();
        let l = MemoryLimiter::with_clock(&policy(1, Duration::from_secs(1), 1), clock);
        assert!(l.check(1).allowed);
        assert!(!l.check(1).allowed);
        assert!(l.check(2).allowed);
    }

    /// Intervals from a microsecond to `MAX_REFILL` (spread over the orders of magnitude), with
    /// any burst the config accepts for them.
    fn accepted() -> impl proptest::strategy::Strategy<Value = (Duration, u32)> {
        use proptest::prelude::*;
        let most = u64::try_from(crate::config::MAX_REFILL.as_micros()).unwrap_or(u64::MAX);
        (0..=63 - most.leading_zeros())
            .prop_flat_map(move |bits| (1u64 << bits)..=(1u64 << bits).saturating_mul(2).min(most))
            .prop_flat_map(move |micros| {
                let burst = u32::try_from(most / micros).unwrap_or(u32::MAX).max(1);
                (Just(Duration::from_micros(micros)), 1..=burst)
            })
    }

    /// Regression (found by the property below): the slowest policy the config accepts, with a
    /// large burst, decides every request of its burst (before `config::MAX_REFILL`, slower ones
    /// overflowed here or panicked in governor).
    #[test]
    fn the_slowest_accepted_policy_decides_its_whole_burst() {
        let burst = 5000;
        let slow = policy(1, crate::config::MAX_REFILL / burst, burst);
        let l = MemoryLimiter::with_clock(&slow, FakeRelativeClock::default());
        for _ in 0..burst {
            assert!(l.check(1).allowed);
        }
        let refused = l.check(1);
        assert!(!refused.allowed);
        assert!(refused.reset <= slow.interval());
    }

    proptest::proptest! {
        /// Any policy the config accepts (a non-zero rate no finer than a microsecond per request,
        /// any burst earned back within `config::MAX_REFILL`) decides a key's requests without
        /// panicking, and never resets later than a full burst's worth of intervals.
        #[test]
        fn any_valid_policy_decides((interval, burst) in accepted(), calls in 1usize..1200) {
            let p = policy(1, interval, burst);
            let l = MemoryLimiter::with_clock(&p, FakeRelativeClock::default());
            let ceiling = p.interval().saturating_mul(burst);
            for _ in 0..calls {
                let decision = l.check(7);
                proptest::prop_assert!(decision.remaining < burst);
                proptest::prop_assert!(decision.reset <= ceiling);
            }
        }
    }

    #[test]
    fn eviction_forgets_refilled_keys_only() {
        let clock = FakeRelativeClock::default();
        let l = MemoryLimiter::with_clock(&policy(10, Duration::from_secs(1), 10), clock.clone());
        for key in 0..1000 {
            l.check(key);
        }
        assert_eq!(l.len(), 1000);
        l.evict();
        assert_eq!(l.len(), 1000, "nothing has refilled yet");
        clock.advance(Duration::from_secs(2));
        l.check(5000);
        l.evict();
        assert_eq!(l.len(), 1);
    }
}
