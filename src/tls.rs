//! TLS for the listeners: a rustls `ServerConfig` around the certificate `config` read. TLS 1.2
//! and 1.3 only, ALPN `h2` then `http/1.1`, so browsers and gRPC-style clients negotiate HTTP/2
//! where they can. The certificate lives in a [`CertStore`] so a config reload can swap it
//! without a restart.

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
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
