//! The life of one request, in phases (the order is the design; each phase names its module):
//!
//! 1. request id: propagate a sane client `X-Request-Id` or make one; the W3C trace context
//!    (`trace_context`): the client's trace continued, or a new one, passed on to the app;
//!    the edge (`target`, `headers`): the path is rewritten to its canonical form, which every
//!    later phase and the app then read (or the request is refused as ambiguous: an ambiguous
//!    path, two `Host`s, an underscore header under `reject`);
//! 2. health: `/healthz` and `/readyz` answered here, never proxied, never authenticated;
//! 3. the webhook path (`webhook`): Persona's deliveries, authenticated by their signature;
//! 4. the embed mount (emulator mode only): the stand-in Embedded Flow, authorised like Persona's
//!    own by inquiry id and session token;
//! 5. admission ([`Gateway::admit`]): identity (`auth`; public paths skip it), then the rate limit
//!    (`ratelimit`: anonymous requests by address, authenticated ones by user or claim; 429, or
//!    503 if the store is down and denies) — before any work is spent on the request;
//! 6. gateway-owned routes: each flow's get-or-create (`inquiry`, which answers its CORS
//!    preflights before admission and its admission errors with CORS headers), the caller's own
//!    inquiries (`verification`), then the verification gate on gated paths (403
//!    `verification_required`, for every rule covering the path);
//! 7. `proxy` to the app;
//! 8. access log: one line, with the error code when there was one, and the request metrics
//!    (by route class, never by raw path).
//!
//! Errors from any phase are `GatewayError`s and become responses in `error.rs`; nothing here
//! returns `Err` to hyper, so a bad request can never tear down its connection without an answer.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use serde_json::json;
use tracing::Instrument;

use crate::auth::{Authenticator, Identity};
use crate::body::{Body, json_response};
use crate::config::{Config, OnStoreError};
use crate::connection::Connection;
#[cfg(feature = "emulator")]
use crate::embedded::EmbedMount;
use crate::error::{ErrorDetail, GatewayError};
use crate::headers::Underscores;
use crate::inquiry::InquiryRoute;
use crate::metrics::Route;
use crate::proxy::{Forward, Proxy};
use crate::ratelimit::{Allowed, RateLimiter, RequestFacts};
use crate::request_id::{REQUEST_ID, id_text, request_id};
use crate::store::Store;
use crate::trace_context::TraceContext;
use crate::verification::{ReadRoute, Verification};
use crate::webhook::Receiver;

/// Shared by every connection; holds the long-lived parts built from the config.
pub struct Gateway {
    config: Arc<Config>,
    auth: Authenticator,
    proxy: Proxy,
    ratelimit: RateLimiter,
    /// Reported by `/readyz`.
    store: Store,
    /// Without one, the webhook path is proxied like any other.
    webhook: Option<Receiver>,
    /// One per verification flow; empty without `[persona]`.
    inquiries: Vec<InquiryRoute>,
    /// Present when `[persona]` is configured: the scoped reads and, with gated paths, the gate.
    verification: Option<Verification>,
    /// The embedded emulator's browser flow on the gateway's own origin.
    #[cfg(feature = "emulator")]
    embed: Option<EmbedMount>,
}

/// Everything a [`Gateway`] is made of, each part already wired to the others it feeds (see
/// `pipeline`).
pub struct Parts {
    pub config: Arc<Config>,
    pub auth: Authenticator,
    pub proxy: Proxy,
    pub ratelimit: RateLimiter,
    pub store: Store,
    pub webhook: Option<Receiver>,
    pub inquiries: Vec<InquiryRoute>,
    pub verification: Option<Verification>,
    #[cfg(feature = "emulator")]
    pub embed: Option<EmbedMount>,
}

/// Filled in as the request moves through the phases, for the access log line.
#[derive(Default)]
struct Trace {
    user: Option<Arc<Identity>>,
    /// The metrics route class, set by dispatch before any work that can time out.
    route: Route,
}

impl Gateway {
    pub fn new(parts: Parts) -> Self {
        Self {
            config: parts.config,
            auth: parts.auth,
            proxy: parts.proxy,
            ratelimit: parts.ratelimit,
            store: parts.store,
            webhook: parts.webhook,
            inquiries: parts.inquiries,
            verification: parts.verification,
            #[cfg(feature = "emulator")]
            embed: parts.embed,
        }
    }

