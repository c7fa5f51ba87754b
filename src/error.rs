//! The one place where a failure becomes an HTTP response. Every module returns its own typed
//! error; they all convert into [`GatewayError`], and [`GatewayError::into_response`] picks the
//! status, the stable `code`, the client-facing message and the headers that go with them. No
//! other module chooses a status or a code. The client never sees internals: the detail goes to
//! the log line, through the [`ErrorDetail`] response extension.

use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

use crate::auth::AuthError;
use crate::body::{Body, json_response};
use crate::inquiry::InquiryError;
use crate::persona::{PersonaError, PersonaFailure};
use crate::proxy::ProxyError;
use crate::ratelimit::RateLimitError;
use crate::target::PathError;
use crate::verification::VerificationError;
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
    /// A gateway route's declared body is over `limits.max_body_bytes`.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request not finished within {0:?}")]
    RequestTimeout(Duration),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
    #[error(transparent)]
    Inquiry(#[from] InquiryError),
    #[error(transparent)]
    Verification(#[from] VerificationError),
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

/// What the client gets for one error.
struct Answer {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl Answer {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Answer {
        Answer {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, after: Duration) -> Answer {
        self.retry_after = Some(after);
        self
    }
}

impl GatewayError {
    fn answer(&self) -> Answer {
        match self {
            GatewayError::Auth(e) => Answer::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
            GatewayError::Path(e) => Answer::new(StatusCode::BAD_REQUEST, "path_ambiguous", e.to_string()),
            GatewayError::HostAmbiguous => Answer::new(StatusCode::BAD_REQUEST, "host_ambiguous", self.to_string()),
            GatewayError::HeaderUnderscore(_) => {
                Answer::new(StatusCode::BAD_REQUEST, "header_underscore", self.to_string())
            }
            GatewayError::PayloadTooLarge { .. } => payload_too_large(self),
            GatewayError::RequestTimeout(_) => request_timeout(),
            GatewayError::Proxy(e) => proxy(e),
            GatewayError::RateLimit(e) => rate_limit(e),
            GatewayError::Inquiry(e) => inquiry(e),
            GatewayError::Verification(e) => verification(e),
            GatewayError::Webhook(e) => webhook(e),
            GatewayError::Internal(_) => Answer::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error"),
        }
    }

    /// The webhook metrics outcome of a delivery that was not acknowledged: a failed forward is
    /// one outcome (Persona retries it), anything else is named by its stable code.
    pub fn webhook_outcome(e: &WebhookError) -> &'static str {
        match e {
            WebhookError::ForwardFailed(_) | WebhookError::ForwardTimeout(_) => "forward_failed",
            WebhookError::DedupeUnavailable(_) => "dedupe_unavailable",
            e => webhook(e).code,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let answer = self.answer();
        let mut error = json!({ "code": answer.code, "message": answer.message });
        if let GatewayError::Verification(VerificationError::Required { flow, .. }) = &self {
            // The page's script learns which verification to start without reading the message.
            error["flow"] = json!(flow);
        }
        let mut response = json_response(answer.status, &json!({ "error": error }));
        let headers = response.headers_mut();
        if let Some(after) = answer.retry_after {
            headers.insert(RETRY_AFTER, retry_after_value(after));
        }
        match &self {
            GatewayError::Auth(e) | GatewayError::Inquiry(InquiryError::Auth(e)) => challenge(headers, e),
            GatewayError::Verification(VerificationError::Auth(e)) => challenge(headers, e),
            GatewayError::RateLimit(RateLimitError::Limited { headers: extra, .. }) => {
                headers.extend((**extra).clone());
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorDetail {
            code: answer.code,
            detail: self.to_string(),
        });
        response
    }
}

/// RFC 6750 §3.1: with no token at all, the challenge carries no error attribute.
fn challenge(headers: &mut HeaderMap, e: &AuthError) {
    let value = if e.is_missing() {
        "Bearer"
    } else {
        "Bearer error=\"invalid_token\""
    };
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(value));
}

fn payload_too_large(e: &dyn std::error::Error) -> Answer {
    Answer::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string())
}

fn method_not_allowed() -> Answer {
    Answer::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
    )
}

fn proxy(e: &ProxyError) -> Answer {
    match e {
        ProxyError::Unavailable(_) => Answer::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "the application is unavailable",
        ),
        ProxyError::Timeout(_) => Answer::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "the application did not answer in time",
        ),
        // The request's deadline, which the proxy watched under the same timer as its own.
        ProxyError::RequestTimeout => request_timeout(),
        // The client's fault, not the app's: it sent a body that does not parse.
        ProxyError::BodyUnreadable(_) => Answer::new(StatusCode::BAD_REQUEST, "body_unreadable", e.to_string()),
    }
}

fn request_timeout() -> Answer {
    Answer::new(
        StatusCode::GATEWAY_TIMEOUT,
        "request_timeout",
        "the request did not finish in time",
    )
}

fn rate_limit(e: &RateLimitError) -> Answer {
    match e {
        RateLimitError::Limited { retry_after, .. } => Answer::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests, retry later",
        )
        .retry_after(*retry_after),
        RateLimitError::StoreUnavailable => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate_limit_unavailable",
            "rate limiting is unavailable, retry later",
        )
        .retry_after(Duration::from_secs(1)),
    }
}

