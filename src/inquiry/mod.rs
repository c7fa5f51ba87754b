//! `POST /api/inquiries/get-or-create` (path configurable), one route per verification flow: the
//! verified user's current Persona inquiry in that flow, created if needed, with a session token
//! when the flow needs one. Flows are independent: each has its own template, prefill, policy,
//! single-flight and cross-replica lock, and a user's inquiry in one flow is never the answer of
//! another. They share the Persona client (one outbound budget per API key), CORS and the token
//! cache.
//!
//! One round per user and flow (`flight`), each round is:
//! 1. one list call: the user's newest inquiry on the flow's template, any status (`page[size]=1`);
//! 2. by that inquiry's status: `created` -> its id, no token (0 more calls); `pending` ->
//!    `resume` for a session token (1 more; a token cache exists as an opt-in); a finished
//!    status -> the policy table: `report` (0 more), `new` -> create (1 more), `resume`
//!    (expired only: the template's latest version, cached, then resume or, if the inquiry is
//!    on an older version, create; 1 or 2 more); none -> create. A redacted inquiry counts as
//!    finished whatever its status (Persona keeps the status and refuses to resume it): the
//!    policy for a finished status applies, and any other is replaced by a new inquiry.
//!
//! So a get-or-create usually costs 1 or 2 Persona calls, as the tutorial's backend does. Both
//! are reserved from the outbound budget before the lookup (`ROUND_CALLS`) and the one not
//! needed is given back, so the budget admits whole rounds: a round it cannot cover answers 503
//! before calling Persona, instead of spending a lookup on a user whose create would be refused.
//! Failure rules: a failed lookup is an error (502), never "no inquiry, create one"; a failed
//! resume is an error, never an id without its token; a resume Persona refuses (the inquiry was
//! finished or redacted meanwhile) reads the inquiry again and decides anew. A create answered
//! 5xx may or may not have happened, and its idempotency key can only replay the 5xx: the round
//! lists the user's inquiries again and creates with a new key only if nothing new is there
//! (at most [`MAX_CREATES`] creates per round), so no failure makes a second inquiry. A round that could not take the cross-replica lock (Redis down,
//! `on_store_error = "allow"`) answers what it finds but never creates (503
//! `inquiry_lock_unavailable`).

mod cors;
mod error;
mod prefill;
mod replica;
mod template;
mod tokens;

use std::sync::Arc;

use http::header::{CACHE_CONTROL, ORIGIN};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde::Serialize;
use tracing::Instrument;

use crate::auth::{AuthError, Identity};
use crate::body::{Body, json_response};
use crate::config::{FlowConfig, InquiryConfig, PolicyTable, StatusPolicy, TokenSource};
use crate::flight::Flights;
use crate::metrics::GetOrCreate as Outcome;
use crate::persona::{Inquiry, ListQuery, PersonaClient, PersonaError, PersonaFailure, Round};
use crate::store::Store;
use crate::verification::Ledger;
use cors::Cors;
pub use error::InquiryError;
use prefill::{Prefill, Profile};
use replica::{Guard, ReplicaLock};
use template::TemplateVersion;
use tokens::TokenCache;

/// The Persona calls one round plans: the lookup, then at most one create or resume. Retries and
/// the rarer extra calls (a template read, a lookup after a failed create) are not reserved;
/// each takes a unit when it happens (see `persona::budget`).
const ROUND_CALLS: u32 = 2;

/// Creates one round may try, each after a lookup showed that none before it went through.
const MAX_CREATES: u32 = 3;

/// The route's 200 body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Answer {
    pub inquiry_id: String,
    pub session_token: Option<String>,
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
#[error("inquiry.profile_url: building the HTTP client: {0}")]
pub struct InquirySetupError(reqwest::Error);

