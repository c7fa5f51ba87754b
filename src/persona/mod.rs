//! The Persona API client (interface only; the client lands with the get-or-create change).

/// How a Persona failure looks from the outside; `error.rs` maps each to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonaFailure {
    /// Persona could not be reached or answered with an error worth retrying later: 502.
    Unavailable,
    /// The key or the template is wrong: 500, and retrying will not help.
    Misconfigured,
    /// The gateway's own outbound budget is spent: 503 with `Retry-After`.
    BudgetExhausted(std::time::Duration),
}

#[derive(Debug, thiserror::Error)]
#[error("persona: {message}")]
pub struct PersonaError {
    failure: PersonaFailure,
    message: String,
}

impl PersonaError {
    pub fn failure(&self) -> PersonaFailure {
        self.failure
    }
}
