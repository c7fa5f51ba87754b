//! Configuration: the only module that reads TOML, files named by the config, or environment
//! variables. `load` turns the file into a `RawConfig` (serde, unknown keys rejected) and then
//! validates it once into a typed [`Config`]. Every problem found is reported with its key name, so
//! `persona-gate check` can list them all at once instead of one per run.

mod admin;
mod auth;
mod demo;
mod emulator;
mod gate;
mod inquiry;
mod inquiry_read;
mod keys;
mod paths;
mod persona;
mod primitives;
mod ratelimit;
mod server;
mod store;
mod validate;
mod versions;
mod webhook;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use admin::AdminConfig;
pub use auth::{AuthConfig, JwksConfig, KeyConfig, KeyMaterial, OidcConfig, TokenSource};
pub use demo::{DemoConfig, DemoUser};
pub use emulator::{DEMO_API_KEY, EmulatorConfig, EmulatorFlags, FieldType, KYC_FIELDS, KeyInflection, TemplateConfig};
#[cfg(feature = "emulator")]
pub(crate) use emulator::{kebab, same_key_inflected};
pub use gate::{GateConfig, GateRule};
pub use inquiry::{DEFAULT_FLOW, FlowConfig, InquiryConfig, PolicyTable, ProfileConfig, StatusPolicy};
pub use inquiry_read::InquiryReadConfig;
pub use paths::PathsConfig;
pub(crate) use persona::is_plain_id;
pub use persona::{PersonaConfig, PersonaEndpoint};
pub use primitives::{Secret, parse_duration};
#[cfg(test)]
pub(crate) use ratelimit::MAX_REFILL;
pub use ratelimit::{BudgetConfig, PolicyConfig, PolicyKey, RateLimitConfig};
pub use server::{
    HealthConfig, IdentityConfig, LimitsConfig, ListenerConfig, LogConfig, LogFormat, TlsIdentity, UpstreamConfig,
};
pub use store::{OnStoreError, StoreBackend, StoreConfig};
pub use validate::Problem;
use validate::Validator;
pub use versions::{FIELD_KEYS_VERBATIM_SINCE, PUBLISHED_VERSIONS, SUPPORTED_VERSIONS, field_keys_verbatim};
pub use webhook::{EventFilter, WebhookConfig};

/// The validated configuration. Built only by [`load`] / [`parse`]; everything in it has been
/// checked, so the rest of the gateway never re-validates.
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: ListenerConfig,
    pub limits: LimitsConfig,
    pub paths: PathsConfig,
    pub health: HealthConfig,
    pub log: LogConfig,
    pub upstream: UpstreamConfig,
    pub identity: IdentityConfig,
    pub auth: AuthConfig,
    pub persona: Option<PersonaConfig>,
    pub emulator: Option<EmulatorConfig>,
    pub inquiry: InquiryConfig,
    pub rate_limit: RateLimitConfig,
    pub store: StoreConfig,
    pub webhook: Option<WebhookConfig>,
    pub demo: Option<DemoConfig>,
    pub gate: GateConfig,
    pub inquiry_read: InquiryReadConfig,
    pub admin: Option<AdminConfig>,
    /// The file this was loaded from, for reloads and messages.
    pub source: PathBuf,
    /// Valid but risky settings, named by key: `check` prints them, the gateway logs them.
    pub warnings: Vec<Problem>,
}

impl Config {
    /// One warn line per risky setting, when the gateway starts or reloads with it.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!(key = %warning.key, "config: {}", warning.message);
        }
    }
}

/// The file as written. Each section validates itself into its typed counterpart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: server::RawListeners,
    #[serde(default)]
    limits: server::RawLimits,
    #[serde(default)]
    paths: paths::RawPaths,
    #[serde(default)]
    health: server::RawHealth,
    #[serde(default)]
    log: server::RawLog,
    upstream: server::RawUpstream,
    #[serde(default)]
    identity: server::RawIdentity,
    auth: auth::RawAuth,
    persona: Option<persona::RawPersona>,
    emulator: Option<emulator::RawEmulator>,
    #[serde(default)]
    inquiry: inquiry::RawInquiry,
    #[serde(default)]
    rate_limit: ratelimit::RawRateLimit,
    #[serde(default)]
    store: store::RawStore,
    webhook: Option<webhook::RawWebhook>,
    demo: Option<demo::RawDemo>,
    #[serde(default)]
    gate: gate::RawGate,
    #[serde(default)]
    inquiry_read: inquiry_read::RawInquiryRead,
    admin: Option<admin::RawAdmin>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n{}", .problems.len(), list(.problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

