//! One webhook event as Persona shapes it. The body is built once, when the status change
//! happens, so every delivery of an event (retries and redeliveries included) carries the same
//! bytes. The store keeps events for redelivery and `webhooks` sends them; this file knows
//! neither.

use bytes::Bytes;
use serde_json::{Value, json};

use super::clock::{self, Millis};
use super::ids::new_id;

/// One event, with the exact body every delivery of it sends.
#[derive(Debug, Clone)]
pub(super) struct Event {
    pub id: String,
    pub name: &'static str,
    pub inquiry_id: String,
    pub body: Bytes,
}

impl Event {
    /// The event for an inquiry snapshot, shaped like Persona's (§5 of persona-api.md).
    pub(super) fn new(name: &'static str, inquiry: Value, now: Millis) -> Event {
        let id = new_id("evt_");
        let inquiry_id = inquiry["id"].as_str().unwrap_or_default().to_owned();
        let body = json!({ "data": {
            "type": "event",
            "id": id,
            "attributes": {
                "name": name,
                "payload": { "data": inquiry, "included": [] },
                "created-at": clock::iso(now),
            },
        } });
        Event {
            id,
            name,
            inquiry_id,
            body: Bytes::from(body.to_string()),
        }
    }
}
