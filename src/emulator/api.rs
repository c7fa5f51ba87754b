//! The `/api/v1` pipeline, in the order Persona applies it: injected latency and faults (they
//! stand for the network and Persona's servers), then the API key, then the idempotency layer
//! (401s are never stored), then version and inflection checks, the endpoint itself, and the call
//! log. Everything between the key check and the stored response runs under one lock, so a
//! replayed `Idempotency-Key` can never race its first request.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::clock;
use super::control::{CallRecord, Fault, RATE_LIMIT};
use super::error::{self, ApiError};
use super::inflect::{self, Inflection};
use super::inquiries::{self, ApiRequest};
use super::lifecycle::Effects;
use super::store::Store;
use super::webhooks::Event;
use super::{Received, Settings, Shared};

/// The `Persona-Version` values Persona's API reference lists.
const VERSIONS: [&str; 8] = [
    "2025-12-08",
    "2025-10-27",
    "2023-01-05",
    "2022-09-01",
    "2021-08-18",
    "2021-07-05",
    "2021-02-21",
    "2020-05-18",
];

/// What the emulator answers, before the common headers are added.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    /// Set by a `rate_limit` fault: the window is spent and resets in `reset` seconds.
    pub exhausted: Option<(u64, Option<u64>)>,
}

impl Answer {
    pub(super) fn json(status: StatusCode, value: &Value) -> Answer {
        Answer {
            status,
            body: Bytes::from(value.to_string()),
            exhausted: None,
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn authorized(headers: &HeaderMap, settings: &Settings) -> bool {
    let Some(token) = header(headers, "authorization").and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    aws_lc_rs::constant_time::verify_slices_are_equal(token.as_bytes(), settings.api_key.expose().as_bytes()).is_ok()
}

/// Decoded `key=value` pairs; `+` is a space, as in forms.
pub(super) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// Serves one `/api/v1` call.
pub(super) async fn serve(shared: &Shared, req: &Received) -> Option<Answer> {
    let (latency, fault) = {
        let mut state = shared.lock();
        (state.control.latency, state.control.take_fault(&req.method, &req.path))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut record = record(shared, req, fault.as_ref());
    let (answer, events) = match fault {
        None => process(shared, req),
        Some(Fault::Latency { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            process(shared, req)
        }
        Some(Fault::Status { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (Answer::json(status, &error::status_body(status)), Vec::new())
        }
        Some(Fault::Malformed) => {
            // Cut off mid-document, as a dropped proxy connection leaves it.
            let answer = Answer {
                status: StatusCode::OK,
                body: Bytes::from_static(b"{\"data\":[{\"type\":\"inquiry\",\"id\":\"inq_"),
                exhausted: None,
            };
            (answer, Vec::new())
        }
        Some(Fault::RateLimit { reset, retry_after }) => {
            let mut answer = Answer::json(StatusCode::TOO_MANY_REQUESTS, &error::rate_limited_body(RATE_LIMIT));
            answer.exhausted = Some((reset, retry_after));
            (answer, Vec::new())
        }
        Some(Fault::Hang) => {
            shared.lock().control.log_call(record);
            return None;
        }
        Some(Fault::ProcessThenHang) => {
            let (answer, events) = process(shared, req);
            record.status = Some(answer.status.as_u16());
            shared.lock().control.log_call(record);
            shared.publish(events);
            return None;
        }
    };
    record.status = Some(answer.status.as_u16());
    shared.lock().control.log_call(record);
    shared.publish(events);
    Some(answer)
}

fn record(shared: &Shared, req: &Received, fault: Option<&Fault>) -> CallRecord {
    let query = req.query.as_deref().map(|q| {
        query_pairs(Some(q))
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    });
    CallRecord {
        seq: 0,
        method: req.method.to_string(),
        path: req.path.clone(),
        query,
        status: None,
        idempotency_key: header(&req.headers, "idempotency-key").map(str::to_owned),
        persona_version: header(&req.headers, "persona-version").map(str::to_owned),
        authorized: authorized(&req.headers, &shared.settings),
        body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
        fault: fault.map(Fault::name),
    }
}

/// Runs the call for real: key, idempotency, endpoint, under the lock.
fn process(shared: &Shared, req: &Received) -> (Answer, Vec<Event>) {
    let settings = &shared.settings;
    if !authorized(&req.headers, settings) {
        let e = ApiError::Unauthenticated;
        return (Answer::json(e.status(), &e.body()), Vec::new());
    }
    let now = clock::now();
    let key = header(&req.headers, "idempotency-key").filter(|_| req.method == Method::POST);
    let fingerprint = fingerprint(req);
    let mut state = shared.lock();
    if let Some(key) = key {
        match state.store.replay(key, &fingerprint, now) {
            Ok(Some(stored)) => {
                let answer = Answer {
                    status: stored.status,
                    body: stored.body,
                    exhausted: None,
                };
                return (answer, Vec::new());
            }
            Ok(None) => {}
            Err(e) => return (Answer::json(e.status(), &e.body()), Vec::new()),
        }
    }
    let mut fx = Effects::new(now, settings.auto_approve);
    let (status, value) = endpoint(&mut state.store, settings, req, &mut fx).unwrap_or_else(|e| (e.status(), e.body()));
    let answer = Answer::json(status, &value);
    if let Some(key) = key {
        state
            .store
            .remember(key, fingerprint, answer.status, answer.body.clone(), now);
    }
    let events = state.store.commit_events(fx);
    (answer, events)
}

/// Identifies "the same request" for idempotency: method, path, query and body, with the body
/// compared as JSON so that key order and spacing do not matter.
fn fingerprint(req: &Received) -> String {
    let body = serde_json::from_slice::<Value>(&req.body)
        .map(|v| inflect::normalize(v).to_string())
        .unwrap_or_else(|_| String::from_utf8_lossy(&req.body).into_owned());
    format!(
        "{} {}?{} {body}",
        req.method,
        req.path,
        req.query.as_deref().unwrap_or_default()
    )
}

fn endpoint(
    store: &mut Store,
    settings: &Settings,
    req: &Received,
    fx: &mut Effects,
) -> Result<(StatusCode, Value), ApiError> {
    if let Some(version) = header(&req.headers, "persona-version")
        && !VERSIONS.contains(&version)
    {
        return Err(ApiError::BadRequest(format!(
            "Persona-Version {version:?} is not a supported version ({})",
            VERSIONS.join(", ")
        )));
    }
    let inflection = Inflection::parse(header(&req.headers, "key-inflection"))?;
    let body = if req.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let value: Value = serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
        Some(inflect::normalize(value))
    };
    let segments = req
        .path
        .trim_start_matches("/api/v1")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let api = ApiRequest {
        method: &req.method,
        segments,
        query: query_pairs(req.query.as_deref()),
        body,
    };
    let (status, value) = inquiries::route(store, settings, &api, fx)?;
    Ok((status, inflection.apply(value)))
}
