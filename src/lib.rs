//! persona-gate: an identity-verification sidecar for Persona.
//!
//! # Layout
//! - `config`: `config.toml` → typed, validated [`config::Config`]; the only reader of files and env.
//! - `server`: listeners, TLS handshakes, connection limits, graceful drain; `sniff`: HTTP/1 or
//!   HTTP/2 by a connection's first bytes; `timer`: each HTTP/1 connection's header-read and
//!   keep-alive timer; `idle`: the idle timeout of HTTP/2 connections; `fair`: HTTP/2 reads
//!   charged to the task's budget by the byte; `connection`, `request_id`: what every phase
//!   knows of a request's connection and id.
//! - `pipeline`: builds the `gateway` from a config, at start-up and on every reload.
//! - `gateway`: the phases every request goes through, in order (read this first).
//! - `auth`: JWT from header or cookie → verified [`auth::Identity`].
//! - `proxy`: everything the gateway does not own goes to the app, with identity headers;
//!   `upstream`: how the proxy and the webhook forwarder connect to the app.
//! - `ratelimit`: per-user / per-address GCRA policies, in process or shared through Redis.
//! - `store`: state shared by replicas (memory or Redis): locks, dedupe, the Persona budget.
//! - `persona`: the Persona API client (key injected server-side).
//! - `inquiry`: `POST /api/inquiries/get-or-create` per verification flow, one inquiry per user
//!   and flow, via `persona`; `flight`: the single-flight it shares with the gate.
//! - `emulator`: a local stand-in for Persona's API, for demos and tests.
//! - `webhook`: Persona's signed event deliveries, verified, de-duplicated, forwarded to the app.
//! - `verification`: each user's latest inquiry status, the gate on verified-only paths, and the
//!   caller's own inquiry reads.
//! - `reload`: SIGHUP / `POST /admin/reload` swap in a new pipeline; `admin`: metrics and reload.
//! - `embedded`: the quick start's in-process emulator and demo app (`demo`).
//! - `error`: the one mapping from failures to HTTP responses.
//!
//! See ARCHITECTURE.md for the invariants.

#![forbid(unsafe_code)]

pub(crate) mod admin;
pub mod auth;
pub(crate) mod body;
pub mod config;
pub(crate) mod connection;
#[cfg(feature = "emulator")]
pub(crate) mod demo;
pub(crate) mod embedded;
#[cfg(feature = "emulator")]
pub mod emulator;
pub(crate) mod error;
pub(crate) mod fair;
pub(crate) mod flight;
pub(crate) mod gateway;
pub(crate) mod headers;
pub(crate) mod idle;
pub(crate) mod inquiry;
pub(crate) mod metrics;
pub(crate) mod persona;
pub(crate) mod pipeline;
pub(crate) mod proxy;
pub mod ratelimit;
pub(crate) mod reload;
pub(crate) mod request_id;
pub(crate) mod server;
pub mod shutdown;
pub(crate) mod sniff;
pub mod store;
pub mod target;
pub mod telemetry;
pub(crate) mod timer;
pub(crate) mod tls;
pub(crate) mod trace_context;
pub(crate) mod upstream;
pub(crate) mod verification;
pub(crate) mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error(transparent)]
    Build(#[from] pipeline::BuildError),
}

/// A gateway with its sockets bound and its state built, not yet serving.
pub struct Bound {
    listeners: server::Listeners,
    admin: Option<TcpListener>,
    live: Arc<reload::Live>,
}

impl Bound {
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.listeners.http_addr()
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.listeners.https_addr()
    }

    /// The admin listener (metrics, reload), when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The embedded Persona emulator, when `[emulator]` is configured.
    pub fn emulator_addr(&self) -> Option<SocketAddr> {
        self.live.embedded().emulator.as_ref().map(|e| e.addr)
    }

    /// The built-in demo app, when `[demo]` is configured.
    pub fn demo_addr(&self) -> Option<SocketAddr> {
        self.live.embedded().demo
    }

    /// The running pipeline, for reloading it (SIGHUP and the admin listener use this too).
    pub fn live(&self) -> Arc<reload::Live> {
        self.live.clone()
    }

    /// Serves until `shutdown` resolves, then drains (see `server::serve`); the admin listener
    /// and the embedded companions stop after the drain.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(admin) = self.admin {
            admin::spawn(admin, self.live.clone(), async {
                let _ = admin_stopped.await;
            });
        }
        let limits = self.live.config().limits.clone();
        server::serve(self.listeners, self.live.gateway(), limits, shutdown).await;
        drop(stop_admin);
    }
}

/// Builds everything the config describes and binds the listeners. Nothing is served yet, so a
/// caller can read the bound addresses (tests bind port 0).
///
/// # Errors
/// A listener cannot bind, the TLS files are unusable, a verification key cannot be parsed, or
/// an embedded companion cannot start.
pub async fn bind(mut config: Config) -> Result<Bound, RunError> {
    tls::install_crypto_provider();
    if config.admin.is_some() {
        metrics::install();
    }
    let certs = config
        .listeners
        .tls
        .as_ref()
        .map(|identity| Arc::new(tls::CertStore::new(identity)));
    let listeners = bind_listeners(&config, certs.clone()).await?;
    let admin = match &config.admin {
        Some(admin) => Some(bind_tcp(admin.listen).await?),
        None => None,
    };
    let embedded = embedded::Embedded::start(&mut config, listeners.http_addr()).await?;
    let config = Arc::new(config);
    let store = store::Store::new(&config.store).map_err(pipeline::BuildError::from)?;
    let gateway = pipeline::build(&config, &embedded, &store).await?;
    let live = Arc::new(reload::Live::new(gateway, config, store, certs, embedded));
    Ok(Bound { listeners, admin, live })
}

async fn bind_listeners(config: &Config, certs: Option<Arc<tls::CertStore>>) -> Result<server::Listeners, RunError> {
    let http = match config.listeners.http {
        Some(addr) => Some(bind_tcp(addr).await?),
        None => None,
    };
    let https = match (config.listeners.https, certs) {
        (Some(addr), Some(certs)) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(certs)?);
            Some((bind_tcp(addr).await?, acceptor))
        }
        _ => None,
    };
    Ok(server::Listeners { http, https })
}

/// Binds and serves until `shutdown` resolves.
///
/// # Errors
/// As [`bind`].
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let bound = bind(config).await?;
    // Before the "listening" lines: a SIGHUP sent once they appear must reload, not kill.
    let hangups = tokio::spawn(reload::on_sighup(bound.live()));
    if let Some(addr) = bound.http_addr() {
        tracing::info!("listening on http://{addr}");
    }
    if let Some(addr) = bound.https_addr() {
        tracing::info!("listening on https://{addr}");
    }
    if let Some(addr) = bound.admin_addr() {
        tracing::info!("admin listener on http://{addr} (GET /metrics, POST /admin/reload)");
    }
    if bound.demo_addr().is_some() {
        let page = match (bound.https_addr(), bound.http_addr()) {
            (Some(addr), _) => format!("https://localhost:{}/demo/", addr.port()),
            (None, Some(addr)) => format!("http://localhost:{}/demo/", addr.port()),
            (None, None) => String::new(),
        };
        tracing::info!("demo ready: open {page} (the dev certificate is self-signed; see certs/README.md)");
    }
    bound.serve(shutdown).await;
    hangups.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}
