//! Key inflection, as Persona's `Key-Inflection` header defines it: requests may spell keys in
//! kebab-case, snake_case or camelCase; responses use the header's inflection, else the API
//! key's default (kebab-case unless configured otherwise). Inside the emulator every key is
//! kebab-case, except inquiry field keys, which are kept as written: from 2025-10-27 Persona
//! neither inflects them on the way in nor on the way out (see `model::View`).

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::config::KeyInflection;
pub(super) use crate::config::kebab;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inflection {
    Kebab,
    Snake,
    Camel,
}

impl From<KeyInflection> for Inflection {
    fn from(k: KeyInflection) -> Inflection {
        match k {
            KeyInflection::Kebab => Inflection::Kebab,
            KeyInflection::Snake => Inflection::Snake,
            KeyInflection::Camel => Inflection::Camel,
        }
    }
}

impl Inflection {
    /// Reads a `Key-Inflection` header value; absent means the API key's `default`.
    pub(super) fn parse(header: Option<&str>, default: Inflection) -> Result<Inflection, ApiError> {
        match header.map(str::trim) {
            None => Ok(default),
            Some("kebab") => Ok(Inflection::Kebab),
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

    /// Respells every object key of an emulator-built (kebab-case) value. With `verbatim_fields`
    /// the keys inside an inquiry's `attributes.fields` stay as they are.
    pub(super) fn apply(self, value: Value, verbatim_fields: bool) -> Value {
        if self == Inflection::Kebab {
            return value;
        }
        map_keys(value, &|k| self.spell(k), verbatim_fields, false)
    }
}

/// Respells every object key of a request body in kebab-case, except the field keys inside
/// `attributes.fields`, which name template fields and are matched by `inquiries`.
pub(super) fn normalize(value: Value) -> Value {
    map_keys(value, &kebab, true, false)
}

/// `in_attributes` says the object being mapped is an `attributes` object, whose `fields` member
/// holds field keys.
fn map_keys(value: Value, f: &dyn Fn(&str) -> String, keep_fields: bool, in_attributes: bool) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = f(&k);
                    let v = if keep_fields && in_attributes && key == "fields" {
                        v
                    } else {
                        let child_is_attributes = key == "attributes";
                        map_keys(v, f, keep_fields, child_is_attributes)
                    };
                    (key, v)
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| map_keys(v, f, keep_fields, false)).collect()),
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
        let value =
            json!({ "name-first": "a-b", "attributes": { "fields": { "address-street-1": { "type": "string" } } } });
        assert_eq!(
            Inflection::Camel.apply(value.clone(), false),
            json!({ "nameFirst": "a-b", "attributes": { "fields": { "addressStreet1": { "type": "string" } } } })
        );
        assert_eq!(
            Inflection::Snake.apply(value.clone(), false),
            json!({ "name_first": "a-b", "attributes": { "fields": { "address_street_1": { "type": "string" } } } })
        );
        assert!(Inflection::parse(Some("shouty"), Inflection::Kebab).is_err());
        assert_eq!(
            Inflection::parse(None, Inflection::Snake).expect("default"),
            Inflection::Snake
        );
    }

    #[test]
    fn field_keys_are_kept_in_and_out() {
        let body = json!({ "data": { "attributes": {
            "inquiry_template_id": "itmpl_x",
            "fields": { "name_first": "Ann", "nameLast": "B", "hash_field": { "inner_key": 1 } },
        } }, "meta": { "autoCreateInquirySession": true } });
        let normalized = normalize(body);
        assert_eq!(
            normalized,
            json!({ "data": { "attributes": {
                "inquiry-template-id": "itmpl_x",
                "fields": { "name_first": "Ann", "nameLast": "B", "hash_field": { "inner_key": 1 } },
            } }, "meta": { "auto-create-inquiry-session": true } })
        );
        let out = json!({ "data": [{ "attributes": { "reference-id": "u", "fields": { "name_first": { "type": "string" } } } }] });
        assert_eq!(
            Inflection::Camel.apply(out, true),
            json!({ "data": [{ "attributes": { "referenceId": "u", "fields": { "name_first": { "type": "string" } } } }] })
        );
    }
}
