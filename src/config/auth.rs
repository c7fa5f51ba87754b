//! `[auth]`: where tokens come from, which keys verify them, and which claims they must carry.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::primitives::{Secret, SecretRef, parse_duration};
use super::validate::Validator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Header,
    /// The cookie named by `auth.cookie`.
    Cookie,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Tried in order; the first source that carries a token is the one used.
    pub sources: Vec<TokenSource>,
    pub cookie: Option<String>,
    pub user_claim: String,
    pub max_user_id_len: usize,
    pub max_token_bytes: usize,
    pub leeway: Duration,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    /// Path prefixes that skip authentication (static assets, health, webhooks).
    pub public_paths: Vec<crate::target::PathPrefix>,
    /// Verified tokens remembered, so a returning user does not pay a signature check again.
    pub cache_size: usize,
    pub keys: Vec<KeyConfig>,
    pub jwks: Option<JwksConfig>,
    pub oidc: Option<OidcConfig>,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// When set, only tokens whose header names this `kid` are checked against this key.
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub material: KeyMaterial,
}

#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// Shared secret for the HS* family.
    Secret(Secret),
    /// A public key (RSA, EC or Ed25519), read and parsed from its PEM file at load time.
    Public(jsonwebtoken::DecodingKey),
}

#[derive(Debug, Clone)]
pub struct JwksConfig {
    pub url: reqwest::Url,
    pub algorithms: Vec<Algorithm>,
    pub refresh_interval: Duration,
    /// The shortest gap between two fetches, however many unknown `kid`s arrive.
    pub min_refresh_interval: Duration,
    pub timeout: Duration,
}

/// An OpenID Connect issuer whose discovery document names its JWKS and algorithms (OIDC
/// Discovery 1.0); tokens verified by its keys must name it as `iss`, exactly.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    /// `<issuer>/.well-known/openid-configuration` (OIDC Discovery §4).
    pub discovery_url: reqwest::Url,
    /// Intersected with the document's `id_token_signing_alg_values_supported`; public-key
    /// algorithms only.
    pub algorithms: Vec<Algorithm>,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default = "default_sources")]
    sources: Vec<TokenSource>,
    cookie: Option<String>,
    #[serde(default = "default_user_claim")]
    user_claim: String,
    #[serde(default = "default_max_user_id_len")]
    max_user_id_len: usize,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "default_leeway")]
    leeway: String,
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    public_paths: Vec<String>,
    #[serde(default = "default_cache_size")]
    cache_size: usize,
    #[serde(default)]
    keys: Vec<RawKey>,
    jwks: Option<RawJwks>,
    oidc: Option<RawOidc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: Option<String>,
    algorithms: Vec<String>,
    secret: Option<SecretRef>,
    public_key_pem: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    url: String,
    algorithms: Vec<String>,
    #[serde(default = "default_refresh")]
    refresh_interval: String,
    #[serde(default = "default_min_refresh")]
    min_refresh_interval: String,
    #[serde(default = "default_jwks_timeout")]
    timeout: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    algorithms: Option<Vec<String>>,
    #[serde(default = "default_refresh")]
    refresh_interval: String,
    #[serde(default = "default_min_refresh")]
    min_refresh_interval: String,
    #[serde(default = "default_jwks_timeout")]
    timeout: String,
}

