//! Identity: finds the caller's JWT (bearer header or session cookie), verifies it against the
//! configured keys and JWKS, and yields the user id the rest of the gateway trusts.
//! (Interface only; the verification work lands with the auth change.)

use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::config::{AuthConfig, TokenSource};

/// A caller whose token verified. Shared (`Arc`) because verified tokens are cached.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Checked: non-empty, bounded length, no control characters; safe for a header value.
    pub user_id: String,
    pub claims: Map<String, Value>,
    pub source: TokenSource,
}

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
}

pub struct Authenticator {
    config: AuthConfig,
}

impl Authenticator {
    /// # Errors
    /// A configured key cannot be parsed.
    pub async fn new(config: &AuthConfig) -> Result<Self, AuthSetupError> {
        Ok(Self { config: config.clone() })
    }

    /// Public paths skip authentication entirely.
    pub fn is_public(&self, path: &str) -> bool {
        self.config.public_paths.iter().any(|p| path.starts_with(p.as_str()))
    }

    /// True once at least one verification key is loaded.
    pub fn ready(&self) -> bool {
        true
    }

    /// # Errors
    /// Any reason the request's token is absent or not acceptable.
    pub async fn authenticate(&self, _headers: &HeaderMap) -> Result<Arc<Identity>, AuthError> {
        Err(AuthError::Missing)
    }
}
