//! `[emulator]`: the local Persona stand-in (address, key, templates, latency, workflow, webhooks).
//! The same validation serves the TOML section and the `persona-gate emulator` command line.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::Validator;
use super::primitives::{Secret, SecretRef};

/// The key the emulator accepts when none is configured. It only opens the emulator, so it may
/// be public.
pub const DEMO_API_KEY: &str = "emulator_demo_key_not_a_persona_key";

/// The template the emulator accepts when none is configured.
pub const DEMO_TEMPLATE: &str = "itmpl_emulator_kyc";

/// The inquiry events the emulator sends (the status-change events of Persona's inquiry).
pub const INQUIRY_EVENTS: [&str; 8] = [
    "inquiry.created",
    "inquiry.started",
    "inquiry.expired",
    "inquiry.completed",
    "inquiry.failed",
    "inquiry.marked-for-review",
    "inquiry.approved",
    "inquiry.declined",
];

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Port 0 is allowed; the bound address is known after `Emulator::bind`.
    pub listen: SocketAddr,
    pub api_key: Secret,
    /// Accepted `itmpl_` ids; creating with any other template is a 404, as in Persona.
    pub templates: Vec<String>,
    /// Added before every `/api/v1` call is answered.
    pub latency: Duration,
    /// Approve right after completion, like the workflow of Persona's KYC solution.
    pub auto_approve: bool,
    pub webhook_url: Option<String>,
    /// The first signs; all are sent, as during a secret rotation.
    pub webhook_secrets: Vec<Secret>,
    pub webhook_events: Vec<String>,
    /// Where the gateway mounts the emulator's browser flow (script and modal API).
    pub embed_path: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: Secret::new(DEMO_API_KEY),
            templates: vec![DEMO_TEMPLATE.to_owned()],
            latency: Duration::ZERO,
            auto_approve: true,
            webhook_url: None,
            webhook_secrets: Vec::new(),
            webhook_events: INQUIRY_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            embed_path: default_embed_path(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmulator {
    #[serde(default = "default_listen")]
    listen: String,
    api_key: Option<SecretRef>,
    #[serde(default = "default_templates")]
    templates: Vec<String>,
    #[serde(default = "default_latency")]
    latency: String,
    #[serde(default = "default_true")]
    auto_approve: bool,
    webhook_url: Option<String>,
    #[serde(default)]
    webhook_secrets: Vec<SecretRef>,
    #[serde(default = "default_events")]
    webhook_events: Vec<String>,
    #[serde(default = "default_embed_path")]
    embed_path: String,
}

fn default_embed_path() -> String {
    "/__persona/".to_owned()
}

fn default_listen() -> String {
    "127.0.0.1:0".to_owned()
}

fn default_templates() -> Vec<String> {
    vec![DEMO_TEMPLATE.to_owned()]
}

fn default_latency() -> String {
    "0ms".to_owned()
}

fn default_true() -> bool {
    true
}

fn default_events() -> Vec<String> {
    INQUIRY_EVENTS.iter().map(|e| (*e).to_owned()).collect()
}

impl RawEmulator {
    pub(super) fn validate(self, v: &mut Validator) -> EmulatorConfig {
        let listen = v
            .check("emulator.listen", self.listen.parse::<SocketAddr>())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let api_key = match &self.api_key {
            Some(reference) => v.secret("emulator.api_key", reference),
            None => Some(Secret::new(DEMO_API_KEY)),
        };
        if self.templates.is_empty() {
            v.problem("emulator.templates", "list at least one inquiry template id");
        }
        for (i, template) in self.templates.iter().enumerate() {
            if !template.starts_with("itmpl_") || template.len() == "itmpl_".len() {
                v.problem(
                    format!("emulator.templates[{i}]"),
                    format!("{template:?} is not an itmpl_ id"),
                );
            }
        }
        if let Some(url) = &self.webhook_url {
            check_webhook_url(v, url);
        }
        let webhook_secrets: Vec<Secret> = self
            .webhook_secrets
            .iter()
            .enumerate()
            .filter_map(|(i, s)| v.secret(&format!("emulator.webhook_secrets[{i}]"), s))
            .collect();
        if self.webhook_url.is_some() && self.webhook_secrets.is_empty() {
            v.problem("emulator.webhook_secrets", "required when emulator.webhook_url is set");
        }
        for (i, event) in self.webhook_events.iter().enumerate() {
            if event != "*" && !INQUIRY_EVENTS.contains(&event.as_str()) {
                v.problem(
                    format!("emulator.webhook_events[{i}]"),
                    format!("{event:?} is not one of \"*\", {}", INQUIRY_EVENTS.join(", ")),
                );
            }
        }
        v.route("emulator.embed_path", &self.embed_path);
        if !self.embed_path.ends_with('/') {
            v.problem("emulator.embed_path", "must end with /");
        }
        EmulatorConfig {
            embed_path: self.embed_path,
            listen,
            api_key: api_key.unwrap_or_else(|| Secret::new(DEMO_API_KEY)),
            templates: self.templates,
            latency: v.duration("emulator.latency", &self.latency),
            auto_approve: self.auto_approve,
            webhook_url: self.webhook_url,
            webhook_secrets,
            webhook_events: self.webhook_events,
        }
    }
}

fn check_webhook_url(v: &mut Validator, url: &str) {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
        Ok(_) => v.problem("emulator.webhook_url", format!("{url:?} is not an http(s) URL")),
        Err(e) => v.problem("emulator.webhook_url", format!("{url:?}: {e}")),
    }
}

