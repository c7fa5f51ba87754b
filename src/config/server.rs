//! Sections that shape the gateway itself: listeners and TLS, limits, health paths, logging, the
//! upstream app and the identity headers it receives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use http::uri::{Scheme, Uri};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::primitives::parse_duration;
use super::validate::Validator;

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub tls: Option<TlsIdentity>,
}

/// The HTTPS listener's certificate chain and key, read and checked to match when the config
/// is loaded (so `check` and a refused reload name the file), ready for rustls.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: only where it came from is printed.
        f.debug_struct("TlsIdentity")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListeners {
    http: Option<String>,
    https: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

impl RawListeners {
    pub(super) fn validate(self, v: &mut Validator) -> ListenerConfig {
        let http = self.http.and_then(|a| v.check("server.http", a.parse::<SocketAddr>()));
        let https = self
            .https
            .and_then(|a| v.check("server.https", a.parse::<SocketAddr>()));
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => tls_identity(v, &v.path(&cert), &v.path(&key)),
            (None, None) => None,
            (Some(_), None) => {
                v.problem("server.tls_key", "required when server.tls_cert is set");
                None
            }
            (None, Some(_)) => {
                v.problem("server.tls_cert", "required when server.tls_key is set");
                None
            }
        };
        if https.is_some() && tls.is_none() {
            v.problem("server.https", "needs server.tls_cert and server.tls_key");
        }
        if http.is_none() && https.is_none() {
            v.problem("server", "set at least one of http or https");
        }
        ListenerConfig { http, https, tls }
    }
}

/// Reads the PEM files and pairs them; each problem is named by the key of the file it is in.
fn tls_identity(v: &mut Validator, cert: &Path, key: &Path) -> Option<TlsIdentity> {
    let show = |path: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let chain: Result<Vec<CertificateDer<'static>>, String> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| show(cert, &e))
        .and_then(|certs| certs.collect::<Result<_, _>>().map_err(|e| show(cert, &e)))
        .and_then(|certs: Vec<_>| {
            if certs.is_empty() {
                Err(show(cert, &"no certificate found"))
            } else {
                Ok(certs)
            }
        });
    let chain = v.check("server.tls_cert", chain);
    let private = v.check(
        "server.tls_key",
        PrivateKeyDer::from_pem_file(key).map_err(|e| show(key, &e)),
    );
    let (chain, private) = (chain?, private?);
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, private, &provider)
        .map_err(|e| format!("{} does not pair with {}: {e}", key.display(), cert.display()));
    Some(TlsIdentity {
        cert: cert.to_owned(),
        key: key.to_owned(),
        certified: Arc::new(v.check("server.tls_key", certified)?),
    })
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_header_bytes: usize,
    /// Largest body declared to the gateway's own API routes (get-or-create, inquiry reads);
    /// webhooks have `webhook.max_body_bytes`, and proxied bodies stream unlimited.
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub tls_handshake_timeout: Duration,
    pub headers_with_underscores: crate::headers::Underscores,
}

/// Open connections one gateway may hold at most (`limits.max_connections`).
const MAX_CONNECTIONS: usize = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    max_header_bytes: usize,
    max_body_bytes: usize,
    header_read_timeout: String,
    idle_timeout: String,
    request_timeout: String,
    max_connections: usize,
    shutdown_grace: String,
    tls_handshake_timeout: String,
    headers_with_underscores: crate::headers::Underscores,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            header_read_timeout: "10s".into(),
            idle_timeout: "75s".into(),
            request_timeout: "60s".into(),
            max_connections: 10_000,
            shutdown_grace: "30s".into(),
            tls_handshake_timeout: "10s".into(),
            headers_with_underscores: crate::headers::Underscores::Drop,
        }
    }
}

