//! The ledger: each user's latest inquiry status in each gated flow, one JSON value per user and
//! flow in the shared store (`store::user_key`), so every replica (and a restarted gateway, in
//! redis mode) sees what any of them learned. It is fed by verified webhooks, get-or-create answers
//! and Persona lookups; it never asks Persona itself. Only flows some gate rule requires are kept.
//!
//! A webhook belongs to the flow whose template its inquiry was created from
//! (`payload.data.relationships.inquiry-template`); an event of any other template, or of none,
//! touches no flow's record.
//!
//! Deliveries arrive late and out of order, so each record carries the instant its status held
//! (`as_of`) and an older record never replaces a newer one. The read-then-write is not atomic:
//! two writes racing within one store round trip may land in either order, and the next webhook
//! or recheck corrects it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::json;

use super::time::{self, Millis};
use crate::config::{FlowConfig, GateConfig};
use crate::store::{Store, StoreError};

/// What the gateway knows about one user's verification.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Record {
    /// `None`: Persona had no inquiry for the user when asked.
    pub inquiry_id: Option<String>,
    pub status: Option<String>,
    /// When the status held: the event's `created-at` for a webhook, the moment the question was
    /// asked for get-or-create and lookups. Orders records.
    pub as_of: Millis,
    /// When the gateway learned it; says how fresh it is.
    pub seen: Millis,
}

impl Record {
    /// What Persona or get-or-create said at `as_of`.
    pub fn observed(inquiry_id: Option<&str>, status: Option<&str>, as_of: Millis) -> Record {
        Record {
            inquiry_id: inquiry_id.map(str::to_owned),
            status: status.map(str::to_owned),
            as_of,
            seen: time::now(),
        }
    }

    /// Written by hand rather than by serde so that it cannot fail.
    fn to_json(&self) -> String {
        json!({
            "inquiry_id": self.inquiry_id,
            "status": self.status,
            "as_of": self.as_of,
            "seen": self.seen,
        })
        .to_string()
    }
}

/// Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    ttl: Duration,
    /// "No inquiry" is kept only until it would be rechecked anyway.
    negative_ttl: Duration,
    /// (template id, flow name) of every flow a gate rule requires.
    flows: Arc<[(String, String)]>,
}

impl Ledger {
    /// `None` when no path is gated: then nothing reads the ledger, and writing it would only
    /// fill the store.
    pub fn new(config: &GateConfig, flows: &[FlowConfig], store: &Store) -> Option<Ledger> {
        let gated = flows
            .iter()
            .filter(|f| config.gates_flow(&f.name))
            .map(|f| (f.template_id.clone(), f.name.clone()))
            .collect::<Vec<_>>();
        (!config.rules.is_empty()).then(|| Ledger {
            store: store.clone(),
            ttl: config.status_ttl,
            negative_ttl: config.recheck_after,
            flows: gated.into(),
        })
    }

    /// Whether `flow`'s statuses are kept (some gate rule requires it).
    pub fn keeps(&self, flow: &str) -> bool {
        self.flows.iter().any(|(_, name)| name == flow)
    }

    /// The gated flow whose inquiries are created from `template_id`.
    fn flow_of(&self, template_id: &str) -> Option<&str> {
        self.flows
            .iter()
            .find(|(template, _)| template == template_id)
            .map(|(_, flow)| flow.as_str())
    }

    /// A value that does not parse (written by another version, say) counts as unknown.
    ///
    /// # Errors
    /// The store cannot answer.
    pub async fn get(&self, flow: &str, user: &str) -> Result<Option<Record>, StoreError> {
        let Some(text) = self.store.get(&key(flow, user)).await? else {
            return Ok(None);
        };
        let record = serde_json::from_str(&text)
            .inspect_err(|e| tracing::warn!(error = %e, "unreadable verification record; treated as unknown"))
            .ok();
        Ok(record)
    }

    /// Stores `record` unless the ledger already holds a newer one, and returns the record now in
    /// force.
    ///
    /// # Errors
    /// The store cannot answer, or the memory store is full.
    pub async fn record(&self, flow: &str, user: &str, record: Record) -> Result<Record, StoreError> {
        if let Some(current) = self.get(flow, user).await?
            && current.as_of > record.as_of
        {
            return Ok(current);
        }
        let ttl = if record.inquiry_id.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        self.store.put(&key(flow, user), &record.to_json(), ttl).await?;
        Ok(record)
    }

