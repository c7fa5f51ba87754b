//! What the server knows about the connection a request arrived on, handed to every phase that
//! needs it (the proxy's `X-Forwarded-*`, CORS's same-origin check, the rate limit's address).

use std::net::SocketAddr;

use http::HeaderValue;

/// What the server knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer's address as a header value, for `X-Forwarded-For`: formatted once per
    /// connection rather than on every request.
    peer_header: HeaderValue,
}

impl Connection {
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        let peer_header =
            HeaderValue::from_str(&peer.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { peer, tls, peer_header }
    }

    pub fn peer_header(&self) -> &HeaderValue {
        &self.peer_header
    }
}
