//! `[inquiry]`: the verification flows and what they share. A flow is one Persona template with
//! its own get-or-create route, prefilled fields (server-side data only) and policy table (what a
//! user whose latest inquiry is finished gets). `[inquiry]` itself, with `persona.template_id`, is
//! the flow named `default`; `[[inquiry.flows]]` adds more. Shared by every flow: who may call the
//! routes from a browser (CORS), how long a template's latest version is trusted, whether session
//! tokens are reused (off by default), and the app's profile endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::emulator::EmulatorConfig;
use super::persona::{PersonaConfig, PersonaEndpoint, is_template_id};
use super::validate::Validator;
use super::versions::{FIELD_KEYS_VERBATIM_SINCE, field_keys_verbatim};

/// The flow `[inquiry]` and `persona.template_id` describe; it cannot be declared again by name.
pub const DEFAULT_FLOW: &str = "default";

#[derive(Debug, Clone)]
pub struct InquiryConfig {
    /// Every verification flow, the default one first. Empty without `[persona]`, since a flow is
    /// a Persona template.
    pub flows: Vec<FlowConfig>,
    /// Exact origins (`scheme://host[:port]`) allowed to call the routes from a browser.
    pub allowed_origins: Vec<String>,
    /// How long the template's latest published version, read before resuming an expired
    /// inquiry, is trusted.
    pub template_version_ttl: Duration,
    /// Opt-in: how long a session token the gateway got from `resume` is handed out again
    /// instead of resuming. Zero (the default) resumes for every answer that carries a token,
    /// as Persona's tutorial does: Persona's resume hands back the inquiry's unused session if
    /// it has one. A cached token may already have been opened on another device or tab, and
    /// then may not open again.
    pub token_ttl: Duration,
    /// Most inquiries whose token is remembered (with `token_ttl`), over all flows; the oldest
    /// goes first.
    pub token_cache_size: usize,
    pub profile: Option<ProfileConfig>,
}

impl InquiryConfig {
    pub fn flow(&self, name: &str) -> Option<&FlowConfig> {
        self.flows.iter().find(|f| f.name == name)
    }
}

/// One verification: a Persona template, the route that gets or creates the user's inquiry on it,
/// what it is prefilled with and what a finished inquiry leads to.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// `default` for `[inquiry]`; lowercase letters, digits, `-` and `_` (it is a metrics label and
    /// part of store keys).
    pub name: String,
    /// The get-or-create route (`POST`).
    pub path: String,
    /// The `itmpl_` template its inquiries are created from and looked up on; no two flows share
    /// one, so a webhook's template names its flow.
    pub template_id: String,
    /// Claim name -> Persona field name, copied into `fields` when an inquiry is created.
    pub claim_fields: Vec<(String, String)>,
    pub policy: PolicyTable,
}

/// An endpoint on the app that returns the user's prefill fields as a JSON object.
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    /// Contains `{user_id}`, replaced by the percent-encoded user id.
    pub url: String,
    pub timeout: Duration,
}

/// What a user whose latest inquiry has a finished status gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusPolicy {
    /// Create a new inquiry (the tutorial's behaviour once an inquiry is no longer open).
    New,
    /// Answer with that inquiry's id and status and no session token; create nothing.
    Report,
    /// Resume that inquiry and answer with a session token; only meaningful for `expired`,
    /// which Persona lets you resume (it turns `pending` again). Done only while the inquiry is
    /// on its template's latest published version, as Persona advises; else a new one is made.
    Resume,
}

/// One entry per finished status. `created` and `pending` are not configurable: they are
/// always continued, which is the point of get-or-create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyTable {
    pub completed: StatusPolicy,
    pub approved: StatusPolicy,
    pub declined: StatusPolicy,
    pub failed: StatusPolicy,
    pub needs_review: StatusPolicy,
    pub expired: StatusPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawInquiry {
    path: String,
    allowed_origins: Vec<String>,
    policy: RawPolicy,
    template_version_ttl: String,
    token_ttl: String,
    token_cache_size: usize,
    fields: BTreeMap<String, String>,
    profile_url: Option<String>,
    profile_timeout: String,
    flows: Vec<RawFlow>,
}

/// `[[inquiry.flows]]`: a flow besides the default one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: String,
    path: String,
    template_id: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    policy: RawPolicy,
}

impl Default for RawInquiry {
    fn default() -> Self {
        Self {
            path: "/api/inquiries/get-or-create".into(),
            allowed_origins: Vec::new(),
            policy: RawPolicy::default(),
            template_version_ttl: "1m".into(),
            token_ttl: "0s".into(),
            token_cache_size: 100_000,
            fields: BTreeMap::new(),
            profile_url: None,
            profile_timeout: "2s".into(),
            flows: Vec::new(),
        }
    }
}

