//! Identity: finds the caller's JWT (bearer header or session cookie, in the configured order),
//! verifies it against the static keys (`keys`) and the JWKS (`jwks`), and yields the user id the
//! rest of the gateway trusts. Verified tokens are remembered (`cache`) so a returning caller does
//! not pay a signature check on every request.
//!
//! It never logs or returns a token; rejections carry only an [`AuthError`], whose stable code is
//! all `error.rs` puts in the 401.

mod cache;
mod fetch;
mod identity;
mod jwks;
pub mod keys;
mod oidc;

use std::sync::Arc;

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{AuthConfig, TokenSource};
use cache::{CacheKey, TokenCache};
pub use identity::Identity;
use jwks::{Jwks, Source};
use keys::VerifyKey;

/// Why a request was not authenticated. Every variant is a 401; `code()` is the stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token or session cookie")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is too large")]
    TooLarge,
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("the token's key id is unknown")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token's user id claim is missing or invalid")]
    InvalidUserId,
    #[error("no verification keys are available")]
    KeysUnavailable,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Malformed => "token_malformed",
            AuthError::TooLarge => "token_too_large",
            AuthError::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            AuthError::UnknownKey => "token_unknown_key",
            AuthError::BadSignature => "token_bad_signature",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::IssuedInFuture => "token_issued_in_future",
            AuthError::WrongIssuer => "token_wrong_issuer",
            AuthError::WrongAudience => "token_wrong_audience",
            AuthError::InvalidUserId => "token_invalid_user_id",
            AuthError::KeysUnavailable => "token_keys_unavailable",
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, AuthError::Missing)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth.keys[{index}]: {message}")]
    Key { index: usize, message: String },
    #[error("auth.jwks / auth.oidc: building the HTTP client: {0}")]
    JwksClient(#[from] reqwest::Error),
}

pub struct Authenticator {
    config: AuthConfig,
    keys: Vec<VerifyKey>,
    /// One prepared `Validation` per algorithm some static key allows.
    validations: Vec<(Algorithm, Validation)>,
    /// `[auth.jwks]`, then `[auth.oidc]`, each with the validations its tokens get.
    remotes: Vec<Remote>,
    cache: Arc<TokenCache>,
}

/// A fetched key set and how its tokens are validated: a JWKS's with the `[auth]` issuers, an
/// OIDC issuer's with `iss` equal to that issuer exactly.
struct Remote {
    keys: Jwks,
    /// One per algorithm the source could ever allow.
    validations: Vec<(Algorithm, Validation)>,
}

impl Remote {
    /// The validation for `alg`, when this source may check such a token now: the configured
    /// list allows it and, once fetched, so does the set (an issuer's document may narrow it).
    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        let set = self.keys.keys();
        let now_allowed = set.algorithms.is_empty() || set.algorithms.contains(&alg);
        let validation = self.validations.iter().find(|(a, _)| *a == alg).map(|(_, v)| v)?;
        now_allowed.then_some(validation)
    }
}

/// How trying a token against a group of keys ended, when it did not end in a claims error.
enum Attempt {
    Verified(Map<String, Value>),
    /// At least one key was tried and none verified the signature.
    BadSignature,
    /// No key of the group may check this token.
    NoKey,
}

