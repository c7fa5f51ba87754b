//! TLS for the listeners: PEM files in, a rustls `ServerConfig` out. TLS 1.2 and 1.3 only, ALPN
//! `h2` then `http/1.1`, so browsers and gRPC-style clients negotiate HTTP/2 where they can.
//! The certificate lives in a [`CertStore`] so a config reload can swap it without a restart.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The crypto provider, installed once for the process so every rustls user (listeners, reqwest,
/// tests) agrees on aws-lc-rs instead of panicking over an ambiguous default.
pub fn install_crypto_provider() {
    // Err only means another caller installed it first, which is the state we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The listener's certificate and key, swappable while the listener runs: a reload re-reads the
/// files and new handshakes use the new pair, while established connections keep theirs.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// # Errors
    /// A file is missing, holds no certificate or key, or the key does not match the certificate.
    pub fn load(files: &TlsFiles) -> Result<CertStore, TlsError> {
        Ok(CertStore {
            current: ArcSwap::from_pointee(certified_key(files)?),
        })
    }

    /// Re-reads the files; on any error the current pair stays in use.
    ///
    /// # Errors
    /// As [`CertStore::load`].
    pub fn reload(&self, files: &TlsFiles) -> Result<(), TlsError> {
        self.current.store(Arc::new(certified_key(files)?));
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert, "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    Ok(CertifiedKey::from_der(
        certs,
        key,
        &rustls::crypto::aws_lc_rs::default_provider(),
    )?)
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
