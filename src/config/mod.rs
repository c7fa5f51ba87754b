//! Configuration: the only module that reads TOML, files named by the config, or environment
//! variables. `load` turns the file into a [`RawConfig`] (serde, unknown keys rejected) and then
//! validates it once into a typed [`Config`]. Every problem found is reported with its key name, so
//! `persona-gate check` can list them all at once instead of one per run.

mod admin;
mod auth;
mod demo;
mod emulator;
mod gate;
mod inquiry;
mod inquiry_read;
mod persona;
mod primitives;
mod ratelimit;
mod server;
mod store;
mod webhook;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use admin::AdminConfig;
pub use auth::{AuthConfig, JwksConfig, KeyConfig, KeyMaterial, TokenSource};
pub use demo::{DemoConfig, DemoUser};
pub use emulator::{DEMO_API_KEY, EmulatorConfig, EmulatorFlags};
pub use gate::GateConfig;
pub use inquiry::{InquiryConfig, PolicyTable, ProfileConfig, StatusPolicy};
pub use inquiry_read::InquiryReadConfig;
pub(crate) use persona::is_plain_id;
pub use persona::{PersonaConfig, PersonaEndpoint};
pub use primitives::{Secret, parse_duration};
#[cfg(test)]
pub(crate) use ratelimit::MAX_REFILL;
pub use ratelimit::{BudgetConfig, PolicyConfig, PolicyKey, RateLimitConfig};
pub use server::{
    HealthConfig, IdentityConfig, LimitsConfig, ListenerConfig, LogConfig, LogFormat, TlsFiles, UpstreamConfig,
};
pub use store::{OnStoreError, StoreBackend, StoreConfig};
pub use webhook::{EventFilter, WebhookConfig};

/// The validated configuration. Built only by [`load`] / [`parse`]; everything in it has been
/// checked, so the rest of the gateway never re-validates.
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: ListenerConfig,
    pub limits: LimitsConfig,
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
}

/// The file as written. Each section validates itself into its typed counterpart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: server::RawListeners,
    #[serde(default)]
    limits: server::RawLimits,
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

/// One thing wrong with a config, named by its dotted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
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

/// Collects problems while sections validate, so one run reports all of them.
pub(crate) struct Validator<'a> {
    problems: Vec<Problem>,
    /// Relative paths in the config are resolved against the config file's directory, so the
    /// gateway behaves the same whatever directory it is started from.
    base_dir: &'a Path,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(base_dir: &'a Path) -> Self {
        Self {
            problems: Vec::new(),
            base_dir,
        }
    }

    pub(crate) fn problem(&mut self, key: impl Into<String>, message: impl fmt::Display) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.to_string(),
        });
    }

    /// Records the error of `result` under `key` and returns the value if there was one.
    pub(crate) fn check<T, E: fmt::Display>(&mut self, key: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.problem(key, e)).ok()
    }

    pub(crate) fn path(&self, relative: &Path) -> PathBuf {
        self.base_dir.join(relative)
    }

    pub(crate) fn duration(&mut self, key: &str, text: &str) -> std::time::Duration {
        self.check(key, parse_duration(text)).unwrap_or_default()
    }

    pub(crate) fn secret(&mut self, key: &str, reference: &primitives::SecretRef) -> Option<Secret> {
        let resolved = reference.resolve(self.base_dir);
        self.check(key, resolved)
    }
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
    let listeners = raw.server.validate(&mut v);
    let limits = raw.limits.validate(&mut v);
    let health = raw.health.validate(&mut v);
    let log = raw.log.validate(&mut v);
    let upstream = raw.upstream.validate(&mut v, raw.demo.is_some());
    let identity = raw.identity.validate(&mut v);
    let auth = raw.auth.validate(&mut v);
    let emulator = raw.emulator.map(|e| e.validate(&mut v));
    let persona = raw.persona.map(|p| p.validate(&mut v, emulator.as_ref()));
    let inquiry = raw.inquiry.validate(&mut v);
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
    gate::cross_check(&gate, &auth, persona.is_some(), &mut v);
    let inquiry_read = raw.inquiry_read.validate(&mut v);
    inquiry_read::cross_check(&inquiry_read, &inquiry, &mut v);
    if !v.problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems: v.problems,
        });
    }
    Ok(Config {
        listeners,
        limits,
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
    })
}