    /// Never fails: every error has become a response by the end. The `Result` is the shape of
    /// hyper's services, so the server hands this future to hyper as it is, without a wrapper
    /// that would hold the request a second time.
    ///
    /// The hot path's functions (this one, `route`, `Proxy::forward` and `send`) return `async
    /// move` blocks instead of being `async fn`s: an `async fn` keeps its parameters twice in its
    /// future (as passed, and moved into the body; rust-lang/rust#62958), a request (264 bytes)
    /// each time, and hyper and tokio copy a request's whole future several times over.
    #[expect(clippy::manual_async_fn, reason = "an async fn would store its parameters twice")]
    pub fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        conn: Connection,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> {
        async move {
            let started = Instant::now();
            let request_id = request_id(&req);
            let trace_context = TraceContext::of(req.headers());
            let method = req.method().clone();
            let edge = self.edge(&mut req);
            // Shares the request's buffer: the access log's path costs no copy.
            let uri = req.uri().clone();
            let mut trace = Trace::default();
            let deadline = started + self.config.limits.request_timeout;
            let result = match edge {
                Ok(()) => {
                    self.route(req, &conn, deadline, &request_id, &trace_context, &mut trace)
                        .await
                }
                Err(e) => Err(e),
            };
            let mut response = result.unwrap_or_else(GatewayError::into_response);
            access_log(
                id_text(&request_id),
                &trace_context,
                &method,
                uri.path(),
                &response,
                started,
                &trace,
            );
            response.headers_mut().insert(REQUEST_ID, request_id);
            Ok(response)
        }
    }

    /// The one reading of the request that every phase and the app share: the target rewritten
    /// to its canonical path (a canonical one, which is what clients send, is checked in one
    /// pass and left as it is), and what stacks would read in two ways refused.
    fn edge(&self, req: &mut Request<Incoming>) -> Result<(), GatewayError> {
        if let Cow::Owned(path) = self.config.paths.policy.canonical(req.uri().path())? {
            *req.uri_mut() = with_path(req.uri(), &path)?;
        }
        let mut hosts = req.headers().get_all(http::header::HOST).iter();
        if hosts.next().is_some() && hosts.next().is_some() {
            return Err(GatewayError::HostAmbiguous);
        }
        if self.config.limits.headers_with_underscores == Underscores::Reject
            && let Some(name) = crate::headers::underscore_name(req.headers())
        {
            return Err(GatewayError::HeaderUnderscore(name.as_str().to_owned()));
        }
        Ok(())
    }

    /// Only the proxy path runs for most requests, so every other branch is boxed: an async
    /// function's future is as large as its largest branch, and hyper and tokio copy a request's
    /// whole future several times over, so the rare branches would otherwise be paid for (in
    /// copied kilobytes) by every proxied request.
    ///
    /// Every phase that may wait runs within `deadline` (`limits.request_timeout`). A proxied
    /// request's wait for the app is bounded by the proxy, by the earlier of this deadline and
    /// `upstream.timeout`: one timer per request, not one for each bound.
    #[expect(clippy::manual_async_fn, reason = "an async fn would store its parameters twice")]
    fn route<'a>(
        &'a self,
        req: Request<Incoming>,
        conn: &'a Connection,
        deadline: Instant,
        request_id: &'a HeaderValue,
        context: &'a TraceContext,
        trace: &'a mut Trace,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + 'a {
        async move {
            let path = req.uri().path();
            let health = &self.config.health;
            if path == health.live_path {
                trace.route = Route::Health;
                return Ok(json_response(StatusCode::OK, &json!({ "status": "ok" })));
            }
            if path == health.ready_path {
                trace.route = Route::Health;
                return Ok(self.readiness());
            }
            if let Some(webhook) = self.webhook.as_ref().filter(|w| path == w.path()) {
                trace.route = Route::Webhook;
                let handled = webhook.handle(req, id_text(request_id), context);
                let delivered = Box::pin(self.within(deadline, handled.instrument(span(context)))).await?;
                crate::metrics::webhook(match &delivered {
                    Ok(outcome) => outcome,
                    Err(e) => GatewayError::webhook_outcome(e),
                });
                return Ok(crate::webhook::acknowledge(delivered?));
            }
            #[cfg(feature = "emulator")]
            if let Some(embed) = self.embed.as_ref().filter(|e| e.matches(path)) {
                trace.route = Route::Embed;
                return Box::pin(embed.forward(req, conn, deadline, request_id, context)).await;
            }
            if let Some(inquiry) = self.inquiries.iter().find(|i| i.matches(path)) {
                trace.route = Route::GetOrCreate;
                let answered = self.get_or_create(inquiry, req, conn, trace);
                let answered = Box::pin(self.within(deadline, answered.instrument(span(context)))).await;
                return Ok(answered.unwrap_or_else(GatewayError::into_response));
            }
            let read = self.verification.as_ref().and_then(|v| Some((v, v.read_route(path)?)));
            if let Some((verification, read)) = read {
                trace.route = Route::InquiryRead;
                let answered = self.read_inquiries(verification, read, req, conn, trace);
                return Box::pin(self.within(deadline, answered.instrument(span(context)))).await?;
            }
            // Ready at its first poll for a cached token and the memory store, and a tokio timer
            // is only registered when it is polled: then it costs no timer at all.
            let (identity, allowed) = self.within(deadline, self.admit(&req, conn, trace)).await??;
            // Only a gated path pays for the gate's future (and maybe a Persona lookup).
            let verification_status = match &self.verification {
                Some(verification) if verification.gates(path) => {
                    let checked = verification.gate(path, identity.as_deref());
                    Box::pin(self.within(deadline, checked.instrument(span(context)))).await??
                }
                _ => None,
            };
            let forward = Forward {
                conn,
                deadline,
                request_id,
                identity: identity.as_deref(),
                verification_status: verification_status.as_ref(),
                trace: context,
            };
            let mut response = self.proxy.forward(req, forward).await?;
            allowed.apply(response.headers_mut());
            Ok(response)
        }
    }

