//! `[webhook]` section: where Persona delivers signed events, the secrets that sign them, how
//! strict the checks are, where verified events go on the app, and how long event ids are
//! remembered for de-duplication. The section is optional; without it no webhook route exists.

use std::time::Duration;

use http::uri::PathAndQuery;
use serde::Deserialize;

use super::primitives::SecretRef;
use super::primitives::{Secret, parse_duration};
use super::validate::Validator;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The gateway path Persona posts to; answered by the gateway, never proxied.
    pub path: String,
    /// Every secret currently valid. Several at once let a secret be rotated without downtime.
    pub secrets: Vec<Secret>,
    /// How far a signature's timestamp may be from now, in the past or the future.
    pub tolerance: Duration,
    pub max_body_bytes: usize,
    /// The path (and optional query) on the app that receives verified events.
    pub forward_path: PathAndQuery,
    /// How long the app may take to answer a forwarded event. Persona gives up after 5 s, so this
    /// should stay below that for the gateway's 504 to reach Persona before its own timeout.
    pub forward_timeout: Duration,
    pub events: EventFilter,
    pub dedupe_ttl: Duration,
    pub dedupe_capacity: usize,
}

/// Which event names are forwarded to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// `events = ["*"]`, like Persona's own `enabled-events`.
    All,
    Only(Vec<String>),
}

impl EventFilter {
    pub fn allows(&self, name: &str) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    secrets: Vec<SecretRef>,
    #[serde(default = "default_tolerance")]
    tolerance: String,
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
    forward_path: Option<String>,
    #[serde(default = "default_forward_timeout")]
    forward_timeout: String,
    #[serde(default = "default_events")]
    events: Vec<String>,
    #[serde(default = "default_dedupe_ttl")]
    dedupe_ttl: String,
    #[serde(default = "default_dedupe_capacity")]
    dedupe_capacity: usize,
}