/// The get-or-create route of every configured flow. `store` carries the cross-replica lock in
/// redis mode.
///
/// # Errors
/// The profile endpoint's HTTP client cannot be built.
pub fn routes(
    config: &InquiryConfig,
    persona: &PersonaClient,
    store: &Store,
    ledger: Option<&Ledger>,
) -> Result<Vec<InquiryRoute>, InquirySetupError> {
    let profile = match &config.profile {
        Some(p) => Some(Arc::new(Profile::new(p).map_err(InquirySetupError)?)),
        None => None,
    };
    let tokens = Arc::new(TokenCache::new(config.token_ttl, config.token_cache_size));
    let shared = Shared {
        config,
        persona,
        store,
        profile,
        tokens,
        ledger,
    };
    Ok(config
        .flows
        .iter()
        .map(|flow| InquiryRoute::new(flow, &shared))
        .collect())
}

/// What every flow's route is built with.
struct Shared<'a> {
    config: &'a InquiryConfig,
    persona: &'a PersonaClient,
    store: &'a Store,
    profile: Option<Arc<Profile>>,
    tokens: Arc<TokenCache>,
    /// Where every answer's status is recorded for the verification gate, when paths are gated.
    ledger: Option<&'a Ledger>,
}

/// One flow's route as the gateway sees it: path match, CORS, and the call into [`GetOrCreate`].
pub struct InquiryRoute {
    path: String,
    cors: Cors,
    service: Arc<GetOrCreate>,
}

impl InquiryRoute {
    fn new(flow: &FlowConfig, shared: &Shared<'_>) -> Self {
        Self {
            path: flow.path.clone(),
            cors: Cors::new(&shared.config.allowed_origins),
            service: Arc::new(GetOrCreate::new(flow, shared)),
        }
    }

    /// The flow this route serves.
    pub fn flow(&self) -> &str {
        &self.service.flow
    }

    pub fn matches(&self, path: &str) -> bool {
        path == self.path
    }

    /// The request's `Origin` when it may call the route from a browser.
    pub fn allowed_origin<B>(&self, req: &Request<B>) -> Option<HeaderValue> {
        self.cors.allowed_origin(req)
    }

    /// A CORS preflight's answer. Preflights carry no credentials, so they come before admission.
    ///
    /// # Errors
    /// `CorsOriginNotAllowed` for an origin that may not call the route.
    pub fn preflight(&self, origin: Option<HeaderValue>) -> Result<Response<Body>, InquiryError> {
        origin
            .map(|origin| self.cors.preflight(origin))
            .ok_or(InquiryError::CorsOriginNotAllowed)
    }

    /// The admitted caller's inquiry (`identity` is `None` on a public path, which is refused).
    ///
    /// # Errors
    /// 405 for other methods, 401 without a caller, 403 for a cookie-authenticated call without
    /// an allowed origin, and whatever the round could not do.
    pub async fn answer<B>(
        &self,
        req: &Request<B>,
        identity: Option<Arc<Identity>>,
        origin_allowed: bool,
    ) -> Result<Response<Body>, InquiryError> {
        if req.method() != Method::POST {
            return Err(InquiryError::MethodNotAllowed);
        }
        let identity = identity.ok_or(InquiryError::Auth(AuthError::Missing))?;
        // A browser attaches cookies to cross-site requests by itself; a bearer header it does
        // not. So a cookie-authenticated call must come from a page we trust (CSRF).
        if identity.source == TokenSource::Cookie && !origin_allowed {
            return Err(InquiryError::OriginNotAllowed {
                origin_sent: req.headers().contains_key(ORIGIN),
            });
        }
        let answer = self.service.get_or_create(identity).await?;
        Ok(json_response(StatusCode::OK, &serde_json::json!(answer)))
    }

    /// What every answer but a preflight carries, errors included: `no-store`, since the body
    /// may hold a session token, and for an allowed origin the CORS headers that let its page
    /// read it.
    pub fn finish(&self, response: &mut Response<Body>, origin: Option<HeaderValue>) {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(origin) = origin {
            cors::decorate(response.headers_mut(), origin);
        }
    }
}