    /// Answers its CORS preflights before admission (they carry no credentials), and its
    /// admission errors itself, so they carry its CORS headers and the page's script can read them.
    async fn get_or_create(
        &self,
        inquiry: &InquiryRoute,
        mut req: Request<Incoming>,
        conn: &Connection,
        trace: &mut Trace,
    ) -> Response<Body> {
        // Its CORS check needs to know how the request arrived (scheme).
        req.extensions_mut().insert(conn.clone());
        let origin = inquiry.allowed_origin(&req);
        if req.method() == Method::OPTIONS {
            return inquiry
                .preflight(origin)
                .unwrap_or_else(|e| GatewayError::from(e).into_response());
        }
        let mut allowed = None;
        let answered: Result<Response<Body>, GatewayError> = async {
            self.body_within_limit(&req)?;
            let (identity, admitted) = self.admit(&req, conn, trace).await?;
            allowed = Some(admitted);
            Ok(inquiry.answer(&req, identity, origin.is_some()).await?)
        }
        .await;
        let mut response = answered.unwrap_or_else(GatewayError::into_response);
        if let Some(allowed) = allowed {
            allowed.apply(response.headers_mut());
        }
        inquiry.finish(&mut response, origin);
        response
    }

    async fn read_inquiries(
        &self,
        verification: &Verification,
        read: ReadRoute,
        req: Request<Incoming>,
        conn: &Connection,
        trace: &mut Trace,
    ) -> Result<Response<Body>, GatewayError> {
        self.body_within_limit(&req)?;
        let (identity, allowed) = self.admit(&req, conn, trace).await?;
        let query = req.uri().query();
        let mut response = verification
            .read(req.method(), read, identity.as_deref(), query)
            .await?;
        allowed.apply(response.headers_mut());
        Ok(response)
    }

    /// `phase`, dropped at the request's deadline, which then answers 504 `request_timeout`.
    fn within<F: Future>(&self, deadline: Instant, phase: F) -> impl Future<Output = Result<F::Output, GatewayError>> {
        let timeout = self.config.limits.request_timeout;
        async move {
            tokio::time::timeout_at(deadline, phase)
                .await
                .map_err(|_| GatewayError::RequestTimeout(timeout))
        }
    }

    async fn rate_limit(
        &self,
        req: &Request<Incoming>,
        conn: &Connection,
        identity: Option<&Identity>,
    ) -> Result<Allowed, GatewayError> {
        let facts = RequestFacts {
            path: req.uri().path(),
            peer: conn.peer.ip(),
            headers: req.headers(),
            identity,
        };
        Ok(self.ratelimit.check(&facts).await?)
    }

