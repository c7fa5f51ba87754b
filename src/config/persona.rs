//! `[persona]`: how the gateway reaches Persona (owned by the Persona client work).

use serde::Deserialize;

use super::Validator;
use super::emulator::EmulatorConfig;

#[derive(Debug, Clone)]
pub struct PersonaConfig {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPersona {}

impl RawPersona {
    pub(super) fn validate(self, _v: &mut Validator, _emulator: Option<&EmulatorConfig>) -> PersonaConfig {
        PersonaConfig {}
    }
}
