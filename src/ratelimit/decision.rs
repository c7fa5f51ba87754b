//! What a limiter says of one request under one policy, whichever backend decided it.

use std::time::Duration;

/// One policy's verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests that could be made right now after this one.
    pub remaining: u32,
    /// Refused: how long until a request would be accepted. Allowed: how long until the
    /// burst is whole again.
    pub reset: Duration,
}
