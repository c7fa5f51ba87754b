//! Rate limiting: which policies apply to a request, what each counts by, the decision (GCRA, in
//! this process or in Redis), and the `RateLimit` / `RateLimit-Policy` header fields of
//! draft-ietf-httpapi-ratelimit-headers.
//!
//! Anonymous requests (public paths) are counted by client address (`key = "ip"` policies);
//! authenticated ones by user id or a claim (`"user"` / `"claim:<name>"` policies). Every policy
//! whose routes match is checked, and the request is refused if any of them refuses it.

mod client_ip;
mod decision;
mod memory;
mod redis;

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use serde_json::Value;

pub use self::client_ip::client_ip;
pub use self::decision::Decision;
pub use self::memory::MemoryLimiter;
pub use self::redis::RedisLimiter;
use crate::auth::Identity;
use crate::config::{OnStoreError, PolicyConfig, PolicyKey, RateLimitConfig};
use crate::metrics::RateLimitDecisions;
use crate::store::Store;

pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Why a request was not admitted by the rate limit.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limit exceeded ({policy})")]
    Limited {
        policy: String,
        retry_after: Duration,
        /// The `RateLimit` and `RateLimit-Policy` fields of every policy that applied.
        headers: Box<HeaderMap>,
    },
    /// Redis did not answer and `store.on_store_error = "deny"`.
    #[error("the rate-limit store is unavailable")]
    StoreUnavailable,
}

/// What the limiter needs to know about a request.
pub struct RequestFacts<'a> {
    pub path: &'a str,
    pub peer: IpAddr,
    pub headers: &'a HeaderMap,
    /// `None` for anonymous requests on public paths.
    pub identity: Option<&'a Identity>,
}

/// An accepted request, with the header fields its response should carry (possibly none).
#[derive(Debug, Default)]
pub struct Allowed {
    headers: HeaderMap,
}

impl Allowed {
    pub fn apply(self, headers: &mut HeaderMap) {
        headers.extend(self.headers);
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    policies: Vec<PolicyConfig>,
    /// Each policy's decision counters, same order as `policies`.
    decisions: Vec<RateLimitDecisions>,
    backend: Backend,
    trusted_proxies: Vec<IpNet>,
    on_store_error: OnStoreError,
    /// Seeded per process, so nobody can aim keys at one hash bucket (or at a collision).
    hasher: RandomState,
}

enum Backend {
    /// One limiter per policy, same order as `policies`.
    Memory(Vec<MemoryLimiter>),
    Redis(RedisLimiter),
}

impl RateLimiter {
    /// Uses Redis when the store does; otherwise governor in this process, with a task that
    /// evicts idle keys every `evict_interval` for as long as the limiter lives.
    pub fn new(config: &RateLimitConfig, store: &Store) -> Self {
        let backend = match store.redis() {
            Some(redis) => Backend::Redis(RedisLimiter::new(redis.clone())),
            None => Backend::Memory(config.policies.iter().map(MemoryLimiter::new).collect()),
        };
        let inner = Arc::new(Inner {
            policies: config.policies.clone(),
            decisions: config
                .policies
                .iter()
                .map(|p| RateLimitDecisions::new(&p.name))
                .collect(),
            backend,
            trusted_proxies: config.trusted_proxies.clone(),
            on_store_error: store.on_store_error(),
            hasher: RandomState::new(),
        });
        let has_memory_policies = matches!(&inner.backend, Backend::Memory(l) if !l.is_empty());
        if has_memory_policies && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(evict(Arc::downgrade(&inner), config.evict_interval));
        }
        Self { inner }
    }

    /// Counts the request against every matching policy.
    ///
    /// # Errors
    /// [`RateLimitError::Limited`] when a policy refuses it; [`RateLimitError::StoreUnavailable`]
    /// when Redis cannot answer and `store.on_store_error = "deny"`.
    pub async fn check(&self, req: &RequestFacts<'_>) -> Result<Allowed, RateLimitError> {
        let cells = self.cells(req);
        if cells.is_empty() {
            return Ok(Allowed::default());
        }
        let decisions = match &self.inner.backend {
            Backend::Memory(limiters) => cells
                .iter()
                .map(|(i, key)| limiters[*i].check(self.inner.hasher.hash_one(key)))
                .collect(),
            Backend::Redis(redis) => {
                let named: Vec<(&PolicyConfig, String)> = cells
                    .iter()
                    .map(|(i, key)| (&self.inner.policies[*i], key.clone()))
                    .collect();
                // Boxed, so the memory backend's callers do not carry the Redis round trip's state.
                match Box::pin(redis.check(&named)).await {
                    Ok(decisions) => decisions,
                    // The store has logged it (once per interval) and marked itself unhealthy.
                    Err(_) => return self.store_failed(),
                }
            }
        };
        self.verdict(&cells, &decisions)
    }

