//! The in-process store: a bounded map of entries that expire, and fixed-window budget counters.
//! Expired entries are dropped lazily, when the map is full; a map still full after that refuses
//! new entries instead of growing without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::StoreError;

#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Mutex<HashMap<String, Entry>>,
    budgets: Mutex<HashMap<String, Window>>,
    max_entries: usize,
}

struct Entry {
    value: String,
    expires: Instant,
}

struct Window {
    started: Instant,
    used: u32,
}

/// A panic while holding the lock leaves the map consistent (every update is one insert or
/// remove), so a poisoned lock is simply taken over.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: Mutex::new(HashMap::new()),
                budgets: Mutex::new(HashMap::new()),
                max_entries,
            }),
        }
    }

    pub(super) fn set_if_absent(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut entries = locked(&self.inner.entries);
        if entries.get(key).is_some_and(|e| e.expires > now) {
            return Ok(false);
        }
        self.make_room(&mut entries, now)?;
        entries.insert(key.to_owned(), entry(value, now, ttl));
        Ok(true)
    }

    pub(super) fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut entries = locked(&self.inner.entries);
        if !entries.contains_key(key) {
            self.make_room(&mut entries, now)?;
        }
        entries.insert(key.to_owned(), entry(value, now, ttl));
        Ok(())
    }

    pub(super) fn get(&self, key: &str) -> Option<String> {
        let entries = locked(&self.inner.entries);
        entries
            .get(key)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.value.clone())
    }

    pub(super) fn remove(&self, key: &str) {
        locked(&self.inner.entries).remove(key);
    }

    /// Removes `key` only while it still holds `value` (lock release by its owner).
    pub(super) fn remove_if(&self, key: &str, value: &str) -> bool {
        let mut entries = locked(&self.inner.entries);
        let owned = entries
            .get(key)
            .is_some_and(|e| e.expires > Instant::now() && e.value == value);
        if owned {
            entries.remove(key);
        }
        owned
    }

    pub(super) fn budget_take(&self, name: &str, limit: u32, window: Duration) -> Result<(), Duration> {
        let now = Instant::now();
        let mut budgets = locked(&self.inner.budgets);
        let w = budgets
            .entry(name.to_owned())
            .or_insert(Window { started: now, used: 0 });
        if now.duration_since(w.started) >= window {
            *w = Window { started: now, used: 0 };
        }
        if w.used < limit {
            w.used += 1;
            Ok(())
        } else {
            Err((w.started + window).saturating_duration_since(now))
        }
    }

    pub fn len(&self) -> usize {
        locked(&self.inner.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn make_room(&self, entries: &mut HashMap<String, Entry>, now: Instant) -> Result<(), StoreError> {
        if entries.len() >= self.inner.max_entries {
            entries.retain(|_, e| e.expires > now);
            entries.shrink_to_fit();
        }
        if entries.len() >= self.inner.max_entries {
            return Err(StoreError::Full(self.inner.max_entries));
        }
        Ok(())
    }
}

fn entry(value: &str, now: Instant, ttl: Duration) -> Entry {
    Entry {
        value: value.to_owned(),
        expires: now + ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_if_absent_respects_expiry() {
        let m = MemoryStore::new(10);
        assert_eq!(m.set_if_absent("k", "a", Duration::from_secs(60)).ok(), Some(true));
        assert_eq!(m.set_if_absent("k", "b", Duration::from_secs(60)).ok(), Some(false));
        assert!(!m.remove_if("k", "b"));
        assert!(m.remove_if("k", "a"));
        assert_eq!(m.set_if_absent("k", "b", Duration::ZERO).ok(), Some(true));
        assert_eq!(m.set_if_absent("k", "c", Duration::from_secs(60)).ok(), Some(true));
    }

    #[test]
    fn full_map_drops_expired_entries_then_refuses() {
        let m = MemoryStore::new(2);
        m.put("a", "1", Duration::ZERO).expect("room");
        m.put("b", "1", Duration::from_secs(60)).expect("room");
        m.put("c", "1", Duration::from_secs(60)).expect("expired a makes room");
        assert!(matches!(
            m.put("d", "1", Duration::from_secs(60)),
            Err(StoreError::Full(2))
        ));
        assert_eq!(m.len(), 2);
        m.put("c", "2", Duration::from_secs(60))
            .expect("overwrite needs no room");
        assert_eq!(m.get("c").as_deref(), Some("2"));
    }

    #[test]
    fn budget_is_a_fixed_window() {
        let m = MemoryStore::new(1);
        let window = Duration::from_secs(60);
        assert!(m.budget_take("persona", 2, window).is_ok());
        assert!(m.budget_take("persona", 2, window).is_ok());
        let wait = m.budget_take("persona", 2, window).expect_err("spent");
        assert!(wait > Duration::from_secs(59) && wait <= window);
        assert!(m.budget_take("other", 2, window).is_ok());
        assert!(m.budget_take("quick", 1, Duration::ZERO).is_ok());
        assert!(m.budget_take("quick", 1, Duration::ZERO).is_ok());
    }
}
