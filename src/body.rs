//! The one body type every response uses, and small constructors for the bodies the gateway
//! writes itself. Proxied bodies are wrapped, never collected, so they stream.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Boxed so that upstream streams, JSON written by the gateway and empty bodies share a type.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Wraps any body whose error converts to [`BoxError`] (e.g. `hyper::body::Incoming`).
pub fn stream<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Serialises `value` as a JSON response with `status`.
pub fn json_response(status: http::StatusCode, value: &serde_json::Value) -> http::Response<Body> {
    let mut response = http::Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads a body the gateway owns (a webhook, an API call) up to `limit` bytes.
///
/// # Errors
/// `TooLarge` as soon as the body passes `limit`, without reading the rest; `Read` when the
/// client's stream fails.
pub async fn collect_limited<B>(body: B, limit: usize) -> Result<Bytes, CollectError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(CollectError::TooLarge { limit }),
        Err(e) => Err(CollectError::Read(e)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reading the request body: {0}")]
    Read(BoxError),
}
