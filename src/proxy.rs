//! The innermost phase: forwards a request the gateway does not own to the app, over pooled
//! keep-alive connections, streaming bodies both ways. It rewrites only what a reverse proxy must:
//! hop-by-hop headers, `X-Forwarded-*`, the request id, and the identity headers, which are always
//! stripped from the client's request and set only from a verified token.
//!
//! A downstream HTTP/1.1 connection that sends a second request gets an upstream connection of
//! its own, kept in its task (see [`with_dedicated_upstream`]): its requests then skip the pool's
//! bookkeeping. Everything else (first requests, HTTP/2 streams, upgrades) goes through the pool.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use crate::auth::Identity;
use crate::body::{self, Body};
use crate::config::{AuthConfig, IdentityConfig, TokenSource, UpstreamConfig};
use crate::connection::Connection;
use crate::headers::{Underscores, encode_text, has_underscore, strip_client_copies};
use crate::request_id::REQUEST_ID;
use crate::trace_context::TraceContext;
use crate::upstream::error_chain;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the legacy
/// `Proxy-Connection`. They must not cross the proxy.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers the gateway writes itself from a client's own (appending to `X-Forwarded-For`,
/// keeping a sane request id): their proper spelling passes, any other spelling is removed.
const OWNED: [HeaderName; 4] = [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, REQUEST_ID];

/// Why the app's answer did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The app refused, reset or could not be reached.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// Its response head did not arrive within `upstream.timeout`.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The request's own deadline ([`Forward::deadline`]) came first.
    #[error("the request's deadline passed before the upstream answered")]
    RequestTimeout,
    /// The client's own body, streaming to the app, was malformed or cut short.
    #[error("the request body could not be read: {0}")]
    BodyUnreadable(String),
}

/// Per-request facts the proxy needs from earlier phases.
pub struct Forward<'a> {
    pub conn: &'a Connection,
    /// The request's own deadline (`limits.request_timeout`): the app's answer is awaited until
    /// the earlier of it and `upstream.timeout`, under one timer.
    pub deadline: Instant,
    pub request_id: &'a HeaderValue,
    pub identity: Option<&'a Identity>,
    /// The caller's status, when the verification gate let the request through.
    pub verification_status: Option<&'a HeaderValue>,
    /// The app's `traceparent` comes from here.
    pub trace: &'a TraceContext,
}

pub struct Proxy {
    /// Tells this proxy's dedicated upstream connections from another's (a reload's, the embed
    /// mount's), which may point elsewhere.
    id: u64,
    client: Client<HttpConnector, Body>,
    upstream: UpstreamConfig,
    /// The `Host` for a request that came without one, as the pool's client would set it.
    upstream_host: Option<HeaderValue>,
    identity: IdentityConfig,
    /// Every header name the gateway alone may set on the way to the app, removed from the
    /// client's request in any spelling.
    reserved: Vec<HeaderName>,
    underscores: Underscores,
    /// The session cookie, removed from the forwarded `Cookie` header unless tokens are forwarded.
    session_cookie: Option<String>,
    strip_bearer: bool,
}

