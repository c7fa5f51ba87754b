//! The collector every section validates into: problems and warnings named by their dotted key,
//! with what validation needs to know of the file (its directory) and of `[paths]`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::primitives::{Secret, SecretRef, parse_duration};
use crate::target::{PathPolicy, PathPrefix, canonical_config_path};

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

/// Collects problems while sections validate, so one run reports all of them.
pub(crate) struct Validator<'a> {
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
    /// Relative paths in the config are resolved against the config file's directory, so the
    /// gateway behaves the same whatever directory it is started from.
    base_dir: &'a Path,
    /// `[paths]`, validated first: every path and prefix written in the config must be the
    /// canonical form requests are normalized to, or it could never match one.
    paths: PathPolicy,
    /// `paths.case_insensitive`, which prefixes take on.
    fold_case: bool,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(base_dir: &'a Path) -> Self {
        Self {
            problems: Vec::new(),
            warnings: Vec::new(),
            base_dir,
            paths: PathPolicy {
                merge_slashes: true,
                allow: Vec::new(),
            },
            fold_case: false,
        }
    }

    /// Set once `[paths]` is validated, before the sections whose paths it governs.
    pub(crate) fn normalize_paths(&mut self, policy: PathPolicy, fold_case: bool) {
        self.paths = policy;
        self.fold_case = fold_case;
    }

    /// What was found, for `parse` to report: (problems, warnings).
    pub(crate) fn finish(self) -> (Vec<Problem>, Vec<Problem>) {
        (self.problems, self.warnings)
    }

    pub(crate) fn problem(&mut self, key: impl Into<String>, message: impl fmt::Display) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.to_string(),
        });
    }

    pub(crate) fn warn(&mut self, key: impl Into<String>, message: impl fmt::Display) {
        self.warnings.push(Problem {
            key: key.into(),
            message: message.to_string(),
        });
    }

    /// A path prefix option, matched by whole segments of the canonical path.
    pub(crate) fn prefix(&mut self, key: &str, written: &str) -> Option<PathPrefix> {
        let prefix = PathPrefix::new(written, &self.paths, self.fold_case);
        self.check(key, prefix)
    }

    /// An exact path the gateway answers (or a prefix it strips), checked to be canonical.
    pub(crate) fn route(&mut self, key: &str, written: &str) {
        let canonical = canonical_config_path(written, &self.paths);
        let _ = self.check(key, canonical);
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

    pub(crate) fn secret(&mut self, key: &str, reference: &SecretRef) -> Option<Secret> {
        let resolved = reference.resolve(self.base_dir);
        self.check(key, resolved)
    }
}
