//! Inquiry expiry on the emulator's own clock, as Persona does it: an inquiry expires when its
//! `expires-at` comes, and `inquiry.expired` is sent then, whether or not anyone reads it. The
//! worker sleeps until the next inquiry is due; anything that may bring that moment closer (a
//! create, a start, a resume, the control API moving the clock) wakes it to look again.

use std::sync::Arc;
use std::time::Duration;

use super::lifecycle::Effects;
use super::shared::Shared;

/// Longest single sleep: bounds the harm of a wake-up that was somehow missed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Expires due inquiries and publishes their events. Runs until dropped.
pub(super) async fn worker(shared: Arc<Shared>) {
    loop {
        // Registered before looking, so a change made while we look is not missed.
        let woken = shared.expiry.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let next = expire_due(&shared);
        let now = shared.clock.now();
        let sleep = next.map_or(MAX_SLEEP, |due| {
            Duration::from_millis(due.saturating_sub(now)).min(MAX_SLEEP)
        });
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = woken => {}
        }
    }
}

/// One pass: expires what is due and returns when the next live inquiry will be.
fn expire_due(shared: &Shared) -> Option<u64> {
    let (events, next) = {
        let mut state = shared.lock();
        let mut fx = Effects::new(
            shared.clock.now(),
            shared.settings.auto_approve,
            shared.settings.webhook_view,
        );
        state.store.expire_due(&mut fx);
        let next = state.store.next_expiry();
        (state.store.commit_events(fx), next)
    };
    shared.publish(events);
    next
}
