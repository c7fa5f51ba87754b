//! A remote key set: fetched from the IdP with reqwest, kept in memory, refreshed on its own
//! schedule and when a token names a `kid` the set does not hold. Fetches are single-flight and at
//! least `min_refresh_interval` apart when triggered by tokens, so a flood of bogus `kid`s costs
//! the IdP one request per interval. A failed or empty fetch keeps the last good set; a failed
//! first fetch does not stop start-up, it only keeps `/readyz` unready until keys arrive.
//!
//! The set's URL and algorithms are fixed (`[auth.jwks]`) or named by an OpenID Connect issuer's
//! discovery document (`[auth.oidc]`, see `oidc`), which is fetched again before each key fetch;
//! a failed or refused document keeps the last good one.
//!
//! It deliberately trusts nothing a token says about keys (`jku`, `jwk`, `x5u` headers are never
//! followed) and never accepts symmetric (`oct`) keys from the set.

use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::cache::TokenCache;
use super::fetch::{FetchError, read_limited};
use super::keys::VerifyKey;
use super::oidc::{self, Discovered};
use crate::config::{JwksConfig, OidcConfig};

/// Retry delay while no keys have ever been fetched, whatever the floor is set to.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// The keys from one successful fetch.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<VerifyKey>,
    /// What tokens may use against these keys: the configured list, or what the issuer's
    /// discovery document allows of it. Empty until the first fetch.
    pub algorithms: Vec<Algorithm>,
    /// The accepted JWKs, serialised and sorted, to tell a changed set from a re-served one.
    canonical: Vec<String>,
}

/// Where a key set comes from.
pub enum Source {
    /// `[auth.jwks]`: a fixed URL and algorithms.
    Fixed(JwksConfig),
    /// `[auth.oidc]`: the issuer's discovery document names them, and may change them.
    Discovered(OidcConfig),
}

impl Source {
    fn refresh_interval(&self) -> Duration {
        match self {
            Source::Fixed(config) => config.refresh_interval,
            Source::Discovered(config) => config.refresh_interval,
        }
    }

    fn min_refresh_interval(&self) -> Duration {
        match self {
            Source::Fixed(config) => config.min_refresh_interval,
            Source::Discovered(config) => config.min_refresh_interval,
        }
    }

    fn timeout(&self) -> Duration {
        match self {
            Source::Fixed(config) => config.timeout,
            Source::Discovered(config) => config.timeout,
        }
    }
}

pub struct Jwks {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    client: reqwest::Client,
    /// The last good discovery document (OIDC only).
    discovered: RwLock<Option<Discovered>>,
    current: RwLock<Arc<KeySet>>,
    /// When the last fetch started. Held across the fetch, which makes fetches single-flight:
    /// callers queue here and, once the leader is done, find the floor not yet passed.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Emptied whenever the key set changes, so a token verified by a removed key stops working.
    cache: Arc<TokenCache>,
}

impl Jwks {
    /// Fetches the set once (a failure is logged, not returned) and starts the refresh schedule,
    /// which ends by itself once this `Jwks` is dropped.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub async fn start(source: Source, cache: Arc<TokenCache>) -> Result<Jwks, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(source.timeout())
            .connect_timeout(source.timeout())
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        let inner = Arc::new(Inner {
            source,
            client,
            discovered: RwLock::new(None),
            current: RwLock::new(Arc::new(KeySet::default())),
            last_fetch: tokio::sync::Mutex::new(None),
            cache,
        });
        inner.refresh(Duration::ZERO).await;
        tokio::spawn(schedule(Arc::downgrade(&inner)));
        Ok(Jwks { inner })
    }

    /// A snapshot; a refresh swaps in a new set without disturbing readers of the old one.
    pub fn keys(&self) -> Arc<KeySet> {
        self.inner.snapshot()
    }

    pub fn has_keys(&self) -> bool {
        !self.inner.snapshot().keys.is_empty()
    }

    /// Called when a token's key is not in the set: fetches again unless the last fetch was less
    /// than `min_refresh_interval` ago.
    pub async fn refresh_for_unknown_key(&self) {
        self.inner.refresh(self.inner.source.min_refresh_interval()).await;
    }
}

impl Inner {
    fn snapshot(&self) -> Arc<KeySet> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn refresh(&self, floor: Duration) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < floor) {
            return;
        }
        *last = Some(Instant::now());
        let Some((url, algorithms)) = self.target().await else {
            crate::metrics::jwks_refresh(false);
            return;
        };
        let fetched = self.fetch(&url, &algorithms).await;
        crate::metrics::jwks_refresh(fetched.is_ok());
        match fetched {
            Ok(set) => self.install(set, &url),
            Err(e) => {
                tracing::warn!(%url, error = %e, "jwks fetch failed; keeping the last good key set")
            }
        }
    }

    /// The URL and algorithms to fetch keys with: fixed, or from the issuer's document, fetched
    /// now (the last good one when that fails; none before a first success).
    async fn target(&self) -> Option<(reqwest::Url, Vec<Algorithm>)> {
        let config = match &self.source {
            Source::Fixed(config) => return Some((config.url.clone(), config.algorithms.clone())),
            Source::Discovered(config) => config,
        };
        match oidc::discover(&self.client, config).await {
            Ok(document) => {
                let target = (document.jwks_uri.clone(), document.algorithms.clone());
                *self.discovered.write().unwrap_or_else(PoisonError::into_inner) = Some(document);
                Some(target)
            }
            Err(e) => {
                let last = self.discovered.read().unwrap_or_else(PoisonError::into_inner);
                let (issuer, url) = (&config.issuer, &config.discovery_url);
                match last.as_ref() {
                    Some(_) => {
                        tracing::warn!(%issuer, %url, error = %e, "oidc discovery failed; keeping the last good document")
                    }
                    None => {
                        tracing::warn!(%issuer, %url, error = %e, "oidc discovery failed; this issuer's tokens cannot be verified (and /readyz fails) until it answers")
                    }
                }
                last.as_ref().map(|d| (d.jwks_uri.clone(), d.algorithms.clone()))
            }
        }
    }

    async fn fetch(&self, url: &reqwest::Url, algorithms: &[Algorithm]) -> Result<KeySet, FetchError> {
        let response = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await?
            .error_for_status()?;
        let body = read_limited(response).await?;
        let set = parse(&body, algorithms)?;
        if set.keys.is_empty() {
            return Err(FetchError::NoUsableKeys);
        }
        Ok(set)
    }

    fn install(&self, set: KeySet, url: &reqwest::Url) {
        let count = set.keys.len();
        let changed = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            let changed = current.canonical != set.canonical;
            if changed {
                *current = Arc::new(set);
            }
            changed
        };
        if changed {
            self.cache.clear();
            tracing::info!(%url, keys = count, "jwks key set changed");
        }
    }
}

