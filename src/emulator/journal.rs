//! What the control API lets tests read back: every `/api/v1` call as received and every webhook
//! delivery attempt, in order. Both logs are bounded, oldest entries dropped first, so a long
//! benchmark cannot grow them without limit.

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::Value;

use super::webhooks::Delivery;

/// Entries kept per log.
const MAX_LOGGED: usize = 10_000;

/// One `/api/v1` call as received. Never holds the `Authorization` value.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CallRecord {
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// Percent-decoded, so tests can match `filter[reference-id]=…` literally.
    pub query: Option<String>,
    /// Null when no response was sent (a hang).
    pub status: Option<u16>,
    pub idempotency_key: Option<String>,
    pub persona_version: Option<String>,
    pub key_inflection: Option<String>,
    pub authorized: bool,
    pub body: Value,
    /// The injected fault that shaped this call, if any.
    pub fault: Option<&'static str>,
}

#[derive(Default)]
pub(super) struct Journal {
    calls: VecDeque<CallRecord>,
    next_seq: u64,
    deliveries: VecDeque<Delivery>,
}

impl Journal {
    /// Logs a call and gives it the next sequence number.
    pub(super) fn log_call(&mut self, mut record: CallRecord) {
        self.next_seq += 1;
        record.seq = self.next_seq;
        if self.calls.len() == MAX_LOGGED {
            self.calls.pop_front();
        }
        self.calls.push_back(record);
    }

    pub(super) fn record_delivery(&mut self, delivery: Delivery) {
        if self.deliveries.len() == MAX_LOGGED {
            self.deliveries.pop_front();
        }
        self.deliveries.push_back(delivery);
    }

    pub(super) fn calls(&self) -> &VecDeque<CallRecord> {
        &self.calls
    }

    /// Forgets the calls logged so far; sequence numbers keep counting, so a test can still tell
    /// later calls from earlier ones.
    pub(super) fn clear_calls(&mut self) {
        self.calls.clear();
    }

    pub(super) fn deliveries(&self) -> &VecDeque<Delivery> {
        &self.deliveries
    }
}
