//! The emulator's state and what every connection shares: the data behind the one mutex (store,
//! rate window, injected faults, logs), the settings, the clock, the expiry worker's wake-up and
//! the webhook outbox. Handlers reach everything through [`Shared`]; the workers that drain the
//! outbox and expire inquiries are started by `mod.rs`.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, mpsc};

use super::clock::Clock;
use super::event::Event;
use super::faults::Faults;
use super::journal::Journal;
use super::limiter::RateWindow;
use super::settings::Settings;
use super::store::Store;
use super::webhooks::Webhooks;
use crate::config::EmulatorConfig;

/// What requests change, all behind one lock so that a call's rate-limit count, idempotent
/// replay and stored answer happen as one step.
pub(super) struct State {
    pub store: Store,
    pub limiter: RateWindow,
    pub faults: Faults,
    pub journal: Journal,
}

/// Everything a connection needs. The state sits behind a std mutex: no code holds it across an
/// await, and every critical section is a few map operations.
pub(super) struct Shared {
    state: Mutex<State>,
    pub settings: Settings,
    pub clock: Clock,
    /// Wakes the expiry worker when an inquiry's expiry or the clock may have moved.
    pub expiry: Notify,
    pub webhooks: Option<Webhooks>,
    outbox: mpsc::UnboundedSender<Event>,
}

impl Shared {
    /// The state for `config`; published events go to `outbox`.
    ///
    /// # Errors
    /// The webhook HTTP client cannot be built.
    pub(super) fn new(config: &EmulatorConfig, outbox: mpsc::UnboundedSender<Event>) -> std::io::Result<Shared> {
        Ok(Shared {
            state: Mutex::new(State {
                store: Store::new(&config.templates),
                limiter: RateWindow::new(config.rate_limit),
                faults: Faults::new(config.latency),
                journal: Journal::default(),
            }),
            settings: Settings::new(config),
            clock: Clock::default(),
            expiry: Notify::new(),
            webhooks: Webhooks::new(config)?,
            outbox,
        })
    }

    /// A panic elsewhere cannot leave the maps half-written in a way that matters to an
    /// emulator, so a poisoned lock is simply taken over.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the expiry worker to look again.
    pub(super) fn expiries_changed(&self) {
        self.expiry.notify_one();
    }

    /// Queues events for delivery, if a webhook URL wants them.
    pub(super) fn publish(&self, events: Vec<Event>) {
        let Some(webhooks) = &self.webhooks else { return };
        for event in events.into_iter().filter(|e| webhooks.wants(e.name)) {
            // Fails only once the worker has stopped, i.e. during shutdown.
            let _ = self.outbox.send(event);
        }
    }
}
