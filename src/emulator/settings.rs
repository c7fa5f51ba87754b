//! What the endpoints need from the config, fixed at bind time: the API key and its own settings
//! (default inflection and version), the template expiry, the workflow. Read once from
//! `[emulator]` so no request handler looks at the config itself.

use super::clock::Millis;
use super::inflect::Inflection;
use super::model::View;
use crate::config::{EmulatorConfig, Secret};

pub(super) struct Settings {
    pub api_key: Secret,
    pub auto_approve: bool,
    pub key_inflection: Inflection,
    pub api_version: String,
    /// How webhook payloads render: the webhooks' API version (the key's).
    pub webhook_view: View,
    pub inquiry_expiry: Millis,
}

impl Settings {
    pub(super) fn new(config: &EmulatorConfig) -> Settings {
        Settings {
            api_key: config.api_key.clone(),
            auto_approve: config.auto_approve,
            key_inflection: config.key_inflection.into(),
            api_version: config.api_version.clone(),
            webhook_view: View::for_version(&config.api_version),
            inquiry_expiry: u64::try_from(config.inquiry_expiry.as_millis()).unwrap_or(u64::MAX),
        }
    }
}
