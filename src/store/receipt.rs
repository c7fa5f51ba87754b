//! What the store hands out and later takes back: the token of a held lock, and the receipt for
//! budget units, each redeemable only by its holder.

use std::time::Duration;

/// Proof of holding a lock; only its holder can release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(String);

impl LockToken {
    pub(super) fn new() -> Self {
        LockToken(format!("{:032x}", rand::random::<u128>()))
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Units taken from one window of a budget; the receipt [`Store::budget_refund`](super::Store::budget_refund) needs to give
/// unspent ones back to that window and no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetGrant {
    /// Milliseconds since the epoch divided by the window length: the same number on every
    /// replica, and part of the counter's key in Redis.
    pub(super) window: u64,
    /// How long the window still had to run when the units were taken.
    pub(super) remaining: Duration,
    /// Counted in this process: the memory backend, or Redis's fallback while Redis was down.
    pub(super) local: bool,
}

impl BudgetGrant {
    pub fn window(&self) -> u64 {
        self.window
    }

    pub fn remaining(&self) -> Duration {
        self.remaining
    }
}
