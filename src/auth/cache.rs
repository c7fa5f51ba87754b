//! The verified-token cache: a returning caller's token is looked up by its SHA-256 instead of
//! paying a signature check again. It holds only tokens that passed every check, never serves one
//! at or past its `exp`, stays within `cache_size` entries, and is emptied when the JWKS key set
//! changes. It does not decide validity; `Authenticator` does, and then remembers the answer here.
//!
//! Entries are spread over independently locked shards so concurrent requests rarely wait on each
//! other; each shard evicts its oldest entry first (expired entries occupy a slot until their turn
//! or until the same token is verified again).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_lc_rs::digest;

use super::identity::Identity;
use crate::config::TokenSource;

/// Enough shards that a 2-to-16 core box rarely sees two requests on one lock.
const MAX_SHARDS: usize = 16;

/// SHA-256 of the token, and where it came from (the cached `Identity` records it); the token
/// itself is never stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CacheKey {
    digest: [u8; 32],
    source: TokenSource,
}

impl CacheKey {
    pub fn new(source: TokenSource, token: &[u8]) -> Self {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(digest::digest(&digest::SHA256, token).as_ref());
        CacheKey { digest, source }
    }

    /// The digest's first byte picks the shard; the map inside hashes other bytes (see `Hash`).
    fn shard_byte(&self) -> u8 {
        self.digest[0]
    }
}

/// The digest is already a uniform hash, so the map takes eight of its bytes as they are rather
/// than hashing 32 bytes again. Only tokens that passed verification are ever inserted, so no
/// caller can choose keys to crowd one bucket. Bytes 8..16, not the shard byte: every key in a
/// shard shares that byte's low bits, which would pile them into a sixteenth of the buckets.
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.digest[8..16]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

/// Passes [`CacheKey`]'s one `u64` through as the hash.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached through `CacheKey`; a fold keeps it a hash should anything else call it.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

struct Entry {
    identity: Arc<Identity>,
    /// The token's `exp` in Unix seconds; the entry is dead from this second on.
    expires_at: u64,
}

/// One lock's worth of entries. `order` lists exactly the keys in `entries`, oldest first.
#[derive(Default)]
struct Shard {
    entries: HashMap<CacheKey, Entry, BuildHasherDefault<DigestHasher>>,
    order: VecDeque<CacheKey>,
}

pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Bumped by every `clear`, so a verification that started before a key-set change cannot
    /// put its (possibly now unacceptable) result into the emptied cache.
    generation: AtomicU64,
}

impl TokenCache {
    /// A cache of at most `capacity` entries; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        let shards = capacity.min(MAX_SHARDS);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.checked_div(shards).unwrap_or(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The identity cached for `key`, unless absent or expired at `now` (Unix seconds).
    pub fn get(&self, key: &CacheKey, now: u64) -> Option<Arc<Identity>> {
        let shard = self.shard(key)?;
        let entry = shard.entries.get(key)?;
        (now < entry.expires_at).then(|| entry.identity.clone())
    }

    /// Read before verifying and passed to [`TokenCache::insert`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers a verified identity until `expires_at`, unless the cache was cleared since
    /// `generation` was read.
    pub fn insert(&self, key: CacheKey, identity: Arc<Identity>, expires_at: u64, generation: u64) {
        let per_shard = self.per_shard;
        let Some(mut shard) = self.shard(&key) else {
            return;
        };
        // Checked under the shard lock: `clear` bumps first and then takes every lock, so either
        // this insert sees the new generation or `clear` removes what it added.
        if self.generation() != generation {
            return;
        }
        let entry = Entry { identity, expires_at };
        if let Some(existing) = shard.entries.get_mut(&key) {
            *existing = entry;
            return;
        }
        if shard.entries.len() >= per_shard
            && let Some(oldest) = shard.order.pop_front()
        {
            shard.entries.remove(&oldest);
        }
        shard.order.push_back(key);
        shard.entries.insert(key, entry);
    }

