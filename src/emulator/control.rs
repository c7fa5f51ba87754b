//! The `/_emulator` control API for tests and demos, and the state it steers: the call log, the
//! fault queue, the base latency, the emulator's clock, template versions and the record of
//! webhook deliveries. No API key, loopback callers only, plain JSON in and out.

use std::collections::VecDeque;
use std::time::Duration;

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Shared;
use super::clock::{self, SECOND};
use super::inquiries;
use super::lifecycle::{Action, Effects};
use super::webhooks::Delivery;

/// Bounds the logs so a long benchmark cannot grow them without limit.
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

/// What can go wrong with the next matching `/api/v1` calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Fault {
    /// Answer with this status and a Persona-style error body, without processing. Like any
    /// answer it is stored under the request's `Idempotency-Key` and replayed. With `lost`, the
    /// answer is stored but never arrives (the caller times out).
    Status {
        status: u16,
        #[serde(default)]
        lost: bool,
    },
    /// Process the request (an inquiry may be created), then answer with this status anyway,
    /// stored under the key like the status fault, and `lost` like it.
    ProcessThenStatus {
        status: u16,
        #[serde(default)]
        lost: bool,
    },
    /// Answer normally, this much later.
    Latency { ms: u64 },
    /// Never answer.
    Hang,
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Answer 429 with `RateLimit-*` headers (and `Retry-After` when given).
    RateLimit {
        #[serde(default = "default_reset")]
        reset: u64,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Process the request (storing its idempotent result), then never answer.
    ProcessThenHang,
}

fn default_reset() -> u64 {
    60
}

impl Fault {
    /// Persona answered (and stored the answer) but the answer never reached the caller.
    pub(super) fn loses_the_answer(&self) -> bool {
        matches!(
            self,
            Fault::ProcessThenHang | Fault::Status { lost: true, .. } | Fault::ProcessThenStatus { lost: true, .. }
        )
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Fault::Status { .. } => "status",
            Fault::ProcessThenStatus { .. } => "process_then_status",
            Fault::Latency { .. } => "latency",
            Fault::Hang => "hang",
            Fault::Malformed => "malformed",
            Fault::RateLimit { .. } => "rate_limit",
            Fault::ProcessThenHang => "process_then_hang",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
    method: Option<String>,
    path_contains: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug)]
struct FaultRule {
    fault: Fault,
    remaining: u32,
    method: Option<Method>,
    path_contains: Option<String>,
}

#[derive(Default)]
pub(super) struct ControlState {
    calls: VecDeque<CallRecord>,
    next_seq: u64,
    faults: Vec<FaultRule>,
    pub latency: Duration,
    deliveries: VecDeque<Delivery>,
}

impl ControlState {
    pub(super) fn new(latency: Duration) -> ControlState {
        ControlState {
            latency,
            ..ControlState::default()
        }
    }

    /// Takes one use of the first fault matching this call.
    pub(super) fn take_fault(&mut self, method: &Method, path: &str) -> Option<Fault> {
        let index = self.faults.iter().position(|rule| {
            rule.method.as_ref().is_none_or(|m| m == method)
                && rule.path_contains.as_deref().is_none_or(|p| path.contains(p))
        })?;
        let rule = self.faults.get_mut(index)?;
        let fault = rule.fault.clone();
        rule.remaining -= 1;
        if rule.remaining == 0 {
            self.faults.remove(index);
        }
        Some(fault)
    }

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
}

/// A control response: status and JSON body.
pub(super) type Reply = (StatusCode, Value);

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    (status, json!({ "error": message.into() }))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))
}

/// Serves one `/_emulator` request.
pub(super) async fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Reply {
    let segments: Vec<&str> = path.trim_matches('/').split('/').skip(1).collect();
    let result = match (method, segments.as_slice()) {
        (&Method::GET, ["calls"]) => Ok(calls(shared)),
        (&Method::DELETE, ["calls"]) => {
            shared.lock().control.calls.clear();
            Ok((StatusCode::OK, json!({ "cleared": true })))
        }
        (&Method::POST, ["faults"]) => add_fault(shared, body),
        (&Method::DELETE, ["faults"]) => {
            shared.lock().control.faults.clear();
            Ok((StatusCode::OK, json!({ "cleared": true })))
        }
        (&Method::PUT, ["latency"]) => set_latency(shared, body),
        (&Method::POST, ["clock"]) => advance_clock(shared, body),
        (&Method::POST, ["templates", id, "publish"]) => publish(shared, id),
        (&Method::POST, ["inquiries", id, "advance"]) => advance(shared, id, body),
        (&Method::POST, ["webhooks", "redeliver"]) => redeliver(shared, body).await,
        (&Method::GET, ["webhooks"]) => Ok(deliveries(shared)),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            format!("no control endpoint {method} {path}"),
        )),
    };
    result.unwrap_or_else(|reply| reply)
}

