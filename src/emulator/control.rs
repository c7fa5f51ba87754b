//! The `/_emulator` control API for tests and demos: read and clear the call log (`journal`),
//! queue faults and set the base latency (`faults`), move the emulator's clock, publish template
//! versions, advance inquiries, list and redeliver webhook deliveries. No API key, loopback
//! callers only, plain JSON in and out. The state it steers lives in the files named; this one
//! only parses requests and answers them.

use std::time::Duration;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clock::{self, SECOND};
use super::faults::Fault;
use super::inquiries;
use super::lifecycle::{Action, Effects};
use super::shared::Shared;

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

/// A control response: status and JSON body.
type Reply = (StatusCode, Value);

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
            shared.lock().journal.clear_calls();
            Ok((StatusCode::OK, json!({ "cleared": true })))
        }
        (&Method::POST, ["faults"]) => add_fault(shared, body),
        (&Method::DELETE, ["faults"]) => {
            shared.lock().faults.clear();
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
    (StatusCode::OK, json!({ "calls": state.journal.calls() }))
}

fn deliveries(shared: &Shared) -> Reply {
    let state = shared.lock();
    (StatusCode::OK, json!({ "deliveries": state.journal.deliveries() }))
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
    shared
        .lock()
        .faults
        .push(request.fault, request.times, method, request.path_contains);
    Ok((StatusCode::CREATED, json!({ "queued": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyRequest {
    ms: u64,
}

fn set_latency(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let request: LatencyRequest = parse(body)?;
    shared.lock().faults.latency = Duration::from_millis(request.ms);
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
        state.journal.record_delivery(delivery.clone());
    }
    Ok((StatusCode::OK, json!({ "deliveries": deliveries })))
}
