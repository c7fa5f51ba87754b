//! The emulator's inquiry: its data and its JSON:API rendering, shaped like Persona's inquiry
//! object (kebab-case keys, `{"type","value"}` fields, ISO timestamps, relationships) as the
//! request's API version has it ([`View`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::clock::{self, Millis};
use super::inflect::kebab;
use crate::config::{FieldType, field_keys_verbatim};

/// A template version's field schema: each field's key as the template spells it, and its type.
pub(super) type Schema = Arc<[(String, FieldType)]>;

/// How an inquiry looks under one API version. From 2025-10-27 field keys are the template's
/// own and the deprecated flat copies of identity fields are gone; before, field keys were
/// inflected like every other key and the flat copies were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct View {
    pub verbatim_fields: bool,
}

impl View {
    pub(super) fn for_version(version: &str) -> View {
        View {
            verbatim_fields: field_keys_verbatim(version),
        }
    }
}

/// The deprecated top-level identity attributes older versions copy fields into (kebab-case).
const FLAT_IDENTITY: [&str; 14] = [
    "name-first",
    "name-middle",
    "name-last",
    "birthdate",
    "phone-number",
    "email-address",
    "address-street-1",
    "address-street-2",
    "address-city",
    "address-subdivision",
    "address-postal-code",
    "address-country-code",
    "identification-number",
    "social-security-number",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Created,
    Pending,
    Completed,
    Failed,
    Expired,
    NeedsReview,
    Approved,
    Declined,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Pending => "pending",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::NeedsReview => "needs_review",
            Status::Approved => "approved",
            Status::Declined => "declined",
        }
    }

    /// Still in the user's hands: the only states that can expire or be started.
    pub(super) fn is_open(self) -> bool {
        matches!(self, Status::Created | Status::Pending)
    }
}

/// A session's lifecycle (Persona's `new`, `active`, `expired`). A `new` session's token has not
/// been used on a device yet, so `resume` hands it out again instead of creating another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionStatus {
    New,
    Active,
    Expired,
}

#[derive(Debug, Clone)]
pub(super) struct Session {
    pub id: String,
    pub token: String,
    pub status: SessionStatus,
    /// When a `new` session's token stops being handed out (24 h after issue, as in Persona).
    pub token_expires_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    GovernmentId,
    Selfie,
}

#[derive(Debug, Clone)]
pub(super) struct Verification {
    pub id: String,
    pub check: Check,
}

/// Per-inquiry expiry intervals (Persona's `meta.expiration-after-*-interval-seconds`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Expiry {
    pub after_create: Millis,
    pub after_start: Millis,
    pub after_resume: Millis,
}

#[derive(Debug, Clone)]
pub(super) struct Inquiry {
    pub id: String,
    pub status: Status,
    pub reference_id: Option<String>,
    pub account_id: Option<String>,
    pub template_id: String,
    pub template_version_id: String,
    /// The schema of `template_version_id`, pinned at creation like the version itself.
    pub schema: Schema,
    pub note: Option<String>,
    pub tags: Vec<String>,
    /// Values written by create (nulled by redaction), by schema key.
    pub fields: BTreeMap<String, Value>,
    pub reviewer_comment: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub started_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub failed_at: Option<Millis>,
    pub marked_for_review_at: Option<Millis>,
    pub decisioned_at: Option<Millis>,
    pub expired_at: Option<Millis>,
    /// Set once by `DELETE /inquiries/{id}`; the status stays what it was.
    pub redacted_at: Option<Millis>,
    pub expires_at: Millis,
    pub expiry: Expiry,
    pub previous_step: &'static str,
    pub next_step: &'static str,
    pub verifications: Vec<Verification>,
    pub sessions: Vec<Session>,
}

fn time(at: Option<Millis>) -> Value {
    at.map_or(Value::Null, |t| Value::String(clock::iso(t)))
}

impl Inquiry {
    /// Open and not redacted: the only inquiries that can still expire, start or be resumed.
    pub(super) fn is_live(&self) -> bool {
        self.status.is_open() && self.redacted_at.is_none()
    }

    /// The JSON:API resource, keys in kebab-case (field keys as `view` says).
    pub(super) fn to_json(&self, view: View) -> Value {
        let mut attributes = json!({
            "status": self.status.as_str(),
            "reference-id": self.reference_id,
            "note": self.note,
            "behaviors": {},
            "tags": self.tags,
            "creator": "API",
            "reviewer-comment": self.reviewer_comment,
            "created-at": clock::iso(self.created_at),
            "updated-at": clock::iso(self.updated_at),
            "started-at": time(self.started_at),
            "expires-at": time(self.status.is_open().then_some(self.expires_at)),
            "completed-at": time(self.completed_at),
            "failed-at": time(self.failed_at),
            "marked-for-review-at": time(self.marked_for_review_at),
            "decisioned-at": time(self.decisioned_at),
            "expired-at": time(self.expired_at),
            "redacted-at": time(self.redacted_at),
            "previous-step-name": self.previous_step,
            "next-step-name": self.next_step,
            "fields": self.fields_json(view),
        });
        // Before 2025-10-27 Persona also sends flat, deprecated copies of the identity fields.
        if !view.verbatim_fields
            && let Some(map) = attributes.as_object_mut()
        {
            for (name, _) in self.schema.iter() {
                let flat = kebab(name);
                if FLAT_IDENTITY.contains(&flat.as_str()) {
                    let value = self.fields.get(name).cloned().unwrap_or(Value::Null);
                    map.insert(flat, value);
                }
            }
        }
        json!({
            "type": "inquiry",
            "id": self.id,
            "attributes": attributes,
            "relationships": self.relationships(),
        })
    }

    /// Every field of the schema, unset ones null; keys as the template spells them, or (before
    /// 2025-10-27) kebab-cased for the response's inflection to respell.
    fn fields_json(&self, view: View) -> Value {
        let mut fields = serde_json::Map::new();
        for (name, kind) in self.schema.iter() {
            let value = self.fields.get(name).cloned().unwrap_or(Value::Null);
            let key = if view.verbatim_fields {
                name.clone()
            } else {
                kebab(name)
            };
            fields.insert(key, json!({ "type": kind.as_str(), "value": value }));
        }
        Value::Object(fields)
    }

    fn relationships(&self) -> Value {
        let one = |kind: &str, id: &Option<String>| match id {
            Some(id) => json!({ "data": { "type": kind, "id": id } }),
            None => json!({ "data": null }),
        };
        let verifications: Vec<Value> = self
            .verifications
            .iter()
            .map(|v| {
                let kind = match v.check {
                    Check::GovernmentId => "verification/government-id",
                    Check::Selfie => "verification/selfie",
                };
                json!({ "type": kind, "id": v.id })
            })
            .collect();
        let sessions: Vec<Value> = self
            .sessions
            .iter()
            .map(|s| json!({ "type": "inquiry-session", "id": s.id }))
            .collect();
        json!({
            "account": one("account", &self.account_id),
            "inquiry-template": one("inquiry-template", &Some(self.template_id.clone())),
            "inquiry-template-version": one("inquiry-template-version", &Some(self.template_version_id.clone())),
            "template": { "data": null },
            "transaction": { "data": null },
            "reviewer": { "data": null },
            "reports": { "data": [] },
            "verifications": { "data": verifications },
            "sessions": { "data": sessions },
            "documents": { "data": [] },
            "selfies": { "data": [] },
        })
    }
}