impl Authenticator {
    /// Parses the static keys and, with a JWKS configured, fetches it once. An unreachable IdP
    /// does not fail start-up: the gateway reports unready until the set arrives.
    ///
    /// # Errors
    /// A configured key cannot be parsed, or the JWKS client cannot be built.
    pub async fn new(config: &AuthConfig) -> Result<Self, AuthSetupError> {
        let keys =
            keys::static_keys(&config.keys).map_err(|(index, message)| AuthSetupError::Key { index, message })?;
        let cache = Arc::new(TokenCache::new(config.cache_size));
        let mut remotes = Vec::new();
        if let Some(jwks) = &config.jwks {
            let keys = Jwks::start(Source::Fixed(jwks.clone()), cache.clone()).await?;
            remotes.push(Remote {
                validations: validations(config, &jwks.algorithms, &config.issuers),
                keys,
            });
        }
        if let Some(oidc) = &config.oidc {
            let keys = Jwks::start(Source::Discovered(oidc.clone()), cache.clone()).await?;
            remotes.push(Remote {
                validations: validations(config, &oidc.algorithms, std::slice::from_ref(&oidc.issuer)),
                keys,
            });
        }
        let algorithms: Vec<Algorithm> = keys.iter().flat_map(|k| k.algorithms.iter().copied()).collect();
        Ok(Self {
            config: config.clone(),
            validations: validations(config, &algorithms, &config.issuers),
            keys,
            remotes,
            cache,
        })
    }

    /// Public paths skip authentication entirely.
    pub fn is_public(&self, path: &str) -> bool {
        self.config.public_paths.iter().any(|p| p.matches(path))
    }

    /// True once every configured key source has keys: before an IdP's first answer, its users
    /// could not be verified, so the gateway should not be sent traffic.
    pub fn ready(&self) -> bool {
        let some = !self.keys.is_empty() || !self.remotes.is_empty();
        some && self.remotes.iter().all(|r| r.keys.has_keys())
    }

    /// # Errors
    /// Any reason the request's token is absent or not acceptable.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Identity>, AuthError> {
        let (source, token) = extract(headers, &self.config.sources, self.config.cookie.as_deref())?;
        if token.len() > self.config.max_token_bytes {
            return Err(AuthError::TooLarge);
        }
        let key = CacheKey::new(source, token);
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(identity) = self.cache.get(&key, now) {
            return Ok(identity);
        }
        // Only a token that passed this check can be in the cache, so a hit never repeats it:
        // the token stays bytes until here, and a returning caller's is never scanned as text.
        let token = compact_jws(token).ok_or(AuthError::Malformed)?;
        let generation = self.cache.generation();
        // Boxed: a signature check (and maybe a JWKS fetch) is rare next to cache hits, and its
        // state would otherwise enlarge every request's future.
        let claims = Box::pin(self.verify(token)).await?;
        if !unique_claim_names(token) {
            return Err(AuthError::Malformed);
        }
        registered_claims(&claims, now, self.config.leeway.as_secs())?;
        let user_id = user_id(&claims, &self.config.user_claim, self.config.max_user_id_len)?;
        let expires_at = claims.get("exp").and_then(unix_seconds);
        let identity = Arc::new(Identity::new(user_id, claims, source));
        // A token accepted only thanks to the leeway is already past `exp`: nothing to remember.
        if let Some(expires_at) = expires_at.filter(|exp| *exp > now) {
            self.cache.insert(key, identity.clone(), expires_at, generation);
        }
        Ok(identity)
    }

    /// Signature and registered claims; the user id is checked by the caller. Static keys are
    /// tried first, then each remote source that may check the token's algorithm.
    async fn verify(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let header = header(token)?;
        let alg = header.alg;
        let kid = header.kid.as_deref();
        let static_validation = self.validations.iter().find(|(a, _)| *a == alg).map(|(_, v)| v);
        let remotes: Vec<(&Remote, &Validation)> = self
            .remotes
            .iter()
            .filter_map(|r| Some((r, r.validation(alg)?)))
            .collect();
        if static_validation.is_none() && remotes.is_empty() {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let mut outcome = Attempt::NoKey;
        if let Some(validation) = static_validation {
            // A static key bound to a kid checks only tokens naming it; an unbound one checks any.
            let statics = self
                .keys
                .iter()
                .filter(|k| k.allows(alg) && (k.kid.is_none() || k.kid.as_deref() == kid));
            outcome = attempt(token, statics.map(|k| &k.key), validation)?;
        }
        for (remote, validation) in &remotes {
            match (
                &outcome,
                self.attempt_remote(&remote.keys, token, alg, kid, validation).await?,
            ) {
                (Attempt::Verified(_), _) => break,
                (_, verified @ Attempt::Verified(_)) => outcome = verified,
                (_, Attempt::BadSignature) => outcome = Attempt::BadSignature,
                (_, Attempt::NoKey) => {}
            }
        }
        match outcome {
            Attempt::Verified(claims) => Ok(claims),
            Attempt::BadSignature => Err(AuthError::BadSignature),
            // Only a remote source could have checked it, and it has never been fetched.
            Attempt::NoKey if remotes.iter().any(|(r, _)| !r.keys.has_keys()) => Err(AuthError::KeysUnavailable),
            Attempt::NoKey => Err(AuthError::UnknownKey),
        }
    }

    /// Tries the set's keys for `kid` (or every key allowing `alg` when the token names none);
    /// when none may check the token, refreshes the set (rate-limited) and tries once more.
    async fn attempt_remote(
        &self,
        jwks: &Jwks,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        validation: &Validation,
    ) -> Result<Attempt, AuthError> {
        let candidates = |set: &jwks::KeySet| -> Result<Attempt, AuthError> {
            let keys = set
                .keys
                .iter()
                .filter(|k| k.allows(alg) && (kid.is_none() || k.kid.as_deref() == kid));
            attempt(token, keys.map(|k| &k.key), validation)
        };
        match candidates(&jwks.keys())? {
            Attempt::NoKey => {
                jwks.refresh_for_unknown_key().await;
                candidates(&jwks.keys())
            }
            done => Ok(done),
        }
    }
}

