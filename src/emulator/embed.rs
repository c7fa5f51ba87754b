//! The browser side of the emulator: the stand-in for Persona's Embedded Flow script
//! (`embed.js`) and the small API its modal calls. Real Persona runs this flow inside its own
//! iframe; the access rules are Persona's: a `created` inquiry opens with its id alone, a
//! `pending` one needs a valid session token (else `409 unauthenticated`, as the SDK reports),
//! and an `expired` one must be resumed by the backend first.
//!
//! Served under `/embed/`; the gateway mounts it on its own origin in emulator mode, so the page
//! needs no CORS and loads nothing over plain HTTP.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::clock;
use super::inquiries;
use super::lifecycle::{Action, Effects};
use super::model::{Inquiry, Status};
use super::shared::Shared;

const SCRIPT: &str = include_str!("embed.js");
const SESSION_HEADER: &str = "persona-session-token";

pub(super) fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let token = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
    let segments: Vec<&str> = path.trim_start_matches("/embed/").split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["persona.js"]) => script(),
        (&Method::GET, ["inquiries", id]) => reply(view(shared, id, token)),
        (&Method::POST, ["inquiries", id, step @ ("government-id" | "selfie")]) => {
            let pass = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|b| b["pass"].as_bool())
                .unwrap_or(true);
            reply(submit(shared, id, step, pass, token))
        }
        _ => reply(Err(flow_error(StatusCode::NOT_FOUND, "unknown"))),
    }
}

type FlowResult = Result<Value, (StatusCode, Value)>;

fn flow_error(status: StatusCode, code: &str) -> (StatusCode, Value) {
    (status, json!({ "code": code }))
}

/// What the modal shows: status, the step to render, and the prefilled fields.
fn state(inquiry: &Inquiry, session_token: Option<String>) -> Value {
    let fields: serde_json::Map<String, Value> = inquiry
        .fields
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    json!({
        "id": inquiry.id,
        "status": inquiry.status.as_str(),
        "next_step": inquiry.next_step,
        "fields": fields,
        "session_token": session_token,
    })
}

/// Persona's rule for opening an inquiry in the flow.
fn authorize(inquiry: &Inquiry, token: Option<&str>, now: clock::Millis) -> Result<(), (StatusCode, Value)> {
    let valid = |t: &str| {
        inquiry
            .sessions
            .iter()
            .any(|s| s.token == t && s.token_expires_at > now)
    };
    if inquiry.redacted_at.is_some() {
        // Its data is gone; Persona's flow cannot show it any more.
        return Err(flow_error(StatusCode::CONFLICT, "inquiry_redacted"));
    }
    match inquiry.status {
        Status::Created => Ok(()),
        Status::Expired => Err(flow_error(StatusCode::CONFLICT, "unauthenticated")),
        _ if token.is_some_and(valid) => Ok(()),
        Status::Pending => Err(flow_error(StatusCode::CONFLICT, "unauthenticated")),
        // A finished inquiry only shows its outcome; nothing in it can change from the browser.
        _ => Ok(()),
    }
}

fn view(shared: &Shared, id: &str, token: Option<&str>) -> FlowResult {
    let mut state_lock = shared.lock();
    let mut fx = Effects::new(
        shared.clock.now(),
        shared.settings.auto_approve,
        shared.settings.webhook_view,
    );
    let inquiry = state_lock
        .store
        .inquiry(id, &mut fx)
        .map_err(|_| flow_error(StatusCode::NOT_FOUND, "not_found"))?;
    authorize(inquiry, token, fx.now)?;
    Ok(state(inquiry, None))
}

/// Submits one verification. The first submission on a `created` inquiry opens a session for
/// this browser and hands its token back, as Persona's client keeps one in session storage.
fn submit(shared: &Shared, id: &str, step: &str, pass: bool, token: Option<&str>) -> FlowResult {
    let action = match step {
        "government-id" => Action::SubmitGovernmentId { pass },
        _ => Action::SubmitSelfie { pass },
    };
    let (result, events) = {
        let mut guard = shared.lock();
        let state_ref = &mut *guard;
        let view = shared.settings.webhook_view;
        let mut fx = Effects::new(shared.clock.now(), shared.settings.auto_approve, view);
        let result = (|| {
            let inquiry = state_ref
                .store
                .inquiry(id, &mut fx)
                .map_err(|_| flow_error(StatusCode::NOT_FOUND, "not_found"))?;
            authorize(inquiry, token, fx.now)?;
            if !inquiry.status.is_open() {
                return Err(flow_error(StatusCode::CONFLICT, "inquiry_finished"));
            }
            let mut issued = None;
            if token.is_none() {
                let mut copy = inquiry.clone();
                issued = Some(
                    state_ref
                        .store
                        .session_token(&mut copy, fx.now)
                        .map_err(|_| flow_error(StatusCode::UNPROCESSABLE_ENTITY, "session_limit"))?,
                );
                state_ref.store.put(copy);
            }
            inquiries::act(&mut state_ref.store, id, vec![action], &mut fx, view)
                .map_err(|e| (e.status(), json!({ "code": "invalid_step", "detail": e.body() })))?;
            let inquiry = state_ref
                .store
                .inquiry(id, &mut fx)
                .map_err(|_| flow_error(StatusCode::NOT_FOUND, "not_found"))?;
            Ok(state(inquiry, issued))
        })();
        (result, state_ref.store.commit_events(fx))
    };
    shared.publish(events);
    shared.expiries_changed();
    result
}

fn reply(result: FlowResult) -> Response<Full<Bytes>> {
    let (status, value) = match result {
        Ok(value) => (StatusCode::OK, value),
        Err(e) => e,
    };
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn script() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(SCRIPT.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
