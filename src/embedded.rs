//! The in-process companions of the quick start: the Persona emulator (standing in for Persona)
//! and the demo app (standing in for "your existing app"). They are started after the gateway's
//! listeners are bound, so that ports chosen by the OS (`:0`, as in tests) can be wired together:
//! the gateway proxies to the demo app's real address, and the emulator delivers its signed
//! webhooks to the gateway's real webhook route. Neither runs in a production config.
//! A config reload keeps them as they are (changes to their sections need a restart).

use std::net::SocketAddr;

use tokio::sync::oneshot;

use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::{Config, EmulatorConfig, Secret};
use crate::connection::Connection;
use crate::demo::{Demo, SessionSettings};
use crate::emulator::Emulator;
use crate::error::GatewayError;
use crate::proxy::{Forward, Proxy};
use crate::trace_context::TraceContext;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("starting the embedded Persona emulator: {0}")]
    Emulator(std::io::Error),
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
    stops: Vec<oneshot::Sender<()>>,
}

impl Embedded {
    /// Starts what the config asks for, then [`Embedded::wire`]s the config to them.
    ///
    /// # Errors
    /// A companion cannot bind its listener, or the demo's signing key is unusable.
    pub async fn start(config: &mut Config, gateway_http: Option<SocketAddr>) -> Result<Embedded, EmbeddedError> {
        let mut embedded = Embedded::default();
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

/// The embedded emulator's stand-in for Persona's Embedded Flow (its script and the API its modal
/// calls), mounted under `emulator.embed_path` on the gateway's origin. Real Persona serves this
/// from its own domain; serving it same-origin keeps the demo free of CORS and mixed content.
/// No JWT is needed: like Persona's flow, it is authorised by inquiry id and session token.
pub struct EmbedMount {
    prefix: String,
    proxy: Proxy,
}

impl EmbedMount {
    pub fn new(settings: &EmulatorConfig, emulator: SocketAddr, config: &Config) -> Self {
        let mut upstream = config.upstream.clone();
        upstream.url = Uri::from_maybe_shared(format!("http://{emulator}")).unwrap_or_default();
        let proxy = Proxy::new(
            &upstream,
            &config.identity,
            &config.auth,
            &[],
            config.limits.headers_with_underscores,
        );
        EmbedMount {
            prefix: settings.embed_path.clone(),
            proxy,
        }
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        path.starts_with(&self.prefix)
    }

    pub(crate) async fn forward(
        &self,
        mut req: Request<Incoming>,
        conn: &Connection,
        request_id: &HeaderValue,
        trace: &TraceContext,
    ) -> Result<Response<Body>, GatewayError> {
        let rest = req.uri().path().strip_prefix(self.prefix.as_str()).unwrap_or_default();
        let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        // A canonical path and its query make a valid target; this cannot fail for a request the
        // edge let through.
        *req.uri_mut() = format!("/embed/{rest}{query}")
            .parse()
            .map_err(|e| GatewayError::Internal(format!("the embed mount's target: {e}")))?;
        self.proxy
            .forward(
                req,
                Forward {
                    conn,
                    request_id,
                    identity: None,
                    verification_status: None,
                    trace,
                },
            )
            .await
            .map_err(GatewayError::from)
    }
}
