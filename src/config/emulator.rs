//! `[emulator]`: the local Persona stand-in (address, key, templates and their field schemas, the
//! API key's own settings, limits, expiry, latency, workflow, webhooks). The same validation
//! serves the TOML section and the `persona-gate emulator` command line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::primitives::{Secret, SecretRef};
use super::validate::Validator;
use super::versions::PUBLISHED_VERSIONS;

/// The key the emulator accepts when none is configured. It only opens the emulator, so it may
/// be public.
pub const DEMO_API_KEY: &str = "emulator_demo_key_not_a_persona_key";

/// The template the emulator accepts when none is configured.
pub const DEMO_TEMPLATE: &str = "itmpl_emulator_kyc";

/// The inquiry events the emulator sends: the status-change events of Persona's inquiry, and
/// `inquiry.redacted`.
pub const INQUIRY_EVENTS: [&str; 9] = [
    "inquiry.created",
    "inquiry.started",
    "inquiry.expired",
    "inquiry.completed",
    "inquiry.failed",
    "inquiry.marked-for-review",
    "inquiry.approved",
    "inquiry.declined",
    "inquiry.redacted",
];

/// The field schema of Persona's KYC template, with the template's own (snake_case) keys: what
/// an emulator template has unless `[emulator.template_fields]` declares its own.
pub const KYC_FIELDS: [(&str, FieldType); 14] = [
    ("name_first", FieldType::String),
    ("name_middle", FieldType::String),
    ("name_last", FieldType::String),
    ("birthdate", FieldType::Date),
    ("phone_number", FieldType::String),
    ("email_address", FieldType::String),
    ("address_street_1", FieldType::String),
    ("address_street_2", FieldType::String),
    ("address_city", FieldType::String),
    ("address_subdivision", FieldType::String),
    ("address_postal_code", FieldType::String),
    ("address_country_code", FieldType::String),
    ("selected_country_code", FieldType::String),
    ("identification_number", FieldType::String),
];

/// Persona's inquiry field types (the `type` of a field on read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Number,
    Boolean,
    Date,
    Datetime,
    Choices,
    MultiChoices,
    Array,
    Hash,
    File,
}

impl FieldType {
    const ALL: [FieldType; 10] = [
        FieldType::String,
        FieldType::Number,
        FieldType::Boolean,
        FieldType::Date,
        FieldType::Datetime,
        FieldType::Choices,
        FieldType::MultiChoices,
        FieldType::Array,
        FieldType::Hash,
        FieldType::File,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Choices => "choices",
            FieldType::MultiChoices => "multi_choices",
            FieldType::Array => "array",
            FieldType::Hash => "hash",
            FieldType::File => "file",
        }
    }

    fn parse(text: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Persona's `Key-Inflection` values; an API key has one as its default (a dashboard setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyInflection {
    Kebab,
    Snake,
    Camel,
}

/// One inquiry template the emulator knows: its id and the field schema of its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateConfig {
    pub id: String,
    /// Field key (as the template spells it) and type, in key order.
    pub fields: Vec<(String, FieldType)>,
}

impl TemplateConfig {
    /// A template with Persona's KYC fields.
    pub fn kyc(id: &str) -> TemplateConfig {
        TemplateConfig {
            id: id.to_owned(),
            fields: KYC_FIELDS.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect(),
        }
    }
}

/// Whether two field keys name the same field once inflected (`name_first`, `name-first` and
/// `nameFirst` do), which is how Persona matched field keys before 2025-10-27.
pub(crate) fn same_key_inflected(a: &str, b: &str) -> bool {
    kebab(a) == kebab(b)
}

/// `nameFirst`, `name_first` and `name-first` all become `name-first`; `addressStreet1` becomes
/// `address-street-1` so that camelCase round-trips Persona's numbered address fields.
pub(crate) fn kebab(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut prev: Option<char> = None;
    for c in key.chars() {
        let boundary = match prev {
            Some(p) => p != '-' && (c.is_ascii_uppercase() || (c.is_ascii_digit() && p.is_ascii_alphabetic())),
            None => false,
        };
        if boundary {
            out.push('-');
        }
        let c = if c == '_' { '-' } else { c.to_ascii_lowercase() };
        out.push(c);
        prev = Some(c);
    }
    out
}

/// The `Persona-Version` an API key is on until a request names another. Persona's API reference
/// gives 2023-01-05 as the header's default.
pub const DEFAULT_API_VERSION: &str = "2023-01-05";

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Port 0 is allowed; the bound address is known after `Emulator::bind`.
    pub listen: SocketAddr,
    pub api_key: Secret,
    /// Accepted templates; creating with any other template is a 404, as in Persona.
    pub templates: Vec<TemplateConfig>,
    /// The API key's default `Key-Inflection`, used for responses to requests that send none.
    pub key_inflection: KeyInflection,
    /// The API key's configured `Persona-Version`, used for requests that send none.
    pub api_version: String,
    /// Requests per window of a minute per API key (Persona's default: 300).
    pub rate_limit: u32,
    /// How long after creation an inquiry expires unless its create asks otherwise (the template
    /// setting; Persona's default is 24 h). Expiry happens on the emulator's own clock.
    pub inquiry_expiry: Duration,
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
            templates: vec![TemplateConfig::kyc(DEMO_TEMPLATE)],
            key_inflection: KeyInflection::Kebab,
            api_version: DEFAULT_API_VERSION.to_owned(),
            rate_limit: DEFAULT_RATE_LIMIT,
            inquiry_expiry: Duration::from_secs(24 * 3600),
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
    /// Template id -> field key -> field type; templates not named here have Persona's KYC fields.
    #[serde(default)]
    template_fields: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default = "default_inflection")]
    key_inflection: KeyInflection,
    #[serde(default = "default_api_version")]
    api_version: String,
    #[serde(default = "default_rate_limit")]
    rate_limit: u32,
    #[serde(default = "default_inquiry_expiry")]
    inquiry_expiry: String,
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

