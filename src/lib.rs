//! persona-gate: an identity-verification sidecar for Persona.
//!
//! # Layout
//! - `config`: `config.toml` → typed, validated [`config::Config`]; the only reader of files and env.
//! - `server`: listeners, TLS handshakes, connection limits, graceful drain; `sniff`: HTTP/1 or
//!   HTTP/2 by a connection's first bytes; `timer`: each HTTP/1 connection's header-read and
//!   keep-alive timer; `idle`: the idle timeout of HTTP/2 connections; `fair`: HTTP/2 reads
//!   charged to the task's budget by the byte; `deadline`: the request and upstream timeouts.
//! - `gateway`: the phases every request goes through, in order (read this first).
//! - `auth`: JWT from header or cookie → verified [`auth::Identity`].
//! - `proxy`: everything the gateway does not own goes to the app, with identity headers.
//! - `ratelimit`: per-user / per-address GCRA policies, in process or shared through Redis.
//! - `store`: state shared by replicas (memory or Redis): locks, dedupe, the Persona budget.
//! - `persona`: the Persona API client (key injected server-side).
//! - `inquiry`: `POST /api/inquiries/get-or-create`, one inquiry per user, via `persona`.
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

pub mod admin;
pub mod auth;
pub mod body;
pub mod config;
pub mod deadline;
pub mod demo;
pub mod embedded;
pub mod emulator;
pub mod error;
pub mod fair;
pub mod gateway;
pub mod idle;
pub mod inquiry;
pub mod metrics;
pub mod persona;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod sniff;
pub mod store;
pub mod telemetry;
pub mod timer;
pub mod tls;
pub mod verification;
pub mod webhook;

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
    #[error("starting the embedded Persona emulator: {0}")]
    Emulator(std::io::Error),
    #[error(transparent)]
    Persona(#[from] persona::PersonaSetupError),
    #[error(transparent)]
    Inquiry(#[from] inquiry::InquirySetupError),
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
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
    let certs = match &config.listeners.tls {
        Some(files) => Some(Arc::new(tls::CertStore::load(files)?)),
        None => None,
    };
    let listeners = bind_listeners(&config, certs.clone()).await?;
    let admin = match &config.admin {
        Some(admin) => Some(bind_tcp(admin.listen).await?),
        None => None,
    };
    let embedded = embedded::Embedded::start(&mut config, listeners.http_addr()).await?;
    let config = Arc::new(config);
    let store = store::Store::new(&config.store)?;
    let gateway = build_gateway(&config, &embedded, &store).await?;
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

/// The request pipeline and everything it owns, built from a validated config: at start-up and
/// again on every reload.
pub(crate) async fn build_gateway(
    config: &Arc<Config>,
    embedded: &embedded::Embedded,
    store: &store::Store,
) -> Result<Gateway, RunError> {
    let auth = auth::Authenticator::new(&config.auth).await?;
    let proxy = proxy::Proxy::new(
        &config.upstream,
        &config.identity,
        &config.auth,
        &webhook::FORWARDED_HEADERS,
    );
    let limiter = ratelimit::RateLimiter::new(&config.rate_limit, store);
    let mut gateway = Gateway::new(config.clone(), auth, proxy)
        .with_rate_limiter(limiter)
        .with_store(store.clone());
    if let Some(hooks) = &config.webhook {
        let dedupe = webhook_dedupe(hooks, store);
        gateway = gateway.with_webhook(webhook::Receiver::new(hooks, &config.upstream, dedupe));
    }
    if let Some(persona) = &config.persona {
        let mut client = persona_client(persona, embedded.emulator.as_ref())?;
        if let Some(budget) = config.rate_limit.persona_budget {
            client = client.with_budget(store.clone(), budget);
        }
        gateway = gateway.with_inquiry(inquiry::InquiryRoute::new(&config.inquiry, client.clone(), store)?);
        // Verification gate and scoped reads; after the webhook and inquiry routes, which feed it.
        let ledger = verification::Ledger::new(&config.gate, store);
        gateway = gateway.with_verification(verification::Verification::new(config, client, ledger));
    }
    if let (Some(emulator), Some(settings)) = (&embedded.emulator, &config.emulator) {
        gateway = gateway.with_embed(gateway::EmbedMount::new(settings, emulator.addr, config));
    }
    Ok(gateway)
}

/// Replicas sharing Redis must agree on which events were forwarded; one process remembers them
/// itself (bounded by `dedupe_capacity`).
fn webhook_dedupe(hooks: &config::WebhookConfig, store: &store::Store) -> Arc<dyn webhook::Dedupe> {
    match store.redis() {
        Some(_) => Arc::new(webhook::StoreDedupe::new(store.clone(), hooks.dedupe_ttl)),
        None => Arc::new(webhook::MemoryDedupe::new(hooks.dedupe_capacity, hooks.dedupe_ttl)),
    }
}

/// The Persona client for `[persona]`: the configured API, or the embedded emulator (config
/// validation guarantees `[emulator]` exists when `use_emulator` is set).
fn persona_client(
    config: &config::PersonaConfig,
    embedded: Option<&embedded::EmulatorEndpoint>,
) -> Result<persona::PersonaClient, RunError> {
    let (base_url, api_key) = match (&config.endpoint, embedded) {
        (config::PersonaEndpoint::Remote { base_url, api_key }, _) => (base_url, api_key),
        (config::PersonaEndpoint::Emulator, Some(e)) => (&e.base_url, &e.api_key),
        (config::PersonaEndpoint::Emulator, None) => {
            return Err(RunError::Emulator(std::io::Error::other(
                "persona.use_emulator is set but no emulator is configured",
            )));
        }
    };
    Ok(persona::PersonaClient::new(config, base_url, api_key)?)
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