    /// Records a get-or-create answer or a read of `flow`, if the ledger keeps that flow.
    /// Failures are logged, not returned: the answer stands, and the gate rechecks with Persona a
    /// status it holds for too long.
    pub async fn observe(&self, flow: &str, user: &str, inquiry_id: &str, status: &str, asked: SystemTime) {
        if !self.keeps(flow) {
            return;
        }
        let record = Record::observed(Some(inquiry_id), Some(status), time::millis(asked));
        if let Err(e) = self.record(flow, user, record).await {
            tracing::warn!(error = %e, "could not record the inquiry status for the verification gate");
        }
    }

    /// Records a verified webhook's inquiry status under the flow of its template; reports of a
    /// template no gated flow has are skipped.
    pub async fn observe_event(&self, event: &EventReport<'_>) {
        let (user, inquiry_id, status) = (event.user, event.inquiry_id, event.status);
        let Some(flow) = event.template_id.and_then(|t| self.flow_of(t)) else {
            tracing::debug!(
                event_id = event.event_id,
                template = event.template_id.unwrap_or("-"),
                "webhook event of no gated flow's template; no status recorded"
            );
            return;
        };
        let as_of = event.created_at.and_then(time::parse_rfc3339).unwrap_or_else(|| {
            tracing::debug!(
                event_id = event.event_id,
                "webhook event without a readable created-at; using now"
            );
            time::now()
        });
        let record = Record::observed(Some(inquiry_id), Some(status), as_of);
        match self.record(flow, user, record).await {
            Ok(kept) if kept.as_of > as_of => {
                tracing::debug!(
                    event_id = event.event_id,
                    "webhook event older than the recorded status; ignored"
                );
            }
            Ok(_) => tracing::debug!(event_id = event.event_id, flow, status = %status, "inquiry status recorded"),
            Err(e) => tracing::warn!(
                event_id = event.event_id,
                error = %e,
                "could not record the webhook's inquiry status; the gate will recheck with Persona"
            ),
        }
    }
}

/// What a verified webhook says of a user's inquiry, in the ledger's terms (the webhook module
/// reads it out of the event).
#[derive(Debug, Clone, Copy)]
pub struct EventReport<'a> {
    pub event_id: &'a str,
    pub user: &'a str,
    pub inquiry_id: &'a str,
    pub status: &'a str,
    /// The inquiry's template, which names its flow.
    pub template_id: Option<&'a str>,
    /// When Persona created the event; deliveries arrive out of order.
    pub created_at: Option<&'a str>,
}

fn key(flow: &str, user: &str) -> String {
    crate::store::user_key("verification", flow, user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn ledger() -> Ledger {
        Ledger {
            store: Store::Memory(MemoryStore::new(100)),
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            flows: vec![
                ("itmpl_kyc".to_owned(), "default".to_owned()),
                ("itmpl_payout".to_owned(), "payout".to_owned()),
            ]
            .into(),
        }
    }

    #[tokio::test]
    async fn an_older_record_never_replaces_a_newer_one() {
        let ledger = ledger();
        let approved = Record::observed(Some("inq_1"), Some("approved"), 2_000);
        ledger.record("default", "u", approved.clone()).await.expect("record");
        let late = Record::observed(Some("inq_1"), Some("pending"), 1_000);
        assert_eq!(ledger.record("default", "u", late).await.expect("record"), approved);
        assert_eq!(ledger.get("default", "u").await.expect("get"), Some(approved));
        let newer = Record::observed(Some("inq_2"), Some("created"), 3_000);
        ledger.record("default", "u", newer.clone()).await.expect("record");
        assert_eq!(ledger.get("default", "u").await.expect("get"), Some(newer));
        assert_eq!(ledger.get("default", "someone-else").await.expect("get"), None);
    }

    fn event<'a>(template: Option<&'a str>, status: &'a str) -> EventReport<'a> {
        EventReport {
            event_id: "evt_1",
            user: "u",
            inquiry_id: "inq_9",
            status,
            template_id: template,
            created_at: Some("2024-02-15T23:48:17.732Z"),
        }
    }

    #[tokio::test]
    async fn events_are_recorded_under_the_flow_of_their_template_only() {
        let ledger = ledger();
        ledger.observe_event(&event(Some("itmpl_payout"), "approved")).await;
        let payout = ledger.get("payout", "u").await.expect("get").expect("recorded");
        assert_eq!(payout.status.as_deref(), Some("approved"));
        assert_eq!(
            ledger.get("default", "u").await.expect("get"),
            None,
            "another flow's status"
        );

        ledger.observe_event(&event(Some("itmpl_other"), "declined")).await;
        ledger.observe_event(&event(None, "failed")).await;
        assert_eq!(ledger.get("default", "u").await.expect("get"), None);
        let payout = ledger.get("payout", "u").await.expect("get").expect("recorded");
        assert_eq!(
            payout.status.as_deref(),
            Some("approved"),
            "untouched by other templates"
        );
    }
}