impl ConfigError {
    /// Every problem, one per entry, for `check` to print.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { problems, .. } => problems.iter().map(Problem::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and validates the config file at `path`.
///
/// # Errors
/// The file cannot be read, is not valid TOML for our schema (unknown keys included), or holds
/// values that fail validation; the error lists each problem with its key.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Deserialises the schema, naming the dotted key of the first structural problem (an unknown
/// key, a wrong type) as `upstream.surprise: unknown field ...`; toml's own message, with the
/// line and a caret, follows.
fn parse_raw(text: &str) -> Result<RawConfig, String> {
    let document = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner().to_string();
        if key == "." { inner } else { format!("{key}: {inner}") }
    })
}

/// Validates config text as if it had been read from `path` (used by tests and reloads).
///
/// # Errors
/// As [`load`], without the read.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw = parse_raw(text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut v = Validator::new(base_dir);
    let paths = raw.paths.validate(&mut v);
    v.normalize_paths(paths.policy.clone(), paths.case_insensitive);
    let listeners = raw.server.validate(&mut v);
    let limits = raw.limits.validate(&mut v);
    let health = raw.health.validate(&mut v);
    let log = raw.log.validate(&mut v);
    let upstream = raw.upstream.validate(&mut v, raw.demo.is_some());
    let identity = raw.identity.validate(&mut v);
    let auth = raw.auth.validate(&mut v);
    if !cfg!(feature = "emulator") {
        let without = "this persona-gate is built without the `emulator` feature (it is on by default; \
                       a production build leaves it out), so it has no emulator or demo app";
        for (section, present) in [("emulator", raw.emulator.is_some()), ("demo", raw.demo.is_some())] {
            if present {
                v.problem(section, without);
            }
        }
    }
    let emulator = raw.emulator.map(|e| e.validate(&mut v));
    let persona = raw.persona.map(|p| p.validate(&mut v, emulator.as_ref()));
    let inquiry = raw.inquiry.validate(&mut v, persona.as_ref(), emulator.as_ref());
    let rate_limit = raw.rate_limit.validate(&mut v);
    let store = raw.store.validate(&mut v);
    let webhook = raw.webhook.map(|w| w.validate(&mut v));
    let demo = raw.demo.and_then(|d| d.validate(&mut v));
    let admin = raw.admin.and_then(|a| a.validate(&mut v));
    if demo.is_some() && auth.cookie.is_none() {
        v.problem(
            "auth.cookie",
            "required with [demo]: the demo app signs users in with a session cookie",
        );
    }
    let gate = raw.gate.validate(&mut v);
    gate::cross_check(&gate, &auth, &inquiry, persona.is_some(), &mut v);
    let inquiry_read = raw.inquiry_read.validate(&mut v);
    inquiry_read::cross_check(&inquiry_read, &inquiry, &mut v);
    let (problems, warnings) = v.finish();
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        });
    }
    Ok(Config {
        listeners,
        limits,
        paths,
        health,
        log,
        upstream,
        identity,
        auth,
        persona,
        emulator,
        inquiry,
        rate_limit,
        store,
        webhook,
        demo,
        gate,
        inquiry_read,
        admin,
        source: path.to_owned(),
        warnings,
    })
}

/// Run by CI with `cargo test --no-default-features --lib`: the production build's refusal.
#[cfg(test)]
mod without_the_emulator {
    #[cfg(not(feature = "emulator"))]
    #[test]
    fn the_shipped_config_is_refused_for_its_emulator_and_demo_sections() {
        let text = include_str!("../../config.toml");
        let path = std::path::Path::new("config.toml");
        let error = super::parse(text, path).expect_err("refused").to_string();
        for section in ["emulator", "demo"] {
            let refusal = format!("{section}: this persona-gate is built without the `emulator` feature");
            assert!(error.contains(&refusal), "{error}");
        }
    }
}