/// One flow's get-or-create logic, independent of HTTP.
pub struct GetOrCreate {
    /// The flow's name: a metrics label, in its log lines and its lock's key.
    flow: String,
    /// The template its inquiries are created from and looked up on.
    template_id: String,
    persona: PersonaClient,
    policy: PolicyTable,
    /// Shared by every flow: inquiry ids are Persona's, unique across templates.
    tokens: Arc<TokenCache>,
    template: TemplateVersion,
    prefill: Prefill,
    flights: Arc<Flights<Result<Answer, InquiryError>>>,
    /// Redis mode only: extends `flights` to every replica.
    replicas: Option<ReplicaLock>,
    ledger: Option<Ledger>,
}

impl GetOrCreate {
    fn new(flow: &FlowConfig, shared: &Shared<'_>) -> Self {
        let persona = shared.persona.clone();
        // A round is a lookup and at most one create or resume, each within the deadline; the
        // third deadline is margin for the profile fetch and the store's round trips.
        let replicas = ReplicaLock::new(shared.store, persona.deadline().saturating_mul(3));
        Self {
            flow: flow.name.clone(),
            template_id: flow.template_id.clone(),
            persona,
            policy: flow.policy,
            tokens: shared.tokens.clone(),
            template: TemplateVersion::new(shared.config.template_version_ttl),
            prefill: Prefill::new(flow, shared.profile.clone()),
            flights: Arc::new(Flights::new("get_or_create")),
            replicas,
            // Only the flows some gate rule requires have their statuses kept.
            ledger: shared.ledger.filter(|l| l.keeps(&flow.name)).cloned(),
        }
    }

    /// Concurrent calls for one user share one round (in this process; across replicas, rounds
    /// for one user and flow take turns, see `replica`).
    ///
    /// # Errors
    /// Persona or the profile endpoint failed; nothing was created on a failed lookup.
    pub async fn get_or_create(self: &Arc<Self>, identity: Arc<Identity>) -> Result<Answer, InquiryError> {
        let this = Arc::clone(self);
        let user = identity.user_id.clone();
        let span = tracing::info_span!("get_or_create", flow = %self.flow);
        let round = move || {
            async move {
                let asked = std::time::SystemTime::now();
                let answer = this.leader_round(&identity).await;
                let outcome = answer.as_ref().map_or(Outcome::Error, |(outcome, _)| *outcome);
                crate::metrics::get_or_create(&this.flow, outcome);
                let answer = answer.map(|(_, answer)| answer);
                if let (Some(ledger), Ok(a)) = (&this.ledger, &answer) {
                    ledger
                        .observe(&this.flow, &identity.user_id, &a.inquiry_id, &a.status, asked)
                        .await;
                }
                answer
            }
            .instrument(span)
        };
        self.flights
            .run(&user, round)
            .await
            .unwrap_or(Err(InquiryError::Interrupted))
    }

    /// The round only the leader runs; in redis mode, under the user's cross-replica lock.
    async fn leader_round(&self, identity: &Identity) -> Result<(Outcome, Answer), InquiryError> {
        match &self.replicas {
            Some(lock) => {
                let key = crate::store::user_key("goc", &self.flow, &identity.user_id);
                lock.around(&key, |guard| self.round(identity, guard)).await
            }
            None => self.round(identity, Guard::Exclusive).await,
        }
    }

    /// Reserves the round's calls after the cross-replica lock is taken, so a round waiting for
    /// another replica holds none of the budget.
    async fn round(&self, identity: &Identity, guard: Guard) -> Result<(Outcome, Answer), InquiryError> {
        let mut persona = self.persona.round(ROUND_CALLS).await?;
        let answer = self.steps(identity, &mut persona, &guard).await;
        persona.finish().await;
        answer
    }

