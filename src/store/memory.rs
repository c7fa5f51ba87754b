//! The in-process store: a bounded map of entries that expire, and fixed-window budget counters.
//! Expired entries are dropped lazily, when the map is full; a map still full after that refuses
//! new entries instead of growing without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::StoreError;
use super::receipt::BudgetGrant;

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

/// The current window of one budget: its number (see [`BudgetGrant`]) and the units taken in it.
struct Window {
    number: u64,
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

    /// Takes `units` at once from the current window of budget `name`, or none of them.
    pub(super) fn budget_take(
        &self,
        name: &str,
        units: u32,
        limit: u32,
        window: Duration,
    ) -> Result<BudgetGrant, Duration> {
        self.budget_take_at(name, units, limit, window, epoch_millis())
    }

    /// Gives `units` back to the window `grant` came from; nothing if that window is over.
    pub(super) fn budget_refund(&self, name: &str, grant: &BudgetGrant, units: u32) {
        let mut budgets = locked(&self.inner.budgets);
        if let Some(w) = budgets.get_mut(name)
            && w.number == grant.window
        {
            w.used = w.used.saturating_sub(units);
        }
    }

    /// [`Self::budget_take`] at `now` (milliseconds since the epoch), so tests can place calls on
    /// either side of a window boundary.
    fn budget_take_at(
        &self,
        name: &str,
        units: u32,
        limit: u32,
        window: Duration,
        now: u64,
    ) -> Result<BudgetGrant, Duration> {
        let length = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let number = now / length;
        let remaining = Duration::from_millis((number + 1) * length - now);
        let mut budgets = locked(&self.inner.budgets);
        let w = budgets.entry(name.to_owned()).or_insert(Window { number, used: 0 });
        // Only a later window starts afresh: a clock stepping back keeps counting in the current
        // one rather than handing out its budget a second time.
        if number > w.number {
            *w = Window { number, used: 0 };
        }
        if w.used.saturating_add(units) > limit {
            return Err(remaining);
        }
        w.used += units;
        Ok(BudgetGrant {
            window: w.number,
            remaining,
            local: true,
        })
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

/// Budget windows are numbered on the wall clock, like Persona's own (they reset on the minute),
/// and like the Redis backend, which numbers them on Redis's clock.
fn epoch_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

    const MINUTE: Duration = Duration::from_secs(60);
    /// A minute boundary (a multiple of 60 000 ms since the epoch).
    const T0: u64 = 1_700_000_040_000;

    #[test]
    fn budget_takes_several_units_or_none() {
        let m = MemoryStore::new(1);
        let grant = m.budget_take_at("persona", 2, 5, MINUTE, T0 + 1_000).expect("fits");
        assert_eq!(grant.window, T0 / 60_000);
        assert_eq!(grant.remaining, Duration::from_secs(59));
        assert!(m.budget_take_at("persona", 2, 5, MINUTE, T0 + 2_000).is_ok());
        let wait = m
            .budget_take_at("persona", 2, 5, MINUTE, T0 + 30_000)
            .expect_err("4 of 5 used, 2 do not fit");
        assert_eq!(wait, Duration::from_secs(30), "until the window ends");
        assert!(
            m.budget_take_at("persona", 1, 5, MINUTE, T0 + 30_000).is_ok(),
            "1 still fits"
        );
        assert!(m.budget_take_at("persona", 1, 5, MINUTE, T0 + 30_000).is_err());
        assert!(
            m.budget_take_at("other", 5, 5, MINUTE, T0).is_ok(),
            "budgets are separate"
        );
    }

    #[test]
    fn refunds_go_back_to_their_own_window_only() {
        let m = MemoryStore::new(1);
        let early = m.budget_take_at("persona", 4, 4, MINUTE, T0 + 59_999).expect("fits");
        m.budget_refund("persona", &early, 1);
        let again = m
            .budget_take_at("persona", 1, 4, MINUTE, T0 + 59_999)
            .expect("refunded");
        assert_eq!(again.window, early.window);
        // The next window starts full and a late refund from the old one does not add to it.
        let next = m
            .budget_take_at("persona", 4, 4, MINUTE, T0 + 60_000)
            .expect("new window");
        assert_eq!(next.window, early.window + 1);
        assert_eq!(next.remaining, MINUTE);
        m.budget_refund("persona", &early, 3);
        assert!(m.budget_take_at("persona", 1, 4, MINUTE, T0 + 60_001).is_err());
        // A refund never takes a window below zero.
        m.budget_refund("persona", &next, 10);
        assert!(m.budget_take_at("persona", 4, 4, MINUTE, T0 + 60_002).is_ok());
        assert!(m.budget_take_at("persona", 1, 4, MINUTE, T0 + 60_002).is_err());
    }

    #[test]
    fn a_clock_stepping_back_does_not_reopen_a_window() {
        let m = MemoryStore::new(1);
        assert!(m.budget_take_at("persona", 2, 2, MINUTE, T0 + 60_000).is_ok());
        assert!(m.budget_take_at("persona", 1, 2, MINUTE, T0 + 59_000).is_err());
    }
}