async fn schedule(inner: Weak<Inner>) {
    loop {
        let delay = match inner.upgrade() {
            Some(inner) if inner.snapshot().keys.is_empty() => {
                let retry = inner.source.min_refresh_interval().max(MIN_RETRY);
                retry.min(inner.source.refresh_interval())
            }
            Some(inner) => inner.source.refresh_interval(),
            None => return,
        };
        tokio::time::sleep(delay).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.refresh(Duration::ZERO).await;
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// Keeps every key that can verify one of `allowed`; a key the set cannot describe to us (an
/// unknown type, an encryption key, a malformed entry) is skipped, not fatal to the rest.
fn parse(body: &[u8], allowed: &[Algorithm]) -> Result<KeySet, serde_json::Error> {
    let raw: RawSet = serde_json::from_slice(body)?;
    let mut accepted: Vec<(String, VerifyKey)> = raw
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| {
            let key = verify_key(&jwk, allowed)?;
            Some((serde_json::to_string(&jwk).ok()?, key))
        })
        .collect();
    accepted.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut canonical, keys): (Vec<String>, Vec<VerifyKey>) = accepted.into_iter().unzip();
    // The same keys under other algorithms are another set: tokens they verify may differ.
    canonical.push(format!("{allowed:?}"));
    Ok(KeySet {
        keys,
        algorithms: allowed.to_vec(),
        canonical,
    })
}

fn verify_key(jwk: &Jwk, allowed: &[Algorithm]) -> Option<VerifyKey> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if !matches!(
        jwk.algorithm,
        AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKeyPair(_)
    ) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm {
        // A key that names its algorithm is used for that one only.
        Some(named) => Algorithm::try_from(named)
            .ok()
            .filter(|a| allowed.contains(a))
            .into_iter()
            .collect(),
        None => allowed.iter().copied().filter(|a| a.family() == key.family()).collect(),
    };
    let key = VerifyKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    };
    key.algorithms.iter().any(|a| key.allows(*a)).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_jwk(kid: &str, alg: Option<&str>) -> serde_json::Value {
        let mut jwk = json!({ "kty": "RSA", "kid": kid, "n": "sXch", "e": "AQAB" });
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    fn parse_keys(set: serde_json::Value, allowed: &[Algorithm]) -> KeySet {
        parse(set.to_string().as_bytes(), allowed).expect("parses")
    }

    #[test]
    fn keeps_signing_keys_and_skips_the_rest() {
        let set = json!({ "keys": [
            rsa_jwk("a", None),
            rsa_jwk("b", Some("RS256")),
            { "kty": "oct", "kid": "sym", "k": "c2VjcmV0" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB" },
            { "kty": "weird", "kid": "x" },
            "not an object"
        ]});
        let keys = parse_keys(set, &[Algorithm::RS256, Algorithm::ES256]);
        let kids: Vec<_> = keys.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids.len(), 2);
        assert!(kids.contains(&"a") && kids.contains(&"b"));
        for key in &keys.keys {
            assert_eq!(key.algorithms, vec![Algorithm::RS256]);
        }
    }

    #[test]
    fn a_key_naming_a_disallowed_algorithm_is_skipped() {
        let set = json!({ "keys": [rsa_jwk("a", Some("RS512"))] });
        assert!(parse_keys(set, &[Algorithm::RS256]).keys.is_empty());
    }

    #[test]
    fn a_reordered_set_is_the_same_set() {
        let one = parse_keys(
            json!({ "keys": [rsa_jwk("a", None), rsa_jwk("b", None)] }),
            &[Algorithm::RS256],
        );
        let two = parse_keys(
            json!({ "keys": [rsa_jwk("b", None), rsa_jwk("a", None)] }),
            &[Algorithm::RS256],
        );
        let three = parse_keys(json!({ "keys": [rsa_jwk("a", None)] }), &[Algorithm::RS256]);
        assert!(one.canonical == two.canonical);
        assert!(one.canonical != three.canonical);
    }

    #[test]
    fn a_body_that_is_not_a_jwks_is_an_error() {
        assert!(parse(b"<html>", &[Algorithm::RS256]).is_err());
        assert!(parse(b"{\"nokeys\":[]}", &[Algorithm::RS256]).is_err());
    }
}
