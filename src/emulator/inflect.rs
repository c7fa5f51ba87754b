//! Key inflection, as Persona's `Key-Inflection` header defines it: requests may spell keys in
//! kebab-case, snake_case or camelCase; responses use kebab-case unless the header asks otherwise.
//! Inside the emulator every key is kebab-case.

use serde_json::{Map, Value};

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inflection {
    Kebab,
    Snake,
    Camel,
}

impl Inflection {
    /// Reads a `Key-Inflection` header value; absent means kebab.
    pub(super) fn parse(header: Option<&str>) -> Result<Inflection, ApiError> {
        match header.map(str::trim) {
            None | Some("kebab") => Ok(Inflection::Kebab),
            Some("snake") => Ok(Inflection::Snake),
            Some("camel") => Ok(Inflection::Camel),
            Some(other) => Err(ApiError::BadRequest(format!(
                "Key-Inflection {other:?} is not one of kebab, snake, camel"
            ))),
        }
    }

    /// Spells a kebab-case key in this inflection.
    fn spell(self, kebab: &str) -> String {
        match self {
            Inflection::Kebab => kebab.to_owned(),
            Inflection::Snake => kebab.replace('-', "_"),
            Inflection::Camel => {
                let mut out = String::with_capacity(kebab.len());
                let mut upper = false;
                for c in kebab.chars() {
                    if c == '-' {
                        upper = true;
                    } else if upper {
                        out.push(c.to_ascii_uppercase());
                        upper = false;
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// Respells every object key of an emulator-built (kebab-case) value.
    pub(super) fn apply(self, value: Value) -> Value {
        if self == Inflection::Kebab {
            return value;
        }
        map_keys(value, &|k| self.spell(k))
    }
}

/// `nameFirst`, `name_first` and `name-first` all become `name-first`; `addressStreet1` becomes
/// `address-street-1` so that camelCase round-trips Persona's numbered address fields.
pub(super) fn kebab(key: &str) -> String {
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

/// Respells every object key of a request body in kebab-case.
pub(super) fn normalize(value: Value) -> Value {
    map_keys(value, &kebab)
}

fn map_keys(value: Value, f: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (f(&k), map_keys(v, f)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| map_keys(v, f)).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_spelling_becomes_kebab() {
        for key in ["name-first", "name_first", "nameFirst"] {
            assert_eq!(kebab(key), "name-first");
        }
        assert_eq!(kebab("addressStreet1"), "address-street-1");
        assert_eq!(kebab("address_street_1"), "address-street-1");
        assert_eq!(
            kebab("auto-create-account-reference-id"),
            "auto-create-account-reference-id"
        );
        assert_eq!(kebab("ios_app_attest_team_id"), "ios-app-attest-team-id");
    }

    #[test]
    fn output_follows_the_header_and_leaves_values_alone() {
        let value = json!({ "name-first": "a-b", "fields": { "address-street-1": { "type": "string" } } });
        assert_eq!(
            Inflection::Camel.apply(value.clone()),
            json!({ "nameFirst": "a-b", "fields": { "addressStreet1": { "type": "string" } } })
        );
        assert_eq!(
            Inflection::Snake.apply(value.clone()),
            json!({ "name_first": "a-b", "fields": { "address_street_1": { "type": "string" } } })
        );
        assert_eq!(normalize(Inflection::Camel.apply(value.clone())), value);
        assert!(Inflection::parse(Some("shouty")).is_err());
    }
}
