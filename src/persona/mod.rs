//! The Persona API client: the inquiry calls the gateway makes (list, create, retrieve, resume)
//! and the one template read (its latest published version), with the API key injected here and
//! nowhere else. `client` does HTTP, timeouts and
//! retries; `retry` holds the waiting rules; `budget` spends the outbound budget (reserved per
//! round, refunded when unspent); this file holds the types callers see.
//!
//! **Invariant:** the API key never leaves this module except as the `Authorization` header
//! value (marked sensitive); no error message, log line or response carries it.

mod budget;
mod client;
mod retry;

pub use client::{ListQuery, PersonaClient, PersonaSetupError, Round};

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

/// The part of an inquiry the gateway acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    pub id: String,
    /// As Persona spells it (`created`, `pending`, `needs_review`, ...). Persona says the set is
    /// not closed, so it stays a string and callers decide what an unknown one means.
    pub status: String,
    /// The user id the inquiry was created for; `None` when Persona did not say.
    pub reference_id: Option<String>,
    /// Persona's ISO-8601 timestamps, passed on as written; `None` when null or absent.
    pub created_at: Option<String>,
    pub completed_at: Option<String>,
    /// `redacted-at` is set. Persona keeps the status of a redacted inquiry as it was, so this is
    /// the only sign that it can no longer be resumed or opened.
    pub redacted: bool,
    /// The `itmplv_` template version the inquiry is pinned to, when Persona said.
    pub template_version_id: Option<String>,
}

/// An inquiry together with the session token `resume` returned for it.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub inquiry: Inquiry,
    pub session_token: String,
}
