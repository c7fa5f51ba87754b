//! The in-process companions of the quick start: the Persona emulator (standing in for Persona)
//! and the demo app (standing in for "your existing app"). They are started after the gateway's
//! listeners are bound, so that ports chosen by the OS (`:0`, as in tests) can be wired together:
//! the gateway proxies to the demo app's real address, and the emulator delivers its signed
//! webhooks to the gateway's real webhook route. Neither runs in a production config.
//! A config reload keeps them as they are (changes to their sections need a restart). A build
//! without the `emulator` feature has neither: its config validation refuses their sections.

#[cfg(feature = "emulator")]
mod companions;
#[cfg(feature = "emulator")]
mod mount;

use std::net::SocketAddr;

#[cfg(feature = "emulator")]
use tokio::sync::oneshot;

use crate::config::{Config, Secret};
#[cfg(feature = "emulator")]
pub use mount::EmbedMount;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[cfg(feature = "emulator")]
    #[error("starting the embedded Persona emulator: {0}")]
    Emulator(std::io::Error),
    #[cfg(feature = "emulator")]
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
}

/// The embedded emulator as the Persona client sees it.
pub struct EmulatorEndpoint {
    pub addr: SocketAddr,
    pub base_url: String,
    pub api_key: Secret,
}

/// Running companions; dropping this stops them.
#[derive(Default)]
pub struct Embedded {
    pub emulator: Option<EmulatorEndpoint>,
    pub demo: Option<SocketAddr>,
    #[cfg(feature = "emulator")]
    stops: Vec<oneshot::Sender<()>>,
}

impl Embedded {
    /// Starts what the config asks for, then [`Embedded::wire`]s the config to them.
    ///
    /// # Errors
    /// A companion cannot bind its listener, or the demo's signing key is unusable.
    pub async fn start(config: &mut Config, gateway_http: Option<SocketAddr>) -> Result<Embedded, EmbeddedError> {
        let mut embedded = Embedded::default();
        #[cfg(feature = "emulator")]
        embedded.start_companions(config, gateway_http).await?;
        #[cfg(not(feature = "emulator"))]
        let _ = (&mut embedded, gateway_http);
        embedded.wire(config);
        Ok(embedded)
    }

    /// Points `config` at the running companions: with `[demo]`, the upstream is the demo app
    /// (config validation forbids setting `upstream.url` as well). Applied to every config the
    /// gateway serves, the first and each reloaded one.
    pub fn wire(&self, config: &mut Config) {
        if let (Some(addr), Some(_)) = (self.demo, &config.demo)
            && let Ok(url) = http::Uri::try_from(format!("http://{addr}"))
        {
            config.upstream.url = url;
        }
    }
}
