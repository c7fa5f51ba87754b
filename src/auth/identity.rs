//! Who a verified caller is, as every later phase sees them.

use http::HeaderValue;
use serde_json::{Map, Value};

use crate::config::TokenSource;

/// A caller whose token verified. Shared (`Arc`) because verified tokens are cached.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Checked: non-empty, at most `auth.max_user_id_len` bytes, no control characters, no
    /// leading or trailing whitespace; any other Unicode is valid. Persona gets it as it is.
    pub user_id: String,
    /// `user_id` as the header the app receives (`headers::encode_text`), made once per verified
    /// token rather than once per request.
    user_header: HeaderValue,
    pub claims: Map<String, Value>,
    pub source: TokenSource,
}

impl Identity {
    pub fn new(user_id: String, claims: Map<String, Value>, source: TokenSource) -> Self {
        Self {
            user_header: crate::headers::encode_text(&user_id),
            user_id,
            claims,
            source,
        }
    }

    pub fn user_header(&self) -> &HeaderValue {
        &self.user_header
    }
}
