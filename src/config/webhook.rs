//! `[webhook]` section (placeholder until its issue lands).

use serde::Deserialize;

use super::Validator;

#[derive(Debug, Clone)]
pub struct WebhookConfig {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {}

impl RawWebhook {
    pub(super) fn validate(self, _v: &mut Validator) -> WebhookConfig {
        WebhookConfig {}
    }
}