/// The first key whose signature check passes decides: its claims, or why they are unacceptable.
fn attempt<'k>(
    token: &str,
    keys: impl Iterator<Item = &'k DecodingKey>,
    validation: &Validation,
) -> Result<Attempt, AuthError> {
    let mut outcome = Attempt::NoKey;
    for key in keys {
        match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
            Ok(data) => return Ok(Attempt::Verified(data.claims)),
            Err(e) if signature_failed(e.kind()) => outcome = Attempt::BadSignature,
            Err(e) => return Err(claims_error(e.kind())),
        }
    }
    Ok(outcome)
}

/// Errors meaning "this key did not verify this token", after which the next key may.
fn signature_failed(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
    )
}

fn claims_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
        // A missing `exp`, a non-numeric `exp`/`nbf`, bad base64 or JSON: the token is not one
        // we can accept as written.
        _ => AuthError::Malformed,
    }
}

/// One prepared `Validation` per distinct algorithm of `algorithms`, accepting `issuers` (any
/// issuer when empty).
fn validations(config: &AuthConfig, algorithms: &[Algorithm], issuers: &[String]) -> Vec<(Algorithm, Validation)> {
    let mut out: Vec<(Algorithm, Validation)> = Vec::new();
    for alg in algorithms {
        if !out.iter().any(|(a, _)| a == alg) {
            out.push((*alg, validation(config, *alg, issuers)));
        }
    }
    out
}

fn validation(config: &AuthConfig, alg: Algorithm, issuers: &[String]) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = config.leeway.as_secs();
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if !issuers.is_empty() {
        v.set_issuer(issuers);
        required.push("iss");
    }
    if config.audiences.is_empty() {
        // Not configured means not checked; otherwise jsonwebtoken rejects every token with `aud`.
        v.validate_aud = false;
    } else {
        v.set_audience(&config.audiences);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

/// The parts of the JOSE header key selection needs.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn header(token: &str) -> Result<TokenHeader, AuthError> {
    match jsonwebtoken::decode_header(token) {
        // No extension is understood here, so a token that marks one critical must be refused
        // (RFC 7515 §4.1.11).
        Ok(h) if h.crit.is_some() => Err(AuthError::Malformed),
        Ok(h) => Ok(TokenHeader { alg: h.alg, kid: h.kid }),
        Err(_) if names_an_algorithm(token) => Err(AuthError::AlgorithmNotAllowed),
        Err(_) => Err(AuthError::Malformed),
    }
}