/// Persona's default environment rate limit, requests per minute.
pub const DEFAULT_RATE_LIMIT: u32 = 300;

fn default_inflection() -> KeyInflection {
    KeyInflection::Kebab
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

fn default_rate_limit() -> u32 {
    DEFAULT_RATE_LIMIT
}

fn default_inquiry_expiry() -> String {
    "24h".to_owned()
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
        let templates = self.template_configs(v);
        if !PUBLISHED_VERSIONS.contains(&self.api_version.as_str()) {
            v.problem(
                "emulator.api_version",
                format!(
                    "{:?} is not a Persona API version ({})",
                    self.api_version,
                    PUBLISHED_VERSIONS.join(", ")
                ),
            );
        }
        if self.rate_limit == 0 {
            v.problem("emulator.rate_limit", "must be at least 1 request per minute");
        }
        let inquiry_expiry = v.duration("emulator.inquiry_expiry", &self.inquiry_expiry);
        if inquiry_expiry < Duration::from_secs(1) {
            v.problem("emulator.inquiry_expiry", "must be at least 1s");
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
            templates,
            key_inflection: self.key_inflection,
            api_version: self.api_version,
            rate_limit: self.rate_limit,
            inquiry_expiry,
            latency: v.duration("emulator.latency", &self.latency),
            auto_approve: self.auto_approve,
            webhook_url: self.webhook_url,
            webhook_secrets,
            webhook_events: self.webhook_events,
        }
    }
}

impl RawEmulator {
    /// Each listed template with its declared schema, or Persona's KYC fields.
    fn template_configs(&self, v: &mut Validator) -> Vec<TemplateConfig> {
        for id in self.template_fields.keys() {
            if !self.templates.contains(id) {
                v.problem(
                    format!("emulator.template_fields.{id}"),
                    "names a template that is not in emulator.templates",
                );
            }
        }
        self.templates
            .iter()
            .map(|id| match self.template_fields.get(id) {
                None => TemplateConfig::kyc(id),
                Some(schema) => {
                    if schema.is_empty() {
                        v.problem(format!("emulator.template_fields.{id}"), "declare at least one field");
                    }
                    let fields = schema
                        .iter()
                        .filter_map(|(key, kind)| {
                            let parsed = FieldType::parse(kind);
                            if parsed.is_none() {
                                let kinds: Vec<&str> = FieldType::ALL.iter().map(|t| t.as_str()).collect();
                                v.problem(
                                    format!("emulator.template_fields.{id}.{key}"),
                                    format!("{kind:?} is not a Persona field type ({})", kinds.join(", ")),
                                );
                            }
                            if key.is_empty() {
                                v.problem(format!("emulator.template_fields.{id}"), "a field key is empty");
                            }
                            parsed.map(|t| (key.clone(), t))
                        })
                        .collect();
                    TemplateConfig { id: id.clone(), fields }
                }
            })
            .collect()
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
            template_fields: BTreeMap::new(),
            key_inflection: default_inflection(),
            api_version: default_api_version(),
            rate_limit: default_rate_limit(),
            inquiry_expiry: default_inquiry_expiry(),
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
        assert_eq!(config.templates, vec![TemplateConfig::kyc(DEMO_TEMPLATE)]);
        assert_eq!(
            config.templates[0].fields[0],
            ("name_first".to_owned(), FieldType::String)
        );
        assert_eq!(config.key_inflection, KeyInflection::Kebab);
        assert_eq!(config.api_version, DEFAULT_API_VERSION);
        assert_eq!(config.rate_limit, 300);
        assert_eq!(config.inquiry_expiry, Duration::from_secs(86_400));
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
api_version = "2024-01-01"
rate_limit = 0
inquiry_expiry = "0s"
[template_fields.itmpl_unlisted]
name_first = "string"
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
            "emulator.api_version",
            "emulator.rate_limit",
            "emulator.inquiry_expiry",
            "emulator.template_fields.itmpl_unlisted",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        assert!(toml::from_str::<RawEmulator>("key_inflection = \"shouty\"").is_err());
    }

    #[test]
    fn templates_declare_their_field_schema_or_have_kycs() {
        let (config, problems) = validate(
            r#"
templates = ["itmpl_kyc", "itmpl_custom"]
key_inflection = "camel"
[template_fields.itmpl_custom]
nameFirst = "string"
loyalty_tier = "number"
"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.key_inflection, KeyInflection::Camel);
        assert_eq!(config.templates[0], TemplateConfig::kyc("itmpl_kyc"));
        assert_eq!(
            config.templates[1].fields,
            vec![
                ("loyalty_tier".to_owned(), FieldType::Number),
                ("nameFirst".to_owned(), FieldType::String)
            ]
        );
        let (_, problems) = validate("templates = [\"itmpl_x\"]\n[template_fields.itmpl_x]\nage = \"integer\"\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("emulator.template_fields.itmpl_x.age"),
            "{problems:?}"
        );
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