/// Defaults are the conservative reading of Persona's guides: a finished inquiry is reported,
/// not repeated, and an expired one is replaced by a new inquiry, so the template's latest
/// published version applies (a resumed inquiry keeps the version it was created on).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPolicy {
    completed: StatusPolicy,
    approved: StatusPolicy,
    declined: StatusPolicy,
    failed: StatusPolicy,
    needs_review: StatusPolicy,
    expired: StatusPolicy,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            completed: StatusPolicy::Report,
            approved: StatusPolicy::Report,
            declined: StatusPolicy::Report,
            failed: StatusPolicy::Report,
            needs_review: StatusPolicy::Report,
            expired: StatusPolicy::New,
        }
    }
}

/// Persona refuses to resume these (409), so `resume` for them is a config mistake.
const NOT_RESUMABLE: [&str; 5] = ["completed", "approved", "declined", "failed", "needs_review"];

impl RawInquiry {
    /// `persona` and `emulator` are the validated sections: the default flow's template is
    /// `persona.template_id`, and field keys are checked against the API version and, with the
    /// emulator, its templates.
    pub(super) fn validate(
        self,
        v: &mut Validator,
        persona: Option<&PersonaConfig>,
        emulator: Option<&EmulatorConfig>,
    ) -> InquiryConfig {
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if !is_origin(origin) {
                v.problem(
                    format!("inquiry.allowed_origins[{i}]"),
                    format!("{origin:?} is not an origin like \"https://app.example.com\""),
                );
            }
        }
        let template_version_ttl = v.duration("inquiry.template_version_ttl", &self.template_version_ttl);
        let token_ttl = v.duration("inquiry.token_ttl", &self.token_ttl);
        if token_ttl >= Duration::from_secs(23 * 3600) {
            v.problem(
                "inquiry.token_ttl",
                "must stay well under Persona's 24 h session token lifetime",
            );
        }
        let profile_timeout = v.duration("inquiry.profile_timeout", &self.profile_timeout);
        let profile = self.profile_url.map(|url| {
            let sample = url.replace("{user_id}", "u");
            if !url.contains("{user_id}") {
                v.problem("inquiry.profile_url", "must contain {user_id}");
            } else if !reqwest::Url::parse(&sample).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                v.problem("inquiry.profile_url", format!("{url:?} is not an http(s) URL"));
            }
            ProfileConfig {
                url,
                timeout: profile_timeout,
            }
        });
        let default = RawFlow {
            name: DEFAULT_FLOW.into(),
            path: self.path,
            template_id: persona.map(|p| p.template_id.clone()).unwrap_or_default(),
            fields: self.fields,
            policy: self.policy,
        };
        let mut flows = vec![default.validate(v, &FlowKeys::default_flow())];
        for (i, raw) in self.flows.into_iter().enumerate() {
            let keys = FlowKeys::declared(i);
            if raw.name == DEFAULT_FLOW {
                v.problem(
                    &keys.name,
                    "\"default\" is the flow of [inquiry] and persona.template_id; name this one otherwise",
                );
            }
            if !is_template_id(&raw.template_id) {
                v.problem(
                    &keys.template_id,
                    format!("{:?} is not an inquiry template id (itmpl_...)", raw.template_id),
                );
            }
            flows.push(raw.validate(v, &keys));
        }
        check_distinct(&flows, v);
        let Some(persona) = persona else {
            if flows.len() > 1 {
                v.problem(
                    "inquiry.flows",
                    "needs a [persona] section (a flow is a Persona template)",
                );
            }
            return InquiryConfig {
                flows: Vec::new(),
                allowed_origins: self.allowed_origins,
                template_version_ttl,
                token_ttl,
                token_cache_size: self.token_cache_size,
                profile,
            };
        };
        for (flow, keys) in flows.iter().zip(FlowKeys::all(flows.len())) {
            check_template(flow, &keys, persona, emulator, v);
        }
        InquiryConfig {
            flows,
            allowed_origins: self.allowed_origins,
            template_version_ttl,
            token_ttl,
            token_cache_size: self.token_cache_size,
            profile,
        }
    }
}

/// Where a flow's settings are written: `[inquiry]` (with `persona.template_id`) for the default
/// flow, `inquiry.flows[N]` for the others.
struct FlowKeys {
    name: String,
    path: String,
    template_id: String,
    /// `inquiry` or `inquiry.flows[N]`, before `.fields.<claim>` and `.policy.<status>`.
    table: String,
}