/// True when the header is readable JSON with a string `alg` jsonwebtoken does not know, such as
/// `none`: that is a refused algorithm, not a garbled token.
fn names_an_algorithm(token: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = token.split('.').next() else {
        return false;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else {
        return false;
    };
    serde_json::from_slice::<Map<String, Value>>(&json).is_ok_and(|h| h.get("alg").is_some_and(Value::is_string))
}

/// The token as text, if it is three base64url segments joined by dots (the last may be empty,
/// as in `alg: none`).
fn compact_jws(token: &[u8]) -> Option<&str> {
    let mut parts = token.split(|b| *b == b'.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let base64url = |s: &[u8]| s.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    let shaped =
        !header.is_empty() && !payload.is_empty() && base64url(header) && base64url(payload) && base64url(signature);
    // Base64url and dots are ASCII, so the conversion cannot fail once the shape is right.
    shaped.then(|| std::str::from_utf8(token).ok()).flatten()
}

/// The user id, if the configured claim holds one: any Unicode text but control characters, of
/// at most `max_len` bytes, without outer whitespace (which too many stores and forms trim, so
/// `"alice "` would become another user's id somewhere down the line).
fn user_id(claims: &Map<String, Value>, claim: &str, max_len: usize) -> Result<String, AuthError> {
    let Some(Value::String(id)) = claims.get(claim) else {
        return Err(AuthError::InvalidUserId);
    };
    let controls = id.chars().any(char::is_control);
    let trimmed = id.trim() == id;
    if id.is_empty() || id.len() > max_len || controls || !trimmed {
        return Err(AuthError::InvalidUserId);
    }
    Ok(id.clone())
}

/// RFC 7519 §4 lets a parser take the last of two claims with one name; the app, or a library
/// reading a forwarded token, may take the first. A verified token's claims are read once, so
/// such a token is refused rather than read one way here and another there.
fn unique_claim_names(token: &str) -> bool {
    use base64::Engine;
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object with unique member names")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(name) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                if !seen.insert(name) {
                    return Err(serde::de::Error::custom("duplicate claim name"));
                }
            }
            Ok(())
        }
    }
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return false;
    };
    let mut deserializer = serde_json::Deserializer::from_slice(&json);
    serde::Deserializer::deserialize_map(&mut deserializer, Unique).is_ok()
}

/// RFC 7519's types for the registered claims jsonwebtoken does not check: `iss` is one
/// StringOrURI (jsonwebtoken also accepts an array), `exp`/`nbf`/`iat` are NumericDate numbers,
/// and `iat` more than the leeway in the future means a clock or a token is wrong.
fn registered_claims(claims: &Map<String, Value>, now: u64, leeway: u64) -> Result<(), AuthError> {
    if claims.get("iss").is_some_and(|iss| !iss.is_string()) {
        return Err(AuthError::Malformed);
    }
    for name in ["exp", "nbf", "iat"] {
        if claims.get(name).is_some_and(|date| !date.is_number()) {
            return Err(AuthError::Malformed);
        }
    }
    match claims.get("iat").and_then(Value::as_f64) {
        Some(iat) if iat > (now + leeway) as f64 => Err(AuthError::IssuedInFuture),
        _ => Ok(()),
    }
}

/// An `exp`/`nbf` value as whole Unix seconds, rounded down.
fn unix_seconds(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Finds the token in the first configured source that carries one; a source that carries a bad
/// one is not skipped in favour of the next. The token is raw bytes: whether it is text is
/// checked only when it is not already in the cache.
///
/// # Errors
/// `Missing` when no source carries a token; `Malformed` for an empty or ambiguous header.
fn extract<'h>(
    headers: &'h HeaderMap,
    sources: &[TokenSource],
    cookie: Option<&str>,
) -> Result<(TokenSource, &'h [u8]), AuthError> {
    for source in sources {
        let found = match source {
            TokenSource::Header => bearer(headers)?,
            TokenSource::Cookie => match cookie {
                Some(name) => cookie_value(headers, name)?.map(str::as_bytes),
                None => None,
            },
        };
        if let Some(token) = found {
            return Ok((*source, token));
        }
    }
    Err(AuthError::Missing)
}

