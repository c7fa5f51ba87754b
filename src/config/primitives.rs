//! Value types shared by every section: durations written as text and secrets referenced by name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"` or `"2d"`. A unit is required: a bare number is the
/// classic config bug (seconds or milliseconds?), so it is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30s\""))?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(format!("{text:?} needs a unit: ms, s, m, h or d")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Where a secret lives. Exactly one of the fields must be set; `value` exists for demo configs
/// and tests, real deployments name an environment variable or a file (e.g. a mounted secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
    pub value: Option<String>,
}

impl SecretRef {
    pub(crate) fn resolve(&self, base_dir: &Path) -> Result<Secret, String> {
        let text = match (&self.env, &self.file, &self.value) {
            (Some(name), None, None) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?
            }
            (None, Some(path), None) => {
                let path = base_dir.join(path);
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                text.trim_end_matches(['\r', '\n']).to_owned()
            }
            (None, None, Some(value)) => value.clone(),
            _ => return Err("set exactly one of env, file or value".to_owned()),
        };
        if text.is_empty() {
            return Err("the secret is empty".to_owned());
        }
        Ok(Secret(text))
    }
}

/// A resolved secret. `Debug` and `Display` never show it, so a secret cannot leak through a log
/// line or an error message by accident; the one way to read it is [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}

/// Property tests of durations as the config writes them.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const UNITS: [(&str, u64); 5] = [
        ("ms", 1),
        ("s", 1_000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ];

    proptest! {
        #[test]
        fn a_number_and_a_unit_is_that_many_units(n in any::<u64>(), unit in prop::sample::select(UNITS.to_vec())) {
            let (name, millis) = unit;
            let expected = n.checked_mul(millis).map(Duration::from_millis);
            prop_assert_eq!(parse_duration(&format!("{n}{name}")).ok(), expected);
        }

        #[test]
        fn surrounding_whitespace_is_ignored(
            n in 0u64..1_000_000,
            unit in prop::sample::select(UNITS.to_vec()),
            before in "[ \t\n]{0,3}",
            after in "[ \t\n]{0,3}",
        ) {
            let plain = parse_duration(&format!("{n}{}", unit.0));
            prop_assert!(plain.is_ok());
            prop_assert_eq!(parse_duration(&format!("{before}{n}{}{after}", unit.0)), plain);
        }

        #[test]
        fn a_bare_number_is_refused(n in any::<u64>()) {
            prop_assert!(parse_duration(&n.to_string()).is_err());
        }

        #[test]
        fn other_units_and_inner_spaces_are_refused(
            n in any::<u32>(),
            unit in "[a-zA-Z]{1,5}".prop_filter("not a unit", |u| !UNITS.iter().any(|(name, _)| name == u)),
            known in prop::sample::select(UNITS.to_vec()),
        ) {
            let known = known.0;
            for text in [format!("{n}{unit}"), format!("{n} {known}"), format!("-{n}{known}"), format!("{n}.5{known}")] {
                let parsed = parse_duration(&text);
                prop_assert!(parsed.is_err(), "{:?} read as {:?}", text, parsed);
            }
        }

        #[test]
        fn any_text_is_refused_or_read_never_a_panic(text in "\\PC{0,24}") {
            if let Ok(duration) = parse_duration(&text) {
                // Only the documented spelling reads: digits, then a unit.
                let trimmed = text.trim();
                let unit = trimmed.trim_start_matches(|c: char| c.is_ascii_digit());
                prop_assert!(UNITS.iter().any(|(name, _)| *name == unit), "{text:?} read as {duration:?}");
            }
        }
    }
}
