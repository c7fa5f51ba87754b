//! The get-or-create single-flight across replicas. In redis mode a user's round in a flow runs
//! under a short-lived lock in the store (set-if-absent with expiry, released only with its
//! owner's token), so two replicas never both look up "no inquiry yet" and create one each. A
//! replica that finds the lock taken waits for it and then runs its own round, whose lookup finds
//! what the holder made. Each flow has its own lock per user: rounds of different flows never
//! wait for each other.
//!
//! When the store cannot answer, `on_store_error = "allow"` runs the round without the lock but
//! [`Guard::Unlocked`]: it may hand out what the lookup finds (an inquiry, a resumed one) and must
//! not create one, since another replica may be creating one for the same user at that moment.
//! `scripts/chaos.sh` (case 1) found that an unlocked create made a second inquiry for 12 of 20
//! new users while Redis was down.
//!
//! In memory mode there is one process and `flight` already runs one round per user, so no lock
//! is built and nothing is paid per request.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::error::InquiryError;
use crate::config::OnStoreError;
use crate::store::{LockToken, Store};

/// How often a waiting replica asks for the lock again, give or take the jitter (so replicas
/// waiting on one user do not ask in step).
const POLL: Duration = Duration::from_millis(25);

pub struct ReplicaLock {
    store: Store,
    /// How long a lock lives if its holder never releases it (a crash); also how long a replica
    /// waits for one before giving up, since by then the holder's lock has expired.
    ttl: Duration,
    on_store_error: OnStoreError,
}

impl ReplicaLock {
    /// `None` unless the store is shared between replicas.
    pub fn new(store: &Store, ttl: Duration) -> Option<Self> {
        store.redis()?;
        Some(Self {
            store: store.clone(),
            ttl,
            on_store_error: store.on_store_error(),
        })
    }

    /// Runs `round` holding the lock `key` (one user's, in one flow: `store::user_key`), waiting
    /// for another replica's round to end first. The round is told whether it holds the lock
    /// (see [`Guard`]).
    ///
    /// # Errors
    /// The lock stayed taken for its whole ttl, or the store failed and `on_store_error = "deny"`;
    /// otherwise whatever `round` returns.
    pub async fn around<T, F, Fut>(&self, key: &str, round: F) -> Result<T, InquiryError>
    where
        F: FnOnce(Guard) -> Fut,
        Fut: Future<Output = Result<T, InquiryError>>,
    {
        let token = self.acquire(key).await?;
        let guard = match &token {
            Ok(_) => Guard::Exclusive,
            Err(e) => Guard::Unlocked(e.clone()),
        };
        let result = round(guard).await;
        if let Ok(token) = token {
            self.release(key, &token).await;
        }
        result
    }

    /// `Err` (the store's error) when the store failed and errors are allowed: the round then
    /// runs unlocked.
    async fn acquire(&self, key: &str) -> Result<Result<LockToken, String>, InquiryError> {
        let give_up = Instant::now() + self.ttl;
        loop {
            match self.store.lock(key, self.ttl).await {
                Ok(Some(token)) => return Ok(Ok(token)),
                Ok(None) if Instant::now() < give_up => tokio::time::sleep(jittered(POLL)).await,
                Ok(None) => return Err(InquiryError::LockBusy(self.ttl)),
                Err(e) => {
                    return match self.on_store_error {
                        OnStoreError::Allow => {
                            tracing::warn!(error = %e, "get-or-create runs without the cross-replica lock; it will not create");
                            Ok(Err(e.to_string()))
                        }
                        OnStoreError::Deny => Err(InquiryError::LockUnavailable(e.to_string())),
                    };
                }
            }
        }
    }

    /// A lock that cannot be released expires by itself; only the delay is lost.
    async fn release(&self, key: &str, token: &LockToken) {
        match self.store.unlock(key, token).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the get-or-create lock expired before its round ended"),
            Err(e) => tracing::warn!(error = %e, "could not release the get-or-create lock; it will expire"),
        }
    }
}

/// What a round may do, by whether it holds the user's lock.
#[derive(Debug, Clone)]
pub enum Guard {
    /// No other replica runs a round for this user now (or there is no other replica): the
    /// round may create.
    Exclusive,
    /// The store could not be asked (its error): another replica may be creating an inquiry for
    /// this user right now, so this round must not.
    Unlocked(String),
}

impl Guard {
    /// # Errors
    /// `LockUnavailable` when the round does not hold the lock.
    pub fn may_create(&self) -> Result<(), InquiryError> {
        match self {
            Guard::Exclusive => Ok(()),
            Guard::Unlocked(e) => Err(InquiryError::LockUnavailable(e.clone())),
        }
    }
}

/// `base` ± 40%.
fn jittered(base: Duration) -> Duration {
    let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    let spread = millis * 2 / 5;
    Duration::from_millis(rand::random_range(millis - spread..=millis + spread))
}
