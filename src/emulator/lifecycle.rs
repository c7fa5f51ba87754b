//! The inquiry state machine: which action is allowed in which status, what it changes, and the
//! event each status change produces. The API's action endpoints, `perform-simulate-actions` and
//! the control API's `advance` all go through [`apply`], so they cannot disagree.

use serde_json::Value;

use super::clock::Millis;
use super::error::ApiError;
use super::ids::new_id;
use super::model::{Check, Inquiry, SessionStatus, Status, Verification, View};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    Start,
    SubmitGovernmentId {
        pass: bool,
    },
    SubmitSelfie {
        pass: bool,
    },
    /// Whichever verification the inquiry's next step asks for (simulate-actions' verifications).
    Verification {
        pass: bool,
    },
    Complete,
    Fail,
    Expire,
    Approve {
        comment: Option<String>,
    },
    Decline {
        comment: Option<String>,
    },
    MarkForReview,
}

impl Action {
    /// A `perform-simulate-actions` item type.
    pub(super) fn simulated(kind: &str) -> Option<Action> {
        Some(match kind {
            "start_inquiry" => Action::Start,
            "complete_inquiry" => Action::Complete,
            "fail_inquiry" => Action::Fail,
            "expire_inquiry" => Action::Expire,
            "mark_for_review_inquiry" => Action::MarkForReview,
            "approve_inquiry" => Action::Approve { comment: None },
            "decline_inquiry" => Action::Decline { comment: None },
            "create_passed_verification" => Action::Verification { pass: true },
            "create_failed_verification" => Action::Verification { pass: false },
            _ => return None,
        })
    }

    /// A control API `advance` action.
    pub(super) fn advanced(name: &str, pass: bool) -> Option<Action> {
        Some(match name {
            "start" => Action::Start,
            "submit_government_id" => Action::SubmitGovernmentId { pass },
            "submit_selfie" => Action::SubmitSelfie { pass },
            "complete" => Action::Complete,
            "fail" => Action::Fail,
            "expire" => Action::Expire,
            "approve" => Action::Approve { comment: None },
            "decline" => Action::Decline { comment: None },
            "mark_for_review" => Action::MarkForReview,
            _ => return None,
        })
    }
}

/// What applying actions produced besides the new state: one `(event name, inquiry snapshot)`
/// per status change (and per redaction), in order.
pub(super) struct Effects {
    pub now: Millis,
    pub auto_approve: bool,
    /// How event snapshots render: the version webhooks are sent in.
    pub view: View,
    pub events: Vec<(&'static str, Value)>,
}

impl Effects {
    pub(super) fn new(now: Millis, auto_approve: bool, view: View) -> Effects {
        Effects {
            now,
            auto_approve,
            view,
            events: Vec::new(),
        }
    }
}

fn event_name(status: Status) -> &'static str {
    match status {
        Status::Created => "inquiry.created",
        Status::Pending => "inquiry.started",
        Status::Completed => "inquiry.completed",
        Status::Failed => "inquiry.failed",
        Status::Expired => "inquiry.expired",
        Status::NeedsReview => "inquiry.marked-for-review",
        Status::Approved => "inquiry.approved",
        Status::Declined => "inquiry.declined",
    }
}

/// Sets `status` and records its event with a snapshot taken after the change.
pub(super) fn set_status(inquiry: &mut Inquiry, status: Status, fx: &mut Effects) {
    inquiry.status = status;
    inquiry.updated_at = fx.now;
    fx.events.push((event_name(status), inquiry.to_json(fx.view)));
}

/// Persona's redaction: the status stays, `redacted-at` is set, field values and the note are
/// nulled, tags emptied; `reference-id` stays (the account is not redacted with it). Redacting
/// twice changes nothing and sends no second event.
pub(super) fn redact(inquiry: &mut Inquiry, fx: &mut Effects) {
    if inquiry.redacted_at.is_some() {
        return;
    }
    inquiry.redacted_at = Some(fx.now);
    inquiry.updated_at = fx.now;
    inquiry.note = None;
    inquiry.tags.clear();
    for value in inquiry.fields.values_mut() {
        *value = Value::Null;
    }
    for session in &mut inquiry.sessions {
        session.status = SessionStatus::Expired;
    }
    fx.events.push(("inquiry.redacted", inquiry.to_json(fx.view)));
}

fn conflict(inquiry: &Inquiry, action: &str) -> ApiError {
    ApiError::Conflict(format!(
        "Cannot {action} an inquiry with status {}",
        inquiry.status.as_str()
    ))
}

/// Applies one action.
///
/// # Errors
/// `Conflict` when the action is not allowed in the inquiry's status or step.
pub(super) fn apply(inquiry: &mut Inquiry, action: Action, fx: &mut Effects) -> Result<(), ApiError> {
    if inquiry.redacted_at.is_some() {
        // Nothing moves a redacted inquiry any more: its data is gone.
        return Err(ApiError::Conflict("Cannot change a redacted inquiry".into()));
    }
    match action {
        Action::Start => start(inquiry, fx),
        Action::SubmitGovernmentId { pass } => submit(inquiry, Check::GovernmentId, pass, fx),
        Action::SubmitSelfie { pass } => submit(inquiry, Check::Selfie, pass, fx),
        Action::Verification { pass } => {
            let check = if inquiry.next_step == "selfie" {
                Check::Selfie
            } else {
                Check::GovernmentId
            };
            submit(inquiry, check, pass, fx)
        }
        Action::Complete => complete(inquiry, fx),
        Action::Fail => fail(inquiry, fx),
        Action::Expire => expire(inquiry, fx),
        Action::Approve { comment } => approve(inquiry, comment, fx),
        Action::Decline { comment } => decline(inquiry, comment, fx),
        Action::MarkForReview => mark_for_review(inquiry, fx),
    }
}

