//! Delivering a verified event to the app: one `POST` to the configured path with the raw body,
//! byte for byte, and the `x-persona-*` headers the app can trust because the proxy strips them
//! from every client request.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::error::WebhookError;
use super::event::Event;
use crate::body::collect_limited;
use crate::config::UpstreamConfig;
use crate::request_id::REQUEST_ID;
use crate::trace_context::TraceContext;
use crate::upstream::error_chain;

pub const EVENT_NAME: HeaderName = HeaderName::from_static("x-persona-event-name");
pub const EVENT_ID: HeaderName = HeaderName::from_static("x-persona-event-id");
pub const INQUIRY_ID: HeaderName = HeaderName::from_static("x-persona-inquiry-id");
pub const REFERENCE_ID: HeaderName = HeaderName::from_static("x-persona-reference-id");
pub const VERIFIED: HeaderName = HeaderName::from_static("x-persona-verified");

/// Every header this module sets; the proxy removes them from client requests on all other routes
/// (they are its `reserved` names), so their presence on a request means the gateway sent it.
pub const FORWARDED_HEADERS: [HeaderName; 5] = [EVENT_NAME, EVENT_ID, INQUIRY_ID, REFERENCE_ID, VERIFIED];

/// The app's answer is read (to keep the connection reusable) but never used beyond its status.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: Uri,
    path: PathAndQuery,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(upstream: &UpstreamConfig, path: &PathAndQuery, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(upstream.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(crate::upstream::connector(upstream));
        Self {
            client,
            upstream: upstream.url.clone(),
            path: path.clone(),
            timeout,
        }
    }

    /// # Errors
    /// `ForwardFailed` when the app cannot be reached or answers anything but 2xx,
    /// `ForwardTimeout` when it has not answered within the forward timeout.
    pub async fn send(
        &self,
        event: &Event,
        body: Bytes,
        request_id: &str,
        trace: &TraceContext,
    ) -> Result<(), WebhookError> {
        let mut request = self.request(event, body, request_id)?;
        trace.propagate(request.headers_mut());
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| WebhookError::ForwardFailed(error_chain(&e)))?;
            let status = response.status();
            // Drained within the same timeout; its content does not matter, only that the
            // connection can go back to the pool.
            let _ = collect_limited(response.into_body(), MAX_ANSWER_BYTES).await;
            Ok::<_, WebhookError>(status)
        };
        let status = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => return Err(WebhookError::ForwardTimeout(self.timeout)),
        };
        if status.is_success() {
            Ok(())
        } else {
            Err(WebhookError::ForwardFailed(format!("the app answered {status}")))
        }
    }

    fn request(&self, event: &Event, body: Bytes, request_id: &str) -> Result<Request<Full<Bytes>>, WebhookError> {
        let mut parts = self.upstream.clone().into_parts();
        parts.path_and_query = Some(self.path.clone());
        let uri =
            Uri::from_parts(parts).map_err(|e| WebhookError::ForwardFailed(format!("building the app uri: {e}")))?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        set_headers(request.headers_mut(), event, request_id);
        Ok(request)
    }
}

fn set_headers(headers: &mut HeaderMap, event: &Event, request_id: &str) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(VERIFIED, HeaderValue::from_static("true"));
    // `Event` only holds header-safe ids, so these conversions cannot fail in practice.
    let values = [
        (EVENT_NAME, Some(&event.name)),
        (EVENT_ID, Some(&event.id)),
        (INQUIRY_ID, event.inquiry_id.as_ref()),
    ];
    for (name, value) in values {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    // The user id, encoded as the identity header is, so the app decodes both the same way.
    if let Some(reference) = &event.reference_id {
        headers.insert(REFERENCE_ID, crate::headers::encode_text(reference));
    }
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_id_is_encoded_as_the_identity_header_is() {
        let event = Event {
            id: "evt_1".into(),
            name: "inquiry.approved".into(),
            inquiry_id: Some("inq_1".into()),
            reference_id: Some("José\r\nx: 1".into()),
            status: Some("approved".into()),
            template_id: None,
            created_at: None,
        };
        let mut headers = HeaderMap::new();
        set_headers(&mut headers, &event, "req-1");
        assert_eq!(headers[REFERENCE_ID], "Jos%C3%A9%0D%0Ax:%201");
        assert_eq!(headers[INQUIRY_ID], "inq_1");
        assert_eq!(headers[VERIFIED], "true");
    }
}