fn default_path() -> String {
    "/webhooks/persona".into()
}
fn default_tolerance() -> String {
    "5m".into()
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_forward_timeout() -> String {
    "4s".into()
}
fn default_events() -> Vec<String> {
    [
        "inquiry.started",
        "inquiry.completed",
        "inquiry.approved",
        "inquiry.declined",
        "inquiry.failed",
        "inquiry.expired",
        "inquiry.marked-for-review",
    ]
    .map(String::from)
    .to_vec()
}
/// Persona retries a failed delivery for about 2.1 days; remembering ids a little longer than
/// that covers a late duplicate of an event that was delivered successfully.
fn default_dedupe_ttl() -> String {
    "72h".into()
}
fn default_dedupe_capacity() -> usize {
    100_000
}

impl RawWebhook {
    pub(super) fn validate(self, v: &mut Validator) -> WebhookConfig {
        v.route("webhook.path", &self.path);
        if self.secrets.is_empty() {
            v.problem("webhook.secrets", "name at least one secret");
        }
        let secrets = self
            .secrets
            .iter()
            .enumerate()
            .filter_map(|(i, s)| v.secret(&format!("webhook.secrets[{i}]"), s))
            .collect();
        if self.max_body_bytes == 0 {
            v.problem("webhook.max_body_bytes", "must be at least 1");
        }
        if self.dedupe_capacity == 0 {
            v.problem("webhook.dedupe_capacity", "must be at least 1");
        }
        WebhookConfig {
            path: self.path,
            secrets,
            tolerance: positive(v, "webhook.tolerance", &self.tolerance),
            max_body_bytes: self.max_body_bytes,
            forward_path: forward_path(v, self.forward_path.as_deref()),
            forward_timeout: positive(v, "webhook.forward_timeout", &self.forward_timeout),
            events: events(v, self.events),
            dedupe_ttl: positive(v, "webhook.dedupe_ttl", &self.dedupe_ttl),
            dedupe_capacity: self.dedupe_capacity,
        }
    }
}

fn positive(v: &mut Validator, key: &str, text: &str) -> Duration {
    let d = v.duration(key, text);
    if d.is_zero() && parse_duration(text).is_ok() {
        v.problem(key, "must be greater than zero");
    }
    d
}

fn forward_path(v: &mut Validator, text: Option<&str>) -> PathAndQuery {
    let fallback = PathAndQuery::from_static("/");
    let Some(text) = text else {
        v.problem(
            "webhook.forward_path",
            "required: the app path that receives verified events",
        );
        return fallback;
    };
    if !text.starts_with('/') {
        v.problem("webhook.forward_path", "must start with /");
        return fallback;
    }
    v.check("webhook.forward_path", text.parse::<PathAndQuery>())
        .unwrap_or(fallback)
}

fn events(v: &mut Validator, names: Vec<String>) -> EventFilter {
    if names.iter().any(|n| n == "*") {
        if names.len() > 1 {
            v.problem(
                "webhook.events",
                "\"*\" already forwards every event; list nothing else",
            );
        }
        return EventFilter::All;
    }
    if names.is_empty() {
        v.problem("webhook.events", "name at least one event, or \"*\" for all");
    }
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() || name.contains(char::is_whitespace) {
            v.problem(format!("webhook.events[{i}]"), format!("{name:?} is not an event name"));
        }
    }
    EventFilter::Only(names)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{ConfigError, parse};

    const BASE: &str = r#"
[server]
http = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:3000"
[auth]
sources = ["header"]
[[auth.keys]]
algorithms = ["HS256"]
secret = { value = "0123456789abcdef0123456789abcdef" }
"#;

    fn webhook(section: &str) -> Result<WebhookConfig, ConfigError> {
        let config = parse(&format!("{BASE}\n[webhook]\n{section}"), Path::new("test.toml"))?;
        Ok(config.webhook.expect("webhook section"))
    }

    fn problem_keys(section: &str) -> Vec<String> {
        match webhook(section) {
            Err(ConfigError::Invalid { problems, .. }) => problems.into_iter().map(|p| p.key).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let w = webhook("secrets = [{ value = \"wbhsec_a\" }]\nforward_path = \"/events\"").expect("valid");
        assert_eq!(w.path, "/webhooks/persona");
        assert_eq!(w.tolerance, Duration::from_secs(300));
        assert_eq!(w.max_body_bytes, 1024 * 1024);
        assert_eq!(w.forward_path.as_str(), "/events");
        assert!(w.events.allows("inquiry.completed") && w.events.allows("inquiry.marked-for-review"));
        assert!(!w.events.allows("inquiry.created"));
        assert_eq!(w.secrets.len(), 1);
    }

    #[test]
    fn star_forwards_everything() {
        let w = webhook("secrets = [{ value = \"a\" }]\nforward_path = \"/e\"\nevents = [\"*\"]").expect("valid");
        assert_eq!(w.events, EventFilter::All);
    }

    #[test]
    fn bad_values_are_named() {
        let keys = problem_keys(
            r#"
path = "webhooks"
secrets = [{ value = "a" }, { env = "PG_TEST_SURELY_UNSET_WEBHOOK_SECRET" }]
tolerance = "5"
max_body_bytes = 0
forward_timeout = "0s"
events = ["inquiry completed"]
dedupe_capacity = 0
"#,
        );
        for key in [
            "webhook.path",
            "webhook.secrets[1]",
            "webhook.tolerance",
            "webhook.max_body_bytes",
            "webhook.forward_path",
            "webhook.forward_timeout",
            "webhook.events[0]",
            "webhook.dedupe_capacity",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
        assert!(problem_keys("forward_path = \"/e\"").contains(&"webhook.secrets".to_owned()));
        assert!(
            problem_keys("secrets = [{ value = \"a\" }]\nforward_path = \"/e\"\nevents = []")
                .contains(&"webhook.events".to_owned())
        );
    }
}
