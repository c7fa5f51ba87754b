//! `[gate]`: the verification gate: which path prefixes of the app only verified users may reach,
//! which inquiry statuses count as verified, and how long the gateway trusts what it knows about a
//! user's status before asking Persona again. It does not own the status itself (`verification`).

use std::time::Duration;

use serde::Deserialize;

use super::{AuthConfig, Validator};
use crate::target::PathPrefix;

#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Path prefixes of the app for verified users only. Empty: no gate, and no status is kept.
    pub paths: Vec<PathPrefix>,
    /// Statuses of the user's latest inquiry that open the gate, as Persona spells them.
    pub require: Vec<String>,
    /// How long a known status is kept in the store (webhooks, get-or-create, Persona answers).
    pub status_ttl: Duration,
    /// A status that does not open the gate (or "no inquiry") older than this is checked with
    /// Persona again before a gated request is refused, so a lost webhook cannot lock a user out.
    pub recheck_after: Duration,
}

impl GateConfig {
    pub fn is_gated(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p.matches(path))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawGate {
    paths: Vec<String>,
    require: Vec<String>,
    status_ttl: String,
    recheck_after: String,
}

impl Default for RawGate {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            require: vec!["approved".into()],
            status_ttl: "30d".into(),
            recheck_after: "1m".into(),
        }
    }
}

impl RawGate {
    pub(super) fn validate(self, v: &mut Validator) -> GateConfig {
        let paths = self
            .paths
            .iter()
            .enumerate()
            .filter_map(|(i, p)| v.prefix(&format!("gate.paths[{i}]"), p))
            .collect();
        if self.require.is_empty() {
            v.problem("gate.require", "name at least one status, e.g. [\"approved\"]");
        }
        for (i, status) in self.require.iter().enumerate() {
            if status.is_empty() || !status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                v.problem(
                    format!("gate.require[{i}]"),
                    format!("{status:?} is not a Persona status"),
                );
            }
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
            paths,
            require: self.require,
            status_ttl,
            recheck_after,
        }
    }
}

/// Checks that need other sections: a gated path must require a token (the gate needs to know
/// who is asking), and the gate needs Persona to ask about users it knows nothing of.
pub(super) fn cross_check(gate: &GateConfig, auth: &AuthConfig, has_persona: bool, v: &mut Validator) {
    for (i, path) in gate.paths.iter().enumerate() {
        let public = auth.public_paths.iter().find(|p| p.overlaps(path));
        if let Some(public) = public {
            v.problem(
                format!("gate.paths[{i}]"),
                format!(
                    "{:?} overlaps the public path {:?}; a gated path must require a token",
                    path.as_str(),
                    public.as_str()
                ),
            );
        }
    }
    if !gate.paths.is_empty() && !has_persona {
        v.problem(
            "gate.paths",
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
        };
        assert_eq!(
            validate(raw),
            ["gate.paths[0]", "gate.require[0]", "gate.recheck_after"]
        );
    }
}
