//! `[gate]`: the verification gate: which path prefixes of the app only verified users may reach,
//! in which flow they must be verified and with which statuses, and how long the gateway trusts
//! what it knows about a user's status before asking Persona again. It does not own the status
//! itself (`verification`).
//!
//! Rules are `[[gate.rules]]` (`paths`, `flow`, `require`); `[gate] paths` + `require` are one
//! more rule, for the default flow, listed first.

use std::time::Duration;

use serde::Deserialize;

use super::auth::AuthConfig;
use super::inquiry::DEFAULT_FLOW;
use super::inquiry::InquiryConfig;
use super::validate::Validator;
use crate::target::PathPrefix;

#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Empty: no gate, and no status is kept.
    pub rules: Vec<GateRule>,
    /// How long a known status is kept in the store (webhooks, get-or-create, Persona answers).
    pub status_ttl: Duration,
    /// A status that does not open the gate (or "no inquiry") older than this is checked with
    /// Persona again before a gated request is refused, so a lost webhook cannot lock a user out.
    pub recheck_after: Duration,
}

/// Path prefixes of the app that only users verified in one flow may reach.
#[derive(Debug, Clone)]
pub struct GateRule {
    pub paths: Vec<PathPrefix>,
    /// The flow (`inquiry.flows[].name`, or `default`) whose latest inquiry decides.
    pub flow: String,
    /// Statuses of that inquiry that pass, as Persona spells them.
    pub require: Vec<String>,
    /// Where the rule is written (`gate` or `gate.rules[N]`), for messages.
    table: String,
}

impl GateConfig {
    pub fn is_gated(&self, path: &str) -> bool {
        self.rules.iter().any(|r| r.covers(path))
    }

    /// Whether some rule requires `flow`: only those flows' statuses are kept.
    pub fn gates_flow(&self, flow: &str) -> bool {
        self.rules.iter().any(|r| r.flow == flow)
    }
}

impl GateRule {
    pub fn covers(&self, path: &str) -> bool {
        self.specificity(path).is_some()
    }

    /// How much of `path` the longest of the rule's prefixes that covers it fixes; `None` when
    /// none covers it. Of several rules covering a path, the one with the highest is the nearest.
    pub fn specificity(&self, path: &str) -> Option<usize> {
        self.paths
            .iter()
            .filter(|p| p.matches(path))
            .map(PathPrefix::specificity)
            .max()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawGate {
    paths: Vec<String>,
    require: Vec<String>,
    status_ttl: String,
    recheck_after: String,
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    paths: Vec<String>,
    flow: String,
    #[serde(default = "default_require")]
    require: Vec<String>,
}

fn default_require() -> Vec<String> {
    vec!["approved".into()]
}

impl Default for RawGate {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            require: default_require(),
            status_ttl: "30d".into(),
            recheck_after: "1m".into(),
            rules: Vec::new(),
        }
    }
}

impl RawGate {
    pub(super) fn validate(self, v: &mut Validator) -> GateConfig {
        let mut rules = Vec::new();
        // The statuses are checked even without paths, as they always were.
        let statuses = require(v, "gate", self.require);
        let paths = prefixes(v, "gate", &self.paths);
        if !paths.is_empty() {
            rules.push(GateRule {
                paths,
                flow: DEFAULT_FLOW.into(),
                require: statuses,
                table: "gate".into(),
            });
        }
        for (i, raw) in self.rules.into_iter().enumerate() {
            let table = format!("gate.rules[{i}]");
            if raw.paths.is_empty() {
                v.problem(
                    format!("{table}.paths"),
                    "name at least one path prefix, e.g. [\"/walker/\"]",
                );
            }
            rules.push(GateRule {
                paths: prefixes(v, &table, &raw.paths),
                require: require(v, &table, raw.require),
                flow: raw.flow,
                table,
            });
        }
        let status_ttl = v.duration("gate.status_ttl", &self.status_ttl);
        let recheck_after = v.duration("gate.recheck_after", &self.recheck_after);
        if status_ttl.is_zero() {
            v.problem("gate.status_ttl", "must be greater than zero");
        }
        if recheck_after.is_zero() {
            v.problem("gate.recheck_after", "must be greater than zero");
        } else if recheck_after > status_ttl {
            v.problem("gate.recheck_after", "must not be longer than gate.status_ttl");
        }
        GateConfig {
            rules,
            status_ttl,
            recheck_after,
        }
    }
}

fn prefixes(v: &mut Validator, table: &str, written: &[String]) -> Vec<PathPrefix> {
    written
        .iter()
        .enumerate()
        .filter_map(|(i, p)| v.prefix(&format!("{table}.paths[{i}]"), p))
        .collect()
}

fn require(v: &mut Validator, table: &str, statuses: Vec<String>) -> Vec<String> {
    if statuses.is_empty() {
        v.problem(
            format!("{table}.require"),
            "name at least one status, e.g. [\"approved\"]",
        );
    }
    for (i, status) in statuses.iter().enumerate() {
        if status.is_empty() || !status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            v.problem(
                format!("{table}.require[{i}]"),
                format!("{status:?} is not a Persona status"),
            );
        }
    }
    statuses
}

/// Checks that need other sections: a gated path must require a token (the gate needs to know
/// who is asking), a rule must name a configured flow, and the gate needs Persona to ask about
/// users it knows nothing of.
pub(super) fn cross_check(
    gate: &GateConfig,
    auth: &AuthConfig,
    inquiry: &InquiryConfig,
    has_persona: bool,
    v: &mut Validator,
) {
    for rule in &gate.rules {
        let table = &rule.table;
        for (i, path) in rule.paths.iter().enumerate() {
            let public = auth.public_paths.iter().find(|p| p.overlaps(path));
            if let Some(public) = public {
                v.problem(
                    format!("{table}.paths[{i}]"),
                    format!(
                        "{:?} overlaps the public path {:?}; a gated path must require a token",
                        path.as_str(),
                        public.as_str()
                    ),
                );
            }
        }
        if has_persona && inquiry.flow(&rule.flow).is_none() {
            let known: Vec<&str> = inquiry.flows.iter().map(|f| f.name.as_str()).collect();
            v.problem(
                format!("{table}.flow"),
                format!("{:?} is not a configured flow ({})", rule.flow, known.join(", ")),
            );
        }
    }
    if let Some(first) = gate.rules.first()
        && !has_persona
    {
        let key = if first.table == "gate" {
            "gate.paths"
        } else {
            "gate.rules"
        };
        v.problem(
            key,
            "the gate needs a [persona] section to look up users it knows nothing about",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(raw: RawGate) -> Vec<String> {
        let mut v = Validator::new(std::path::Path::new("."));
        let _ = raw.validate(&mut v);
        v.problems.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(validate(RawGate::default()).is_empty());
    }

    #[test]
    fn bad_values_are_named() {
        let raw = RawGate {
            paths: vec!["walker/".into()],
            require: vec!["Approved".into()],
            status_ttl: "1m".into(),
            recheck_after: "5m".into(),
            rules: vec![RawRule {
                paths: Vec::new(),
                flow: "payout".into(),
                require: vec![String::new()],
            }],
        };
        assert_eq!(
            validate(raw),
            [
                "gate.require[0]",
                "gate.paths[0]",
                "gate.rules[0].paths",
                "gate.rules[0].require[0]",
                "gate.recheck_after"
            ]
        );
    }
}
