//! Remembering which events were already forwarded, so a duplicate delivery is acknowledged
//! without reaching the app twice. [`Dedupe`] is the seam: [`MemoryDedupe`] serves one replica;
//! [`StoreDedupe`] keeps the ids in the shared store (Redis `SET NX PX` / `DEL`) so that replicas
//! agree.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::Store;

/// Boxed so the trait can be used as `Arc<dyn Dedupe>`, whichever store backs it.
pub type DedupeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DedupeError>> + Send + 'a>>;

/// The store behind de-duplication could not answer; the delivery is refused with a 5xx so
/// Persona retries it later, rather than risking a second forward.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DedupeError(pub String);

pub trait Dedupe: Send + Sync {
    /// True the first time `event_id` is seen while it is remembered, false afterwards. Marking
    /// and checking are one step, so two concurrent deliveries of one event cannot both win.
    fn first_time<'a>(&'a self, event_id: &'a str) -> DedupeFuture<'a, bool>;

    /// Makes `event_id` new again, so Persona's retry of a delivery the app failed is forwarded.
    fn forget<'a>(&'a self, event_id: &'a str) -> DedupeFuture<'a, ()>;
}

/// Event ids seen in the last `ttl`, at most `capacity` of them. When full, the oldest id is
/// dropped early: memory stays bounded, and the cost is that a very late duplicate of that one
/// event could be forwarded again (the app should tolerate that anyway, Persona promises no
/// exactly-once).
pub struct MemoryDedupe {
    ttl: Duration,
    capacity: usize,
    // A std mutex: every critical section is a few map operations and never awaits.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Event id -> the sequence number of its entry in `order`.
    seen: HashMap<String, u64>,
    /// Insertion order. All entries share one ttl, so the front is always the next to expire.
    /// An entry whose id was forgotten (or re-inserted later) is skipped when it reaches the
    /// front: its sequence number no longer matches `seen`.
    order: VecDeque<Entry>,
    next_seq: u64,
}

struct Entry {
    id: String,
    at: Instant,
    seq: u64,
}

impl MemoryDedupe {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn mark(&self, event_id: &str) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state
            .order
            .front()
            .is_some_and(|e| now.duration_since(e.at) >= self.ttl)
        {
            state.pop_front();
        }
        if state.seen.contains_key(event_id) {
            return false;
        }
        while state.order.len() >= self.capacity {
            state.pop_front();
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.seen.insert(event_id.to_owned(), seq);
        state.order.push_back(Entry {
            id: event_id.to_owned(),
            at: now,
            seq,
        });
        true
    }

    fn unmark(&self, event_id: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.seen.remove(event_id);
    }
}

impl State {
    fn pop_front(&mut self) {
        if let Some(entry) = self.order.pop_front()
            && self.seen.get(&entry.id) == Some(&entry.seq)
        {
            self.seen.remove(&entry.id);
        }
    }
}

impl Dedupe for MemoryDedupe {
    fn first_time<'a>(&'a self, event_id: &'a str) -> DedupeFuture<'a, bool> {
        Box::pin(async move { Ok(self.mark(event_id)) })
    }

    fn forget<'a>(&'a self, event_id: &'a str) -> DedupeFuture<'a, ()> {
        Box::pin(async move {
            self.unmark(event_id);
            Ok(())
        })
    }
}

/// Event ids in the shared store, so a delivery seen by one replica is a duplicate on every
/// other. A store failure is a [`DedupeError`] whatever `store.on_store_error` says: Persona
/// retries a refused delivery, while a forwarded duplicate cannot be taken back.
pub struct StoreDedupe {
    store: Store,
    ttl: Duration,
}

impl StoreDedupe {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self { store, ttl }
    }
}

fn store_key(event_id: &str) -> String {
    format!("webhook:evt:{event_id}")
}

impl Dedupe for StoreDedupe {
    fn first_time<'a>(&'a self, event_id: &'a str) -> DedupeFuture<'a, bool> {
        Box::pin(async move {
            self.store
                .once(&store_key(event_id), self.ttl)
                .await
                .map_err(|e| DedupeError(e.to_string()))
        })
    }

    fn forget<'a>(&'a self, event_id: &'a str) -> DedupeFuture<'a, ()> {
        Box::pin(async move {
            self.store
                .forget(&store_key(event_id))
                .await
                .map_err(|e| DedupeError(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn first(d: &MemoryDedupe, id: &str) -> bool {
        d.first_time(id).await.expect("memory never fails")
    }

    #[tokio::test]
    async fn an_id_is_new_once() {
        let d = MemoryDedupe::new(10, Duration::from_secs(60));
        assert!(first(&d, "evt_1").await);
        assert!(!first(&d, "evt_1").await);
        assert!(!first(&d, "evt_1").await);
        assert!(first(&d, "evt_2").await);
    }

    #[tokio::test]
    async fn forgetting_makes_it_new_again() {
        let d = MemoryDedupe::new(10, Duration::from_secs(60));
        assert!(first(&d, "evt_1").await);
        d.forget("evt_1").await.expect("forget");
        assert!(first(&d, "evt_1").await);
        assert!(!first(&d, "evt_1").await);
    }

    #[tokio::test(start_paused = true)]
    async fn ids_expire_after_the_ttl() {
        let d = MemoryDedupe::new(10, Duration::from_secs(60));
        assert!(first(&d, "evt_1").await);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!first(&d, "evt_1").await);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(first(&d, "evt_1").await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_and_remarked_id_keeps_its_new_ttl() {
        let d = MemoryDedupe::new(10, Duration::from_secs(60));
        assert!(first(&d, "evt_1").await);
        d.forget("evt_1").await.expect("forget");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(first(&d, "evt_1").await);
        // The first entry expires here; it must not take the second one with it.
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!first(&d, "evt_1").await);
    }

    #[tokio::test]
    async fn the_store_dedupe_keeps_the_same_contract() {
        let d = StoreDedupe::new(
            Store::Memory(crate::store::MemoryStore::new(10)),
            Duration::from_secs(60),
        );
        assert!(d.first_time("evt_1").await.expect("store"));
        assert!(!d.first_time("evt_1").await.expect("store"));
        d.forget("evt_1").await.expect("forget");
        assert!(d.first_time("evt_1").await.expect("store"));
        assert!(d.first_time("evt_2").await.expect("store"));
    }

    #[tokio::test]
    async fn capacity_drops_the_oldest() {
        let d = MemoryDedupe::new(2, Duration::from_secs(60));
        assert!(first(&d, "evt_1").await);
        assert!(first(&d, "evt_2").await);
        assert!(first(&d, "evt_3").await);
        assert!(!first(&d, "evt_3").await);
        assert!(!first(&d, "evt_2").await);
        assert!(first(&d, "evt_1").await);
        let state = d.state.lock().expect("lock");
        assert!(state.order.len() <= 2 && state.seen.len() <= 2);
    }
}
