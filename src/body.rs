//! The one body type every response and every forwarded request uses, and small constructors
//! for the bodies the gateway writes itself. Proxied bodies are wrapped, never collected, so they
//! stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Upstream streams, JSON written by the gateway and empty bodies share this type. An enum, not
/// one box for all: a proxied request and its response each carry hyper's `Incoming`, and boxing
/// those would cost two allocations per proxied request for nothing.
#[derive(Debug)]
pub struct Body(Kind);

#[derive(Debug)]
enum Kind {
    Empty,
    Full(Full<Bytes>),
    Incoming(Incoming),
    /// Anything else (e.g. a body counted by `idle`).
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

pub fn empty() -> Body {
    Body(Kind::Empty)
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body(Kind::Full(Full::new(bytes.into())))
}

/// A body hyper received (from a client or from the app), passed on as it streams in.
pub fn incoming(body: Incoming) -> Body {
    Body(Kind::Incoming(body))
}

/// Wraps any other body whose error converts to [`BoxError`].
pub fn stream<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Body(Kind::Boxed(body.map_err(Into::into).boxed_unsync()))
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(full) => Pin::new(full).poll_frame(cx).map_err(|never| match never {}),
            Kind::Incoming(incoming) => Pin::new(incoming).poll_frame(cx).map_err(Into::into),
            Kind::Boxed(boxed) => Pin::new(boxed).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Full(full) => full.is_end_stream(),
            Kind::Incoming(incoming) => incoming.is_end_stream(),
            Kind::Boxed(boxed) => boxed.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(full) => full.size_hint(),
            Kind::Incoming(incoming) => incoming.size_hint(),
            Kind::Boxed(boxed) => boxed.size_hint(),
        }
    }
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