impl Proxy {
    /// `reserved` names extra headers (beyond the identity ones) that other modules set for the
    /// app and that clients therefore must never supply themselves.
    pub fn new(
        upstream: &UpstreamConfig,
        identity: &IdentityConfig,
        auth: &AuthConfig,
        reserved: &[HeaderName],
        underscores: Underscores,
    ) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(upstream.pool_idle_timeout)
            .pool_max_idle_per_host(upstream.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(crate::upstream::connector(upstream));
        let mut names = vec![identity.user_header.clone()];
        names.extend(identity.claim_headers.iter().map(|(_, h)| h.clone()));
        names.extend(reserved.iter().cloned());
        names.push(crate::verification::STATUS_HEADER);
        let forward = identity.forward_token;
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            client,
            upstream: upstream.clone(),
            upstream_host: upstream
                .url
                .authority()
                .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok()),
            identity: identity.clone(),
            reserved: names,
            underscores,
            session_cookie: if forward { None } else { auth.cookie.clone() },
            strip_bearer: !forward && auth.sources.contains(&TokenSource::Header),
        }
    }

    /// # Errors
    /// [`ProxyError`] when the app refuses or resets or its response head is late, and
    /// `BodyUnreadable` when the client's own body is malformed or cut short as it streams.
    #[expect(clippy::manual_async_fn, reason = "an async fn would store its parameters twice")]
    pub fn forward<'a>(
        &'a self,
        mut req: Request<Incoming>,
        ctx: Forward<'a>,
    ) -> impl Future<Output = Result<Response<Body>, ProxyError>> + 'a {
        // Not an `async fn`, for the size of every request's future (see `Gateway::handle`).
        async move {
            let upgrade = upgrade_protocol(req.headers());
            let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
            let may_dedicate = upgrade.is_none();
            let outgoing = self.outgoing(req, &ctx, upgrade);
            let upstream_deadline = Instant::now() + self.upstream.timeout;
            let deadline = ctx.deadline.min(upstream_deadline);
            let mut response = match tokio::time::timeout_at(deadline, self.send(outgoing, may_dedicate)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return Err(e),
                Err(_) if deadline < upstream_deadline => return Err(ProxyError::RequestTimeout),
                Err(_) => return Err(ProxyError::Timeout(self.upstream.timeout)),
            };
            if let Some(client_upgrade) =
                client_upgrade.filter(|_| response.status() == StatusCode::SWITCHING_PROTOCOLS)
            {
                splice_upgrade(client_upgrade, hyper::upgrade::on(&mut response));
                let (parts, _) = response.into_parts();
                return Ok(Response::from_parts(parts, body::empty()));
            }
            strip_hop_by_hop(response.headers_mut());
            Ok(response.map(body::incoming))
        }
    }

    /// The request as the app is to receive it.
    fn outgoing(&self, req: Request<Incoming>, ctx: &Forward<'_>, upgrade: Option<HeaderValue>) -> Request<Body> {
        let (mut parts, incoming) = req.into_parts();
        let host = self.set_host(&mut parts.headers, &parts.uri);
        parts.uri = origin_form(parts.uri);
        // The app is spoken to in HTTP/1.1 whatever the client used.
        parts.version = Version::HTTP_11;
        self.rewrite_request_headers(&mut parts.headers, ctx, host.as_ref(), upgrade.as_ref());
        Request::from_parts(parts, body::incoming(incoming))
    }

    /// Over the downstream connection's own upstream connection when it has one to spare, else
    /// through the pool. Upgrades always take the pool, whose connections support them.
    ///
    /// `req` has an origin-form target (`/path?query`).
    #[expect(clippy::manual_async_fn, reason = "an async fn would store its parameters twice")]
    fn send(
        &self,
        mut req: Request<Body>,
        may_dedicate: bool,
    ) -> impl Future<Output = Result<Response<Incoming>, ProxyError>> {
        async move {
            if may_dedicate && let Some(mut sender) = self.dedicated_sender().await {
                match sender.try_send_request(req).await {
                    Ok(response) => {
                        with_dedicated(|slot| slot.sender = Some((self.id, sender)));
                        return Ok(response);
                    }
                    // Never written (the app had just closed the connection): the pool may still
                    // deliver it, as it would have retried on a stale pooled connection.
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => req = unsent,
                        None => return Err(send_failed(e.error())),
                    },
                }
            }
            // The pool's client wants the absolute form, to pick a connection by.
            *req.uri_mut() = self.upstream_uri(req.uri()).map_err(ProxyError::Unavailable)?;
            self.client.request(req).await.map_err(|e| send_failed(&e))
        }
    }

    /// `None` outside an HTTP/1 connection's task, for a connection's first request, when its
    /// connection is busy or another proxy's, or when opening one fails (the pool then tries).
    async fn dedicated_sender(&self) -> Option<SendRequest<Body>> {
        match with_dedicated(|slot| slot.take(self.id))? {
            Take::Ready(sender) => Some(sender),
            // Boxed: once per connection, and connecting is the largest state of a request's send.
            Take::Open => Box::pin(self.open_dedicated())
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "opening a dedicated upstream connection failed"))
                .ok(),
            Take::Pool => None,
        }
    }

    /// Connected the way the pool connects (`upstream::connector`: timeout, nodelay, TCP
    /// keep-alive), but held by one downstream connection.
    async fn open_dedicated(&self) -> Result<SendRequest<Body>, String> {
        let mut connector = crate::upstream::connector(&self.upstream);
        let stream = tower_service::Service::call(&mut connector, self.upstream.url.clone())
            .await
            .map_err(|e| error_chain(&e))?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            // One buffer and one `write` per request, as the server does (`Protocols::new`).
            .writev(false)
            .handshake(stream)
            .await
            .map_err(|e| error_chain(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %error_chain(&e), "dedicated upstream connection ended with error");
            }
        });
        Ok(sender)
    }

    fn upstream_uri(&self, original: &Uri) -> Result<Uri, String> {
        let mut parts = self.upstream.url.clone().into_parts();
        parts.path_and_query = original
            .path_and_query()
            .cloned()
            .or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        Uri::from_parts(parts).map_err(|e| format!("building the upstream uri: {e}"))
    }

    /// Makes sure the app gets as `Host` the authority the gateway read (`target::authority`:
    /// the target's, else the client's `Host`), else the upstream's own, as the pool's client
    /// would set it. Returns the host the client asked for, for `X-Forwarded-Host`.
    fn set_host(&self, headers: &mut HeaderMap, uri: &Uri) -> Option<HeaderValue> {
        let asked = crate::target::authority(uri, headers);
        // Without a target authority, what was read is the client's own `Host`: it stays.
        let kept = uri.authority().is_none() && asked.is_some();
        if !kept && let Some(host) = asked.as_ref().or(self.upstream_host.as_ref()) {
            headers.insert(header::HOST, host.clone());
        }
        asked
    }

    fn rewrite_request_headers(
        &self,
        headers: &mut HeaderMap,
        ctx: &Forward<'_>,
        host: Option<&HeaderValue>,
        upgrade: Option<&HeaderValue>,
    ) {
        strip_hop_by_hop(headers);
        if let Some(protocol) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol.clone());
        }
        // One pass over the request's few headers is cheaper than looking up every reserved name.
        if headers
            .keys()
            .any(|name| self.reserved.contains(name) || has_underscore(name))
        {
            strip_client_copies(headers, &self.reserved, &OWNED, self.underscores);
        }
        match host {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST, host.clone());
            }
            // A client without a Host cannot supply its own X-Forwarded-Host either.
            None => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
        append_forwarded_for(headers, ctx.conn);
        let proto = if ctx.conn.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        headers.insert(REQUEST_ID, ctx.request_id.clone());
        ctx.trace.propagate(headers);
        if let Some(identity) = ctx.identity {
            self.set_identity(headers, identity);
        }
        if let Some(status) = ctx.verification_status {
            headers.insert(crate::verification::STATUS_HEADER, status.clone());
        }
        self.strip_credentials(headers);
    }

    fn set_identity(&self, headers: &mut HeaderMap, identity: &Identity) {
        headers.insert(self.identity.user_header.clone(), identity.user_header().clone());
        for (claim, header) in &self.identity.claim_headers {
            let value = match identity.claims.get(claim) {
                Some(serde_json::Value::String(s)) => Some(encode_text(s)),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    HeaderValue::from_str(&v.to_string()).ok()
                }
                _ => None,
            };
            if let Some(value) = value {
                headers.insert(header.clone(), value);
            }
        }
    }

    fn strip_credentials(&self, headers: &mut HeaderMap) {
        if self.strip_bearer {
            // Read as `auth` reads it, every copy: whatever it could take for a token stays here.
            let bearer = headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .any(|v| crate::auth::bearer_token(v.as_bytes()).is_some());
            if bearer {
                headers.remove(header::AUTHORIZATION);
            }
        }
        if let Some(name) = &self.session_cookie {
            remove_cookie(headers, name);
        }
    }
}

