//! Session tokens the gateway got from `resume`, per inquiry, handed out again until they are
//! `ttl` old. Persona caps sessions per inquiry (25 by default) and advises against resuming on
//! every page load; this is that advice. Bounded: past `capacity` the oldest entry goes first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

pub struct TokenCache {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, Entry>,
    /// Insertion order for eviction; an item whose generation no longer matches its entry is a
    /// leftover of a replaced or forgotten token and is skipped.
    order: VecDeque<(String, u64)>,
    generation: u64,
}

struct Entry {
    token: String,
    expires: Instant,
    generation: u64,
}

impl TokenCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn get(&self, inquiry_id: &str) -> Option<String> {
        let mut inner = self.lock();
        let entry = inner.tokens.get(inquiry_id)?;
        if entry.expires > Instant::now() {
            return Some(entry.token.clone());
        }
        inner.tokens.remove(inquiry_id);
        None
    }

    pub fn put(&self, inquiry_id: &str, token: &str) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        let entry = Entry {
            token: token.to_owned(),
            expires: Instant::now() + self.ttl,
            generation,
        };
        inner.tokens.insert(inquiry_id.to_owned(), entry);
        inner.order.push_back((inquiry_id.to_owned(), generation));
        while inner.tokens.len() > self.capacity || inner.order.len() > 2 * self.capacity {
            let Some((id, generation)) = inner.order.pop_front() else {
                break;
            };
            if inner.tokens.get(&id).is_some_and(|e| e.generation == generation) {
                inner.tokens.remove(&id);
            }
        }
    }

    /// Called when the inquiry is seen in a state its old sessions no longer open (finished or
    /// expired), so a stale token is never handed out.
    pub fn forget(&self, inquiry_id: &str) {
        self.lock().tokens.remove(inquiry_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokens_expire_and_are_bounded() {
        let cache = TokenCache::new(Duration::from_secs(60), 2);
        cache.put("inq_a", "ta");
        cache.put("inq_b", "tb");
        cache.put("inq_a", "ta2");
        cache.put("inq_c", "tc");
        assert_eq!(cache.get("inq_b"), None, "oldest live entry evicted");
        assert_eq!(cache.get("inq_a").as_deref(), Some("ta2"));
        assert_eq!(cache.get("inq_c").as_deref(), Some("tc"));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.get("inq_c"), None);
        cache.put("inq_d", "td");
        cache.forget("inq_d");
        assert_eq!(cache.get("inq_d"), None);
    }
}
