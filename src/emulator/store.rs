//! The emulator's memory: templates and their published versions, inquiries in creation order,
//! accounts by reference id, sessions and their tokens, the idempotency cache and the events
//! produced so far. Everything here is plain synchronous data behind the emulator's one mutex;
//! nothing in it awaits.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use super::clock::{self, DAY, Millis};
use super::error::ApiError;
use super::event::Event;
use super::ids::new_id;
use super::lifecycle::{self, Effects};
use super::model::{Inquiry, Schema, Session, SessionStatus, Status};
use crate::config::TemplateConfig;

/// Persona's default cap on sessions per inquiry.
const MAX_SESSIONS: usize = 25;
/// Persona prunes idempotency keys once they are 24 hours old.
const IDEMPOTENCY_RETENTION: Millis = DAY;
/// Events kept for redelivery; older ones are forgotten first.
const MAX_EVENTS: usize = 10_000;

/// An inquiry template as the emulator keeps it: one schema, and every version published so far.
#[derive(Debug, Clone)]
pub(super) struct Template {
    pub id: String,
    pub schema: Schema,
    /// `itmplv_` ids, oldest first; the last one is the latest published version, which new
    /// inquiries created by template id are pinned to.
    pub versions: Vec<String>,
}

impl Template {
    fn new(config: &TemplateConfig) -> Template {
        Template {
            id: config.id.clone(),
            schema: config.fields.clone().into(),
            versions: vec![format!("itmplv_{}", config.id.trim_start_matches("itmpl_"))],
        }
    }

    pub(super) fn latest_version(&self) -> &str {
        self.versions.last().map_or("", String::as_str)
    }
}

/// The first response to an `Idempotency-Key`, replayed byte for byte.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    fingerprint: String,
    pub status: StatusCode,
    pub body: Bytes,
    at: Millis,
}

pub(super) struct Store {
    templates: Vec<Template>,
    inquiries: Vec<Inquiry>,
    index: HashMap<String, usize>,
    accounts_by_reference: HashMap<String, String>,
    accounts: HashMap<String, Option<String>>,
    idempotency: HashMap<String, Stored>,
    last_prune: Millis,
    events: VecDeque<Event>,
    /// Signs session tokens. Random per emulator: the tokens only need to look and parse like
    /// Persona's JWTs, nobody verifies them.
    token_key: jsonwebtoken::EncodingKey,
}

impl Store {
    pub(super) fn new(templates: &[TemplateConfig]) -> Store {
        let secret: [u8; 32] = rand::random();
        Store {
            templates: templates.iter().map(Template::new).collect(),
            inquiries: Vec::new(),
            index: HashMap::new(),
            accounts_by_reference: HashMap::new(),
            accounts: HashMap::new(),
            idempotency: HashMap::new(),
            last_prune: 0,
            events: VecDeque::new(),
            token_key: jsonwebtoken::EncodingKey::from_secret(&secret),
        }
    }

