//! The embedded emulator's browser flow, mounted on the gateway's own origin.

use std::net::SocketAddr;

use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::Body;
use crate::config::{Config, EmulatorConfig};
use crate::connection::Connection;
use crate::error::GatewayError;
use crate::proxy::{Forward, Proxy};
use crate::trace_context::TraceContext;

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
        deadline: Instant,
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
                    deadline,
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
