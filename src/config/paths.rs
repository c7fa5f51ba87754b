//! `[paths]`: how request paths are normalized before any decision and for the app, and which
//! of the refusals of ambiguous paths an operator relaxes (each named, each a warning in
//! `check`). The normalizer itself is `target`.

use serde::Deserialize;

use super::validate::Validator;
use crate::target::{PathPolicy, Relax};

#[derive(Debug, Clone)]
pub struct PathsConfig {
    pub policy: PathPolicy,
    /// The app routes case-insensitively, so prefix options ignore ASCII case.
    pub case_insensitive: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPaths {
    merge_slashes: bool,
    case_insensitive: bool,
    allow: Vec<String>,
}

impl Default for RawPaths {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            case_insensitive: false,
            allow: Vec::new(),
        }
    }
}

impl RawPaths {
    pub(super) fn validate(self, v: &mut Validator) -> PathsConfig {
        let mut allow = Vec::new();
        for (i, name) in self.allow.iter().enumerate() {
            let key = format!("paths.allow[{i}]");
            match Relax::from_name(name) {
                Some(relax) => {
                    v.warn(&key, format!("{name} relaxed: {}", relax.risk()));
                    allow.push(relax);
                }
                None => {
                    let names: Vec<&str> = Relax::ALL.iter().map(|r| r.name()).collect();
                    v.problem(key, format!("{name:?} is not one of {}", names.join(", ")));
                }
            }
        }
        if !self.merge_slashes {
            v.warn(
                "paths.merge_slashes",
                "off: //walker is not /walker to the gateway; an app that merges slashes serves \
                 gated and protected paths to such requests",
            );
        }
        PathsConfig {
            policy: PathPolicy {
                merge_slashes: self.merge_slashes,
                allow,
            },
            case_insensitive: self.case_insensitive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(raw: RawPaths) -> (PathsConfig, Vec<String>, Vec<String>) {
        let mut v = Validator::new(std::path::Path::new("."));
        let paths = raw.validate(&mut v);
        let keys = |list: Vec<super::super::Problem>| list.into_iter().map(|p| p.key).collect();
        (paths, keys(v.problems), keys(v.warnings))
    }

    #[test]
    fn defaults_merge_and_refuse_everything() {
        let (paths, problems, warnings) = validate(RawPaths::default());
        assert!(paths.policy.merge_slashes && paths.policy.allow.is_empty() && !paths.case_insensitive);
        assert!(problems.is_empty() && warnings.is_empty());
    }

    #[test]
    fn each_relaxation_is_a_warning_and_unknown_names_a_problem() {
        let raw = RawPaths {
            merge_slashes: false,
            case_insensitive: true,
            allow: vec!["semicolon".into(), "everything".into()],
        };
        let (paths, problems, warnings) = validate(raw);
        assert_eq!(paths.policy.allow, [Relax::Semicolon]);
        assert_eq!(problems, ["paths.allow[1]"]);
        assert_eq!(warnings, ["paths.allow[0]", "paths.merge_slashes"]);
    }
}
