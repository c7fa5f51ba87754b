//! OpenID Connect discovery: the issuer's document at `<issuer>/.well-known/openid-configuration`
//! names the JWKS (`jwks_uri`) and the algorithms its tokens are signed with
//! (`id_token_signing_alg_values_supported`). `jwks` fetches it before each key fetch.
//!
//! A document is refused, and the last good one kept, when its `issuer` is not the configured one
//! character for character (OIDC Discovery 1.0 §4.3: otherwise a document served at one issuer
//! could vouch for keys of another), when its `jwks_uri` is not https (http only for an http
//! issuer, a local IdP), or when it allows none of the configured algorithms. `none` and HS* are
//! never taken from it, whatever it lists.

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;

use super::fetch::{FetchError, read_limited};
use crate::config::OidcConfig;

/// What a good document says.
pub(super) struct Discovered {
    pub jwks_uri: reqwest::Url,
    /// The document's algorithms that the config allows, in the document's order.
    pub algorithms: Vec<Algorithm>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum DiscoveryError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the document is not OpenID Connect discovery metadata: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the document's issuer {0:?} is not the configured issuer")]
    IssuerMismatch(String),
    #[error("jwks_uri {0:?} is not an https URL")]
    JwksUri(String),
    #[error("none of the document's signing algorithms {0:?} is allowed")]
    NoAlgorithms(Vec<String>),
}

/// The fields read; others are ignored, as the spec asks of relying parties.
#[derive(Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: String,
    id_token_signing_alg_values_supported: Vec<String>,
}

pub(super) async fn discover(client: &reqwest::Client, config: &OidcConfig) -> Result<Discovered, DiscoveryError> {
    let response = client
        .get(config.discovery_url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(FetchError::from)?
        .error_for_status()
        .map_err(FetchError::from)?;
    let body = read_limited(response).await?;
    read(&body, config)
}

fn read(body: &[u8], config: &OidcConfig) -> Result<Discovered, DiscoveryError> {
    let document: Document = serde_json::from_slice(body)?;
    if document.issuer != config.issuer {
        return Err(DiscoveryError::IssuerMismatch(document.issuer));
    }
    let jwks_uri = reqwest::Url::parse(&document.jwks_uri)
        .ok()
        .filter(|url| url.scheme() == "https" || (url.scheme() == "http" && config.issuer.starts_with("http://")))
        .ok_or_else(|| DiscoveryError::JwksUri(document.jwks_uri.clone()))?;
    let algorithms: Vec<Algorithm> = document
        .id_token_signing_alg_values_supported
        .iter()
        .filter_map(|name| name.parse::<Algorithm>().ok())
        .filter(|alg| alg.family() != AlgorithmFamily::Hmac && config.algorithms.contains(alg))
        .collect();
    if algorithms.is_empty() {
        return Err(DiscoveryError::NoAlgorithms(
            document.id_token_signing_alg_values_supported,
        ));
    }
    Ok(Discovered { jwks_uri, algorithms })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn config(issuer: &str, algorithms: &[Algorithm]) -> OidcConfig {
        OidcConfig {
            issuer: issuer.into(),
            discovery_url: reqwest::Url::parse(&format!("{issuer}/.well-known/openid-configuration")).expect("url"),
            algorithms: algorithms.to_vec(),
            refresh_interval: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }

    fn document(issuer: &str, jwks_uri: &str, algs: &[&str]) -> Vec<u8> {
        json!({ "issuer": issuer, "jwks_uri": jwks_uri, "id_token_signing_alg_values_supported": algs,
                "authorization_endpoint": "https://idp.test/auth" })
        .to_string()
        .into_bytes()
    }

    const ISSUER: &str = "https://idp.test/realms/main";

    #[test]
    fn a_good_document_gives_its_jwks_and_the_allowed_algorithms() {
        let body = document(
            ISSUER,
            "https://idp.test/certs",
            &["RS256", "none", "HS256", "ES256", "XY999"],
        );
        let found = read(
            &body,
            &config(ISSUER, &[Algorithm::RS256, Algorithm::ES256, Algorithm::HS256]),
        )
        .expect("a good document");
        assert_eq!(found.jwks_uri.as_str(), "https://idp.test/certs");
        // The document's `none`, HS* and unknown names are never taken, even if configured.
        assert_eq!(found.algorithms, [Algorithm::RS256, Algorithm::ES256]);
        let narrowed = read(&body, &config(ISSUER, &[Algorithm::ES256])).expect("a good document");
        assert_eq!(narrowed.algorithms, [Algorithm::ES256]);
    }

    #[test]
    fn a_document_of_another_issuer_is_refused() {
        for other in [
            "https://idp.test/realms/main/",
            "https://IDP.test/realms/main",
            "https://evil.test",
        ] {
            let body = document(other, "https://idp.test/certs", &["RS256"]);
            assert!(
                matches!(
                    read(&body, &config(ISSUER, &[Algorithm::RS256])),
                    Err(DiscoveryError::IssuerMismatch(_))
                ),
                "{other}"
            );
        }
    }

    #[test]
    fn an_insecure_jwks_uri_or_no_usable_algorithm_is_refused() {
        let plain = document(ISSUER, "http://idp.test/certs", &["RS256"]);
        assert!(matches!(
            read(&plain, &config(ISSUER, &[Algorithm::RS256])),
            Err(DiscoveryError::JwksUri(_))
        ));
        let local = "http://127.0.0.1:9000/realms/main";
        let body = document(local, "http://127.0.0.1:9000/certs", &["RS256"]);
        assert!(
            read(&body, &config(local, &[Algorithm::RS256])).is_ok(),
            "a local IdP may be http"
        );
        let none_only = document(ISSUER, "https://idp.test/certs", &["none", "HS256"]);
        assert!(matches!(
            read(&none_only, &config(ISSUER, &[Algorithm::RS256])),
            Err(DiscoveryError::NoAlgorithms(_))
        ));
        assert!(matches!(
            read(b"{\"issuer\": 1}", &config(ISSUER, &[Algorithm::RS256])),
            Err(DiscoveryError::Json(_))
        ));
    }
}
