//! What a Persona call gives back: the part of an inquiry the gateway acts on.

/// The part of an inquiry the gateway acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    pub id: String,
    /// As Persona spells it (`created`, `pending`, `needs_review`, ...). Persona says the set is
    /// not closed, so it stays a string and callers decide what an unknown one means.
    pub status: String,
    /// The user id the inquiry was created for; `None` when Persona did not say.
    pub reference_id: Option<String>,
    /// Persona's ISO-8601 timestamps, passed on as written; `None` when null or absent.
    pub created_at: Option<String>,
    pub completed_at: Option<String>,
    /// `redacted-at` is set. Persona keeps the status of a redacted inquiry as it was, so this is
    /// the only sign that it can no longer be resumed or opened.
    pub redacted: bool,
    /// The `itmplv_` template version the inquiry is pinned to, when Persona said.
    pub template_version_id: Option<String>,
}

/// An inquiry together with the session token `resume` returned for it.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub inquiry: Inquiry,
    pub session_token: String,
}