impl FlowKeys {
    fn default_flow() -> FlowKeys {
        FlowKeys {
            name: "inquiry".into(),
            path: "inquiry.path".into(),
            template_id: "persona.template_id".into(),
            table: "inquiry".into(),
        }
    }

    fn declared(i: usize) -> FlowKeys {
        let table = format!("inquiry.flows[{i}]");
        FlowKeys {
            name: format!("{table}.name"),
            path: format!("{table}.path"),
            template_id: format!("{table}.template_id"),
            table,
        }
    }

    /// The keys of `count` flows in the order `InquiryConfig::flows` holds them.
    fn all(count: usize) -> impl Iterator<Item = FlowKeys> {
        std::iter::once(FlowKeys::default_flow()).chain((0..count.saturating_sub(1)).map(FlowKeys::declared))
    }
}

impl RawFlow {
    fn validate(self, v: &mut Validator, keys: &FlowKeys) -> FlowConfig {
        if self.name != DEFAULT_FLOW && !is_flow_name(&self.name) {
            v.problem(
                &keys.name,
                format!(
                    "{:?} is not a flow name: 1 to 64 lowercase letters, digits, - and _, starting with a letter",
                    self.name
                ),
            );
        }
        v.route(&keys.path, &self.path);
        for (claim, field) in &self.fields {
            if field.is_empty() {
                v.problem(
                    format!("{}.fields.{claim}", keys.table),
                    "the Persona field name is empty",
                );
            }
        }
        FlowConfig {
            policy: self.policy.validate(v, &keys.table),
            name: self.name,
            path: self.path,
            template_id: self.template_id,
            claim_fields: self.fields.into_iter().collect(),
        }
    }
}

/// A name, a route and a template belong to one flow only: two flows on one path would answer
/// for each other, and two on one template would see each other's inquiries and webhooks (a
/// webhook is attributed to its flow by the inquiry's template).
fn check_distinct(flows: &[FlowConfig], v: &mut Validator) {
    let keys: Vec<FlowKeys> = FlowKeys::all(flows.len()).collect();
    for (i, flow) in flows.iter().enumerate() {
        let earlier = flows[..i].iter().zip(&keys);
        for (other, other_keys) in earlier {
            if flow.name == other.name && flow.name != DEFAULT_FLOW {
                v.problem(
                    &keys[i].name,
                    format!("flow {:?} is declared twice (also {})", flow.name, other_keys.name),
                );
            }
            if flow.path == other.path {
                v.problem(
                    &keys[i].path,
                    format!(
                        "{:?} is already the path of flow {:?} ({})",
                        flow.path, other.name, other_keys.path
                    ),
                );
            }
            if flow.template_id == other.template_id && !flow.template_id.is_empty() {
                v.problem(
                    &keys[i].template_id,
                    format!(
                        "{} is already the template of flow {:?} ({}); each flow needs a template of its own",
                        flow.template_id, other.name, other_keys.template_id
                    ),
                );
            }
        }
    }
}

impl RawPolicy {
    /// `flow_table` is where the flow is written (`inquiry`, `inquiry.flows[N]`).
    fn validate(self, v: &mut Validator, flow_table: &str) -> PolicyTable {
        let table = PolicyTable {
            completed: self.completed,
            approved: self.approved,
            declined: self.declined,
            failed: self.failed,
            needs_review: self.needs_review,
            expired: self.expired,
        };
        for status in NOT_RESUMABLE {
            if table.for_status(status) == Some(StatusPolicy::Resume) {
                v.problem(
                    format!("{flow_table}.policy.{status}"),
                    "Persona cannot resume a finished inquiry; use \"new\" or \"report\"",
                );
            }
        }
        table
    }
}

impl PolicyTable {
    /// The policy for a finished status; `None` for `created`, `pending` and unknown statuses.
    /// A redacted inquiry is finished whatever its status (see `inquiry`).
    pub fn for_status(&self, status: &str) -> Option<StatusPolicy> {
        match status {
            "completed" => Some(self.completed),
            "approved" => Some(self.approved),
            "declined" => Some(self.declined),
            "failed" => Some(self.failed),
            "needs_review" => Some(self.needs_review),
            "expired" => Some(self.expired),
            _ => None,
        }
    }
}

