//! `[store]` section: where state shared by replicas lives (rate-limit cells, locks, dedupe keys,
//! the Persona budget). `memory` keeps it in this process; `redis` shares it between replicas.

use std::time::Duration;

use serde::Deserialize;

use super::primitives::Secret;
use super::validate::Validator;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// Bound on each Redis round trip; a slower answer counts as a store error.
    pub timeout: Duration,
    pub on_store_error: OnStoreError,
    /// Prepended to every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Bound on the memory backend's key/value entries (locks, dedupe keys, values).
    pub memory_max_entries: usize,
}

#[derive(Debug, Clone)]
pub enum StoreBackend {
    Memory,
    /// The URL may carry a password, so it is kept as a secret and never logged.
    Redis {
        url: Secret,
    },
}

/// What a rate-limit decision does when the store cannot answer: let the request through
/// (availability first) or refuse it with 503 (protection first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawBackend {
    Memory,
    Redis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    backend: RawBackend,
    redis_url: Option<String>,
    timeout: String,
    on_store_error: OnStoreError,
    key_prefix: String,
    memory_max_entries: usize,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: RawBackend::Memory,
            redis_url: None,
            timeout: "100ms".into(),
            on_store_error: OnStoreError::Allow,
            key_prefix: "persona-gate:".into(),
            memory_max_entries: 100_000,
        }
    }
}

impl RawStore {
    pub(super) fn validate(self, v: &mut Validator) -> StoreConfig {
        let backend = match (self.backend, self.redis_url) {
            (RawBackend::Memory, _) => StoreBackend::Memory,
            (RawBackend::Redis, None) => {
                v.problem("store.redis_url", "required when store.backend = \"redis\"");
                StoreBackend::Memory
            }
            (RawBackend::Redis, Some(url)) => {
                // Parsing does no IO; the message never repeats the URL, which may hold a password.
                if url.starts_with("rediss://") {
                    v.problem(
                        "store.redis_url",
                        "TLS (rediss://) is not supported; use a local TLS tunnel",
                    );
                } else if redis::Client::open(url.as_str()).is_err() {
                    v.problem("store.redis_url", "not a redis:// or unix:// URL");
                }
                StoreBackend::Redis { url: Secret::new(url) }
            }
        };
        let timeout = v.duration("store.timeout", &self.timeout);
        if timeout.is_zero() {
            v.problem("store.timeout", "must be greater than zero");
        }
        if self.memory_max_entries == 0 {
            v.problem("store.memory_max_entries", "must be at least 1");
        }
        StoreConfig {
            backend,
            timeout,
            on_store_error: self.on_store_error,
            key_prefix: self.key_prefix,
            memory_max_entries: self.memory_max_entries,
        }
    }
}
