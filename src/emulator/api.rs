//! The `/api/v1` pipeline, in the order Persona applies it: injected latency and network faults
//! (they stand for the network), the API key (a 401 is neither counted nor stored), the rate
//! limit (a 429 is never stored, and a replay is counted like any request), the idempotency layer
//! (the first answer of a key is stored whatever it is, injected 5xx included, and replayed),
//! then version and inflection checks, the endpoint itself, and the call log. Everything from
//! the rate limit to the stored response runs under one lock, so a replayed `Idempotency-Key`
//! can never race its first request.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::error::{self, ApiError};
use super::event::Event;
use super::faults::Fault;
use super::inflect::{self, Inflection};
use super::inquiries::{self, ApiRequest};
use super::journal::CallRecord;
use super::lifecycle::Effects;
use super::limiter::RateHeaders;
use super::model::View;
use super::settings::Settings;
use super::shared::Shared;
use super::store::Store;
use crate::config::PUBLISHED_VERSIONS;

/// A request with its body read.
pub(super) struct Received {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the emulator answers, before the common headers are added.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    /// The `RateLimit-*` window this request was counted in; `None` for answers the limiter
    /// never saw (unauthenticated, or outside `/api/v1`).
    pub rate: Option<RateHeaders>,
    pub retry_after: Option<u64>,
}

impl Answer {
    pub(super) fn json(status: StatusCode, value: &Value) -> Answer {
        Answer {
            status,
            body: Bytes::from(value.to_string()),
            rate: None,
            retry_after: None,
        }
    }

    fn counted(mut self, rate: RateHeaders) -> Answer {
        self.rate = Some(rate);
        self
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
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
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

/// Serves one `/api/v1` call; `None` when a fault says it is never answered.
pub(super) async fn serve(shared: &Shared, req: &Received) -> Option<Answer> {
    let (latency, fault) = {
        let mut state = shared.lock();
        (state.faults.latency, state.faults.take(&req.method, &req.path))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut record = record(shared, req, fault.as_ref());
    match &fault {
        // Lost on the way: Persona never saw the request.
        Some(Fault::Hang) => {
            shared.lock().journal.log_call(record);
            return None;
        }
        Some(Fault::Latency { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        _ => {}
    }
    let (answer, events) = process(shared, req, fault.as_ref());
    record.status = Some(answer.status.as_u16());
    shared.lock().journal.log_call(record);
    shared.publish(events);
    if req.method != Method::GET {
        shared.expiries_changed();
    }
    // Persona did the work and stored the answer, but the answer never arrived.
    if fault.as_ref().is_some_and(Fault::loses_the_answer) {
        return None;
    }
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
        key_inflection: header(&req.headers, "key-inflection").map(str::to_owned),
        authorized: authorized(&req.headers, &shared.settings),
        body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
        fault: fault.map(Fault::name),
    }
}

/// Runs the call: key, rate limit, idempotency, endpoint (or the injected server fault).
fn process(shared: &Shared, req: &Received, fault: Option<&Fault>) -> (Answer, Vec<Event>) {
    let settings = &shared.settings;
    if !authorized(&req.headers, settings) {
        let e = ApiError::Unauthenticated;
        return (Answer::json(e.status(), &e.body()), Vec::new());
    }
    let now = shared.clock.now();
    let mut state = shared.lock();
    let rate = match state.limiter.admit(now) {
        Ok(rate) => rate,
        Err(spent) => return (rate_limited(spent, None), Vec::new()),
    };
    if let Some(Fault::RateLimit { reset, retry_after }) = fault {
        return (rate_limited(rate.exhausted(*reset), *retry_after), Vec::new());
    }
    let key = header(&req.headers, "idempotency-key").filter(|_| req.method == Method::POST);
    let fingerprint = fingerprint(req);
    if let Some(key) = key {
        match state.store.replay(key, &fingerprint, now) {
            Ok(Some(stored)) => {
                let answer = Answer {
                    status: stored.status,
                    body: stored.body,
                    rate: Some(rate),
                    retry_after: None,
                };
                return (answer, Vec::new());
            }
            Ok(None) => {}
            Err(e) => return (Answer::json(e.status(), &e.body()).counted(rate), Vec::new()),
        }
    }
    let mut fx = Effects::new(now, settings.auto_approve, settings.webhook_view);
    let answer = match fault {
        Some(Fault::Status { status, .. }) => server_error(*status),
        Some(Fault::ProcessThenStatus { status, .. }) => {
            // The work happens (an inquiry may be created); the answer is an error all the same.
            let _ = endpoint(&mut state.store, settings, req, &mut fx);
            server_error(*status)
        }
        Some(Fault::Malformed) => {
            // Cut off mid-document, as a dropped proxy connection leaves it: nothing ran, so
            // nothing is stored under the key either.
            let answer = Answer {
                status: StatusCode::OK,
                body: Bytes::from_static(b"{\"data\":[{\"type\":\"inquiry\",\"id\":\"inq_"),
                rate: Some(rate),
                retry_after: None,
            };
            return (answer, Vec::new());
        }
        _ => {
            let (status, value) =
                endpoint(&mut state.store, settings, req, &mut fx).unwrap_or_else(|e| (e.status(), e.body()));
            Answer::json(status, &value)
        }
    };
    if let Some(key) = key {
        state
            .store
            .remember(key, fingerprint, answer.status, answer.body.clone(), now);
    }
    let events = state.store.commit_events(fx);
    (answer.counted(rate), events)
}

fn server_error(status: u16) -> Answer {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Answer::json(status, &error::status_body(status))
}

fn rate_limited(window: RateHeaders, retry_after: Option<u64>) -> Answer {
    let mut answer = Answer::json(StatusCode::TOO_MANY_REQUESTS, &error::rate_limited_body(window.limit));
    answer.rate = Some(window);
    answer.retry_after = retry_after;
    answer
}

/// Identifies "the same request" for idempotency: method, path, query and body, with the body
/// compared as JSON so that key order, spacing and attribute-key inflection do not matter (field
/// keys do).
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
    let version = header(&req.headers, "persona-version").unwrap_or(settings.api_version.as_str());
    if !PUBLISHED_VERSIONS.contains(&version) {
        return Err(ApiError::BadRequest(format!(
            "Persona-Version {version:?} is not a supported version ({})",
            PUBLISHED_VERSIONS.join(", ")
        )));
    }
    let view = View::for_version(version);
    let inflection = Inflection::parse(header(&req.headers, "key-inflection"), settings.key_inflection)?;
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
        view,
    };
    let (status, value) = inquiries::route(store, settings, &api, fx)?;
    Ok((status, inflection.apply(value, view.verbatim_fields)))
}
