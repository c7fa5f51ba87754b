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
use crate::error::GatewayError;
use crate::trace_context::TraceContext;
use crate::verification::Ledger;

pub use dedupe::{Dedupe, DedupeError, DedupeFuture, MemoryDedupe, StoreDedupe};
pub use event::Event;
pub use forward::FORWARDED_HEADERS;
pub use signature::HEADER as SIGNATURE_HEADER;

use forward::Forwarder;
use signature::Signature;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the Persona-Signature header is missing")]
    SignatureMissing,
    #[error("the Persona-Signature header is malformed: {0}")]
    SignatureMalformed(&'static str),
    #[error("no signature matches a configured webhook secret")]
    SignatureMismatch,
    #[error("the signature timestamp is not within {}s of now", .0.as_secs())]
    TimestampOutOfTolerance(Duration),
    #[error("the body is not a Persona event: {0}")]
    NotAnEvent(String),
    #[error("checking for duplicate deliveries failed: {0}")]
    DedupeUnavailable(#[from] DedupeError),
    #[error("forwarding the event to the app failed: {0}")]
    ForwardFailed(String),
    #[error("the app did not accept the event within {0:?}")]
    ForwardTimeout(Duration),
}

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
    pub fn new(config: &WebhookConfig, upstream: &UpstreamConfig, dedupe: Arc<dyn Dedupe>) -> Self {
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
            ledger: None,
        }
    }

    /// Records every verified event's inquiry status in `ledger`, whether or not it is forwarded.
    pub fn with_ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The gateway path this receiver owns, every method included.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// # Errors
    /// 405 for methods other than `POST`, 4xx for deliveries that fail a check (see the module
    /// doc), 413 for bodies over the limit, 5xx when Persona should retry.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        request_id: &str,
        trace: &TraceContext,
    ) -> Result<Response<Body>, GatewayError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let result = self.deliver(req, request_id, trace).await;
        crate::metrics::webhook(match &result {
            Ok(acknowledged) => acknowledged,
            Err(e) => failure_outcome(e),
        });
        result.map(acknowledge)
    }

    /// The checks and the forward; `Ok` carries how the delivery was acknowledged.
    async fn deliver<B>(
        &self,
        req: Request<B>,
        request_id: &str,
        trace: &TraceContext,
    ) -> Result<&'static str, GatewayError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if req.method() != Method::POST {
            return Err(GatewayError::MethodNotAllowed);
        }
        let signature = Signature::parse(req.headers().get(SIGNATURE_HEADER))?.fresh(unix_now(), self.tolerance)?;
        let body = collect_limited(req.into_body(), self.max_body_bytes).await?;
        signature.verify(&body, &self.keys)?;
        let event = Event::parse(&body)?;
        if let Some(ledger) = &self.ledger {
            ledger.observe_event(&event).await;
        }
        if !self.events.allows(&event.name) {
            tracing::debug!(
                event_id = event.id,
                event = event.name,
                "webhook event not configured; ignored"
            );
            return Ok("ignored");
        }
        if !self.dedupe.first_time(&event.id).await.map_err(WebhookError::from)? {
            tracing::info!(
                event_id = event.id,
                event = event.name,
                "duplicate webhook delivery; not forwarded"
            );
            return Ok("duplicate");
        }
        if let Err(e) = self.forwarder.send(&event, body, request_id, trace).await {
            self.forget(&event.id).await;
            return Err(e.into());
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

/// The metrics outcome of a delivery that was not acknowledged: a failed forward is one outcome
/// (Persona retries it), anything else is named by its stable error code.
fn failure_outcome(e: &GatewayError) -> &'static str {
    match e {
        GatewayError::Webhook(WebhookError::ForwardFailed(_) | WebhookError::ForwardTimeout(_)) => "forward_failed",
        GatewayError::Webhook(WebhookError::DedupeUnavailable(_)) => "dedupe_unavailable",
        e => e.code(),
    }
}

fn acknowledge(status: &'static str) -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "status": status }))
}

/// Before 1970 only on a broken clock; 0 then makes every signature stale, which is the safe side.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
