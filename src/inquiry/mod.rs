//! `POST /api/inquiries/get-or-create` (path configurable): the verified user's current Persona
//! inquiry, created if needed, with a session token when the flow needs one.
//!
//! One round per user (`flight`), each round is:
//! 1. one list call: the user's newest inquiry on the template, any status (`page[size]=1`);
//! 2. by that inquiry's status: `created` -> its id, no token (0 more calls); `pending` -> a
//!    cached session token (0 more) or `resume` (1 more); a finished status -> the policy table:
//!    `report` (0 more), `new` -> create (1 more), `resume` (expired only, 1 more); none -> create.
//!
//! So a get-or-create costs 1 or 2 Persona calls, never more than the tutorial's backend. Both
//! are reserved from the outbound budget before the lookup (`ROUND_CALLS`) and the one not
//! needed is given back, so the budget admits whole rounds: a round it cannot cover answers 503
//! before calling Persona, instead of spending a lookup on a user whose create would be refused.
//! Failure rules: a failed lookup is an error (502), never "no inquiry, create one"; a failed
//! resume is an error, never an id without its token; a round that could not take the
//! cross-replica lock (Redis down, `on_store_error = "allow"`) answers what it finds but never
//! creates (503 `inquiry_lock_unavailable`).

mod cors;
pub(crate) mod flight;
mod prefill;
mod replica;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, ORIGIN};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::auth::{AuthError, Identity};
use crate::body::{Body, json_response};
use crate::config::{InquiryConfig, PolicyTable, StatusPolicy, TokenSource};
use crate::error::GatewayError;
use crate::metrics::GetOrCreate as Outcome;
use crate::persona::{Inquiry, ListQuery, PersonaClient, PersonaError, Round};
use crate::store::Store;
use crate::verification::Ledger;
use cors::Cors;
use flight::Flights;
use prefill::Prefill;
use replica::{Guard, ReplicaLock};
use tokens::TokenCache;

/// The Persona calls one round plans: the lookup, then at most one create or resume. Retries are
/// not reserved; each takes a unit when it happens (see `persona::budget`).
const ROUND_CALLS: u32 = 2;

/// The route's 200 body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Answer {
    pub inquiry_id: String,
    pub session_token: Option<String>,
    pub status: String,
}

/// Cloneable so one round's failure can answer every request that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InquiryError {
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

