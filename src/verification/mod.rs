//! What the gateway knows about each user's verification in each flow, and the two things built
//! on it:
//!
//! - `ledger`: the user's latest inquiry status per gated flow in the shared store, fed by
//!   verified webhooks (`webhook`, attributed to a flow by the inquiry's template), get-or-create
//!   answers (`inquiry`) and Persona lookups;
//! - `gate`: path prefixes of the app only users with a passing status in a flow reach
//!   (`[gate]`, `[[gate.rules]]`);
//! - `read`: the caller's own inquiries, read with the server-side key (`[inquiry_read]`).
//!
//! The app never writes KYC code: it receives `X-Verification-Status` on gated paths, and the
//! page reads status from the gateway.

mod error;
mod gate;
mod ledger;
mod read;
mod time;

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, Response};

pub use error::VerificationError;
pub use gate::Gate;
pub use ledger::{EventReport, Ledger};
pub use read::{ReadRoute, Reads};

use crate::auth::Identity;
use crate::body::Body;
use crate::config::Config;

use crate::persona::PersonaClient;

/// Set by the gateway on requests it let through the gate; a client's copy is always removed.
pub const STATUS_HEADER: HeaderName = HeaderName::from_static("x-verification-status");

/// The gate and the scoped reads, as the gateway's dispatch sees them.
pub struct Verification {
    gate: Option<Gate>,
    reads: Option<Reads>,
    ledger: Option<Ledger>,
}

impl Verification {
    /// `ledger` is `None` when no path is gated ([`Ledger::new`]); the reads still work.
    pub fn new(config: &Config, persona: PersonaClient, ledger: Option<Ledger>) -> Verification {
        let persona = Arc::new(persona);
        let flows = &config.inquiry.flows;
        let gate = ledger
            .clone()
            .map(|l| Gate::new(&config.gate, flows, l, persona.clone()));
        let reads = config
            .inquiry_read
            .enabled
            .then(|| Reads::new(&config.inquiry_read, flows, persona, ledger.clone()));
        Verification { gate, reads, ledger }
    }

    /// The ledger the webhook receiver and get-or-create feed.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.ledger.as_ref()
    }

    pub fn read_route(&self, path: &str) -> Option<ReadRoute> {
        self.reads.as_ref()?.route(path)
    }

    /// # Errors
    /// As [`Reads::answer`]; 404 if reads are disabled (never routed here then).
    pub async fn read(
        &self,
        method: &Method,
        route: ReadRoute,
        identity: Option<&Identity>,
        query: Option<&str>,
    ) -> Result<Response<Body>, VerificationError> {
        match &self.reads {
            Some(reads) => reads.answer(method, route, identity, query).await,
            None => Err(VerificationError::NotFound),
        }
    }

    /// Whether `path` is one the gate decides on; every other path skips it without a future.
    pub fn gates(&self, path: &str) -> bool {
        self.gate.as_ref().is_some_and(|gate| gate.covers(path))
    }

    /// `Some(status)` for a caller who passed the gate on a gated path.
    ///
    /// # Errors
    /// As [`Gate::check`].
    pub async fn gate(
        &self,
        path: &str,
        identity: Option<&Identity>,
    ) -> Result<Option<HeaderValue>, VerificationError> {
        match &self.gate {
            Some(gate) => gate.check(path, identity).await,
            None => Ok(None),
        }
    }
}