impl RawLimits {
    pub(super) fn validate(self, v: &mut Validator) -> LimitsConfig {
        // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
        if self.max_header_bytes < 8192 {
            v.problem("limits.max_header_bytes", "must be at least 8192");
        }
        if self.max_connections == 0 {
            v.problem("limits.max_connections", "must be at least 1");
        }
        if self.headers_with_underscores == crate::headers::Underscores::Allow {
            v.warn(
                "limits.headers_with_underscores",
                "allow: a client's underscore headers reach the app, and stacks that fold _ into - \
                 (CGI, WSGI, Rack) read X_Custom as X-Custom; only the gateway's own names are \
                 still removed in every spelling",
            );
        }
        // The accept loop's semaphore panics past 2^61 permits; far below that, a limit no
        // process could hold is a typo, refused with its key rather than crashing at start-up.
        if self.max_connections > MAX_CONNECTIONS {
            v.problem("limits.max_connections", format!("must be at most {MAX_CONNECTIONS}"));
        }
        let positive = |v: &mut Validator, key: &str, text: &str| {
            let d = v.duration(key, text);
            if d.is_zero() && parse_duration(text).is_ok() {
                v.problem(key, "must be greater than zero");
            }
            d
        };
        LimitsConfig {
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            header_read_timeout: positive(v, "limits.header_read_timeout", &self.header_read_timeout),
            idle_timeout: positive(v, "limits.idle_timeout", &self.idle_timeout),
            request_timeout: positive(v, "limits.request_timeout", &self.request_timeout),
            max_connections: self.max_connections,
            shutdown_grace: v.duration("limits.shutdown_grace", &self.shutdown_grace),
            tls_handshake_timeout: positive(v, "limits.tls_handshake_timeout", &self.tls_handshake_timeout),
            headers_with_underscores: self.headers_with_underscores,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub live_path: String,
    pub ready_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHealth {
    live_path: String,
    ready_path: String,
}

impl Default for RawHealth {
    fn default() -> Self {
        Self {
            live_path: "/healthz".into(),
            ready_path: "/readyz".into(),
        }
    }
}

impl RawHealth {
    pub(super) fn validate(self, v: &mut Validator) -> HealthConfig {
        for (key, path) in [
            ("health.live_path", &self.live_path),
            ("health.ready_path", &self.ready_path),
        ] {
            v.route(key, path);
        }
        HealthConfig {
            live_path: self.live_path,
            ready_path: self.ready_path,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    format: LogFormat,
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

impl RawLog {
    pub(super) fn validate(self, _v: &mut Validator) -> LogConfig {
        LogConfig {
            format: self.format,
            level: self.level,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme and authority of the app, e.g. `http://127.0.0.1:3000`.
    pub url: Uri,
    pub connect_timeout: Duration,
    /// How long the app may take to send its response head.
    pub timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    /// Absent only when `[demo]` runs the built-in demo app, which then is the upstream.
    url: Option<String>,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: String,
    #[serde(default = "default_upstream_timeout")]
    timeout: String,
    #[serde(default = "default_pool_idle")]
    pool_idle_timeout: String,
    #[serde(default = "default_pool_max_idle")]
    pool_max_idle_per_host: usize,
}

fn default_connect_timeout() -> String {
    "2s".into()
}
fn default_upstream_timeout() -> String {
    "30s".into()
}
fn default_pool_idle() -> String {
    "90s".into()
}
fn default_pool_max_idle() -> usize {
    256
}

/// The sidecar talks to its app over loopback or a pod network; TLS to the app is out of scope,
/// and saying so beats silently sending plaintext to an https URL.
fn upstream_url(v: &mut Validator, text: &str) -> Uri {
    let url = v.check("upstream.url", text.parse::<Uri>()).unwrap_or_default();
    if url.scheme() != Some(&Scheme::HTTP) || url.authority().is_none() {
        v.problem("upstream.url", format!("{text:?} must be an http://host:port URL"));
    } else if url.path() != "/" || url.query().is_some() {
        v.problem("upstream.url", "must not have a path or query");
    }
    url
}

impl RawUpstream {
    /// `demo` says whether `[demo]` is configured: then the demo app is the upstream and
    /// `url` must be left out (the address is only known once the demo app is bound).
    pub(super) fn validate(self, v: &mut Validator, demo: bool) -> UpstreamConfig {
        let url = match (&self.url, demo) {
            (Some(text), false) => upstream_url(v, text),
            (None, true) => Uri::from_static("http://127.0.0.1"),
            (Some(_), true) => {
                v.problem(
                    "upstream.url",
                    "remove it: [demo] runs the built-in demo app as the upstream",
                );
                Uri::default()
            }
            (None, false) => {
                v.problem("upstream.url", "required: the http://host:port of your app");
                Uri::default()
            }
        };
        UpstreamConfig {
            url,
            connect_timeout: v.duration("upstream.connect_timeout", &self.connect_timeout),
            timeout: v.duration("upstream.timeout", &self.timeout),
            pool_idle_timeout: v.duration("upstream.pool_idle_timeout", &self.pool_idle_timeout),
            pool_max_idle_per_host: self.pool_max_idle_per_host,
        }
    }
}

/// What the app learns about the caller. Every header named here is removed from the client's
/// request before the gateway sets it, so the app can trust them.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub user_header: HeaderName,
    /// Claim name -> header name, for extra claims the app wants (e.g. `email -> x-user-email`).
    pub claim_headers: Vec<(String, HeaderName)>,
    /// Forward the client's `Authorization` header / session cookie to the app untouched.
    pub forward_token: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawIdentity {
    user_header: String,
    claim_headers: BTreeMap<String, String>,
    forward_token: bool,
}

impl Default for RawIdentity {
    fn default() -> Self {
        Self {
            user_header: "x-user-id".into(),
            claim_headers: BTreeMap::new(),
            forward_token: true,
        }
    }
}

impl RawIdentity {
    pub(super) fn validate(self, v: &mut Validator) -> IdentityConfig {
        let user_header = v.check("identity.user_header", HeaderName::try_from(self.user_header.as_str()));
        let claim_headers = self
            .claim_headers
            .into_iter()
            .filter_map(|(claim, header)| {
                let key = format!("identity.claim_headers.{claim}");
                v.check(&key, HeaderName::try_from(header.as_str())).map(|h| (claim, h))
            })
            .collect();
        IdentityConfig {
            user_header: user_header.unwrap_or(HeaderName::from_static("x-user-id")),
            claim_headers,
            forward_token: self.forward_token,
        }
    }
}
