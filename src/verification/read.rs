//! Scoped reads: `GET <current_path>` answers the caller's latest inquiry in the default flow (or
//! the flow `?flow=<name>` names) and `GET <by_id_prefix><id>` one of the caller's inquiries in
//! any configured flow (or the one `?flow=` names), fetched with the server-side key.
//!
//! Both only ever ask Persona for the caller's own inquiries on a configured flow's template
//! (`filter[reference-id]` is the caller), so another user's inquiry id is never looked up at
//! all: it gets the same 404 as an id that does not exist, and the answer cannot tell the two
//! apart. A read by id lists the flows in their configured order and stops at the first that has
//! the id; an unknown flow name is `404 flow_not_found`.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::json;

use super::error::VerificationError;
use super::ledger::Ledger;
use crate::auth::{AuthError, Identity};
use crate::body::{Body, json_response};
use crate::config::{DEFAULT_FLOW, FlowConfig, InquiryReadConfig, is_plain_id};
use crate::persona::{Inquiry, ListQuery, PersonaClient};

/// The most inquiries of one user searched for an id per flow (Persona's largest page). A user
/// with more on a flow's template gets 404 for the oldest ones.
const SEARCHED: u8 = 100;

/// Which read a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRoute {
    Current,
    ById(String),
}

pub struct Reads {
    config: InquiryReadConfig,
    /// Every configured flow, the default one first.
    flows: Vec<ReadFlow>,
    persona: Arc<PersonaClient>,
    /// Fed with what `current` learns, when the gate keeps a ledger.
    ledger: Option<Ledger>,
}

struct ReadFlow {
    name: String,
    template_id: String,
}

impl Reads {
    pub fn new(
        config: &InquiryReadConfig,
        flows: &[FlowConfig],
        persona: Arc<PersonaClient>,
        ledger: Option<Ledger>,
    ) -> Reads {
        let flows = flows
            .iter()
            .map(|f| ReadFlow {
                name: f.name.clone(),
                template_id: f.template_id.clone(),
            })
            .collect();
        Reads {
            config: config.clone(),
            flows,
            persona,
            ledger,
        }
    }

    /// Only one path segment after the prefix is an id; deeper paths are not the gateway's.
    pub fn route(&self, path: &str) -> Option<ReadRoute> {
        if path == self.config.current_path {
            return Some(ReadRoute::Current);
        }
        let id = path.strip_prefix(&self.config.by_id_prefix)?;
        (!id.is_empty() && !id.contains('/')).then(|| ReadRoute::ById(id.to_owned()))
    }

    /// `query` is the request's query string, which may name a flow (`flow=<name>`).
    ///
    /// # Errors
    /// 405 for methods other than GET, 401 without a caller, 404 `flow_not_found` for a flow that
    /// is not configured, 400 `flow_ambiguous` for two, 404 `not_found` when the caller has no
    /// such inquiry, Persona errors as get-or-create reports them.
    pub async fn answer(
        &self,
        method: &Method,
        route: ReadRoute,
        identity: Option<&Identity>,
        query: Option<&str>,
    ) -> Result<Response<Body>, VerificationError> {
        if method != Method::GET {
            return Err(VerificationError::MethodNotAllowed);
        }
        let identity = identity.ok_or(VerificationError::Auth(AuthError::Missing))?;
        let user = identity.user_id.as_str();
        let named = self.named_flow(query)?;
        let inquiry = match route {
            ReadRoute::Current => {
                let flow = match named {
                    Some(flow) => flow,
                    None => self.flow(DEFAULT_FLOW)?,
                };
                self.current(flow, user).await?
            }
            ReadRoute::ById(id) => {
                let flows = match named {
                    Some(flow) => std::slice::from_ref(flow),
                    None => &self.flows[..],
                };
                self.by_id(flows, user, &id).await?
            }
        };
        let inquiry = inquiry.ok_or(VerificationError::NotFound)?;
        let mut response = json_response(
            StatusCode::OK,
            &json!({
                "inquiry_id": inquiry.id,
                "status": inquiry.status,
                "created_at": inquiry.created_at,
                "completed_at": inquiry.completed_at,
            }),
        );
        // One user's verification state: no shared cache may keep it.
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        Ok(response)
    }

    /// The flow `?flow=` names, if it names one. Its value is read percent-decoded, and named
    /// once at most: two could be read differently by two readers.
    fn named_flow(&self, query: Option<&str>) -> Result<Option<&ReadFlow>, VerificationError> {
        let mut named = query
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.strip_prefix("flow="));
        let Some(value) = named.next() else {
            return Ok(None);
        };
        if named.next().is_some() {
            return Err(VerificationError::FlowAmbiguous);
        }
        let name = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| VerificationError::FlowNotFound)?;
        self.flow(&name).map(Some)
    }

    fn flow(&self, name: &str) -> Result<&ReadFlow, VerificationError> {
        self.flows
            .iter()
            .find(|f| f.name == name)
            .ok_or(VerificationError::FlowNotFound)
    }

    async fn current(&self, flow: &ReadFlow, user: &str) -> Result<Option<Inquiry>, VerificationError> {
        let asked = SystemTime::now();
        let latest = self.list(flow, user, 1).await?.into_iter().next();
        if let (Some(ledger), Some(inquiry)) = (&self.ledger, &latest) {
            ledger
                .observe(&flow.name, user, &inquiry.id, &inquiry.status, asked)
                .await;
        }
        Ok(latest)
    }

    async fn by_id(&self, flows: &[ReadFlow], user: &str, id: &str) -> Result<Option<Inquiry>, VerificationError> {
        if !is_plain_id(id) {
            return Ok(None);
        }
        for flow in flows {
            let found = self.list(flow, user, SEARCHED).await?.into_iter().find(|i| i.id == id);
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The caller's inquiries in `flow`, newest first; anything Persona returns that is not theirs
    /// is dropped (the filter should already have done it).
    async fn list(&self, flow: &ReadFlow, user: &str, page_size: u8) -> Result<Vec<Inquiry>, VerificationError> {
        let query = ListQuery {
            template_id: &flow.template_id,
            reference_id: user,
            statuses: &[],
            page_size,
        };
        let inquiries = self.persona.list_inquiries(&query).await?;
        Ok(inquiries
            .into_iter()
            .filter(|i| i.reference_id.as_deref() == Some(user))
            .collect())
    }
}