    /// Forgets everything, e.g. because a key that verified some of these tokens is gone.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.entries.clear();
            shard.order.clear();
        }
    }

    fn shard(&self, key: &CacheKey) -> Option<MutexGuard<'_, Shard>> {
        // The key is a uniform hash already, so its first byte spreads the load evenly.
        let index = usize::from(key.shard_byte()).checked_rem(self.shards.len())?;
        Some(lock(&self.shards[index]))
    }
}

/// A panic while holding a shard lock cannot leave an entry half-written (every mutation is a
/// single map or queue call), so a poisoned lock is still safe to use.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(user: &str) -> Arc<Identity> {
        Arc::new(Identity::new(
            user.to_owned(),
            serde_json::Map::new(),
            TokenSource::Header,
        ))
    }

    fn key(token: &str) -> CacheKey {
        CacheKey::new(TokenSource::Header, token.as_bytes())
    }

    #[test]
    fn serves_an_entry_until_its_exp() {
        let cache = TokenCache::new(10);
        cache.insert(key("t"), identity("u1"), 100, cache.generation());
        assert_eq!(cache.get(&key("t"), 99).map(|i| i.user_id.clone()), Some("u1".into()));
        assert!(cache.get(&key("t"), 100).is_none(), "served at exp");
        assert!(cache.get(&key("t"), 5000).is_none(), "served past exp");
        assert!(cache.get(&key("other"), 0).is_none());
    }

    #[test]
    fn the_source_is_part_of_the_key() {
        assert!(CacheKey::new(TokenSource::Header, b"t") != CacheKey::new(TokenSource::Cookie, b"t"));
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let cache = TokenCache::new(40);
        for i in 0..1000 {
            cache.insert(key(&format!("token-{i}")), identity("u"), u64::MAX, cache.generation());
        }
        let held = (0..1000)
            .filter(|i| cache.get(&key(&format!("token-{i}")), 0).is_some())
            .count();
        assert!((1..=40).contains(&held), "held {held}");
        // The newest entry survives; the oldest were evicted first.
        assert!(cache.get(&key("token-999"), 0).is_some());
        assert!(cache.get(&key("token-0"), 0).is_none());
    }

    #[test]
    fn reinserting_a_key_does_not_grow_the_shard() {
        let cache = TokenCache::new(1);
        cache.insert(key("a"), identity("u1"), 10, 0);
        cache.insert(key("a"), identity("u2"), 20, 0);
        assert_eq!(cache.get(&key("a"), 15).map(|i| i.user_id.clone()), Some("u2".into()));
        cache.insert(key("b"), identity("u3"), 20, 0);
        assert!(cache.get(&key("a"), 0).is_none());
        assert!(cache.get(&key("b"), 0).is_some());
    }

    #[test]
    fn clear_empties_and_refuses_inserts_verified_before_it() {
        let cache = TokenCache::new(10);
        let before = cache.generation();
        cache.insert(key("a"), identity("u"), u64::MAX, before);
        cache.clear();
        assert!(cache.get(&key("a"), 0).is_none());
        cache.insert(key("b"), identity("u"), u64::MAX, before);
        assert!(cache.get(&key("b"), 0).is_none(), "stale generation was cached");
        cache.insert(key("c"), identity("u"), u64::MAX, cache.generation());
        assert!(cache.get(&key("c"), 0).is_some());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = TokenCache::new(0);
        cache.insert(key("a"), identity("u"), u64::MAX, 0);
        assert!(cache.get(&key("a"), 0).is_none());
    }

    #[test]
    fn concurrent_inserts_are_all_kept_within_capacity() {
        let cache = Arc::new(TokenCache::new(10_000));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        cache.insert(key(&format!("{t}-{i}")), identity("u"), u64::MAX, cache.generation());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        let held = (0..4)
            .flat_map(|t| (0..500).map(move |i| format!("{t}-{i}")))
            .filter(|k| cache.get(&key(k), 0).is_some())
            .count();
        assert_eq!(held, 2000);
    }
}
