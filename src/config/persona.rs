//! `[persona]`: how the gateway reaches Persona: which API (the real one or the embedded
//! emulator), with which key, template and API version, and how patiently (timeouts, retries).

use std::time::Duration;

use serde::Deserialize;

use super::emulator::EmulatorConfig;
use super::primitives::{Secret, SecretRef};
use super::validate::Validator;
use super::versions::{PUBLISHED_VERSIONS, SUPPORTED_VERSIONS};

pub const DEFAULT_BASE_URL: &str = "https://api.withpersona.com/api/v1";
pub const DEFAULT_VERSION: &str = "2025-10-27";
pub const DEFAULT_KEY_ENV: &str = "PERSONA_API_KEY";

#[derive(Debug, Clone)]
pub struct PersonaConfig {
    pub endpoint: PersonaEndpoint,
    /// Sent as `Persona-Version` on every call, so the key's dashboard default cannot change the
    /// shapes the gateway parses; one of [`SUPPORTED_VERSIONS`].
    pub version: String,
    /// The `itmpl_` template of the default flow (`inquiry.flows` name the others).
    pub template_id: String,
    /// One attempt, connect to last body byte.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// All attempts and waits of one logical call; nothing is retried past it.
    pub deadline: Duration,
    /// First retry waits up to this long (full jitter), doubling up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// Where the API lives. The emulator's address and key are only known once it is bound, so
/// that case carries nothing here and `lib::bind` fills it in.
#[derive(Debug, Clone)]
pub enum PersonaEndpoint {
    Emulator,
    /// `base_url` has no trailing slash; paths like `/inquiries` are appended to it.
    Remote {
        base_url: String,
        api_key: Secret,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPersona {
    #[serde(default)]
    use_emulator: bool,
    base_url: Option<String>,
    api_key: Option<SecretRef>,
    #[serde(default = "default_version")]
    version: String,
    template_id: String,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: String,
    #[serde(default = "default_deadline")]
    deadline: String,
    #[serde(default = "default_backoff_initial")]
    backoff_initial: String,
    #[serde(default = "default_backoff_max")]
    backoff_max: String,
}

fn default_version() -> String {
    DEFAULT_VERSION.into()
}
fn default_timeout() -> String {
    "5s".into()
}
fn default_connect_timeout() -> String {
    "2s".into()
}
fn default_deadline() -> String {
    "15s".into()
}
fn default_backoff_initial() -> String {
    "200ms".into()
}
fn default_backoff_max() -> String {
    "3s".into()
}

impl RawPersona {
    pub(super) fn validate(self, v: &mut Validator, emulator: Option<&EmulatorConfig>) -> PersonaConfig {
        let endpoint = self.endpoint(v, emulator);
        if !SUPPORTED_VERSIONS.contains(&self.version.as_str()) {
            let why = if PUBLISHED_VERSIONS.contains(&self.version.as_str()) {
                "is a Persona API version persona-gate does not support"
            } else {
                "is not a Persona API version"
            };
            v.problem(
                "persona.version",
                format!("{:?} {why}; use one of {}", self.version, SUPPORTED_VERSIONS.join(", ")),
            );
        }
        if !is_template_id(&self.template_id) {
            v.problem(
                "persona.template_id",
                format!("{:?} is not an inquiry template id (itmpl_...)", self.template_id),
            );
        }
        let timeout = v.duration("persona.timeout", &self.timeout);
        let deadline = v.duration("persona.deadline", &self.deadline);
        if !deadline.is_zero() && deadline < timeout {
            v.problem("persona.deadline", "must be at least persona.timeout");
        }
        for (key, d) in [("persona.timeout", timeout), ("persona.deadline", deadline)] {
            if d.is_zero() {
                v.problem(key, "must be more than 0");
            }
        }
        PersonaConfig {
            endpoint,
            version: self.version,
            template_id: self.template_id,
            timeout,
            connect_timeout: v.duration("persona.connect_timeout", &self.connect_timeout),
            deadline,
            backoff_initial: v.duration("persona.backoff_initial", &self.backoff_initial),
            backoff_max: v.duration("persona.backoff_max", &self.backoff_max),
        }
    }

    /// The emulator brings its own URL and key, so naming either next to it is a mistake worth
    /// reporting; otherwise the key is required, from `PERSONA_API_KEY` unless configured.
    fn endpoint(&self, v: &mut Validator, emulator: Option<&EmulatorConfig>) -> PersonaEndpoint {
        if self.use_emulator {
            if emulator.is_none() {
                v.problem("persona.use_emulator", "needs an [emulator] section");
            }
            if self.base_url.is_some() || self.api_key.is_some() {
                v.problem(
                    "persona.use_emulator",
                    "the emulator supplies base_url and api_key; remove them",
                );
            }
            return PersonaEndpoint::Emulator;
        }
        let base_url = self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let valid = reqwest::Url::parse(base_url)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.query().is_none());
        if !valid {
            v.problem("persona.base_url", format!("{base_url:?} is not an http(s) URL"));
        }
        let base_url = base_url.trim_end_matches('/').to_owned();
        let default_ref = SecretRef {
            env: Some(DEFAULT_KEY_ENV.into()),
            file: None,
            value: None,
        };
        let reference = self.api_key.as_ref().unwrap_or(&default_ref);
        let api_key = v
            .secret("persona.api_key", reference)
            .unwrap_or_else(|| Secret::new(""));
        PersonaEndpoint::Remote { base_url, api_key }
    }
}

/// A Dynamic Flow template id (`itmpl_...`), the only kind the gateway creates inquiries from.
pub(super) fn is_template_id(id: &str) -> bool {
    id.starts_with("itmpl_") && is_plain_id(id)
}

/// Ids go into URL paths and query strings; anything beyond these characters is refused.
pub(crate) fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(version: &str) -> Vec<String> {
        let text = format!(
            "version = \"{version}\"\ntemplate_id = \"itmpl_x\"\nbase_url = \"https://api.withpersona.com/api/v1\"\n\
             api_key = {{ value = \"k\" }}\n"
        );
        let raw: RawPersona = toml::from_str(&text).expect("toml");
        let mut v = Validator::new(std::path::Path::new("."));
        let _ = raw.validate(&mut v, None);
        v.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn only_supported_persona_versions_are_accepted() {
        for version in SUPPORTED_VERSIONS {
            assert!(problems(version).is_empty(), "{version}");
        }
        let published_but_old = problems("2021-07-05");
        assert_eq!(published_but_old.len(), 1);
        assert!(published_but_old[0].starts_with("persona.version"));
        assert!(
            published_but_old[0].contains("does not support"),
            "{published_but_old:?}"
        );
        for made_up in ["2025-11-01", "2026-09-29", "latest", ""] {
            let found = problems(made_up);
            assert!(
                found[0].contains("is not a Persona API version"),
                "{made_up}: {found:?}"
            );
        }
        assert!(SUPPORTED_VERSIONS.iter().all(|v| PUBLISHED_VERSIONS.contains(v)));
        assert!(SUPPORTED_VERSIONS.contains(&DEFAULT_VERSION));
    }
}