fn calls(shared: &Shared) -> Reply {
    let state = shared.lock();
    (StatusCode::OK, json!({ "calls": state.control.calls }))
}

fn deliveries(shared: &Shared) -> Reply {
    let state = shared.lock();
    (StatusCode::OK, json!({ "deliveries": state.control.deliveries }))
}

fn add_fault(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let request: FaultRequest = parse(body)?;
    if request.times == 0 {
        return Err(error(StatusCode::BAD_REQUEST, "times must be at least 1"));
    }
    if let Fault::Status { status, .. } | Fault::ProcessThenStatus { status, .. } = request.fault
        && StatusCode::from_u16(status).is_err()
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("{status} is not an HTTP status"),
        ));
    }
    let method = match request.method.as_deref() {
        None => None,
        Some(m @ ("GET" | "POST" | "DELETE")) => Method::from_bytes(m.as_bytes()).ok(),
        Some(other) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("method {other:?} is not GET, POST or DELETE"),
            ));
        }
    };
    shared.lock().control.faults.push(FaultRule {
        fault: request.fault,
        remaining: request.times,
        method,
        path_contains: request.path_contains,
    });
    Ok((StatusCode::CREATED, json!({ "queued": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyRequest {
    ms: u64,
}

fn set_latency(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let request: LatencyRequest = parse(body)?;
    shared.lock().control.latency = Duration::from_millis(request.ms);
    Ok((StatusCode::OK, json!({ "ms": request.ms })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    advance_seconds: u64,
}

/// Lets time pass on the emulator's clock: expiries come due (and are sent), rate-limit windows
/// and idempotency keys age. The clock never goes back.
fn advance_clock(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let request: ClockRequest = parse(body)?;
    shared.clock.advance(request.advance_seconds.saturating_mul(SECOND));
    shared.expiries_changed();
    Ok((StatusCode::OK, json!({ "now": clock::iso(shared.clock.now()) })))
}

/// Publishes a new version of a template, as editing it in Persona's dashboard does.
fn publish(shared: &Shared, id: &str) -> Result<Reply, Reply> {
    let version = shared
        .lock()
        .store
        .publish(id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no template {id}")))?;
    Ok((
        StatusCode::OK,
        json!({ "template": id, "latest_published_version": version }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    action: String,
    #[serde(default = "pass_by_default")]
    pass: bool,
}

fn pass_by_default() -> bool {
    true
}

/// Moves an inquiry as if its user (or a reviewer) acted; answers like the Persona API would.
fn advance(shared: &Shared, id: &str, body: &[u8]) -> Result<Reply, Reply> {
    let request: AdvanceRequest = parse(body)?;
    let action = Action::advanced(&request.action, request.pass)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("unknown action {:?}", request.action)))?;
    let (result, events) = {
        let mut state = shared.lock();
        let mut fx = Effects::new(
            shared.clock.now(),
            shared.settings.auto_approve,
            shared.settings.webhook_view,
        );
        let result = inquiries::act(
            &mut state.store,
            id,
            vec![action],
            &mut fx,
            shared.settings.webhook_view,
        );
        (result, state.store.commit_events(fx))
    };
    shared.publish(events);
    shared.expiries_changed();
    match result {
        Ok(inquiry) => Ok((StatusCode::OK, inquiry)),
        Err(e) => Err((e.status(), e.body())),
    }
}

/// Redeliveries are sent one after another while the control call waits; keep that short.
const MAX_REDELIVERIES: u32 = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeliverRequest {
    event_id: String,
    #[serde(default = "one")]
    times: u32,
    #[serde(default)]
    stale_seconds: Option<u64>,
}

/// Sends a past event again (a duplicate, or a replay with an old timestamp) and answers once
/// the deliveries are done, with their outcomes.
async fn redeliver(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let request: RedeliverRequest = parse(body)?;
    if !(1..=MAX_REDELIVERIES).contains(&request.times) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("times must be between 1 and {MAX_REDELIVERIES}"),
        ));
    }
    let webhooks = shared
        .webhooks
        .as_ref()
        .ok_or_else(|| error(StatusCode::CONFLICT, "no webhook_url is configured"))?;
    let event = shared
        .lock()
        .store
        .event(&request.event_id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no event {}", request.event_id)))?;
    let deliveries = webhooks
        .redeliver(&event, request.times, request.stale_seconds.unwrap_or(0))
        .await;
    let mut state = shared.lock();
    for delivery in &deliveries {
        state.control.record_delivery(delivery.clone());
    }
    Ok((StatusCode::OK, json!({ "deliveries": deliveries })))
}