tokio::task_local! {
    /// The upstream connection of the downstream connection whose task this is: `Some` for an
    /// HTTP/1 connection, `None` for an HTTP/2 stream (which always uses the pool). Every task
    /// that proxies says which it is, so a missing scope is a bug, caught in debug builds.
    static DEDICATED: RefCell<Option<Dedicated>>;
}

/// Serves one downstream connection (its whole future) with room for an upstream connection of
/// its own. Only requests polled in that task use it: HTTP/1, whose requests hyper runs inline;
/// HTTP/2 streams run in tasks of their own and use the pool.
pub async fn with_dedicated_upstream<F: std::future::Future>(connection: F) -> F::Output {
    DEDICATED
        .scope(RefCell::new(Some(Dedicated::default())), connection)
        .await
}

/// Runs a task whose requests always take the pool: an HTTP/2 stream.
pub async fn without_dedicated_upstream<F: std::future::Future>(task: F) -> F::Output {
    DEDICATED.scope(RefCell::new(None), task).await
}

/// This task's dedicated upstream slot, if it has one.
fn with_dedicated<R>(f: impl FnOnce(&mut Dedicated) -> R) -> Option<R> {
    let outcome = DEDICATED.try_with(|slot| slot.borrow_mut().as_mut().map(f));
    debug_assert!(
        outcome.is_ok(),
        "proxying outside with_dedicated_upstream and without_dedicated_upstream: its task has no upstream of its own by accident"
    );
    outcome.ok().flatten()
}

#[derive(Default)]
struct Dedicated {
    /// Set by the first request: a client that sends one request per connection never costs the
    /// app a connection of its own.
    kept_alive: bool,
    /// The connection and the [`Proxy::id`] that opened it; dropped with the downstream task,
    /// which closes it.
    sender: Option<(u64, SendRequest<Body>)>,
}

