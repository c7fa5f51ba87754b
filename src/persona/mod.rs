//! The Persona API client: the inquiry calls the gateway makes (list, create, retrieve, resume)
//! and the one template read (its latest published version), with the API key injected here and
//! nowhere else. `client` does HTTP, timeouts and
//! retries; `retry` holds the waiting rules; `budget` spends the outbound budget (reserved per
//! round, refunded when unspent); `inquiry` and `error` hold what callers get back.
//!
//! **Invariant:** the API key never leaves this module except as the `Authorization` header
//! value (marked sensitive); no error message, log line or response carries it.

mod budget;
mod client;
mod error;
mod inquiry;
mod retry;

pub use client::{ListQuery, PersonaClient, PersonaSetupError, Round};
pub use error::{PersonaError, PersonaFailure};
pub use inquiry::Inquiry;
