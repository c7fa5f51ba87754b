//! Shared state: locks, dedupe keys, short-lived values and the outbound Persona budget, kept in
//! this process (`memory`) or in Redis (`redis`) so that every replica sees the same state.
//! Rate-limit decisions live in `ratelimit` and reach Redis through [`RedisStore::eval`].
//!
//! Every call returns a [`StoreError`] rather than waiting or panicking when the store is slow or
//! gone; callers decide what that means (`store.on_store_error` for rate limits and the budget).

mod error;
mod memory;
mod receipt;
mod redis;

use std::time::Duration;

pub use self::error::StoreError;
pub use self::memory::MemoryStore;
pub use self::receipt::{BudgetGrant, LockToken};
pub use self::redis::RedisStore;
use crate::config::{OnStoreError, StoreBackend, StoreConfig};

/// The one store of a gateway; clones share it.
#[derive(Clone)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// The key of `user`'s entry of `kind` (`goc` for the get-or-create lock, `verification` for the
/// ledger) in `flow`. The default flow keeps the keys of a gateway without flows, `kind:user`, so
/// replicas of both versions share its locks and statuses during a rolling upgrade; other flows'
/// keys are `kind/flow:user`. No key of one shape equals one of the other (the byte after `kind`
/// differs) and a flow name has no `:` or `/` (config validation), so no two (flow, user) pairs
/// share a key, whatever the user id holds.
pub fn user_key(kind: &str, flow: &str, user: &str) -> String {
    if flow == crate::config::DEFAULT_FLOW {
        format!("{kind}:{user}")
    } else {
        format!("{kind}/{flow}:{user}")
    }
}

impl Store {
    /// Builds the configured backend. The Redis connection is made lazily and kept up by a
    /// background task, so a gateway starts even while Redis is down.
    ///
    /// # Errors
    /// The Redis client cannot be created from the URL (validated already, so unlikely).
    pub fn new(config: &StoreConfig) -> Result<Store, StoreError> {
        match &config.backend {
            StoreBackend::Memory => Ok(Store::Memory(MemoryStore::new(config.memory_max_entries))),
            StoreBackend::Redis { url } => RedisStore::connect(url, config).map(Store::Redis),
        }
    }

    /// Takes `key` for `ttl` unless someone holds it; `None` when it is taken.
    ///
    /// # Errors
    /// The store cannot answer.
    pub async fn lock(&self, key: &str, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        let token = LockToken::new();
        let taken = match self {
            Store::Memory(m) => m.set_if_absent(&format!("lock:{key}"), token.as_str(), ttl)?,
            Store::Redis(r) => r.set_if_absent(&format!("lock:{key}"), token.as_str(), ttl).await?,
        };
        Ok(taken.then_some(token))
    }

    /// Releases `key` if `token` still holds it; `false` when it expired or another owner has it.
    ///
    /// # Errors
    /// The store cannot answer.
    pub async fn unlock(&self, key: &str, token: &LockToken) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.remove_if(&format!("lock:{key}"), token.as_str())),
            Store::Redis(r) => r.remove_if(&format!("lock:{key}"), token.as_str()).await,
        }
    }

    /// True the first time `key` is seen within `ttl` (webhook dedupe).
    ///
    /// # Errors
    /// The store cannot answer.
    pub async fn once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => m.set_if_absent(&format!("once:{key}"), "1", ttl),
            Store::Redis(r) => r.set_if_absent(&format!("once:{key}"), "1", ttl).await,
        }
    }

    /// Removes `key` (a value written by [`Store::put`], or a `once` mark to be re-armed).
    ///
    /// # Errors
    /// The store cannot answer.
    pub async fn forget(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.remove(&format!("val:{key}"));
                m.remove(&format!("once:{key}"));
                Ok(())
            }
            Store::Redis(r) => r.remove(&[format!("val:{key}"), format!("once:{key}")]).await,
        }
    }

    /// # Errors
    /// The store cannot answer, or the memory backend is full.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => m.put(&format!("val:{key}"), value, ttl),
            Store::Redis(r) => r.put(&format!("val:{key}"), value, ttl).await,
        }
    }

    /// # Errors
    /// The store cannot answer.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.get(&format!("val:{key}"))),
            Store::Redis(r) => r.get(&format!("val:{key}")).await,
        }
    }

    /// Takes `units` at once from the fixed-window budget `name` (`limit` units per `window`,
    /// shared by every replica in redis mode), or none of them. Windows are numbered on the
    /// store's wall clock (Redis's in redis mode) and reset on multiples of `window` since the
    /// epoch, as Persona's reset on the minute. `Err` carries how long until the window ends.
    ///
    /// When Redis cannot answer, `on_store_error = "allow"` falls back to a budget of the same size
    /// in this process (so one replica alone still stays under it) and `"deny"` refuses for a second.
    pub async fn budget_take(
        &self,
        name: &str,
        units: u32,
        limit: u32,
        window: Duration,
    ) -> Result<BudgetGrant, Duration> {
        match self {
            Store::Memory(m) => m.budget_take(name, units, limit, window),
            Store::Redis(r) => r.budget_take(name, units, limit, window).await,
        }
    }

    /// Gives `units` of `grant` back, atomically, to the window they were taken from. Once that
    /// window has ended this does nothing: a refund never adds to a later window.
    ///
    /// # Errors
    /// The store cannot answer; the units then stay spent until their window ends.
    pub async fn budget_refund(&self, name: &str, grant: &BudgetGrant, units: u32) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.budget_refund(name, grant, units);
                Ok(())
            }
            Store::Redis(r) => r.budget_refund(name, grant, units).await,
        }
    }

    /// False while Redis is unreachable (always true for memory); for `/readyz`.
    pub fn healthy(&self) -> bool {
        match self {
            Store::Memory(_) => true,
            Store::Redis(r) => r.healthy(),
        }
    }

    pub fn redis(&self) -> Option<&RedisStore> {
        match self {
            Store::Memory(_) => None,
            Store::Redis(r) => Some(r),
        }
    }

    /// What callers should do when this store cannot answer.
    pub fn on_store_error(&self) -> OnStoreError {
        match self {
            Store::Memory(_) => OnStoreError::Allow,
            Store::Redis(r) => r.on_store_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::user_key;

    #[test]
    fn user_keys_keep_the_default_shape_and_never_collide() {
        assert_eq!(user_key("goc", "default", "usr_1"), "goc:usr_1");
        assert_eq!(user_key("goc", "payout", "usr_1"), "goc/payout:usr_1");
        // A user id that looks like another flow's key stays the default flow's.
        assert_ne!(
            user_key("verification", "default", "payout:bob"),
            user_key("verification", "payout", "bob")
        );
        assert_ne!(
            user_key("verification", "a", "b:c"),
            user_key("verification", "a-b", "c")
        );
    }
}
