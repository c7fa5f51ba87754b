//! The gate: on a gated path, the caller's latest inquiry status decides between proxying (with
//! `X-Verification-Status`) and a 403 `verification_required`.
//!
//! The status comes from the ledger. Persona is asked (one call per user at a time in this
//! process, the answer recorded for every replica) only when the ledger knows nothing, or holds a
//! status that does not pass and is older than `gate.recheck_after`. A passing status is trusted
//! until it expires (`gate.status_ttl`) or a newer event replaces it.

use std::sync::Arc;

use http::HeaderValue;

use super::ledger::{Ledger, Record};
use super::time;
use crate::auth::{AuthError, Identity};
use crate::config::GateConfig;
use crate::error::GatewayError;
use crate::inquiry::flight::Flights;
use crate::persona::{ListQuery, PersonaClient, PersonaError};

pub struct Gate {
    config: GateConfig,
    ledger: Ledger,
    persona: Arc<PersonaClient>,
    lookups: Arc<Flights<Result<Record, PersonaError>>>,
    /// Named in the 403 message: where the page starts or resumes verification.
    get_or_create_path: String,
}

impl Gate {
    pub fn new(config: &GateConfig, ledger: Ledger, persona: Arc<PersonaClient>, get_or_create_path: &str) -> Gate {
        Gate {
            config: config.clone(),
            ledger,
            persona,
            lookups: Arc::new(Flights::new("gate_lookup")),
            get_or_create_path: get_or_create_path.to_owned(),
        }
    }

    pub fn covers(&self, path: &str) -> bool {
        self.config.is_gated(path)
    }

    /// `None` for a path that is not gated; the status to send the app for a caller who passes.
    ///
    /// # Errors
    /// 403 `verification_required` when the caller's status does not pass; a Persona error when
    /// the gateway knows nothing about the caller and Persona cannot say either.
    pub async fn check(&self, path: &str, identity: Option<&Identity>) -> Result<Option<HeaderValue>, GatewayError> {
        if !self.config.is_gated(path) {
            return Ok(None);
        }
        // Config validation keeps gated paths out of the public ones; refuse rather than guess.
        let identity = identity.ok_or(GatewayError::Auth(AuthError::Missing))?;
        let record = self.status_of(&identity.user_id).await?;
        match record.status.as_deref().filter(|s| self.passes(s)) {
            Some(status) => HeaderValue::from_str(status)
                .map(Some)
                .map_err(|_| GatewayError::Internal("a required status is not a header value".into())),
            None => Err(self.refusal(&record)),
        }
    }

    fn passes(&self, status: &str) -> bool {
        self.config.require.iter().any(|r| r == status)
    }

    /// Trusted as is: a passing status, or a failing one learned recently.
    fn trusted(&self, record: &Record) -> bool {
        let age = time::now().saturating_sub(record.seen);
        let recheck_ms = u64::try_from(self.config.recheck_after.as_millis()).unwrap_or(u64::MAX);
        record.status.as_deref().is_some_and(|s| self.passes(s)) || age < recheck_ms
    }

    async fn status_of(&self, user: &str) -> Result<Record, GatewayError> {
        let known = self.ledger.get(user).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "verification ledger unavailable; asking Persona");
            None
        });
        if let Some(record) = known.as_ref().filter(|r| self.trusted(r)) {
            return Ok(record.clone());
        }
        match (self.lookup(user).await, known) {
            (Ok(record), _) => Ok(record),
            (Err(e), Some(stale)) => {
                tracing::warn!(error = %e, "rechecking a verification status failed; using the recorded one");
                Ok(stale)
            }
            (Err(e), None) => Err(e.into()),
        }
    }

    /// Concurrent lookups for one user share one Persona call.
    async fn lookup(&self, user: &str) -> Result<Record, PersonaError> {
        let (persona, ledger, owner) = (self.persona.clone(), self.ledger.clone(), user.to_owned());
        let round = move || async move { ask_persona(&persona, &ledger, &owner).await };
        self.lookups.run(user, round).await.unwrap_or_else(|| {
            Err(PersonaError::unavailable(
                "the verification lookup ended without an answer",
            ))
        })
    }

    fn refusal(&self, record: &Record) -> GatewayError {
        let how = format!(
            "complete identity verification first: POST {} starts or resumes it",
            self.get_or_create_path
        );
        let message = match &record.status {
            Some(status) => format!("{how} (current status: {status})"),
            None => format!("{how} (no verification started yet)"),
        };
        GatewayError::Forbidden {
            code: "verification_required",
            message,
        }
    }
}

/// The user's newest inquiry on the template, recorded in the ledger (negative answers too).
async fn ask_persona(persona: &PersonaClient, ledger: &Ledger, user: &str) -> Result<Record, PersonaError> {
    let asked = time::now();
    let query = ListQuery {
        reference_id: user,
        statuses: &[],
        page_size: 1,
    };
    let latest = persona.list_inquiries(&query).await?.into_iter().next();
    // The list is filtered by reference id; checking again costs nothing.
    let latest = latest.filter(|i| i.reference_id.as_deref() == Some(user));
    let record = Record::observed(
        latest.as_ref().map(|i| i.id.as_str()),
        latest.as_ref().map(|i| i.status.as_str()),
        asked,
    );
    tracing::debug!(status = ?record.status, "asked Persona for a user's verification status");
    Ok(ledger.record(user, record.clone()).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not record a verification status");
        record
    }))
}
