//! The emulator's HTTP/1 server: the accept loop, each connection's settings, the body limit,
//! routing by prefix (`/api/v1` to `api`, `/_emulator` to `control` for loopback callers only,
//! `/embed` to `embed`), and the headers Persona puts on every response. It owns no state; what
//! a request changes lives behind [`Shared`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::api::{self, Answer, Received};
use super::error::{ApiError, status_body};
use super::ids::new_id;
use super::shared::Shared;
use super::{control, embed};
use crate::body::{CollectError, collect_limited};

/// Request bodies larger than this are refused; Persona's inquiry bodies are a few KiB.
const MAX_BODY: usize = 1024 * 1024;

/// Serves connections until `shutdown` resolves, then closes the open ones.
pub(super) async fn accept(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Nothing in an emulator is worth draining; hung calls would never finish anyway.
    connections.shutdown().await;
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, peer, req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, %peer, "emulator connection ended");
    }
}

async fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let is_api = under(&path, "/api/v1");
    let body = match collect_limited(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => {
            tracing::debug!(error = %e, "emulator refused a request body");
            let status = match e {
                CollectError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                CollectError::Read(_) => StatusCode::BAD_REQUEST,
            };
            return respond(Answer::json(status, &status_body(status)));
        }
    };
    if under(&path, "/_emulator") {
        if !peer.ip().is_loopback() {
            let answer = json!({ "error": "the control API only answers loopback callers" });
            return respond(Answer::json(StatusCode::FORBIDDEN, &answer));
        }
        let (status, value) = control::handle(shared, &parts.method, &path, &body).await;
        return respond(Answer::json(status, &value));
    }
    if under(&path, "/embed") {
        return embed::handle(shared, &parts.method, &path, &parts.headers, &body);
    }
    if !is_api {
        let e = ApiError::NoRoute(format!("{} {path}", parts.method));
        return respond(Answer::json(e.status(), &e.body()));
    }
    let received = Received {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
    };
    match api::serve(shared, &received).await {
        Some(answer) => respond(answer),
        // A hang fault: the caller waits until it gives up or the emulator shuts down.
        None => std::future::pending().await,
    }
}

fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Adds the headers Persona sends on every response.
fn respond(answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(answer.body));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    if let Ok(id) = HeaderValue::from_str(&new_id("req_")) {
        headers.insert(HeaderName::from_static("request-id"), id);
    }
    if let Some(seconds) = answer.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(window) = answer.rate {
        headers.insert(
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(window.limit),
        );
        headers.insert(
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from(window.remaining),
        );
        headers.insert(
            HeaderName::from_static("ratelimit-reset"),
            HeaderValue::from(window.reset),
        );
    }
    response
}