    pub(super) fn template(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.id == id)
    }

    /// The template a version id belongs to.
    pub(super) fn template_of_version(&self, version_id: &str) -> Option<&Template> {
        self.templates
            .iter()
            .find(|t| t.versions.iter().any(|v| v == version_id))
    }

    /// Publishes a new version of a template (as saving it in Persona's dashboard does); existing
    /// inquiries stay on the version they were created with. `None` for an unknown template.
    pub(super) fn publish(&mut self, id: &str) -> Option<String> {
        let template = self.templates.iter_mut().find(|t| t.id == id)?;
        let version = new_id("itmplv_");
        template.versions.push(version.clone());
        Some(version)
    }

    pub(super) fn insert(&mut self, inquiry: Inquiry) {
        self.index.insert(inquiry.id.clone(), self.inquiries.len());
        self.inquiries.push(inquiry);
    }

    /// Creation order of an inquiry id, for pagination cursors.
    pub(super) fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The inquiry, expired first if its time has come.
    ///
    /// # Errors
    /// `RecordNotFound` for an unknown id.
    pub(super) fn inquiry(&mut self, id: &str, fx: &mut Effects) -> Result<&mut Inquiry, ApiError> {
        let position = self.position(id).ok_or(ApiError::RecordNotFound)?;
        let inquiry = self.inquiries.get_mut(position).ok_or(ApiError::RecordNotFound)?;
        lifecycle::expire_if_due(inquiry, fx);
        Ok(inquiry)
    }

    /// Every inquiry in creation order, each expired first if due.
    pub(super) fn all(&mut self, fx: &mut Effects) -> &[Inquiry] {
        self.expire_due(fx);
        &self.inquiries
    }

    /// Expires every live inquiry whose time has come; `true` if any did.
    pub(super) fn expire_due(&mut self, fx: &mut Effects) -> bool {
        let mut any = false;
        for inquiry in &mut self.inquiries {
            any |= lifecycle::expire_if_due(inquiry, fx);
        }
        any
    }

    /// When the next live inquiry expires, if any will.
    pub(super) fn next_expiry(&self) -> Option<Millis> {
        self.inquiries
            .iter()
            .filter(|i| i.is_live())
            .map(|i| i.expires_at)
            .min()
    }

    /// Same reference id, same account, as in Persona.
    pub(super) fn account_for_reference(&mut self, reference_id: &str) -> String {
        if let Some(account) = self.accounts_by_reference.get(reference_id) {
            return account.clone();
        }
        let account = new_id("act_");
        self.accounts_by_reference
            .insert(reference_id.to_owned(), account.clone());
        self.accounts.insert(account.clone(), Some(reference_id.to_owned()));
        account
    }

    pub(super) fn anonymous_account(&mut self) -> String {
        let account = new_id("act_");
        self.accounts.insert(account.clone(), None);
        account
    }

    /// The reference id of a known account (`Some(None)` when it has none).
    pub(super) fn account(&self, account_id: &str) -> Option<Option<String>> {
        self.accounts.get(account_id).cloned()
    }

    /// A session token for the inquiry: an unused, unexpired session is handed out again, as
    /// Persona's resume does; otherwise a new session is opened, up to the cap.
    ///
    /// # Errors
    /// `Unprocessable` once the inquiry has [`MAX_SESSIONS`] sessions.
    pub(super) fn session_token(&self, inquiry: &mut Inquiry, now: Millis) -> Result<String, ApiError> {
        let reusable = inquiry
            .sessions
            .iter()
            .rev()
            .find(|s| s.status == SessionStatus::New && s.token_expires_at > now);
        if let Some(session) = reusable {
            return Ok(session.token.clone());
        }
        if inquiry.sessions.len() >= MAX_SESSIONS {
            return Err(ApiError::unprocessable(format!(
                "Inquiry has reached the maximum of {MAX_SESSIONS} sessions"
            )));
        }
        let id = new_id("iqse_");
        let expires = inquiry.expires_at.min(now + DAY);
        let claims = json!({
            "sub": id,
            "sid": id,
            "inq": inquiry.id,
            "aud": "persona-verify",
            "iat": clock::unix_seconds(now),
            "exp": clock::unix_seconds(now + DAY),
        });
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let token = jsonwebtoken::encode(&header, &claims, &self.token_key)
            .map_err(|e| ApiError::Internal(format!("signing a session token: {e}")))?;
        inquiry.sessions.push(Session {
            id,
            token: token.clone(),
            status: SessionStatus::New,
            token_expires_at: expires,
        });
        Ok(token)
    }

    /// Persona's resume: an expired inquiry goes back to pending, and a session token is issued.
    ///
    /// # Errors
    /// `Conflict` for finished inquiries; see [`Store::session_token`].
    pub(super) fn resume(&mut self, id: &str, fx: &mut Effects) -> Result<(Inquiry, String), ApiError> {
        let now = fx.now;
        let mut inquiry = self.inquiry(id, fx)?.clone();
        if inquiry.redacted_at.is_some() {
            return Err(ApiError::Conflict("Cannot resume a redacted inquiry".into()));
        }
        let reopen = match inquiry.status {
            Status::Created | Status::Pending => false,
            Status::Expired => true,
            other => {
                return Err(ApiError::Conflict(format!(
                    "Cannot resume an inquiry with status {}",
                    other.as_str()
                )));
            }
        };
        if reopen {
            inquiry.expires_at = now + inquiry.expiry.after_resume;
        }
        // The token first: if the session cap refuses it, nothing has changed.
        let token = self.session_token(&mut inquiry, now)?;
        inquiry.updated_at = now;
        if reopen {
            lifecycle::set_status(&mut inquiry, Status::Pending, fx);
        }
        self.put(inquiry.clone());
        Ok((inquiry, token))
    }

    /// Keeps events for redelivery (bounded).
    fn record_events(&mut self, events: &[Event]) {
        for event in events {
            if self.events.len() == MAX_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(event.clone());
        }
    }

    pub(super) fn event(&self, id: &str) -> Option<Event> {
        self.events.iter().find(|e| e.id == id).cloned()
    }

    /// The stored response for `key`, if it has one.
    ///
    /// # Errors
    /// `Idempotency` (Persona's 400) when the key was first used with other parameters; the
    /// stored response stays as it was.
    pub(super) fn replay(&mut self, key: &str, fingerprint: &str, now: Millis) -> Result<Option<Stored>, ApiError> {
        self.prune(now);
        match self.idempotency.get(key) {
            Some(stored) if stored.fingerprint == fingerprint => Ok(Some(stored.clone())),
            Some(_) => Err(ApiError::Idempotency(key.to_owned())),
            None => Ok(None),
        }
    }

    pub(super) fn remember(&mut self, key: &str, fingerprint: String, status: StatusCode, body: Bytes, now: Millis) {
        self.idempotency.insert(
            key.to_owned(),
            Stored {
                fingerprint,
                status,
                body,
                at: now,
            },
        );
    }

    /// Drops keys past retention, at most once a minute so a busy emulator does not rescan often.
    fn prune(&mut self, now: Millis) {
        if now.saturating_sub(self.last_prune) < 60 * clock::SECOND {
            return;
        }
        self.last_prune = now;
        self.idempotency
            .retain(|_, stored| now.saturating_sub(stored.at) < IDEMPOTENCY_RETENTION);
    }
}

impl Store {
    /// Writes back an inquiry changed on a copy (actions apply to a copy so that a failing
    /// action in a list leaves the stored inquiry untouched).
    pub(super) fn put(&mut self, inquiry: Inquiry) {
        if let Some(slot) = self.position(&inquiry.id).and_then(|p| self.inquiries.get_mut(p)) {
            *slot = inquiry;
        }
    }

    /// Turns the status changes in `fx` into events, keeps them for redelivery and returns them
    /// for delivery.
    pub(super) fn commit_events(&mut self, fx: Effects) -> Vec<Event> {
        let events: Vec<Event> = fx
            .events
            .into_iter()
            .map(|(name, snapshot)| Event::new(name, snapshot, fx.now))
            .collect();
        self.record_events(&events);
        events
    }
}