    /// The answer, with which of the module doc's cases produced it (for the metrics).
    /// Only a round holding the cross-replica lock creates (see `replica::Guard`).
    async fn steps(
        &self,
        identity: &Identity,
        persona: &mut Round<'_>,
        guard: &Guard,
    ) -> Result<(Outcome, Answer), InquiryError> {
        let latest = self.latest(identity, persona).await?;
        let Some(inquiry) = latest else {
            tracing::info!(user = %identity.user_id, "no inquiry found, creating one");
            return self.create(identity, persona, guard, None).await;
        };
        tracing::debug!(
            inquiry = %inquiry.id,
            status = %inquiry.status,
            redacted = inquiry.redacted,
            "found the user's latest inquiry"
        );
        let plan = self.plan(&inquiry);
        match self.follow(plan, identity, inquiry, persona, guard).await {
            Err(InquiryError::Persona(e)) if e.failure() == PersonaFailure::Refused => {
                self.after_refused_resume(identity, persona, guard, e).await
            }
            other => other,
        }
    }

    /// The user's newest inquiry on the flow's template, any status.
    async fn latest(&self, identity: &Identity, persona: &mut Round<'_>) -> Result<Option<Inquiry>, InquiryError> {
        let query = ListQuery {
            template_id: &self.template_id,
            reference_id: &identity.user_id,
            statuses: &[],
            page_size: 1,
        };
        Ok(persona.list_inquiries(&query).await?.into_iter().next())
    }

    /// What to do with the user's latest inquiry.
    fn plan(&self, inquiry: &Inquiry) -> Plan {
        let policy = self.policy.for_status(&inquiry.status);
        if inquiry.redacted {
            // Nothing can resume or open it any more; only reporting a finished status is left
            // of its policy, every other case gets a new inquiry so the user can go on.
            return match policy {
                Some(StatusPolicy::Report) => Plan::Report,
                _ => Plan::Create,
            };
        }
        match (inquiry.status.as_str(), policy) {
            ("created", _) => Plan::Continue,
            ("pending", _) => Plan::Resume,
            (_, Some(StatusPolicy::New)) => Plan::Create,
            (_, Some(StatusPolicy::Resume)) => Plan::ResumeIfCurrent,
            // An unknown status (Persona says the set may grow) is reported, never acted on:
            // creating could duplicate, resuming could fail.
            (_, Some(StatusPolicy::Report) | None) => Plan::Report,
        }
    }

    /// Carries out a plan.
    async fn follow(
        &self,
        plan: Plan,
        identity: &Identity,
        inquiry: Inquiry,
        persona: &mut Round<'_>,
        guard: &Guard,
    ) -> Result<(Outcome, Answer), InquiryError> {
        if plan != Plan::Resume {
            // Its old sessions no longer open it: no remembered token may be handed out.
            self.tokens.forget(&inquiry.id);
        }
        match plan {
            Plan::Continue => Ok((Outcome::ResumedCreated, without_token(inquiry))),
            Plan::Report => Ok((Outcome::ReturnedTerminal, without_token(inquiry))),
            Plan::Create => self.create(identity, persona, guard, Some(&inquiry.id)).await,
            Plan::Resume => self.resume(inquiry, persona).await,
            Plan::ResumeIfCurrent => {
                if self.on_latest_version(&inquiry, persona).await? {
                    self.resume(inquiry, persona).await
                } else {
                    tracing::info!(
                        inquiry = %inquiry.id,
                        "the expired inquiry is on an older template version, creating a new one"
                    );
                    self.create(identity, persona, guard, Some(&inquiry.id)).await
                }
            }
        }
    }

    /// Whether the inquiry is pinned to the template's latest published version. An inquiry
    /// whose version Persona did not say is treated as outdated: a new inquiry is always right.
    async fn on_latest_version(&self, inquiry: &Inquiry, persona: &mut Round<'_>) -> Result<bool, InquiryError> {
        let Some(version) = &inquiry.template_version_id else {
            return Ok(false);
        };
        let latest = self.template.latest(&self.template_id, persona).await?;
        Ok(*version == latest)
    }

