//! Persona's error responses, the emulator's one mapping from a failure to a status and body.
//! The gateway's own errors live in `crate::error`; these imitate Persona's
//! `{"errors":[{"title","details"}]}` shape instead, because clients are written against it.

use http::StatusCode;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    #[error("bad request: {0}")]
    BadRequest(String),
    /// An `Idempotency-Key` reused with other parameters: Persona's 400 "Idempotency error".
    #[error("idempotency error: key {0} was first used with other parameters")]
    Idempotency(String),
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("record not found")]
    RecordNotFound,
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("unprocessable: {details}")]
    Unprocessable { details: String, pointer: Option<String> },
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    pub(super) fn unprocessable(details: impl Into<String>) -> ApiError {
        ApiError::Unprocessable {
            details: details.into(),
            pointer: None,
        }
    }

    pub(super) fn at(pointer: &str, details: impl Into<String>) -> ApiError {
        ApiError::Unprocessable {
            details: details.into(),
            pointer: Some(pointer.to_owned()),
        }
    }

    pub(super) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Idempotency(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::RecordNotFound | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body Persona sends for this failure. A 401 carries only a title, as Persona's does.
    pub(super) fn body(&self) -> Value {
        let item = match self {
            ApiError::BadRequest(details) => json!({ "title": "Bad Request", "details": details }),
            ApiError::Idempotency(key) => json!({
                "title": "Idempotency error",
                "details": format!("The idempotency key {key:?} belongs to a request with other parameters; send a new key for a new request."),
            }),
            ApiError::Unauthenticated => json!({ "title": "Must be authenticated to access this endpoint" }),
            ApiError::RecordNotFound => json!({ "title": "Record not found" }),
            ApiError::NoRoute(route) => json!({ "title": "Not Found", "details": format!("No route matches {route}") }),
            ApiError::Conflict(details) => json!({ "title": "Conflict", "details": details }),
            ApiError::Unprocessable {
                details,
                pointer: Some(pointer),
            } => json!({ "title": "Unprocessable entity", "details": details, "source": { "pointer": pointer } }),
            ApiError::Unprocessable { details, pointer: None } => {
                json!({ "title": "Unprocessable entity", "details": details })
            }
            ApiError::Internal(_) => json!({ "title": "Internal Server Error" }),
        };
        json!({ "errors": [item] })
    }
}

/// The body of an injected failure status, titled like Persona's for that status.
pub(super) fn status_body(status: StatusCode) -> Value {
    let title = match status {
        StatusCode::TOO_MANY_REQUESTS => "Rate limit exceeded",
        other => other.canonical_reason().unwrap_or("Error"),
    };
    json!({ "errors": [{ "title": title }] })
}

/// Persona's 429 body.
pub(super) fn rate_limited_body(limit: u64) -> Value {
    json!({ "errors": [{
        "title": "Rate limit exceeded",
        "details": format!("You have hit your rate limit of {limit} requests / min. Please retry after the window resets."),
    }] })
}
