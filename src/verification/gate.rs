//! The gate: on a gated path, the caller's latest inquiry status in the flow each covering rule
//! requires decides between proxying (with `X-Verification-Status`) and a 403
//! `verification_required`. A path several rules cover passes only if every one of them passes
//! (checked in the declared order: the first that fails answers, naming its flow); the app then
//! receives the status of the nearest rule (the longest matching prefix, the first declared on a
//! tie).
//!
//! Statuses come from the ledger. Persona is asked (one call per user and flow at a time in this
//! process, the answer recorded for every replica) only when the ledger knows nothing, or holds a
//! status that does not pass and is older than `gate.recheck_after`. A passing status is trusted
//! until it expires (`gate.status_ttl`) or a newer event replaces it.

use std::sync::Arc;

use http::HeaderValue;

use super::error::VerificationError;
use super::ledger::{Ledger, Record};
use super::time;
use crate::auth::{AuthError, Identity};
use crate::config::{FlowConfig, GateConfig, GateRule};
use crate::flight::Flights;
use crate::persona::{ListQuery, PersonaClient, PersonaError};

pub struct Gate {
    config: GateConfig,
    /// What the rules need to know of each flow they name.
    flows: Vec<GatedFlow>,
    ledger: Ledger,
    persona: Arc<PersonaClient>,
    /// Keyed by the ledger key (flow and user).
    lookups: Arc<Flights<Result<Record, PersonaError>>>,
}

/// A flow some rule requires.
#[derive(Clone)]
struct GatedFlow {
    name: String,
    template_id: String,
    /// Named in the 403 message: where the page starts or resumes this verification.
    get_or_create_path: String,
}

impl Gate {
    pub fn new(config: &GateConfig, flows: &[FlowConfig], ledger: Ledger, persona: Arc<PersonaClient>) -> Gate {
        let flows = flows
            .iter()
            .filter(|f| config.gates_flow(&f.name))
            .map(|f| GatedFlow {
                name: f.name.clone(),
                template_id: f.template_id.clone(),
                get_or_create_path: f.path.clone(),
            })
            .collect();
        Gate {
            config: config.clone(),
            flows,
            ledger,
            persona,
            lookups: Arc::new(Flights::new("gate_lookup")),
        }
    }

    pub fn covers(&self, path: &str) -> bool {
        self.config.is_gated(path)
    }

    /// `None` for a path that is not gated; the status to send the app for a caller who passes.
    ///
    /// # Errors
    /// 403 `verification_required` when the caller's status does not pass a covering rule; a
    /// Persona error when the gateway knows nothing about the caller in a flow and Persona cannot
    /// say either.
    pub async fn check(
        &self,
        path: &str,
        identity: Option<&Identity>,
    ) -> Result<Option<HeaderValue>, VerificationError> {
        let covering: Vec<(usize, &GateRule)> = self
            .config
            .rules
            .iter()
            .filter_map(|rule| Some((rule.specificity(path)?, rule)))
            .collect();
        if covering.is_empty() {
            return Ok(None);
        }
        // Config validation keeps gated paths out of the public ones; refuse rather than guess.
        let identity = identity.ok_or(VerificationError::Auth(AuthError::Missing))?;
        // In the declared order, so the operator decides which refusal a user sees first.
        let mut nearest: Option<(usize, String)> = None;
        for (specificity, rule) in covering {
            let flow = self.flow(&rule.flow)?;
            let record = self.status_of(flow, rule, &identity.user_id).await?;
            let Some(status) = record.status.as_deref().filter(|s| passes(rule, s)) else {
                return Err(refusal(flow, &record));
            };
            if nearest.as_ref().is_none_or(|(best, _)| specificity > *best) {
                nearest = Some((specificity, status.to_owned()));
            }
        }
        let status = nearest.map(|(_, status)| status).unwrap_or_default();
        HeaderValue::from_str(&status)
            .map(Some)
            .map_err(|_| VerificationError::Internal("a required status is not a header value".into()))
    }

    /// Config validation makes every rule name a configured flow; a rule that somehow does not is
    /// refused rather than skipped.
    fn flow(&self, name: &str) -> Result<&GatedFlow, VerificationError> {
        self.flows
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| VerificationError::Internal(format!("a gate rule names the unknown flow {name:?}")))
    }

    /// Trusted as is: a status that passes `rule`, or a failing one learned recently.
    fn trusted(&self, rule: &GateRule, record: &Record) -> bool {
        let age = time::now().saturating_sub(record.seen);
        let recheck_ms = u64::try_from(self.config.recheck_after.as_millis()).unwrap_or(u64::MAX);
        record.status.as_deref().is_some_and(|s| passes(rule, s)) || age < recheck_ms
    }

    async fn status_of(&self, flow: &GatedFlow, rule: &GateRule, user: &str) -> Result<Record, VerificationError> {
        let known = self.ledger.get(&flow.name, user).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "verification ledger unavailable; asking Persona");
            None
        });
        if let Some(record) = known.as_ref().filter(|r| self.trusted(rule, r)) {
            return Ok(record.clone());
        }
        match (self.lookup(flow, user).await, known) {
            (Ok(record), _) => Ok(record),
            (Err(e), Some(stale)) => {
                tracing::warn!(error = %e, flow = %flow.name, "rechecking a verification status failed; using the recorded one");
                Ok(stale)
            }
            (Err(e), None) => Err(e.into()),
        }
    }

    /// Concurrent lookups for one user in one flow share one Persona call.
    async fn lookup(&self, flow: &GatedFlow, user: &str) -> Result<Record, PersonaError> {
        let key = crate::store::user_key("verification", &flow.name, user);
        let (persona, ledger, flow, owner) = (self.persona.clone(), self.ledger.clone(), flow.clone(), user.to_owned());
        let round = move || async move { ask_persona(&persona, &ledger, &flow, &owner).await };
        self.lookups.run(&key, round).await.unwrap_or_else(|| {
            Err(PersonaError::unavailable(
                "the verification lookup ended without an answer",
            ))
        })
    }
}

fn passes(rule: &GateRule, status: &str) -> bool {
    rule.require.iter().any(|r| r == status)
}

fn refusal(flow: &GatedFlow, record: &Record) -> VerificationError {
    VerificationError::Required {
        flow: flow.name.clone(),
        get_or_create_path: flow.get_or_create_path.clone(),
        status: record.status.clone(),
    }
}

/// The user's newest inquiry on the flow's template, recorded in the ledger (negative answers
/// too).
async fn ask_persona(
    persona: &PersonaClient,
    ledger: &Ledger,
    flow: &GatedFlow,
    user: &str,
) -> Result<Record, PersonaError> {
    let asked = time::now();
    let query = ListQuery {
        template_id: &flow.template_id,
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
    tracing::debug!(flow = %flow.name, status = ?record.status, "asked Persona for a user's verification status");
    Ok(ledger
        .record(&flow.name, user, record.clone())
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not record a verification status");
            record
        }))
}
