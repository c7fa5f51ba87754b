//! Why a delivery was not acknowledged; `error.rs` gives each its status and code, and so
//! whether Persona retries it.

use std::time::Duration;

use super::dedupe::DedupeError;
use crate::body::CollectError;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the delivery is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the delivery's body could not be read: {0}")]
    BodyUnreadable(String),
    #[error("the Persona-Signature header is missing")]
    SignatureMissing,
    #[error("the Persona-Signature header is malformed: {0}")]
    SignatureMalformed(&'static str),
    #[error("no signature matches a configured webhook secret")]
    SignatureMismatch,
    #[error("the signature timestamp is not within {}s of now", .0.as_secs())]
    TimestampOutOfTolerance(Duration),
    #[error("the body is not a Persona event: {0}")]
    NotAnEvent(String),
    #[error("checking for duplicate deliveries failed: {0}")]
    DedupeUnavailable(#[from] DedupeError),
    #[error("forwarding the event to the app failed: {0}")]
    ForwardFailed(String),
    #[error("the app did not accept the event within {0:?}")]
    ForwardTimeout(Duration),
}

impl From<CollectError> for WebhookError {
    fn from(e: CollectError) -> Self {
        match e {
            CollectError::TooLarge { limit } => WebhookError::PayloadTooLarge { limit },
            CollectError::Read(e) => WebhookError::BodyUnreadable(e.to_string()),
        }
    }
}
