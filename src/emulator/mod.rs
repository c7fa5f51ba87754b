//! A local stand-in for Persona's API, for demos, tests and benchmarks: the inquiry endpoints
//! under `/api/v1` as Persona documents them (and the template read), a `/_emulator` control API
//! (advance inquiries, move the clock, publish template versions, inject faults and latency,
//! read the call log, redeliver webhooks), and signed webhook deliveries on every status change.
//! It is not a Persona simulator beyond the inquiry flow the gateway uses, but within that flow
//! it is as strict as Persona: version-dependent field keys, inflection, idempotency replays,
//! the rate limit and expiry on its own clock (see "Persona facts we rely on" in
//! ARCHITECTURE.md).
//!
//! Layout, top down; a file imports only files after it in this list. `mod.rs` binds the
//! listener and wires the server and its two workers together; `server` accepts connections and
//! routes by prefix to `api` (the `/api/v1` pipeline), `control` (the control API) and `embed`
//! (the browser flow); `expiry` is the worker that expires inquiries on time; `shared` the state
//! all of them reach; `inquiries` the endpoints; `settings` what they read from the config;
//! `faults` and `journal` what the control API injects and reads back; `webhooks` signing and
//! delivery; `store` the data; `lifecycle` the state machine; `event` the webhook event body;
//! `model` the inquiry and how it renders; `limiter` the rate limit; `inflect`, `clock`, `ids`,
//! `error` the small pieces Persona's wire format needs.

mod api;
mod clock;
mod control;
mod embed;
mod error;
mod event;
mod expiry;
mod faults;
mod ids;
mod inflect;
mod inquiries;
mod journal;
mod lifecycle;
mod limiter;
mod model;
mod server;
mod settings;
mod shared;
mod store;
mod webhooks;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::{EmulatorConfig, Secret};

use self::event::Event;
use self::shared::Shared;

/// An emulator with its socket bound, not yet serving.
pub struct Emulator {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    outbox: mpsc::UnboundedReceiver<Event>,
}

impl Emulator {
    /// Binds `config.listen` (port 0 allowed) and builds the emulator's state.
    ///
    /// # Errors
    /// The address cannot be bound, or the webhook HTTP client cannot be built.
    pub async fn bind(config: &EmulatorConfig) -> std::io::Result<Emulator> {
        // reqwest's rustls needs a process-wide provider; the gateway installs the same one.
        crate::tls::install_crypto_provider();
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, outbox) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(config, tx)?);
        Ok(Emulator {
            listener,
            addr,
            shared,
            outbox,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/api/v1`; an unspecified listen address is reached via loopback.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/api/v1", SocketAddr::new(ip, self.addr.port()))
    }

    pub fn api_key(&self) -> &Secret {
        &self.shared.settings.api_key
    }

    /// Serves until `shutdown` resolves; then open connections, hung calls included, are closed
    /// and queued webhook deliveries are dropped.
    pub fn spawn(self, shutdown: impl Future<Output = ()> + Send + 'static) -> tokio::task::JoinHandle<()> {
        let Emulator {
            listener,
            shared,
            outbox,
            ..
        } = self;
        tokio::spawn(async move {
            // Every delivery attempt lands in the log that `GET /_emulator/webhooks` lists.
            let record = |delivery| shared.lock().journal.record_delivery(delivery);
            tokio::select! {
                () = server::accept(listener, shared.clone(), shutdown) => {}
                () = webhooks::worker(shared.webhooks.as_ref(), outbox, record) => {}
                () = expiry::worker(shared.clone()) => {}
            }
        })
    }
}

/// Serves an emulator built from `config` until `shutdown` resolves (the CLI's entry point).
///
/// # Errors
/// As [`Emulator::bind`].
pub async fn run(config: &EmulatorConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let emulator = Emulator::bind(config).await?;
    tracing::info!(base_url = %emulator.base_url(), "persona emulator listening");
    if emulator.api_key().expose() == crate::config::DEMO_API_KEY {
        tracing::info!("accepting the public demo key {}", crate::config::DEMO_API_KEY);
    }
    emulator.spawn(shutdown).await.map_err(std::io::Error::other)
}
