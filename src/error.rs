//! The one place where a failure becomes an HTTP response. Every module returns its own typed
//! error; they all convert into [`GatewayError`], and [`GatewayError::into_response`] picks the
//! status, the stable `code` and the client-facing message. The client never sees internals: the
//! detail goes to the log line, through the [`ErrorDetail`] response extension.

use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

use crate::auth::AuthError;
use crate::body::{Body, CollectError, json_response};
use crate::persona::{PersonaError, PersonaFailure};
use crate::target::PathError;
use crate::webhook::WebhookError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("the request has more than one Host header")]
    HostAmbiguous,
    #[error("the header {0:?} has an underscore in its name")]
    HeaderUnderscore(String),
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// A gated path, and the caller's latest inquiry in `flow` does not pass its rule.
    #[error("verification in flow {flow:?} required (status {})", .status.as_deref().unwrap_or("none"))]
    VerificationRequired {
        flow: String,
        /// Where the page starts or resumes that verification.
        get_or_create_path: String,
        /// `None`: no inquiry in that flow yet.
        status: Option<String>,
    },
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("not found")]
    NotFound,
    /// `?flow=` names no configured verification flow.
    #[error("no such verification flow")]
    FlowNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("rate limit exceeded ({policy})")]
    RateLimited {
        policy: String,
        retry_after: Duration,
        headers: Box<HeaderMap>,
    },
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    #[error("request not finished within {0:?}")]
    RequestTimeout(Duration),
    #[error(transparent)]
    Persona(#[from] PersonaError),
    #[error("service unavailable: {message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Rides on error responses so the access log can record what went wrong without the
/// conversion itself having side effects.
#[derive(Debug, Clone)]
pub struct ErrorDetail {
    pub code: &'static str,
    pub detail: String,
}

impl From<CollectError> for GatewayError {
    fn from(e: CollectError) -> Self {
        match e {
            CollectError::TooLarge { limit } => GatewayError::PayloadTooLarge { limit },
            CollectError::Read(e) => GatewayError::BadRequest {
                code: "body_unreadable",
                message: e.to_string(),
            },
        }
    }
}

impl GatewayError {
    /// Status, stable code and the message the client may see.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            GatewayError::Auth(e) => (StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
            GatewayError::Path(e) => (StatusCode::BAD_REQUEST, "path_ambiguous", e.to_string()),
            GatewayError::HostAmbiguous => (StatusCode::BAD_REQUEST, "host_ambiguous", self.to_string()),
            GatewayError::HeaderUnderscore(_) => (StatusCode::BAD_REQUEST, "header_underscore", self.to_string()),
            GatewayError::Forbidden { code, message } => (StatusCode::FORBIDDEN, code, message.clone()),
            GatewayError::VerificationRequired {
                get_or_create_path,
                status,
                ..
            } => {
                let how =
                    format!("complete identity verification first: POST {get_or_create_path} starts or resumes it");
                let message = match status {
                    Some(status) => format!("{how} (current status: {status})"),
                    None => format!("{how} (no verification started yet)"),
                };
                (StatusCode::FORBIDDEN, "verification_required", message)
            }
            GatewayError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message.clone()),
            GatewayError::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such resource".into()),
            GatewayError::FlowNotFound => (
                StatusCode::NOT_FOUND,
                "flow_not_found",
                "no verification flow of that name".into(),
            ),
            GatewayError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path".into(),
            ),
            GatewayError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", self.to_string())
            }
            GatewayError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests, retry later".into(),
            ),
            GatewayError::UpstreamUnavailable(_) => (
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "the application is unavailable".into(),
            ),
            GatewayError::UpstreamTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the application did not answer in time".into(),
            ),
            GatewayError::RequestTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                "the request did not finish in time".into(),
            ),
            GatewayError::Persona(e) => match e.failure() {
                // An unknown create outcome and a refused resume reach a client only when the
                // follow-up that resolves them failed too: Persona is not answering usefully.
                PersonaFailure::Unavailable | PersonaFailure::Indeterminate | PersonaFailure::Refused => (
                    StatusCode::BAD_GATEWAY,
                    "persona_unavailable",
                    "identity verification is unavailable, retry later".into(),
                ),
                PersonaFailure::Misconfigured => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "persona_misconfigured",
                    "identity verification is misconfigured".into(),
                ),
                PersonaFailure::BudgetExhausted(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "persona_budget_exhausted",
                    "identity verification is busy, retry later".into(),
                ),
                PersonaFailure::RateLimited(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "persona_rate_limited",
                    "identity verification is busy, retry later".into(),
                ),
            },
            GatewayError::Unavailable { code, message, .. } => (StatusCode::SERVICE_UNAVAILABLE, code, message.clone()),
            GatewayError::Webhook(e) => webhook_parts(e),
            GatewayError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into()),
        }
    }

    /// The stable code, also used as a metrics/log label.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    pub fn into_response(self) -> Response<Body> {
        let (status, code, message) = self.parts();
        let mut error = json!({ "code": code, "message": message });
        if let GatewayError::VerificationRequired { flow, .. } = &self {
            // The page's script learns which verification to start without reading the message.
            error["flow"] = json!(flow);
        }
        let mut response = json_response(status, &json!({ "error": error }));
        let headers = response.headers_mut();
        match &self {
            GatewayError::Auth(e) => {
                // RFC 6750 §3.1: with no token at all, the challenge carries no error attribute.
                let challenge = if e.is_missing() {
                    "Bearer"
                } else {
                    "Bearer error=\"invalid_token\""
                };
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            GatewayError::RateLimited {
                retry_after,
                headers: extra,
                ..
            } => {
                headers.extend((**extra).clone());
                headers.insert(RETRY_AFTER, retry_after_value(*retry_after));
            }
            GatewayError::Unavailable {
                retry_after: Some(after),
                ..
            } => {
                headers.insert(RETRY_AFTER, retry_after_value(*after));
            }
            GatewayError::Persona(e) => {
                if let PersonaFailure::BudgetExhausted(after) | PersonaFailure::RateLimited(after) = e.failure() {
                    headers.insert(RETRY_AFTER, retry_after_value(after));
                }
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorDetail {
            code,
            detail: self.to_string(),
        });
        response
    }
}