fn persona(e: &PersonaError) -> Answer {
    match e.failure() {
        // An unknown create outcome and a refused resume reach a client only when the follow-up
        // that resolves them failed too: Persona is not answering usefully.
        PersonaFailure::Unavailable | PersonaFailure::Indeterminate | PersonaFailure::Refused => Answer::new(
            StatusCode::BAD_GATEWAY,
            "persona_unavailable",
            "identity verification is unavailable, retry later",
        ),
        PersonaFailure::Misconfigured => Answer::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "persona_misconfigured",
            "identity verification is misconfigured",
        ),
        PersonaFailure::BudgetExhausted(after) => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "persona_budget_exhausted",
            "identity verification is busy, retry later",
        )
        .retry_after(after),
        PersonaFailure::RateLimited(after) => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "persona_rate_limited",
            "identity verification is busy, retry later",
        )
        .retry_after(after),
    }
}

fn inquiry(e: &InquiryError) -> Answer {
    match e {
        InquiryError::Auth(e) => Answer::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
        InquiryError::Persona(e) => persona(e),
        InquiryError::MethodNotAllowed => method_not_allowed(),
        InquiryError::CorsOriginNotAllowed => Answer::new(
            StatusCode::FORBIDDEN,
            "cors_origin_not_allowed",
            "this origin may not call the route",
        ),
        InquiryError::OriginNotAllowed { origin_sent: true } => Answer::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "cross-site request refused: Origin is not allowed",
        ),
        InquiryError::OriginNotAllowed { origin_sent: false } => Answer::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "cookie-authenticated request refused: Origin header missing",
        ),
        InquiryError::Profile(_) => Answer::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "the application is unavailable",
        ),
        InquiryError::Interrupted => Answer::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error"),
        InquiryError::LockBusy(_) => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "inquiry_busy",
            "another request for this user is still running, retry later",
        )
        .retry_after(Duration::from_secs(1)),
        InquiryError::LockUnavailable(_) => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "inquiry_lock_unavailable",
            "identity verification is temporarily unavailable, retry later",
        )
        .retry_after(Duration::from_secs(1)),
    }
}

fn verification(e: &VerificationError) -> Answer {
    match e {
        VerificationError::Auth(e) => Answer::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
        VerificationError::Persona(e) => persona(e),
        VerificationError::Required {
            get_or_create_path,
            status,
            ..
        } => {
            let how = format!("complete identity verification first: POST {get_or_create_path} starts or resumes it");
            let message = match status {
                Some(status) => format!("{how} (current status: {status})"),
                None => format!("{how} (no verification started yet)"),
            };
            Answer::new(StatusCode::FORBIDDEN, "verification_required", message)
        }
        VerificationError::NotFound => Answer::new(StatusCode::NOT_FOUND, "not_found", "no such resource"),
        VerificationError::FlowNotFound => Answer::new(
            StatusCode::NOT_FOUND,
            "flow_not_found",
            "no verification flow of that name",
        ),
        VerificationError::FlowAmbiguous => {
            Answer::new(StatusCode::BAD_REQUEST, "flow_ambiguous", "name the flow once")
        }
        VerificationError::MethodNotAllowed => method_not_allowed(),
        VerificationError::Internal(_) => Answer::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error"),
    }
}

/// Persona treats any non-2xx as "retry later", so the split matters: 4xx says the delivery is
/// wrong and the gateway will never accept it (Persona still retries, harmlessly); 5xx says the
/// gateway or the app could not take it now. A missing signature is a 401 like a wrong one: in
/// both cases the caller has not proved it is Persona.
fn webhook(e: &WebhookError) -> Answer {
    let own = |status, code| Answer::new(status, code, e.to_string());
    match e {
        WebhookError::MethodNotAllowed => method_not_allowed(),
        WebhookError::PayloadTooLarge { .. } => payload_too_large(e),
        WebhookError::BodyUnreadable(_) => own(StatusCode::BAD_REQUEST, "body_unreadable"),
        WebhookError::SignatureMissing => own(StatusCode::UNAUTHORIZED, "webhook_signature_missing"),
        WebhookError::SignatureMalformed(_) => own(StatusCode::BAD_REQUEST, "webhook_signature_malformed"),
        WebhookError::SignatureMismatch => own(StatusCode::UNAUTHORIZED, "webhook_signature_invalid"),
        WebhookError::TimestampOutOfTolerance(_) => own(StatusCode::UNAUTHORIZED, "webhook_timestamp_out_of_tolerance"),
        WebhookError::NotAnEvent(_) => own(StatusCode::BAD_REQUEST, "webhook_not_an_event"),
        WebhookError::DedupeUnavailable(_) => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook_dedupe_unavailable",
            "cannot check for duplicate deliveries, retry later",
        ),
        WebhookError::ForwardFailed(_) => Answer::new(
            StatusCode::BAD_GATEWAY,
            "webhook_forward_failed",
            "the application did not accept the event, retry later",
        ),
        WebhookError::ForwardTimeout(_) => Answer::new(
            StatusCode::GATEWAY_TIMEOUT,
            "webhook_forward_timeout",
            "the application did not accept the event in time, retry later",
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
        let r = GatewayError::Inquiry(InquiryError::Auth(AuthError::Missing)).into_response();
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
    }
}
