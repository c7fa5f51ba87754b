//! Why a gated request or an inquiry read was refused; `error.rs` gives each its status and code.

use crate::auth::AuthError;
use crate::persona::PersonaError;

#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Persona(#[from] PersonaError),
    /// A gated path, and the caller's latest inquiry in `flow` does not pass its rule.
    #[error("verification in flow {flow:?} required (status {})", .status.as_deref().unwrap_or("none"))]
    Required {
        flow: String,
        /// Where the page starts or resumes that verification.
        get_or_create_path: String,
        /// `None`: no inquiry in that flow yet.
        status: Option<String>,
    },
    /// The caller has no such inquiry (or it is another user's: the two look alike).
    #[error("no such inquiry")]
    NotFound,
    /// `?flow=` names no configured verification flow.
    #[error("no such verification flow")]
    FlowNotFound,
    /// `?flow=` given twice.
    #[error("the flow is named more than once")]
    FlowAmbiguous,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error: {0}")]
    Internal(String),
}
