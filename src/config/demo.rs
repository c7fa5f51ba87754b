//! `[demo]`: the built-in demo app that stands in for "your existing app" in the quick start.
//! Everything here is demo-only; a deployment deletes the section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::primitives::Secret;
use super::validate::Validator;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub listen: SocketAddr,
    /// PEM private key the demo signs session JWTs with (ES256). Demo-only by construction.
    pub signing_key: Secret,
    pub token_ttl: Duration,
    pub user: DemoUser,
    /// Where the onboarding page loads the Embedded Flow script from: the emulator's stand-in,
    /// or Persona's real CDN URL when pointed at real Persona.
    pub persona_script: String,
    pub environment_id: String,
    /// Path on the demo app that receives the webhooks persona-gate forwards.
    pub webhook_path: String,
}

#[derive(Debug, Clone)]
pub struct DemoUser {
    pub id: String,
    pub given_name: String,
    pub family_name: String,
    pub birthdate: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDemo {
    listen: String,
    signing_key: PathBuf,
    #[serde(default = "default_ttl")]
    token_ttl: String,
    #[serde(default = "default_user_id")]
    user_id: String,
    #[serde(default = "default_given")]
    given_name: String,
    #[serde(default = "default_family")]
    family_name: String,
    #[serde(default = "default_birthdate")]
    birthdate: String,
    #[serde(default = "default_script")]
    persona_script: String,
    #[serde(default = "default_environment")]
    environment_id: String,
    #[serde(default = "default_webhook_path")]
    webhook_path: String,
}

fn default_ttl() -> String {
    "8h".into()
}
fn default_user_id() -> String {
    "usr_ABC123".into()
}
fn default_given() -> String {
    "Alexander".into()
}
fn default_family() -> String {
    "Sample".into()
}
fn default_birthdate() -> String {
    "1977-08-31".into()
}
fn default_script() -> String {
    "/__persona/persona.js".into()
}
fn default_environment() -> String {
    "env_emulator".into()
}
fn default_webhook_path() -> String {
    "/persona/events".into()
}

impl RawDemo {
    pub(super) fn validate(self, v: &mut Validator) -> Option<DemoConfig> {
        let listen = v.check("demo.listen", self.listen.parse::<SocketAddr>());
        let path = v.path(&self.signing_key);
        let pem = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()));
        let signing_key = v.check("demo.signing_key", pem).map(Secret::new);
        if !self.webhook_path.starts_with('/') {
            v.problem("demo.webhook_path", "must start with /");
        }
        Some(DemoConfig {
            listen: listen?,
            signing_key: signing_key?,
            token_ttl: v.duration("demo.token_ttl", &self.token_ttl),
            user: DemoUser {
                id: self.user_id,
                given_name: self.given_name,
                family_name: self.family_name,
                birthdate: self.birthdate,
            },
            persona_script: self.persona_script,
            environment_id: self.environment_id,
            webhook_path: self.webhook_path,
        })
    }
}
