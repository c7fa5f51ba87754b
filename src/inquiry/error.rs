//! Why a get-or-create call got no inquiry; `error.rs` gives each its status and code.

use std::time::Duration;

use crate::auth::AuthError;
use crate::persona::PersonaError;

/// Cloneable so one round's failure can answer every request that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InquiryError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A CORS preflight from an origin that is not allowed.
    #[error("this origin may not call the route")]
    CorsOriginNotAllowed,
    /// A cookie-authenticated call without an allowed `Origin` (CSRF).
    #[error("cookie-authenticated call refused ({})", if *.origin_sent { "Origin not allowed" } else { "no Origin" })]
    OriginNotAllowed { origin_sent: bool },
    #[error(transparent)]
    Persona(#[from] PersonaError),
    #[error("{0}")]
    Profile(String),
    #[error("the get-or-create round ended without an answer")]
    Interrupted,
    #[error("another replica held the user's get-or-create lock for {0:?}")]
    LockBusy(Duration),
    #[error("the cross-replica lock is unavailable: {0}")]
    LockUnavailable(String),
}
