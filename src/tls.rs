//! TLS for the listeners: a rustls `ServerConfig` around the certificate `config` read. TLS 1.2
//! and 1.3 only, the server's cipher order (AES-128-GCM first, see [`server_config`]), ALPN `h2`
//! then `http/1.1`, so browsers and gRPC-style clients negotiate HTTP/2 where they can. The
//! certificate lives in a [`CertStore`] so a config reload can swap it without a restart.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsIdentity;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider, installed once for the process so every rustls user (listeners, reqwest,
/// tests) agrees on aws-lc-rs instead of panicking over an ambiguous default.
pub fn install_crypto_provider() {
    // Err only means another caller installed it first, which is the state we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The listener's certificate and key, swappable while the listener runs: a reload hands in the
/// pair its config read, and new handshakes use it while established connections keep theirs.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(identity: &TlsIdentity) -> CertStore {
        CertStore {
            current: ArcSwap::new(identity.certified.clone()),
        }
    }

    pub fn replace(&self, identity: &TlsIdentity) {
        self.current.store(identity.certified.clone());
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The listener's TLS settings around a [`CertStore`].
///
/// # Errors
/// Only if rustls rejects the protocol versions, which would be a bug here.
pub fn server_config(certs: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort: the AES-128-GCM suites first, the rest in rustls's order.
    provider.cipher_suites.sort_by_key(|suite| !is_aes_128_gcm(*suite));
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The gateway's order, as Envoy's and BoringSSL's defaults: AES-128-GCM, which every TLS 1.3
    // client must support (RFC 8446 §9.1) and browsers put first anyway. Clients that put
    // AES-256-GCM first (OpenSSL's default, so curl and wrk) would otherwise get its SHA-384 key
    // schedule, which aws-lc computes without vector instructions on AMD CPUs: 15% of a full
    // handshake there (perf, `tls handshake` in scripts/bench-gateway.sh).
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

fn is_aes_128_gcm(suite: rustls::SupportedCipherSuite) -> bool {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256,
    };
    matches!(
        suite.suite(),
        TLS13_AES_128_GCM_SHA256 | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}
