//! Starting the quick start's companions: the Persona emulator and the demo app.

use std::future::Future;
use std::net::SocketAddr;

use tokio::sync::oneshot;

use super::{Embedded, EmbeddedError, EmulatorEndpoint};
use crate::config::{Config, EmulatorConfig};
use crate::demo::{Demo, SessionSettings};
use crate::emulator::Emulator;

impl Embedded {
    /// Starts what the config asks for; [`Embedded::wire`] then points the config at them.
    ///
    /// # Errors
    /// A companion cannot bind its listener, or the demo's signing key is unusable.
    pub(super) async fn start_companions(
        &mut self,
        config: &Config,
        gateway_http: Option<SocketAddr>,
    ) -> Result<(), EmbeddedError> {
        let embedded = self;
        if let Some(emulator) = &config.emulator {
            let emulator = webhooks_to_gateway(emulator, config, gateway_http);
            embedded.start_emulator(&emulator).await?;
        }
        if let Some(demo) = &config.demo {
            let session = SessionSettings {
                cookie: config.auth.cookie.clone().unwrap_or_else(|| "session".to_owned()),
                issuer: config.auth.issuers.first().cloned(),
                audience: config.auth.audiences.first().cloned(),
            };
            let app = Demo::bind(demo, session).await.map_err(EmbeddedError::Demo)?;
            let addr = app.addr().map_err(|source| EmbeddedError::Bind {
                addr: demo.listen,
                source,
            })?;
            tracing::warn!("demo app at http://{addr} (demo only: it signs sessions with a published key)");
            app.spawn(embedded.stop_signal());
            embedded.demo = Some(addr);
        }
        Ok(())
    }

    async fn start_emulator(&mut self, config: &EmulatorConfig) -> Result<(), EmbeddedError> {
        let emulator = Emulator::bind(config).await.map_err(EmbeddedError::Emulator)?;
        self.emulator = Some(EmulatorEndpoint {
            addr: emulator.addr(),
            base_url: emulator.base_url(),
            api_key: emulator.api_key().clone(),
        });
        tracing::warn!(
            "embedded Persona emulator at {} (for development and tests, not production)",
            emulator.base_url()
        );
        emulator.spawn(self.stop_signal());
        Ok(())
    }

    fn stop_signal(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let (stop, stopped) = oneshot::channel::<()>();
        self.stops.push(stop);
        async {
            let _ = stopped.await;
        }
    }
}

/// Without its own `webhook_url`, the embedded emulator delivers to this gateway's webhook route
/// over the plain listener, signed with the gateway's first webhook secret unless it has its own:
/// the emulator plays Persona, and Persona signs with the secret the gateway was given.
fn webhooks_to_gateway(emulator: &EmulatorConfig, config: &Config, gateway_http: Option<SocketAddr>) -> EmulatorConfig {
    let mut emulator = emulator.clone();
    if emulator.webhook_url.is_some() {
        return emulator;
    }
    match (&config.webhook, gateway_http) {
        (Some(webhook), Some(addr)) => {
            emulator.webhook_url = Some(format!("http://{addr}{}", webhook.path));
            if emulator.webhook_secrets.is_empty() {
                emulator.webhook_secrets = webhook.secrets.iter().take(1).cloned().collect();
            }
        }
        (Some(_), None) => {
            tracing::warn!("the embedded emulator sends no webhooks: set emulator.webhook_url (no plain http listener)")
        }
        (None, _) => {}
    }
    emulator
}
