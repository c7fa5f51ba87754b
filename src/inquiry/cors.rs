//! CORS for the get-or-create route: an exact allowlist of origins, preflights answered here,
//! and the response headers that let an allowed page read the answer.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};

use crate::body::{Body, empty};
use crate::connection::Connection;

pub struct Cors {
    allowed: Vec<String>,
}

impl Cors {
    pub fn new(allowed: &[String]) -> Self {
        Self {
            allowed: allowed.to_vec(),
        }
    }

    /// The request's `Origin` when it is on the allowlist (compared exactly, as browsers send it)
    /// or is the gateway's own origin: a page served through the gateway calling it back is not
    /// cross-site, whatever port or host name it was reached on.
    pub fn allowed_origin<B>(&self, req: &Request<B>) -> Option<HeaderValue> {
        let origin = req.headers().get(ORIGIN)?;
        let text = origin.to_str().ok()?;
        let listed = self.allowed.iter().any(|a| a == text);
        (listed || is_same_origin(req, text)).then(|| origin.clone())
    }

    /// 204 with the allowances. Credentials are allowed because the route may be called with
    /// the app's session cookie; that is safe only because the origin is on the allowlist.
    pub fn preflight(&self, origin: HeaderValue) -> Response<Body> {
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let h = response.headers_mut();
        decorate(h, origin);
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
        h.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, x-request-id"),
        );
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        response
    }
}

fn is_same_origin<B>(req: &Request<B>, origin: &str) -> bool {
    let Some(conn) = req.extensions().get::<Connection>() else {
        return false;
    };
    let host = crate::target::authority(req.uri(), req.headers());
    let host = host.as_ref().and_then(|h| h.to_str().ok());
    let scheme = if conn.tls { "https" } else { "http" };
    host.is_some_and(|host| origin.strip_prefix(scheme).and_then(|o| o.strip_prefix("://")) == Some(host))
}

/// The headers every answer to an allowed origin carries, errors included, so the page can
/// read why it failed.
pub fn decorate(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    headers.append(VARY, HeaderValue::from_static("origin"));
}
