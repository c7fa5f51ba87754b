//! `[emulator]` section (placeholder until its issue lands).

use serde::Deserialize;

use super::Validator;

#[derive(Debug, Clone)]
pub struct EmulatorConfig {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmulator {}

impl RawEmulator {
    pub(super) fn validate(self, _v: &mut Validator) -> EmulatorConfig {
        EmulatorConfig {}
    }
}
