//! Scoped reads: `GET <current_path>` answers the caller's latest inquiry and
//! `GET <by_id_prefix><id>` one of the caller's inquiries, fetched with the server-side key.
//!
//! Both only ever ask Persona for the caller's own inquiries (`filter[reference-id]` is the
//! caller), so another user's inquiry id is never looked up at all: it gets the same 404 as an id
//! that does not exist, and the answer cannot tell the two apart.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::json;

use super::ledger::Ledger;
use crate::auth::{AuthError, Identity};
use crate::body::{Body, json_response};
use crate::config::{InquiryReadConfig, is_plain_id};
use crate::error::GatewayError;
use crate::persona::{Inquiry, ListQuery, PersonaClient};

/// The most inquiries of one user searched for an id (Persona's largest page). A user with more
/// on the template gets 404 for the oldest ones.
const SEARCHED: u8 = 100;

/// Which read a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRoute {
    Current,
    ById(String),
}

pub struct Reads {
    config: InquiryReadConfig,
    persona: Arc<PersonaClient>,
    /// Fed with what `current` learns, when the gate keeps a ledger.
    ledger: Option<Ledger>,
}

impl Reads {
    pub fn new(config: &InquiryReadConfig, persona: Arc<PersonaClient>, ledger: Option<Ledger>) -> Reads {
        Reads {
            config: config.clone(),
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

    /// # Errors
    /// 405 for methods other than GET, 401 without a caller, 404 `not_found` when the caller has
    /// no such inquiry, Persona errors as get-or-create reports them.
    pub async fn answer(
        &self,
        method: &Method,
        route: ReadRoute,
        identity: Option<&Identity>,
    ) -> Result<Response<Body>, GatewayError> {
        if method != Method::GET {
            return Err(GatewayError::MethodNotAllowed);
        }
        let identity = identity.ok_or(GatewayError::Auth(AuthError::Missing))?;
        let user = identity.user_id.as_str();
        let inquiry = match route {
            ReadRoute::Current => self.current(user).await?,
            ReadRoute::ById(id) => self.by_id(user, &id).await?,
        };
        let inquiry = inquiry.ok_or(GatewayError::NotFound)?;
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

    async fn current(&self, user: &str) -> Result<Option<Inquiry>, GatewayError> {
        let asked = SystemTime::now();
        let latest = self.list(user, 1).await?.into_iter().next();
        if let (Some(ledger), Some(inquiry)) = (&self.ledger, &latest) {
            ledger.observe(user, &inquiry.id, &inquiry.status, asked).await;
        }
        Ok(latest)
    }

    async fn by_id(&self, user: &str, id: &str) -> Result<Option<Inquiry>, GatewayError> {
        if !is_plain_id(id) {
            return Ok(None);
        }
        Ok(self.list(user, SEARCHED).await?.into_iter().find(|i| i.id == id))
    }

    /// The caller's inquiries, newest first; anything Persona returns that is not theirs is
    /// dropped (the filter should already have done it).
    async fn list(&self, user: &str, page_size: u8) -> Result<Vec<Inquiry>, GatewayError> {
        let query = ListQuery {
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
