//! Config reload without downtime. SIGHUP or `POST /admin/reload` re-reads the config file,
//! validates it, builds a new request pipeline ([`Gateway`]) and swaps it in atomically: requests
//! already running finish on the pipeline they started with, new ones get the new one. A config
//! that fails validation (or whose keys or certificate cannot be loaded) changes nothing.
//!
//! What a reload cannot change while running (listener addresses, connection limits, the admin
//! listener, the embedded companions) is reported as needing a restart. The shared store is kept
//! when its settings are unchanged, so locks and dedupe keys survive; in-process rate-limit
//! counters and caches start afresh with the new pipeline.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{self, Config, ConfigError, EmulatorConfig, LimitsConfig, Secret, StoreBackend, StoreConfig};
use crate::embedded::Embedded;
use crate::gateway::Gateway;
use crate::pipeline::{self, BuildError};
use crate::store::Store;
use crate::tls::{CertStore, TlsError};

/// What serves now, and what a reload needs to build its successor.
pub struct Live {
    gateway: Arc<ArcSwap<Gateway>>,
    config: ArcSwap<Config>,
    store: ArcSwap<Store>,
    certs: Option<Arc<CertStore>>,
    embedded: Embedded,
    /// One reload at a time; a second waits and then reads the file again.
    reloading: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
pub struct Reloaded {
    /// Dotted keys whose new values only take effect after a restart.
    pub restart_needed: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Live {
    pub(crate) fn new(
        gateway: Gateway,
        config: Arc<Config>,
        store: Store,
        certs: Option<Arc<CertStore>>,
        embedded: Embedded,
    ) -> Live {
        Live {
            gateway: Arc::new(ArcSwap::from_pointee(gateway)),
            config: ArcSwap::new(config),
            store: ArcSwap::from_pointee(store),
            certs,
            embedded,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The pipeline the server loads per request.
    pub fn gateway(&self) -> Arc<ArcSwap<Gateway>> {
        self.gateway.clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn embedded(&self) -> &Embedded {
        &self.embedded
    }

    /// Re-reads the config file the gateway was started with and swaps in what it describes.
    ///
    /// # Errors
    /// The file is unreadable or invalid, or a key or certificate in it cannot be loaded; the
    /// running config stays in force.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let result = self.swap().await;
        crate::metrics::config_reload(match &result {
            Ok(_) => "ok",
            Err(ReloadError::Config(_)) => "invalid",
            Err(_) => "failed",
        });
        result
    }

    async fn swap(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.config.load_full();
        let mut new = config::load(&old.source)?;
        new.log_warnings();
        self.embedded.wire(&mut new);
        let restart_needed = restart_needed(&old, &new);
        let store = if same_store(&old.store, &new.store) {
            Store::clone(&self.store.load())
        } else {
            Store::new(&new.store).map_err(BuildError::from)?
        };
        let new = Arc::new(new);
        let gateway = pipeline::build(&new, &self.embedded, &store).await?;
        // With the swap: new handshakes get the pair this config read.
        if let (Some(certs), Some(identity)) = (&self.certs, &new.listeners.tls) {
            certs.replace(identity);
        }
        self.gateway.store(Arc::new(gateway));
        self.store.store(Arc::new(store));
        self.config.store(new);
        Ok(Reloaded { restart_needed })
    }

    /// Reloads and logs the outcome; for the signal handler, which has nobody to answer.
    pub async fn reload_and_log(&self) {
        match self.reload().await {
            Ok(done) if done.restart_needed.is_empty() => tracing::info!("config reloaded"),
            Ok(done) => tracing::warn!(
                restart_needed = ?done.restart_needed,
                "config reloaded; these changes take effect only after a restart"
            ),
            Err(ReloadError::Config(e)) => {
                for problem in e.problems() {
                    tracing::error!(%problem, "config reload refused; the running config stays");
                }
            }
            Err(e) => tracing::error!(error = %e, "config reload failed; the running config stays"),
        }
    }
}

/// Settings baked into sockets, the accept loop or running companions at start-up.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let changed = |a: String, b: String| a != b;
    let mut keys = Vec::new();
    if old.listeners.http != new.listeners.http {
        keys.push("server.http");
    }
    if old.listeners.https != new.listeners.https {
        keys.push("server.https");
    }
    if old.listeners.tls.is_some() != new.listeners.tls.is_some() {
        keys.push("server.tls_cert");
    }
    if baked_limits(&old.limits) != baked_limits(&new.limits) {
        keys.push("limits");
    }
    if changed(format!("{:?}", old.admin), format!("{:?}", new.admin)) {
        keys.push("admin");
    }
    if changed(format!("{:?}", old.emulator), format!("{:?}", new.emulator))
        || emulator_secrets(old.emulator.as_ref()) != emulator_secrets(new.emulator.as_ref())
    {
        keys.push("emulator");
    }
    if changed(format!("{:?}", old.demo), format!("{:?}", new.demo)) {
        keys.push("demo");
    }
    keys
}

/// Whether the running store can serve the new config. Debug output alone would miss a new Redis
/// URL, because the URL is a [`Secret`] and prints redacted.
fn same_store(old: &StoreConfig, new: &StoreConfig) -> bool {
    let url = |c: &StoreConfig| match &c.backend {
        StoreBackend::Redis { url } => Some(url.expose().to_owned()),
        StoreBackend::Memory => None,
    };
    format!("{old:?}") == format!("{new:?}") && url(old) == url(new)
}

/// The emulator's secrets in the clear, for comparison only (their Debug output is redacted).
fn emulator_secrets(emulator: Option<&EmulatorConfig>) -> Vec<&str> {
    emulator
        .map(|e| {
            std::iter::once(&e.api_key)
                .chain(&e.webhook_secrets)
                .map(Secret::expose)
                .collect()
        })
        .unwrap_or_default()
}

/// The limits fixed into the accept loop and hyper's connection builder at start-up;
/// `request_timeout` and `max_body_bytes` are read per request and change with a reload.
fn baked_limits(limits: &LimitsConfig) -> impl PartialEq {
    (
        limits.max_header_bytes,
        limits.header_read_timeout,
        limits.idle_timeout,
        limits.max_connections,
        limits.shutdown_grace,
        limits.tls_handshake_timeout,
    )
}

/// Reloads on every SIGHUP until the process ends.
///
/// The handler is registered when this is called, not when the returned future is first polled:
/// until then SIGHUP keeps its default action, which ends the process, so a caller registers
/// before announcing that the gateway is up. Must be called inside the tokio runtime.
pub fn on_sighup(live: Arc<Live>) -> impl Future<Output = ()> + Send + 'static {
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        let Ok(mut hangups) = hangups else {
            tracing::warn!("cannot listen for SIGHUP; reload through the admin listener only");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received, reloading config");
            live.reload_and_log().await;
        }
    }
}
