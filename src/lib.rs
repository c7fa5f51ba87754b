//! persona-gate: an identity-verification sidecar for Persona.
//!
//! # Layout
//! - `config`: `config.toml` → typed, validated [`config::Config`]; the only reader of files and env.
//! - `server`: listeners, TLS handshakes, connection limits, graceful drain.
//! - `gateway`: the phases every request goes through, in order (read this first).
//! - `auth`: JWT from header or cookie → verified [`auth::Identity`].
//! - `proxy`: everything the gateway does not own goes to the app, with identity headers.
//! - `ratelimit`: per-user / per-address GCRA policies, in process or shared through Redis.
//! - `store`: state shared by replicas (memory or Redis): locks, dedupe, the Persona budget.
//! - `persona`: the Persona API client (key injected server-side).
//! - `emulator`: a local stand-in for Persona's API, for demos and tests.
//! - `error`: the one mapping from failures to HTTP responses.
//!
//! See ARCHITECTURE.md for the invariants.

#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod config;
pub mod emulator;
pub mod error;
pub mod gateway;
pub mod persona;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::gateway::Gateway;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] auth::AuthSetupError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
}

/// A gateway with its sockets bound and its state built, not yet serving.
pub struct Bound {
    listeners: server::Listeners,
    gateway: Arc<Gateway>,
    config: Arc<Config>,
}

impl Bound {
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.listeners.http_addr()
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.listeners.https_addr()
    }

    /// Serves until `shutdown` resolves, then drains (see `server::serve`).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let limits = self.config.limits.clone();
        server::serve(self.listeners, self.gateway, limits, shutdown).await;
    }
}

/// Builds everything the config describes and binds the listeners. Nothing is served yet, so a
/// caller can read the bound addresses (tests bind port 0).
///
/// # Errors
/// A listener cannot bind, the TLS files are unusable, or a verification key cannot be parsed.
pub async fn bind(config: Config) -> Result<Bound, RunError> {
    tls::install_crypto_provider();
    let config = Arc::new(config);
    let auth = auth::Authenticator::new(&config.auth).await?;
    let proxy = proxy::Proxy::new(&config.upstream, &config.identity, &config.auth, &[]);
    let store = store::Store::new(&config.store)?;
    let limiter = ratelimit::RateLimiter::new(&config.rate_limit, &store);
    let gateway = Arc::new(
        Gateway::new(config.clone(), auth, proxy)
            .with_rate_limiter(limiter)
            .with_store(store),
    );
    let http = match config.listeners.http {
        Some(addr) => Some(bind_tcp(addr).await?),
        None => None,
    };
    let https = match (config.listeners.https, &config.listeners.tls) {
        (Some(addr), Some(files)) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(files)?);
            Some((bind_tcp(addr).await?, acceptor))
        }
        _ => None,
    };
    let listeners = server::Listeners { http, https };
    Ok(Bound {
        listeners,
        gateway,
        config,
    })
}

/// Binds and serves until `shutdown` resolves.
///
/// # Errors
/// As [`bind`].
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let bound = bind(config).await?;
    if let Some(addr) = bound.http_addr() {
        tracing::info!("listening on http://{addr}");
    }
    if let Some(addr) = bound.https_addr() {
        tracing::info!("listening on https://{addr}");
    }
    bound.serve(shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}
