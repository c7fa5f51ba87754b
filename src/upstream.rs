//! How the gateway connects to the app: one connector set-up (connect timeout, `TCP_NODELAY`,
//! TCP keep-alive) for the proxy's pool, its dedicated connections and the webhook forwarder,
//! and the one way their errors are put into words.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;

use crate::config::UpstreamConfig;

/// Probes for a dead peer on an idle pooled connection; the app's own idle timeout usually
/// closes it first.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// A connector for the app at `upstream.url`.
pub fn connector(upstream: &UpstreamConfig) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(upstream.connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(TCP_KEEPALIVE));
    connector
}

/// The error and its causes on one line; hyper's top-level messages alone are too vague to act on.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
