//! `[ratelimit]` section (placeholder until its issue lands).

use serde::Deserialize;

use super::Validator;

#[derive(Debug, Clone)]
pub struct RateLimitConfig {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {}

impl RawRateLimit {
    pub(super) fn validate(self, _v: &mut Validator) -> RateLimitConfig {
        RateLimitConfig {}
    }
}