/// Persona treats any non-2xx as "retry later", so the split matters: 4xx says the delivery is
/// wrong and the gateway will never accept it (Persona still retries, harmlessly); 5xx says the
/// gateway or the app could not take it now. A missing signature is a 401 like a wrong one: in
/// both cases the caller has not proved it is Persona.
fn webhook_parts(e: &WebhookError) -> (StatusCode, &'static str, String) {
    match e {
        WebhookError::SignatureMissing => (StatusCode::UNAUTHORIZED, "webhook_signature_missing", e.to_string()),
        WebhookError::SignatureMalformed(_) => (StatusCode::BAD_REQUEST, "webhook_signature_malformed", e.to_string()),
        WebhookError::SignatureMismatch => (StatusCode::UNAUTHORIZED, "webhook_signature_invalid", e.to_string()),
        WebhookError::TimestampOutOfTolerance(_) => (
            StatusCode::UNAUTHORIZED,
            "webhook_timestamp_out_of_tolerance",
            e.to_string(),
        ),
        WebhookError::NotAnEvent(_) => (StatusCode::BAD_REQUEST, "webhook_not_an_event", e.to_string()),
        WebhookError::DedupeUnavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook_dedupe_unavailable",
            "cannot check for duplicate deliveries, retry later".into(),
        ),
        WebhookError::ForwardFailed(_) => (
            StatusCode::BAD_GATEWAY,
            "webhook_forward_failed",
            "the application did not accept the event, retry later".into(),
        ),
        WebhookError::ForwardTimeout(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            "webhook_forward_timeout",
            "the application did not accept the event in time, retry later".into(),
        ),
    }
}

/// Whole seconds, rounded up so a client that waits exactly this long is not refused again.
fn retry_after_value(after: Duration) -> HeaderValue {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_value(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after_value(Duration::from_secs(3)), "3");
        assert_eq!(retry_after_value(Duration::ZERO), "1");
    }

    #[test]
    fn missing_token_challenge_has_no_error_attribute() {
        let r = GatewayError::Auth(AuthError::Missing).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
        let r = GatewayError::Auth(AuthError::Expired).into_response();
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer error=\"invalid_token\"");
    }
}