    /// Persona refused to resume what the lookup showed as resumable: it was finished or
    /// redacted in between. The inquiry is read again and planned once more, without resuming.
    async fn after_refused_resume(
        &self,
        identity: &Identity,
        persona: &mut Round<'_>,
        guard: &Guard,
        refused: PersonaError,
    ) -> Result<(Outcome, Answer), InquiryError> {
        let Some(inquiry) = self.latest(identity, persona).await? else {
            return Err(refused.into());
        };
        match self.plan(&inquiry) {
            plan @ (Plan::Create | Plan::Report | Plan::Continue) => {
                self.follow(plan, identity, inquiry, persona, guard).await
            }
            // Still resumable as far as Persona's list says, yet refused: nothing safe to do.
            Plan::Resume | Plan::ResumeIfCurrent => Err(refused.into()),
        }
    }

    /// Creates the user's inquiry, if this round holds the cross-replica lock. `replaced` is the
    /// newest inquiry before it (if any), so that after a create with an unknown outcome a lookup
    /// can tell whether it went through.
    async fn create(
        &self,
        identity: &Identity,
        persona: &mut Round<'_>,
        guard: &Guard,
        replaced: Option<&str>,
    ) -> Result<(Outcome, Answer), InquiryError> {
        guard.may_create()?;
        let fields = self.prefill.fields(identity).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let unknown = match persona
                .create_inquiry(&self.template_id, &identity.user_id, &fields)
                .await
            {
                Ok(inquiry) => {
                    tracing::info!(inquiry = %inquiry.id, "created inquiry");
                    return Ok((Outcome::Created, without_token(inquiry)));
                }
                Err(e) if e.failure() == PersonaFailure::Indeterminate => e,
                Err(e) => return Err(e.into()),
            };
            let latest = self.latest(identity, persona).await?;
            if let Some(found) = latest.filter(|i| Some(i.id.as_str()) != replaced) {
                tracing::info!(inquiry = %found.id, "the create that failed went through after all");
                return self.answer_found(found, persona).await;
            }
            if attempt >= MAX_CREATES {
                return Err(unknown.into());
            }
            tracing::info!(attempt, "no inquiry was created, creating again with a new key");
        }
    }

    /// The inquiry a failed create made after all, answered as its status wants (it was just
    /// created, so normally `created`).
    async fn answer_found(&self, found: Inquiry, persona: &mut Round<'_>) -> Result<(Outcome, Answer), InquiryError> {
        match found.status.as_str() {
            "created" if !found.redacted => Ok((Outcome::Created, without_token(found))),
            "pending" if !found.redacted => self.resume(found, persona).await,
            _ => Ok((Outcome::ReturnedTerminal, without_token(found))),
        }
    }

    /// A session token for the inquiry: Persona's `resume` (an unused session if it has one),
    /// or, only when `inquiry.token_ttl` opts in, a token from an earlier resume while it is
    /// fresh and the inquiry still `pending`.
    async fn resume(&self, inquiry: Inquiry, persona: &mut Round<'_>) -> Result<(Outcome, Answer), InquiryError> {
        if inquiry.status == "pending"
            && let Some(token) = self.tokens.get(&inquiry.id)
        {
            let answer = Answer {
                inquiry_id: inquiry.id,
                session_token: Some(token),
                status: inquiry.status,
            };
            return Ok((Outcome::ResumedPending, answer));
        }
        let resumed = persona.resume_inquiry(&inquiry.id).await?;
        self.tokens.put(&resumed.inquiry.id, &resumed.session_token);
        let answer = Answer {
            inquiry_id: resumed.inquiry.id,
            session_token: Some(resumed.session_token),
            status: resumed.inquiry.status,
        };
        Ok((Outcome::ResumedPending, answer))
    }
}

/// What a round does with the user's latest inquiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// `created`: its id, no token needed.
    Continue,
    /// `pending`: a session token.
    Resume,
    /// `expired` with the `resume` policy: resume if it is on the latest template version.
    ResumeIfCurrent,
    /// Its id and status, nothing else.
    Report,
    /// A new inquiry.
    Create,
}

fn without_token(inquiry: Inquiry) -> Answer {
    Answer {
        inquiry_id: inquiry.id,
        session_token: None,
        status: inquiry.status,
    }
}