    /// The policies that apply, each with the key the request is counted under.
    fn cells(&self, req: &RequestFacts<'_>) -> Vec<(usize, String)> {
        self.inner
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.applies_to(req.path))
            .filter_map(|(i, p)| self.key(p, req).map(|key| (i, key)))
            .collect()
    }

    fn key(&self, policy: &PolicyConfig, req: &RequestFacts<'_>) -> Option<String> {
        match (&policy.key, req.identity) {
            (PolicyKey::Ip, None) => {
                let ip = client_ip(req.peer, req.headers, &self.inner.trusted_proxies);
                Some(client_ip::rate_key(ip))
            }
            (PolicyKey::User, Some(identity)) => Some(identity.user_id.clone()),
            (PolicyKey::Claim(name), Some(identity)) => match identity.claims.get(name)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    fn verdict(&self, cells: &[(usize, String)], decisions: &[Decision]) -> Result<Allowed, RateLimitError> {
        for ((i, _), decision) in cells.iter().zip(decisions) {
            if let Some(counters) = self.inner.decisions.get(*i) {
                counters.record(decision.allowed);
            }
        }
        let policies: Vec<&PolicyConfig> = cells.iter().map(|(i, _)| &self.inner.policies[*i]).collect();
        let refused = policies
            .iter()
            .zip(decisions)
            .filter(|(_, d)| !d.allowed)
            .max_by_key(|(_, d)| d.reset);
        if let Some((policy, decision)) = refused {
            return Err(RateLimitError::Limited {
                policy: policy.name.clone(),
                retry_after: decision.reset,
                headers: Box::new(fields(policies.iter().copied().zip(decisions.iter()))),
            });
        }
        let shown = policies
            .iter()
            .copied()
            .zip(decisions.iter())
            .filter(|(p, _)| p.headers);
        Ok(Allowed { headers: fields(shown) })
    }

    fn store_failed(&self) -> Result<Allowed, RateLimitError> {
        match self.inner.on_store_error {
            OnStoreError::Allow => Ok(Allowed::default()),
            OnStoreError::Deny => Err(RateLimitError::StoreUnavailable),
        }
    }
}

/// `RateLimit-Policy: "name";q=5;w=60` (the configured rate) and `RateLimit: "name";r=0;t=12`
/// (what is left, and in how many seconds it resets; for a refused request, when to retry).
fn fields<'a>(items: impl Iterator<Item = (&'a PolicyConfig, &'a Decision)>) -> HeaderMap {
    let (mut policy, mut state) = (Vec::new(), Vec::new());
    for (p, d) in items {
        policy.push(format!("\"{}\";q={};w={}", p.name, p.requests, ceil_secs(p.period)));
        state.push(format!("\"{}\";r={};t={}", p.name, d.remaining, ceil_secs(d.reset)));
    }
    let mut headers = HeaderMap::new();
    if policy.is_empty() {
        return headers;
    }
    // Names are validated to plain ASCII, so these values are always valid header values.
    if let Ok(v) = HeaderValue::from_str(&policy.join(", ")) {
        headers.insert(RATELIMIT_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&state.join(", ")) {
        headers.insert(RATELIMIT, v);
    }
    headers
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

async fn evict(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Backend::Memory(limiters) = &inner.backend {
            limiters.iter().for_each(MemoryLimiter::evict);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_draft_syntax() {
        let p = PolicyConfig {
            name: "get-or-create".into(),
            requests: 5,
            period: Duration::from_secs(60),
            burst: 2,
            key: PolicyKey::User,
            routes: vec![crate::target::PathPrefix::root()],
            headers: true,
        };
        let d = Decision {
            allowed: false,
            remaining: 0,
            reset: Duration::from_millis(11_200),
        };
        let h = fields([(&p, &d)].into_iter());
        assert_eq!(h[RATELIMIT_POLICY], "\"get-or-create\";q=5;w=60");
        assert_eq!(h[RATELIMIT], "\"get-or-create\";r=0;t=12");
    }

    /// Regression: the longest wait a policy can produce (`Duration::MAX`, from a saturated
    /// interval times burst) rounded up past `u64::MAX` seconds.
    #[test]
    fn the_longest_waits_round_up_without_overflow() {
        assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }
}
