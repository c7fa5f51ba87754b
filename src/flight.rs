//! Per-key single-flight: while a round for a key is running, everyone else asking for that key
//! waits for it and gets its answer instead of starting their own.
//!
//! The round runs in its own task, so the leader's client hanging up does not cancel a Persona
//! call halfway (a create whose answer nobody waits for would be the duplicate we prevent).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tracing::Instrument;

pub struct Flights<T> {
    /// The metrics label of requests that join a running round.
    name: &'static str,
    /// A plain mutex: it is held only to look up or insert, never across an await.
    inflight: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Joins the round running for `key`, or starts one with `start`. `None` only if the round's
    /// task died without an answer (it panicked or the runtime is shutting down).
    pub async fn run<F, Fut>(self: &Arc<Self>, key: &str, start: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let mut answer = {
            let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            match inflight.get(key) {
                Some(running) => {
                    crate::metrics::single_flight_join(self.name);
                    running.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key.to_owned(), rx.clone());
                    let round = start();
                    let flights = Arc::clone(self);
                    let key = key.to_owned();
                    // The round is the leader's: its log lines carry the leader's trace id.
                    let round = round.instrument(tracing::Span::current());
                    tokio::spawn(async move {
                        let result = round.await;
                        // Removed before the answer is published: a request arriving after this
                        // point starts a fresh round and sees Persona's state after this one.
                        flights.finish(&key);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        match answer.wait_for(Option::is_some).await {
            Ok(result) => result.clone(),
            Err(_) => None,
        }
    }

    fn finish(&self, key: &str) {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_round() {
        let flights = Arc::new(Flights::<usize>::new("test"));
        let rounds = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let mut waiters = Vec::new();
        for _ in 0..50 {
            let (flights, rounds, released) = (flights.clone(), rounds.clone(), released.clone());
            waiters.push(tokio::spawn(async move {
                flights
                    .run("user", move || async move {
                        let n = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                        if let Some(rx) = released.lock().await.take() {
                            let _ = rx.await;
                        }
                        n
                    })
                    .await
            }));
        }
        tokio::task::yield_now().await;
        let _ = release.send(());
        for w in waiters {
            assert_eq!(w.await.expect("join"), Some(1));
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        // The next call after the round finished starts a new one.
        assert_eq!(flights.run("user", || async { 7 }).await, Some(7));
    }
}
