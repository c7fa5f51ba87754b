//! How a Persona call failed, in the terms the rest of the gateway acts on.

/// How a Persona failure looks from the outside; `error.rs` maps each to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonaFailure {
    /// Persona could not be reached or answered with an error worth retrying later: 502.
    Unavailable,
    /// The key or the template is wrong: 500, and retrying will not help.
    Misconfigured,
    /// The gateway's own outbound budget is spent: 503 with `Retry-After`.
    BudgetExhausted(std::time::Duration),
    /// Persona itself throttles the key (429) for longer than the call's deadline allows waiting:
    /// 503 with Persona's wait as `Retry-After`, so the client backs off as long as Persona asks
    /// instead of retrying into the same limit.
    RateLimited(std::time::Duration),
    /// A create answered 5xx: it may or may not have happened, and its key only replays the 5xx.
    /// The caller looks the user's inquiries up before creating with a new key.
    Indeterminate,
    /// Persona refused to resume (409): the inquiry was finished or redacted meanwhile.
    Refused,
}

/// Cloneable so that one failed Persona round can be the answer of every request that waited
/// on it (the per-user single-flight).
#[derive(Debug, Clone, thiserror::Error)]
#[error("persona: {message}")]
pub struct PersonaError {
    failure: PersonaFailure,
    message: String,
}

impl PersonaError {
    pub fn failure(&self) -> PersonaFailure {
        self.failure
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self {
            failure: PersonaFailure::Unavailable,
            message: message.into(),
        }
    }

    pub(crate) fn indeterminate(message: impl Into<String>) -> Self {
        Self {
            failure: PersonaFailure::Indeterminate,
            message: message.into(),
        }
    }

    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Self {
            failure: PersonaFailure::Refused,
            message: message.into(),
        }
    }

    pub(crate) fn misconfigured(message: impl Into<String>) -> Self {
        Self {
            failure: PersonaFailure::Misconfigured,
            message: message.into(),
        }
    }

    pub(crate) fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        Self {
            failure: PersonaFailure::RateLimited(retry_after),
            message: message.into(),
        }
    }

    pub(crate) fn budget_exhausted(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        Self {
            failure: PersonaFailure::BudgetExhausted(retry_after),
            message: message.into(),
        }
    }
}