enum Take {
    Ready(SendRequest<Body>),
    Open,
    Pool,
}

impl Dedicated {
    fn take(&mut self, proxy: u64) -> Take {
        if !std::mem::replace(&mut self.kept_alive, true) {
            return Take::Pool;
        }
        match self.sender.take() {
            Some((owner, sender)) if owner == proxy && sender.is_ready() => Take::Ready(sender),
            Some((owner, sender)) if owner != proxy || !sender.is_closed() => {
                self.sender = Some((owner, sender));
                Take::Pool
            }
            _ => Take::Open,
        }
    }
}

/// The target as the app is asked for it: only the path and query of an absolute-form target
/// (a client may send one; RFC 9112 §3.2.2), the usual origin form untouched.
fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri;
    }
    let origin = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    Uri::from(origin)
}

/// The protocol a client asks to switch to, for HTTP/1.1 `Connection: upgrade` requests.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .any(|t| t.eq_ignore_ascii_case("upgrade"));
    if wants {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Runs on every request and response, so it looks up only names that are there: one pass over
/// the message's few headers finds which of [`HOP_BY_HOP`] are present.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // Headers the `Connection` header names are hop-by-hop too (RFC 9110 §7.6.1). It is
    // `HOP_BY_HOP[0]`, taken out with its values in one lookup; its usual tokens (`keep-alive`,
    // `close`) name no other header, so this seldom looks anything else up.
    if present & 1 != 0
        && let header::Entry::Occupied(connection) = headers.entry(header::CONNECTION)
    {
        let mut named = Vec::new();
        for value in connection.remove_entry_mult().1 {
            for token in connection_tokens(&value) {
                if !token.eq_ignore_ascii_case("close")
                    && !token.eq_ignore_ascii_case("keep-alive")
                    && let Ok(name) = HeaderName::try_from(token)
                {
                    named.push(name);
                }
            }
        }
        for name in &named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate().skip(1) {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Appends the peer to the client's `X-Forwarded-For` chain (every copy of the header, in order),
/// or starts one; one lookup either way.
fn append_forwarded_for(headers: &mut HeaderMap, conn: &Connection) {
    let peer = conn.peer_header();
    match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Vacant(entry) => {
            entry.insert(peer.clone());
        }
        header::Entry::Occupied(mut entry) => {
            let mut chain: Vec<&str> = entry
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            chain.extend(peer.to_str().ok());
            let value = HeaderValue::from_str(&chain.join(", ")).unwrap_or_else(|_| peer.clone());
            entry.insert(value);
        }
    }
}

/// Rewrites every `Cookie` header without the named cookie, dropping headers left empty.
fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k).trim() != name)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(header::COOKIE);
    for value in kept {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(header::COOKIE, value);
        }
    }
}

/// The comma-separated tokens of one `Connection` value (none if it is not text).
fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value.to_str().into_iter().flat_map(|v| v.split(',')).map(str::trim)
}

/// Once both sides have switched protocols, copies bytes both ways until either closes.
fn splice_upgrade(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended with error");
        }
    });
}

/// Whose fault a failed exchange with the app was. hyper's client reports the request body it
/// was streaming failing as a "user's Body stream" error (the one user error with a cause): that
/// body is the client's, malformed or cut short (a bad chunk size, say), so the client gets a
/// 400 and the app is not blamed. `scripts/chaos.sh` (case 9) found such bodies answered 502.
fn send_failed(e: &(dyn std::error::Error + 'static)) -> ProxyError {
    let mut source = Some(e);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_user() && std::error::Error::source(h).is_some())
        {
            return ProxyError::BodyUnreadable(error_chain(cause));
        }
        source = cause.source();
    }
    ProxyError::Unavailable(error_chain(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(h["x-keep"], "1");
    }

    #[test]
    fn forwarded_for_joins_every_prior_hop_then_the_peer() {
        let conn = Connection::new("10.0.0.9:4000".parse().expect("address"), false);
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &conn);
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.9");
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1, 198.51.100.2"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static(" "));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.3"));
        append_forwarded_for(&mut h, &conn);
        let all: Vec<_> = h.get_all(X_FORWARDED_FOR).iter().collect();
        assert_eq!(all, vec!["203.0.113.1, 198.51.100.2, 192.0.2.3, 10.0.0.9"]);
    }

    #[test]
    fn session_cookie_is_removed_others_kept() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; session=tok; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("session=tok"));
        remove_cookie(&mut h, "session");
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, vec!["a=1; b=2"]);
    }
}