/// What `persona-gate emulator` accepts on its command line. Secrets are named by environment
/// variable, never passed as arguments, so they stay out of `ps` output and shell history.
#[derive(Debug, Default)]
pub struct EmulatorFlags {
    pub listen: Option<SocketAddr>,
    pub api_key_env: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret_envs: Vec<String>,
    pub latency: Option<String>,
    pub templates: Vec<String>,
    pub no_auto_approve: bool,
}

impl EmulatorConfig {
    /// Validates command-line settings exactly like an `[emulator]` section.
    ///
    /// # Errors
    /// Every problem, named by its `emulator.*` key.
    pub fn from_flags(flags: EmulatorFlags) -> Result<EmulatorConfig, Vec<String>> {
        let env_ref = |name: String| SecretRef {
            env: Some(name),
            file: None,
            value: None,
        };
        let raw = RawEmulator {
            listen: flags.listen.map_or_else(default_listen, |a| a.to_string()),
            api_key: flags.api_key_env.map(env_ref),
            templates: if flags.templates.is_empty() {
                default_templates()
            } else {
                flags.templates
            },
            latency: flags.latency.unwrap_or_else(default_latency),
            auto_approve: !flags.no_auto_approve,
            webhook_url: flags.webhook_url,
            webhook_secrets: flags.webhook_secret_envs.into_iter().map(env_ref).collect(),
            webhook_events: default_events(),
            embed_path: default_embed_path(),
        };
        let mut v = Validator::new(Path::new("."));
        let config = raw.validate(&mut v);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(v.problems.iter().map(ToString::to_string).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> (EmulatorConfig, Vec<String>) {
        let raw: RawEmulator = toml::from_str(text).expect("toml");
        let mut v = Validator::new(Path::new("."));
        let config = raw.validate(&mut v);
        (config, v.problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn defaults_match_the_contract() {
        let (config, problems) = validate("");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.api_key.expose(), DEMO_API_KEY);
        assert_eq!(config.templates, vec![DEMO_TEMPLATE]);
        assert_eq!(config.latency, Duration::ZERO);
        assert!(config.auto_approve);
        assert_eq!(config.webhook_events.len(), INQUIRY_EVENTS.len());
        assert_eq!(config.listen.port(), 0);
    }

    #[test]
    fn bad_values_are_named_by_key() {
        let (_, problems) = validate(
            r#"
listen = "nowhere"
templates = ["tmpl_legacy"]
latency = "5"
webhook_url = "ftp://example.com/hook"
webhook_events = ["inquiry.completed", "inquiry.exploded"]
"#,
        );
        let text = problems.join("\n");
        for key in [
            "emulator.listen",
            "emulator.templates[0]",
            "emulator.latency",
            "emulator.webhook_url",
            "emulator.webhook_secrets",
            "emulator.webhook_events[1]",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn flags_validate_like_the_section() {
        let flags = EmulatorFlags {
            latency: Some("50ms".into()),
            webhook_url: Some("http://127.0.0.1:9/hook".into()),
            ..EmulatorFlags::default()
        };
        let problems = EmulatorConfig::from_flags(flags).expect_err("secret required");
        assert!(problems.iter().any(|p| p.starts_with("emulator.webhook_secrets")));
        let config = EmulatorConfig::from_flags(EmulatorFlags {
            latency: Some("50ms".into()),
            ..EmulatorFlags::default()
        })
        .expect("valid");
        assert_eq!(config.latency, Duration::from_millis(50));
    }
}