/// Every public-key algorithm jsonwebtoken verifies: what an issuer may use unless the operator
/// narrows it.
pub(crate) const PUBLIC_KEY_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn default_sources() -> Vec<TokenSource> {
    vec![TokenSource::Header, TokenSource::Cookie]
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_max_user_id_len() -> usize {
    128
}
fn default_max_token_bytes() -> usize {
    8 * 1024
}
fn default_leeway() -> String {
    "30s".into()
}
fn default_cache_size() -> usize {
    100_000
}
fn default_refresh() -> String {
    "10m".into()
}
fn default_min_refresh() -> String {
    "30s".into()
}
fn default_jwks_timeout() -> String {
    "5s".into()
}

fn algorithms(v: &mut Validator, key: &str, names: &[String]) -> Vec<Algorithm> {
    if names.is_empty() {
        v.problem(key, "list at least one algorithm");
    }
    names
        .iter()
        .filter_map(|name| {
            // `none` is not an algorithm jsonwebtoken knows, so it can never be configured.
            v.check(
                key,
                name.parse::<Algorithm>()
                    .map_err(|_| format!("{name:?} is not a supported JWT algorithm")),
            )
        })
        .collect()
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl RawAuth {
    pub(super) fn validate(self, v: &mut Validator) -> AuthConfig {
        if self.sources.is_empty() {
            v.problem("auth.sources", "list at least one of \"header\", \"cookie\"");
        }
        if self.sources.contains(&TokenSource::Cookie) && self.cookie.is_none() {
            v.problem("auth.cookie", "required when auth.sources includes \"cookie\"");
        }
        if self.user_claim.is_empty() {
            v.problem("auth.user_claim", "must not be empty");
        }
        if self.max_user_id_len == 0 {
            v.problem("auth.max_user_id_len", "must be at least 1");
        }
        if self.max_token_bytes == 0 {
            v.problem("auth.max_token_bytes", "must be at least 1");
        }
        let public_paths = self
            .public_paths
            .iter()
            .enumerate()
            .filter_map(|(i, p)| v.prefix(&format!("auth.public_paths[{i}]"), p))
            .collect();
        let keys: Vec<KeyConfig> = self
            .keys
            .into_iter()
            .enumerate()
            .filter_map(|(i, k)| k.validate(v, i))
            .collect();
        let jwks = self.jwks.and_then(|j| j.validate(v));
        let oidc = self.oidc.and_then(|o| o.validate(v));
        if keys.is_empty() && jwks.is_none() && oidc.is_none() {
            v.problem("auth.keys", "configure at least one key, auth.jwks or auth.oidc");
        }
        AuthConfig {
            sources: self.sources,
            cookie: self.cookie,
            user_claim: self.user_claim,
            max_user_id_len: self.max_user_id_len,
            max_token_bytes: self.max_token_bytes,
            leeway: v.duration("auth.leeway", &self.leeway),
            issuers: self.issuers,
            audiences: self.audiences,
            public_paths,
            cache_size: self.cache_size,
            keys,
            jwks,
            oidc,
        }
    }
}

impl RawKey {
    fn validate(self, v: &mut Validator, i: usize) -> Option<KeyConfig> {
        let key = format!("auth.keys[{i}]");
        let algs = algorithms(v, &format!("{key}.algorithms"), &self.algorithms);
        let hmac = algs.iter().filter(|a| is_hmac(**a)).count();
        // One key, one family: an allowlist mixing HS and RS/ES is exactly the key-confusion bug.
        if hmac != 0 && hmac != algs.len() {
            v.problem(
                format!("{key}.algorithms"),
                "do not mix HS* with public-key algorithms on one key",
            );
        }
        let material = match (self.secret, self.public_key_pem) {
            (Some(s), None) => {
                if hmac != algs.len() {
                    v.problem(format!("{key}.secret"), "a secret only verifies HS256/HS384/HS512");
                }
                KeyMaterial::Secret(v.secret(&format!("{key}.secret"), &s)?)
            }
            (None, Some(path)) => {
                if hmac != 0 {
                    v.problem(
                        format!("{key}.public_key_pem"),
                        "a public key cannot verify HS* algorithms",
                    );
                }
                let path = v.path(&path);
                let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()));
                let pem = v.check(&format!("{key}.public_key_pem"), pem)?;
                if hmac != 0 || algs.is_empty() {
                    return None;
                }
                let parsed = super::keys::public_pem_key(&pem, &algs).map_err(|e| format!("{}: {e}", path.display()));
                KeyMaterial::Public(v.check(&format!("{key}.public_key_pem"), parsed)?)
            }
            _ => {
                v.problem(&key, "set exactly one of secret or public_key_pem");
                return None;
            }
        };
        Some(KeyConfig {
            kid: self.kid,
            algorithms: algs,
            material,
        })
    }
}

impl RawOidc {
    fn validate(self, v: &mut Validator) -> Option<OidcConfig> {
        let issuer = v.check("auth.oidc.issuer", reqwest::Url::parse(&self.issuer))?;
        if !matches!(issuer.scheme(), "https" | "http") {
            v.problem(
                "auth.oidc.issuer",
                "must be an https:// (or, for local IdPs, http://) URL",
            );
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            v.problem(
                "auth.oidc.issuer",
                "an issuer has no query or fragment (OIDC Discovery §2)",
            );
        }
        // §4: a terminating `/` of the issuer is removed before the well-known suffix.
        let base = self.issuer.trim_end_matches('/');
        let discovery_url = v.check(
            "auth.oidc.issuer",
            reqwest::Url::parse(&format!("{base}/.well-known/openid-configuration")),
        )?;
        let algorithms = match &self.algorithms {
            Some(names) => algorithms(v, "auth.oidc.algorithms", names),
            None => PUBLIC_KEY_ALGORITHMS.to_vec(),
        };
        if algorithms.iter().any(|a| is_hmac(*a)) {
            v.problem(
                "auth.oidc.algorithms",
                "an issuer's keys are public keys; HS* is not allowed here",
            );
        }
        let refresh_interval = v.duration("auth.oidc.refresh_interval", &self.refresh_interval);
        if refresh_interval.is_zero() && parse_duration(&self.refresh_interval).is_ok() {
            v.problem("auth.oidc.refresh_interval", "must be longer than 0ms");
        }
        Some(OidcConfig {
            // Compared with the document's `issuer` and tokens' `iss` exactly as written.
            issuer: self.issuer,
            discovery_url,
            algorithms,
            refresh_interval,
            min_refresh_interval: v.duration("auth.oidc.min_refresh_interval", &self.min_refresh_interval),
            timeout: v.duration("auth.oidc.timeout", &self.timeout),
        })
    }
}

impl RawJwks {
    fn validate(self, v: &mut Validator) -> Option<JwksConfig> {
        let url = v.check("auth.jwks.url", reqwest::Url::parse(&self.url))?;
        if !matches!(url.scheme(), "https" | "http") {
            v.problem("auth.jwks.url", "must be an https:// (or, for local IdPs, http://) URL");
        }
        let algorithms = algorithms(v, "auth.jwks.algorithms", &self.algorithms);
        if algorithms.iter().any(|a| is_hmac(*a)) {
            v.problem(
                "auth.jwks.algorithms",
                "a JWKS holds public keys; HS* is not allowed here",
            );
        }
        let refresh_interval = v.check("auth.jwks.refresh_interval", parse_duration(&self.refresh_interval));
        if refresh_interval.is_some_and(|d| d.is_zero()) {
            v.problem("auth.jwks.refresh_interval", "must be longer than 0ms");
        }
        let refresh_interval = refresh_interval.unwrap_or_default();
        Some(JwksConfig {
            url,
            algorithms,
            refresh_interval,
            min_refresh_interval: v.duration("auth.jwks.min_refresh_interval", &self.min_refresh_interval),
            timeout: v.duration("auth.jwks.timeout", &self.timeout),
        })
    }
}