    /// The gateway's own API routes never need a large body; one declared over
    /// `limits.max_body_bytes` is refused before any work. (Webhooks have their own limit, and
    /// proxied bodies stream to the app unbounded.)
    fn body_within_limit(&self, req: &Request<Incoming>) -> Result<(), GatewayError> {
        let limit = self.config.limits.max_body_bytes;
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(len) if len > limit as u64 => Err(GatewayError::PayloadTooLarge { limit }),
            _ => Ok(()),
        }
    }

    /// Identity, then the rate limit: the two checks every request the gateway serves must pass,
    /// in this order so a limited user is counted by user and an anonymous one by address.
    async fn admit(
        &self,
        req: &Request<Incoming>,
        conn: &Connection,
        trace: &mut Trace,
    ) -> Result<(Option<Arc<Identity>>, Allowed), GatewayError> {
        let identity = self.identify(req, trace).await?;
        let allowed = self.rate_limit(req, conn, identity.as_deref()).await?;
        Ok((identity, allowed))
    }

    /// `None` for public paths; otherwise the verified caller or a 401.
    async fn identify(
        &self,
        req: &Request<Incoming>,
        trace: &mut Trace,
    ) -> Result<Option<Arc<Identity>>, GatewayError> {
        if self.auth.is_public(req.uri().path()) {
            return Ok(None);
        }
        let identity = self
            .auth
            .authenticate(req.headers())
            .await
            .inspect_err(|e| crate::metrics::auth_failure(e.code()))?;
        trace.user = Some(identity.clone());
        Ok(Some(identity))
    }

    /// A store outage makes the gateway unready only when it refuses traffic because of it
    /// (`on_store_error = "deny"`); with "allow" it still serves, and the check says why it degrades.
    fn readiness(&self) -> Response<Body> {
        let keys = self.auth.ready();
        let store = self.store.healthy();
        let store_blocks = !store && self.store.on_store_error() == OnStoreError::Deny;
        let ready = keys && !store_blocks;
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(
            status,
            &json!({
                "status": if ready { "ready" } else { "not_ready" },
                "checks": { "config": true, "keys": keys, "store": store },
            }),
        )
    }
}

/// `uri` with its path replaced by `path` (already canonical) and its query and authority kept.
fn with_path(uri: &Uri, path: &str) -> Result<Uri, GatewayError> {
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        target
            .parse()
            .map_err(|e| GatewayError::Internal(format!("rebuilding the canonical target: {e}")))?,
    );
    Uri::from_parts(parts).map_err(|e| GatewayError::Internal(format!("rebuilding the canonical target: {e}")))
}

/// The span around the phases that call Persona or the app's webhook endpoint, so each of their
/// log lines carries the request's trace id. The proxy path has none: its one line is the access
/// log's, which carries the id itself.
fn span(context: &TraceContext) -> tracing::Span {
    tracing::info_span!("request", trace_id = %context.trace_id())
}

/// The one line per request, and its metrics. The path is logged without its query string, which
/// may carry tokens; headers and cookies are never logged.
fn access_log(
    request_id: &str,
    context: &TraceContext,
    method: &Method,
    path: &str,
    response: &Response<Body>,
    started: Instant,
    trace: &Trace,
) {
    let status = response.status().as_u16();
    crate::metrics::request(trace.route, status, started);
    // Inside the macros: a level that is off never reads the clock for the latency, nor
    // formats the trace id.
    let latency_ms = || started.elapsed().as_secs_f64() * 1000.0;
    let user = trace.user.as_ref().map_or("-", |identity| identity.user_id.as_str());
    match response.extensions().get::<ErrorDetail>() {
        Some(e) if status >= 500 => {
            tracing::warn!(request_id, trace_id = context.trace_id().as_str(), %method, path, status, latency_ms = latency_ms(), user, code = e.code, detail = %e.detail, "request")
        }
        Some(e) => {
            tracing::info!(request_id, trace_id = context.trace_id().as_str(), %method, path, status, latency_ms = latency_ms(), user, code = e.code, detail = %e.detail, "request")
        }
        None => {
            tracing::info!(request_id, trace_id = context.trace_id().as_str(), %method, path, status, latency_ms = latency_ms(), user, "request")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn output_size<F, A, B, C, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every proxied request builds this future, and hyper and tokio move it several times, so
    /// its size is a cost on every request: the rare branches are boxed, and `handle`, `route`,
    /// `Proxy::forward` and `send` return async blocks (an `async fn` keeps its arguments twice).
    /// A change that makes it grow should be one that was meant to.
    #[test]
    fn the_proxied_request_future_stays_small() {
        const PINNED: usize = 2360;
        let size = output_size(Gateway::handle);
        assert!(
            size <= PINNED,
            "Gateway::handle's future grew from {PINNED} to {size} bytes: box the new state, or pin the new size if it is meant"
        );
    }
}
