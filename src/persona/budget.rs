//! The outbound budget (`rate_limit.persona_budget`) as the client spends it. Work that needs
//! several Persona calls (a get-or-create round) reserves one unit per planned call before the
//! first of them, so a round the budget admits is not starved halfway by the rounds behind it and
//! a refused round costs Persona nothing. Each planned call's first attempt spends a reserved
//! unit; a retry takes a fresh unit when it happens and gives up if there is none, so retry
//! headroom is never held back from other rounds for failures that rarely happen. Units not spent
//! go back to the window they came from.
//!
//! **Invariant:** every HTTP attempt is paid for by a unit counted in the window it is made in,
//! so Persona never sees more than the budget per window: a reserved unit whose window ended
//! before its call is void, and the call takes a fresh one instead.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::BudgetConfig;
use crate::store::{BudgetGrant, Store};

/// The store's name for the outbound budget; one per deployment, since Persona limits per key.
const NAME: &str = "persona";

/// The budget and the store that counts it (shared by replicas in redis mode).
#[derive(Clone)]
pub(super) struct Budget {
    store: Store,
    config: BudgetConfig,
}

/// Units reserved for planned calls and not spent yet.
#[derive(Debug, Default)]
pub(super) struct Held {
    units: u32,
    grant: Option<BudgetGrant>,
    /// When the grant's window ends, on this process's clock.
    until: Option<Instant>,
}

impl Budget {
    pub(super) fn new(store: Store, config: BudgetConfig) -> Self {
        Self { store, config }
    }

    /// Reserves `units` at once, or nothing. `Err` is the wait until the window ends.
    pub(super) async fn reserve(&self, units: u32) -> Result<Held, Duration> {
        let grant = self.take(units).await?;
        Ok(Held {
            units,
            until: Some(Instant::now() + grant.remaining()),
            grant: Some(grant),
        })
    }

    /// Pays for one attempt: a first attempt with a reserved unit if one is still valid, a retry
    /// (or a call nobody reserved for) with a fresh unit. `Err` is the wait until the window ends.
    pub(super) async fn pay(&self, held: &mut Held, retry: bool) -> Result<(), Duration> {
        if !retry && held.spend_one() {
            return Ok(());
        }
        self.take(1).await.map(drop)
    }

    /// Gives unspent units back to their window. A refund that fails leaves them spent until the
    /// window ends: the budget then errs on the side of calling Persona less, never more.
    pub(super) async fn refund(&self, held: Held) {
        let Some(grant) = held.grant else { return };
        if held.units == 0 || held.expired() {
            return;
        }
        if let Err(e) = self.store.budget_refund(NAME, &grant, held.units).await {
            tracing::debug!(error = %e, units = held.units, "could not refund Persona budget units");
        }
    }

    async fn take(&self, units: u32) -> Result<BudgetGrant, Duration> {
        let BudgetConfig { requests, window } = self.config;
        self.store.budget_take(NAME, units, requests, window).await
    }
}

impl Held {
    /// Spends one reserved unit; false when none is left or their window has ended.
    fn spend_one(&mut self) -> bool {
        if self.expired() {
            self.units = 0;
        }
        if self.units == 0 {
            return false;
        }
        self.units -= 1;
        true
    }

    fn expired(&self) -> bool {
        self.until.is_some_and(|until| Instant::now() >= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn budget(requests: u32) -> Budget {
        let config = BudgetConfig {
            requests,
            window: Duration::from_secs(3600),
        };
        Budget::new(Store::Memory(MemoryStore::new(1)), config)
    }

    #[tokio::test]
    async fn reserved_units_pay_first_attempts_and_the_rest_is_refunded() {
        let b = budget(4);
        let mut held = b.reserve(3).await.expect("fits");
        assert!(b.reserve(2).await.is_err(), "3 of 4 are held");
        assert!(b.pay(&mut held, false).await.is_ok());
        b.refund(held).await;
        let mut again = b.reserve(3).await.expect("2 refunded, 1 never taken");
        assert!(b.pay(&mut again, false).await.is_ok());
        assert!(
            b.pay(&mut again, true).await.is_err(),
            "a retry takes a fresh unit, and none is left"
        );
        assert!(
            b.pay(&mut again, false).await.is_ok(),
            "the second planned call kept its unit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn units_of_an_ended_window_are_void() {
        let b = budget(4);
        let mut held = b.reserve(2).await.expect("fits");
        tokio::time::advance(Duration::from_secs(3601)).await;
        assert!(held.expired());
        assert!(!held.spend_one(), "its window is over");
        assert_eq!(held.units, 0);
        assert!(b.pay(&mut held, false).await.is_ok(), "paid with a fresh unit instead");
    }
}