/// Expires an open inquiry whose `expires-at` has passed. The expiry worker (`expiry`) does this
/// when the time comes; reads do it too, so a read racing the worker never sees a stale status.
pub(super) fn expire_if_due(inquiry: &mut Inquiry, fx: &mut Effects) -> bool {
    let due = inquiry.is_live() && fx.now >= inquiry.expires_at;
    if due {
        let _ = expire(inquiry, fx);
    }
    due
}

/// The user opened the flow on a device: the newest unused session becomes active.
fn use_session(inquiry: &mut Inquiry) {
    if let Some(session) = inquiry
        .sessions
        .iter_mut()
        .rev()
        .find(|s| s.status == SessionStatus::New)
    {
        session.status = SessionStatus::Active;
    }
}

fn start(inquiry: &mut Inquiry, fx: &mut Effects) -> Result<(), ApiError> {
    match inquiry.status {
        Status::Created => {
            use_session(inquiry);
            inquiry.started_at = Some(fx.now);
            inquiry.expires_at = fx.now + inquiry.expiry.after_start;
            set_status(inquiry, Status::Pending, fx);
            Ok(())
        }
        Status::Pending => {
            use_session(inquiry);
            Ok(())
        }
        _ => Err(conflict(inquiry, "start")),
    }
}

fn submit(inquiry: &mut Inquiry, check: Check, pass: bool, fx: &mut Effects) -> Result<(), ApiError> {
    let step = match check {
        Check::GovernmentId => "government_id",
        Check::Selfie => "selfie",
    };
    if !inquiry.status.is_open() {
        return Err(conflict(inquiry, &format!("submit {step} for")));
    }
    if inquiry.next_step != step {
        return Err(ApiError::Conflict(format!(
            "The inquiry's next step is {}, not {step}",
            inquiry.next_step
        )));
    }
    start(inquiry, fx)?;
    inquiry.verifications.push(Verification {
        id: new_id("ver_"),
        check,
    });
    inquiry.updated_at = fx.now;
    match (check, pass) {
        (Check::GovernmentId, true) => {
            inquiry.previous_step = "government_id";
            inquiry.next_step = "selfie";
            Ok(())
        }
        // A failed document may be retried, as in Persona's default flow.
        (Check::GovernmentId, false) => Ok(()),
        (Check::Selfie, true) => {
            inquiry.previous_step = "selfie";
            complete(inquiry, fx)
        }
        (Check::Selfie, false) => {
            inquiry.previous_step = "selfie";
            fail(inquiry, fx)
        }
    }
}

fn complete(inquiry: &mut Inquiry, fx: &mut Effects) -> Result<(), ApiError> {
    if !inquiry.status.is_open() {
        return Err(conflict(inquiry, "complete"));
    }
    inquiry.completed_at = Some(fx.now);
    inquiry.next_step = "success";
    set_status(inquiry, Status::Completed, fx);
    if fx.auto_approve {
        approve(inquiry, None, fx)?;
    }
    Ok(())
}

fn fail(inquiry: &mut Inquiry, fx: &mut Effects) -> Result<(), ApiError> {
    if !inquiry.status.is_open() {
        return Err(conflict(inquiry, "fail"));
    }
    inquiry.failed_at = Some(fx.now);
    inquiry.next_step = "fail";
    set_status(inquiry, Status::Failed, fx);
    Ok(())
}

fn expire(inquiry: &mut Inquiry, fx: &mut Effects) -> Result<(), ApiError> {
    match inquiry.status {
        Status::Expired => Ok(()),
        status if status.is_open() => {
            for session in &mut inquiry.sessions {
                session.status = SessionStatus::Expired;
            }
            inquiry.expired_at = Some(fx.now);
            set_status(inquiry, Status::Expired, fx);
            Ok(())
        }
        _ => Err(conflict(inquiry, "expire")),
    }
}

fn approve(inquiry: &mut Inquiry, comment: Option<String>, fx: &mut Effects) -> Result<(), ApiError> {
    match inquiry.status {
        Status::Approved => Ok(()),
        Status::Declined => Err(conflict(inquiry, "approve")),
        _ => {
            inquiry.reviewer_comment = comment.or(inquiry.reviewer_comment.take());
            inquiry.decisioned_at = Some(fx.now);
            inquiry.next_step = "success";
            set_status(inquiry, Status::Approved, fx);
            Ok(())
        }
    }
}

fn decline(inquiry: &mut Inquiry, comment: Option<String>, fx: &mut Effects) -> Result<(), ApiError> {
    match inquiry.status {
        Status::Declined => Ok(()),
        Status::Approved => Err(conflict(inquiry, "decline")),
        _ => {
            inquiry.reviewer_comment = comment.or(inquiry.reviewer_comment.take());
            inquiry.decisioned_at = Some(fx.now);
            inquiry.next_step = "fail";
            set_status(inquiry, Status::Declined, fx);
            Ok(())
        }
    }
}

fn mark_for_review(inquiry: &mut Inquiry, fx: &mut Effects) -> Result<(), ApiError> {
    match inquiry.status {
        Status::NeedsReview => Ok(()),
        Status::Approved | Status::Declined => Err(conflict(inquiry, "mark for review")),
        _ => {
            inquiry.marked_for_review_at = Some(fx.now);
            set_status(inquiry, Status::NeedsReview, fx);
            Ok(())
        }
    }
}