/// The token of an `Authorization: Bearer` header. Another scheme (say, Basic meant for the app)
/// is not a bearer token; two `Authorization` headers are refused as ambiguous.
fn bearer(headers: &HeaderMap) -> Result<Option<&[u8]>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    match bearer_token(value.as_bytes()) {
        None => Ok(None),
        Some([]) => Err(AuthError::Malformed),
        Some(token) => Ok(Some(token)),
    }
}

/// What follows the `Bearer` scheme of an `Authorization` value (possibly nothing), or `None` for
/// another scheme. The one reading of the header: `proxy` uses it to strip the token it must not
/// forward.
pub(crate) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &[][..]),
    };
    scheme.eq_ignore_ascii_case(b"bearer").then(|| rest.trim_ascii())
}

/// The non-empty cookie named `name`, across every `Cookie` header (HTTP/2 splits them). Two
/// different values are refused as ambiguous, as two `Authorization` headers are: the app (or a
/// framework reading the forwarded cookie) may take the other one.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, AuthError> {
    let mut values = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
        .filter(|value| !value.is_empty());
    let first = values.next();
    match first {
        Some(first) if values.any(|other| other != first) => Err(AuthError::Malformed),
        _ => Ok(first),
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    const BOTH: [TokenSource; 2] = [TokenSource::Header, TokenSource::Cookie];
    const COOKIE_FIRST: [TokenSource; 2] = [TokenSource::Cookie, TokenSource::Header];

    #[test]
    fn bearer_header_is_found_whatever_the_scheme_case() {
        for value in ["Bearer a.b.c", "bearer a.b.c", "BEARER   a.b.c "] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(
                extract(&h, &BOTH, Some("session")),
                Ok((TokenSource::Header, &b"a.b.c"[..]))
            );
        }
    }

    #[test]
    fn cookie_is_found_among_others_and_across_headers() {
        let h = headers(&[("cookie", "theme=dark; other=1"), ("cookie", "session=x.y.z; lang=en")]);
        assert_eq!(
            extract(&h, &BOTH, Some("session")),
            Ok((TokenSource::Cookie, &b"x.y.z"[..]))
        );
        let quoted = headers(&[("cookie", "session=\"x.y.z\"")]);
        assert_eq!(
            extract(&quoted, &BOTH, Some("session")),
            Ok((TokenSource::Cookie, &b"x.y.z"[..]))
        );
        let prefixed = headers(&[("cookie", "my_session=x.y.z")]);
        assert_eq!(extract(&prefixed, &BOTH, Some("session")), Err(AuthError::Missing));
        let repeated = headers(&[("cookie", "session=x.y.z; a=1"), ("cookie", "session=x.y.z")]);
        assert_eq!(
            extract(&repeated, &BOTH, Some("session")),
            Ok((TokenSource::Cookie, &b"x.y.z"[..]))
        );
        let two = headers(&[("cookie", "session=x.y.z; session=a.b.c")]);
        assert_eq!(extract(&two, &BOTH, Some("session")), Err(AuthError::Malformed));
    }

    #[test]
    fn the_configured_order_decides_between_sources() {
        let h = headers(&[
            ("authorization", "Bearer from.header.x"),
            ("cookie", "session=from.cookie.x"),
        ]);
        assert_eq!(
            extract(&h, &BOTH, Some("session")),
            Ok((TokenSource::Header, &b"from.header.x"[..]))
        );
        assert_eq!(
            extract(&h, &COOKIE_FIRST, Some("session")),
            Ok((TokenSource::Cookie, &b"from.cookie.x"[..]))
        );
        assert_eq!(
            extract(&h, &[TokenSource::Cookie], Some("session")),
            Ok((TokenSource::Cookie, &b"from.cookie.x"[..]))
        );
    }

    #[test]
    fn nothing_usable_is_missing() {
        let none = headers(&[]);
        assert_eq!(extract(&none, &BOTH, Some("session")), Err(AuthError::Missing));
        let basic = headers(&[("authorization", "Basic dXNlcjpwdw=="), ("cookie", "session=")]);
        assert_eq!(extract(&basic, &BOTH, Some("session")), Err(AuthError::Missing));
        // Not text at all, but not a bearer token either: left for the app.
        let mut latin1 = HeaderMap::new();
        latin1.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Basic \xe9t\xe9").expect("obs-text value"),
        );
        assert_eq!(extract(&latin1, &BOTH, None), Err(AuthError::Missing));
        let cookie_only = headers(&[("cookie", "session=x.y.z")]);
        assert_eq!(
            extract(&cookie_only, &[TokenSource::Header], None),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn empty_or_ambiguous_bearer_is_malformed() {
        let empty = headers(&[("authorization", "Bearer "), ("cookie", "session=x.y.z")]);
        assert_eq!(extract(&empty, &BOTH, Some("session")), Err(AuthError::Malformed));
        let two = headers(&[("authorization", "Bearer a.b.c"), ("authorization", "Bearer d.e.f")]);
        assert_eq!(extract(&two, &BOTH, Some("session")), Err(AuthError::Malformed));
    }

    #[test]
    fn compact_shape_is_checked() {
        assert_eq!(compact_jws(b"eyJh.eyJz.sig-_"), Some("eyJh.eyJz.sig-_"));
        assert_eq!(compact_jws(b"eyJh.eyJz."), Some("eyJh.eyJz."));
        let bad: [&[u8]; 9] = [
            b"",
            b"a.b",
            b"a.b.c.d",
            b".b.c",
            b"a..c",
            b"a b.c.d",
            b"a.b.c=",
            b"a.b+.c",
            b"a.b.\xc3\xa9",
        ];
        for bad in bad {
            assert!(compact_jws(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn user_ids_are_any_unicode_without_controls_or_outer_whitespace() {
        let claims = |v: Value| {
            let mut m = Map::new();
            m.insert("sub".into(), v);
            m
        };
        for good in ["usr_1", "a b", "ü", "José", "山田太郎", "50%", "a\u{200b}b"] {
            assert_eq!(
                user_id(&claims(Value::from(good)), "sub", 12),
                Ok(good.into()),
                "{good:?}"
            );
        }
        // The limit is in bytes: four three-byte characters are 12.
        assert_eq!(
            user_id(&claims(Value::from("山田太郎x")), "sub", 12),
            Err(AuthError::InvalidUserId)
        );
        for bad in [
            Value::from(""),
            Value::from(42),
            Value::Null,
            Value::from("x".repeat(13)),
            Value::from("a\u{1}b"),
            Value::from("a\nb"),
            Value::from("a\u{7f}"),
            Value::from("a\u{85}"),
            Value::from(" lead"),
            Value::from("trail "),
            Value::from("\u{3000}ideographic space"),
            Value::from("tab\t"),
        ] {
            assert_eq!(
                user_id(&claims(bad.clone()), "sub", 10),
                Err(AuthError::InvalidUserId),
                "{bad}"
            );
        }
        assert_eq!(
            user_id(&claims(Value::from("u")), "uid", 10),
            Err(AuthError::InvalidUserId)
        );
    }

    #[test]
    fn exp_seconds_accept_integers_and_floats() {
        assert_eq!(unix_seconds(&Value::from(10u64)), Some(10));
        assert_eq!(unix_seconds(&Value::from(10.9)), Some(10));
        assert_eq!(unix_seconds(&Value::from(-1)), None);
        assert_eq!(unix_seconds(&Value::from("10")), None);
    }
}