impl From<InquiryError> for GatewayError {
    fn from(e: InquiryError) -> Self {
        match e {
            InquiryError::Persona(e) => GatewayError::Persona(e),
            InquiryError::Profile(detail) => GatewayError::UpstreamUnavailable(detail),
            InquiryError::Interrupted => GatewayError::Internal(e.to_string()),
            InquiryError::LockBusy(_) => GatewayError::Unavailable {
                code: "inquiry_busy",
                message: "another request for this user is still running, retry later".into(),
                retry_after: Some(Duration::from_secs(1)),
            },
            InquiryError::LockUnavailable(_) => GatewayError::Unavailable {
                code: "inquiry_lock_unavailable",
                message: "identity verification is temporarily unavailable, retry later".into(),
                retry_after: Some(Duration::from_secs(1)),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("inquiry.profile_url: building the HTTP client: {0}")]
pub struct InquirySetupError(reqwest::Error);

/// The route as the gateway sees it: path match, CORS, and the call into [`GetOrCreate`].
pub struct InquiryRoute {
    path: String,
    cors: Cors,
    service: Arc<GetOrCreate>,
}

impl InquiryRoute {
    /// `store` carries the cross-replica lock in redis mode.
    ///
    /// # Errors
    /// The profile endpoint's HTTP client cannot be built.
    pub fn new(config: &InquiryConfig, persona: PersonaClient, store: &Store) -> Result<Self, InquirySetupError> {
        Ok(Self {
            path: config.path.clone(),
            cors: Cors::new(&config.allowed_origins),
            service: Arc::new(GetOrCreate::new(config, persona, store)?),
        })
    }

    /// Records every answer's status in `ledger`, for the verification gate.
    pub fn with_ledger(mut self, ledger: Ledger) -> Self {
        // A route just built is the only owner of its service, so this always applies.
        if let Some(service) = Arc::get_mut(&mut self.service) {
            service.ledger = Some(ledger);
        }
        self
    }

    pub fn matches(&self, path: &str) -> bool {
        path == self.path
    }

    /// Answers a request on this route. `identity` is the identity phase's result, passed in
    /// unresolved because a preflight carries no credentials and must be answered anyway.
    pub async fn handle<B>(
        &self,
        req: &Request<B>,
        identity: Result<Option<Arc<Identity>>, GatewayError>,
    ) -> Response<Body> {
        let origin = self.cors.allowed_origin(req);
        if req.method() == Method::OPTIONS {
            return match origin {
                Some(origin) => self.cors.preflight(origin),
                None => GatewayError::Forbidden {
                    code: "cors_origin_not_allowed",
                    message: "this origin may not call the route".into(),
                }
                .into_response(),
            };
        }
        let mut response = match self.answer(req, identity, origin.is_some()).await {
            Ok(answer) => json_response(StatusCode::OK, &serde_json::json!(answer)),
            Err(e) => e.into_response(),
        };
        // The body may hold a session token: no cache anywhere may keep it.
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(origin) = origin {
            cors::decorate(response.headers_mut(), origin);
        }
        response
    }

    async fn answer<B>(
        &self,
        req: &Request<B>,
        identity: Result<Option<Arc<Identity>>, GatewayError>,
        origin_allowed: bool,
    ) -> Result<Answer, GatewayError> {
        if req.method() != Method::POST {
            return Err(GatewayError::MethodNotAllowed);
        }
        let identity = identity?.ok_or(GatewayError::Auth(AuthError::Missing))?;
        // A browser attaches cookies to cross-site requests by itself; a bearer header it does
        // not. So a cookie-authenticated call must come from a page we trust (CSRF).
        if identity.source == TokenSource::Cookie && !origin_allowed {
            let message = match req.headers().get(ORIGIN) {
                Some(_) => "cross-site request refused: Origin is not allowed",
                None => "cookie-authenticated request refused: Origin header missing",
            };
            return Err(GatewayError::Forbidden {
                code: "origin_not_allowed",
                message: message.into(),
            });
        }
        Ok(self.service.get_or_create(identity).await?)
    }
}

/// The get-or-create logic, independent of HTTP.
pub struct GetOrCreate {
    persona: PersonaClient,
    policy: PolicyTable,
    tokens: TokenCache,
    prefill: Prefill,
    flights: Arc<Flights<Result<Answer, InquiryError>>>,
    /// Redis mode only: extends `flights` to every replica.
    replicas: Option<ReplicaLock>,
    ledger: Option<Ledger>,
}

impl GetOrCreate {
    /// # Errors
    /// The profile endpoint's HTTP client cannot be built.
    pub fn new(config: &InquiryConfig, persona: PersonaClient, store: &Store) -> Result<Self, InquirySetupError> {
        // A round is a lookup and at most one create or resume, each within the deadline; the
        // third deadline is margin for the profile fetch and the store's round trips.
        let replicas = ReplicaLock::new(store, persona.deadline().saturating_mul(3));
        Ok(Self {
            persona,
            policy: config.policy,
            tokens: TokenCache::new(config.token_ttl, config.token_cache_size),
            prefill: Prefill::new(config).map_err(InquirySetupError)?,
            flights: Arc::new(Flights::new("get_or_create")),
            replicas,
            ledger: None,
        })
    }

    /// Concurrent calls for one user share one round (in this process; across replicas, rounds
    /// for one user take turns, see `replica`).
    ///
    /// # Errors
    /// Persona or the profile endpoint failed; nothing was created on a failed lookup.
    pub async fn get_or_create(self: &Arc<Self>, identity: Arc<Identity>) -> Result<Answer, InquiryError> {
        let this = Arc::clone(self);
        let user = identity.user_id.clone();
        let round = move || async move {
            let asked = std::time::SystemTime::now();
            let answer = this.leader_round(&identity).await;
            crate::metrics::get_or_create(answer.as_ref().map_or(Outcome::Error, |(outcome, _)| *outcome));
            let answer = answer.map(|(_, answer)| answer);
            if let (Some(ledger), Ok(a)) = (&this.ledger, &answer) {
                ledger.observe(&identity.user_id, &a.inquiry_id, &a.status, asked).await;
            }
            answer
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
                lock.around(&identity.user_id, |guard| self.round(identity, guard))
                    .await
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

    /// The answer, with which of the module doc's cases produced it (for the metrics). Only a
    /// round holding the lock creates (see `replica::Guard`).
    async fn steps(
        &self,
        identity: &Identity,
        persona: &mut Round<'_>,
        guard: &Guard,
    ) -> Result<(Outcome, Answer), InquiryError> {
        let query = ListQuery {
            reference_id: &identity.user_id,
            statuses: &[],
            page_size: 1,
        };
        let latest = persona.list_inquiries(&query).await?.into_iter().next();
        let Some(inquiry) = latest else {
            guard.may_create()?;
            tracing::info!(user = %identity.user_id, "no inquiry found, creating one");
            return Ok((Outcome::Created, self.create(identity, persona).await?));
        };
        tracing::debug!(inquiry = %inquiry.id, status = %inquiry.status, "found the user's latest inquiry");
        match inquiry.status.as_str() {
            "created" => Ok((Outcome::ResumedCreated, without_token(inquiry))),
            "pending" => Ok((Outcome::ResumedPending, self.resume(inquiry, persona).await?)),
            status => {
                self.tokens.forget(&inquiry.id);
                match self.policy.for_status(status) {
                    Some(StatusPolicy::New) => {
                        guard.may_create()?;
                        Ok((Outcome::Created, self.create(identity, persona).await?))
                    }
                    Some(StatusPolicy::Resume) => Ok((Outcome::ResumedPending, self.resume(inquiry, persona).await?)),
                    // An unknown status (Persona says the set may grow) is reported, never
                    // acted on: creating could duplicate, resuming could fail.
                    Some(StatusPolicy::Report) | None => Ok((Outcome::ReturnedTerminal, without_token(inquiry))),
                }
            }
        }
    }

    async fn create(&self, identity: &Identity, persona: &mut Round<'_>) -> Result<Answer, InquiryError> {
        let fields = self.prefill.fields(identity).await?;
        let inquiry = persona.create_inquiry(&identity.user_id, &fields).await?;
        tracing::info!(inquiry = %inquiry.id, "created inquiry");
        Ok(without_token(inquiry))
    }

    /// A token from an earlier resume is reused while it is fresh and the inquiry is still
    /// `pending`; otherwise Persona is asked for one.
    async fn resume(&self, inquiry: Inquiry, persona: &mut Round<'_>) -> Result<Answer, InquiryError> {
        if inquiry.status == "pending"
            && let Some(token) = self.tokens.get(&inquiry.id)
        {
            return Ok(Answer {
                inquiry_id: inquiry.id,
                session_token: Some(token),
                status: inquiry.status,
            });
        }
        let resumed = persona.resume_inquiry(&inquiry.id).await?;
        self.tokens.put(&resumed.inquiry.id, &resumed.session_token);
        Ok(Answer {
            inquiry_id: resumed.inquiry.id,
            session_token: Some(resumed.session_token),
            status: resumed.inquiry.status,
        })
    }
}

fn without_token(inquiry: Inquiry) -> Answer {
    Answer {
        inquiry_id: inquiry.id,
        session_token: None,
        status: inquiry.status,
    }
}
