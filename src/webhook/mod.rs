//! Persona webhooks, received: `POST <webhook.path>` is answered here instead of being proxied,
//! and is authenticated by its `Persona-Signature` instead of a JWT. A delivery passes, in order:
//!
//! 1. the signature header parses and one of its timestamps is within the tolerance (checked
//!    before the body is read, so a replayed or garbage delivery costs nothing);
//! 2. the body, read up to `max_body_bytes`, carries a valid HMAC under a configured secret;
//! 3. the body is a Persona event; names not configured are acknowledged and dropped;
//! 4. the event id is new ([`Dedupe`]); a duplicate is acknowledged and dropped;
//! 5. the app accepts the forwarded event. If it does not, Persona gets a 5xx and the id is
//!    forgotten, so Persona's retry is forwarded.
//!
//! The answer to Persona is 200 whenever nothing more should happen, and 5xx whenever Persona
//! should try again; every rejection is a 4xx and final.

mod dedupe;
mod error;
mod event;
mod forward;
mod signature;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::body::{Body, BoxError, collect_limited, json_response};
use crate::config::{EventFilter, UpstreamConfig, WebhookConfig};
use crate::trace_context::TraceContext;
use crate::verification::Ledger;

pub use dedupe::{Dedupe, MemoryDedupe, StoreDedupe};
pub use error::WebhookError;
pub use event::Event;
pub use forward::FORWARDED_HEADERS;
pub use signature::HEADER as SIGNATURE_HEADER;

use forward::Forwarder;
use signature::Signature;

/// Answers Persona's deliveries on one path.
pub struct Receiver {
    path: String,
    keys: Vec<hmac::Key>,
    tolerance: Duration,
    max_body_bytes: usize,
    events: EventFilter,
    dedupe: Arc<dyn Dedupe>,
    forwarder: Forwarder,
    /// Where verified inquiry statuses are recorded for the verification gate.
    ledger: Option<Ledger>,
}

impl Receiver {
    /// `ledger`, when paths are gated, records every verified event's inquiry status, whether
    /// or not the event is forwarded.
    pub fn new(
        config: &WebhookConfig,
        upstream: &UpstreamConfig,
        dedupe: Arc<dyn Dedupe>,
        ledger: Option<Ledger>,
    ) -> Self {
        let keys = config
            .secrets
            .iter()
            .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.expose().as_bytes()))
            .collect();
        Self {
            path: config.path.clone(),
            keys,
            tolerance: config.tolerance,
            max_body_bytes: config.max_body_bytes,
            events: config.events.clone(),
            dedupe,
            forwarder: Forwarder::new(upstream, &config.forward_path, config.forward_timeout),
            ledger,
        }
    }

    /// The gateway path this receiver owns, every method included.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The checks and the forward; `Ok` carries how the delivery was acknowledged
    /// (`forwarded`, `duplicate`, `ignored`), for [`acknowledge`] and the metrics.
    ///
    /// # Errors
    /// Every reason the delivery is not acknowledged: a method other than `POST`, a failed
    /// check (see the module doc), a body over the limit, or a failure Persona should retry.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        request_id: &str,
        trace: &TraceContext,
    ) -> Result<&'static str, WebhookError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if req.method() != Method::POST {
            return Err(WebhookError::MethodNotAllowed);
        }
        let signature = Signature::parse(req.headers().get(SIGNATURE_HEADER))?.fresh(unix_now(), self.tolerance)?;
        let body = collect_limited(req.into_body(), self.max_body_bytes).await?;
        signature.verify(&body, &self.keys)?;
        let event = Event::parse(&body)?;
        if let (Some(ledger), Some(report)) = (&self.ledger, event.report()) {
            ledger.observe_event(&report).await;
        }
        if !self.events.allows(&event.name) {
            tracing::debug!(
                event_id = event.id,
                event = event.name,
                "webhook event not configured; ignored"
            );
            return Ok("ignored");
        }
        if !self.dedupe.first_time(&event.id).await? {
            tracing::info!(
                event_id = event.id,
                event = event.name,
                "duplicate webhook delivery; not forwarded"
            );
            return Ok("duplicate");
        }
        if let Err(e) = self.forwarder.send(&event, body, request_id, trace).await {
            self.forget(&event.id).await;
            return Err(e);
        }
        tracing::info!(event_id = event.id, event = event.name, "webhook forwarded to the app");
        Ok("forwarded")
    }

    /// A failure to forget leaves Persona's retry looking like a duplicate; that is logged loudly
    /// because the event would then only reach the app through a manual redelivery.
    async fn forget(&self, event_id: &str) {
        if let Err(e) = self.dedupe.forget(event_id).await {
            tracing::error!(event_id, error = %e, "could not forget a failed webhook event; its retry will be dropped");
        }
    }
}

/// Persona's answer to an acknowledged delivery.
pub fn acknowledge(status: &'static str) -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "status": status }))
}

/// Before 1970 only on a broken clock; 0 then makes every signature stale, which is the safe side.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