/// `payout`, `kyc-v2`: a letter, then lowercase letters, digits, `-` and `_`.
fn is_flow_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// With the emulator, a template it does not know makes every create a 404; then the field keys,
/// which are checked against the template the flow names.
fn check_template(
    flow: &FlowConfig,
    keys: &FlowKeys,
    persona: &PersonaConfig,
    emulator: Option<&EmulatorConfig>,
    v: &mut Validator,
) {
    let emulated = match (&persona.endpoint, emulator) {
        (PersonaEndpoint::Emulator, Some(e)) => Some(e),
        _ => None,
    };
    let template = emulated.and_then(|e| e.templates.iter().find(|t| t.id == flow.template_id));
    if emulated.is_some() && template.is_none() && is_template_id(&flow.template_id) {
        v.warn(
            &keys.template_id,
            format!(
                "the emulator has no template {} (emulator.templates), so it refuses every create",
                flow.template_id
            ),
        );
    }
    check_field_keys(flow, &keys.table, persona, template, v);
}

/// Warns about prefill field keys Persona would not match to a template field. From 2025-10-27
/// Persona takes field keys exactly as the template spells them, and its own fields are
/// snake_case (`name_first`); before that it inflected them, so a key must be a consistent
/// kebab-case, snake_case or camelCase spelling. Keys are sent as configured either way: a
/// custom template field may really be spelled otherwise, so this is a warning, not an error.
/// With the emulator, a key its template does not define is also named, since the emulator
/// refuses such a create.
fn check_field_keys(
    flow: &FlowConfig,
    table: &str,
    persona: &PersonaConfig,
    template: Option<&super::emulator::TemplateConfig>,
    v: &mut Validator,
) {
    let verbatim = field_keys_verbatim(&persona.version);
    for (claim, field) in &flow.claim_fields {
        let key = format!("{table}.fields.{claim}");
        if verbatim && !is_snake_case(field) {
            v.warn(
                &key,
                format!(
                    "field key {field:?} is not snake_case: persona.version {} (from {FIELD_KEYS_VERBATIM_SINCE}) takes \
                     field keys exactly as the template spells them, and Persona's own fields are snake_case \
                     (e.g. \"name_first\")",
                    persona.version
                ),
            );
        } else if !verbatim && !is_inflectable(field) {
            v.warn(
                &key,
                format!(
                    "field key {field:?} is not a kebab-case, snake_case or camelCase spelling Persona inflects to a \
                     template field (persona.version {})",
                    persona.version
                ),
            );
        }
        if let Some(template) = template {
            let known = template
                .fields
                .iter()
                .any(|(name, _)| name == field || (!verbatim && super::emulator::same_key_inflected(name, field)));
            if !known {
                v.warn(
                    &key,
                    format!(
                        "the emulator's template {} has no field {field:?}, so it refuses the create",
                        template.id
                    ),
                );
            }
        }
    }
}

/// `name_first`, `address_street_1`: lowercase words and digits joined by single underscores.
pub(crate) fn is_snake_case(key: &str) -> bool {
    is_joined(key, '_')
}

fn is_joined(key: &str, separator: char) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .split(separator)
            .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// A key Persona's inflection maps one way only: kebab-case, snake_case, or camelCase.
fn is_inflectable(key: &str) -> bool {
    let camel = key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.bytes().all(|b| b.is_ascii_alphanumeric())
        && !key
            .as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_uppercase());
    is_joined(key, '_') || is_joined(key, '-') || camel
}

/// `scheme://host[:port]` with nothing after it, which is what browsers send in `Origin`.
fn is_origin(text: &str) -> bool {
    reqwest::Url::parse(text).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.origin().ascii_serialization() == text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact() {
        assert!(is_origin("https://app.example.com"));
        assert!(is_origin("http://localhost:8001"));
        assert!(!is_origin("https://app.example.com/"));
        assert!(!is_origin("app.example.com"));
        assert!(!is_origin("https://app.example.com/path"));
    }

    #[test]
    fn field_key_spellings() {
        for key in ["name_first", "address_street_1", "birthdate"] {
            assert!(is_snake_case(key), "{key}");
            assert!(is_inflectable(key), "{key}");
        }
        for key in [
            "name-first",
            "nameFirst",
            "Name_first",
            "name__first",
            "name_",
            "_name",
            "",
        ] {
            assert!(!is_snake_case(key), "{key}");
        }
        for key in ["name-first", "nameFirst", "addressStreet1"] {
            assert!(is_inflectable(key), "{key}");
        }
        for key in ["name first", "NameFirst", "name-first_x", "nameFIRST", "name--first"] {
            assert!(!is_inflectable(key), "{key}");
        }
    }

    #[test]
    fn finished_statuses_cannot_be_resumed() {
        let mut v = Validator::new(std::path::Path::new("."));
        let raw = RawPolicy {
            completed: StatusPolicy::Resume,
            ..RawPolicy::default()
        };
        let _ = raw.validate(&mut v, "inquiry.flows[0]");
        assert_eq!(v.problems.len(), 1);
        assert_eq!(v.problems[0].key, "inquiry.flows[0].policy.completed");
    }
}
