//! What the gateway reads out of a verified delivery: the event's id and name, and the inquiry
//! and reference ids the app receives as headers. The body itself is forwarded untouched; this
//! only looks inside it.

use serde_json::Value;

use super::error::WebhookError;
use crate::verification::EventReport;

/// Ids longer than this are not Persona's (theirs are a prefix and about 30 characters).
const MAX_ID_LEN: usize = 255;

/// A reference id is the app's user id, any Unicode text (`auth` bounds it by
/// `auth.max_user_id_len`); beyond this it is not one the gateway could have sent.
const MAX_REFERENCE_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `evt_...`, the de-duplication key.
    pub id: String,
    /// e.g. `inquiry.completed`.
    pub name: String,
    pub inquiry_id: Option<String>,
    /// The inquiry's `reference-id`: the user id the gateway gave Persona when it created the
    /// inquiry, exactly (any Unicode text; `headers::encode_text` makes it a header).
    pub reference_id: Option<String>,
    /// The inquiry's status as of this event (inquiry events only), for the verification gate.
    pub status: Option<String>,
    /// The `itmpl_` template the inquiry was created from (inquiry events only): it names the
    /// verification flow the event belongs to. Persona's inquiry object, in the API and in
    /// webhook payloads alike, carries it as `relationships.inquiry-template.data.id`.
    pub template_id: Option<String>,
    /// When Persona created the event (`data.attributes.created-at`); deliveries arrive out of
    /// order, so this, not the arrival time, says which of two events is newer.
    pub created_at: Option<String>,
}

impl Event {
    /// Reads the JSON:API envelope `{"data":{"type":"event","id":..,"attributes":{"name":..,
    /// "payload":{"data":<the object>}}}}`.
    ///
    /// # Errors
    /// `NotAnEvent` when the body is not JSON of that shape, or its id or name could not be
    /// passed on safely as header values.
    pub fn parse(body: &[u8]) -> Result<Event, WebhookError> {
        let json: Value = serde_json::from_slice(body).map_err(|e| not_an_event(format!("invalid JSON: {e}")))?;
        let data = &json["data"];
        if data["type"] != "event" {
            return Err(not_an_event("data.type is not \"event\"".into()));
        }
        let id = required(data, "/id", "data.id")?;
        let name = required(data, "/attributes/name", "data.attributes.name")?;
        let object = &data["attributes"]["payload"]["data"];
        Ok(Event {
            inquiry_id: optional(inquiry_id(object), "inquiry id"),
            reference_id: reference_id(object)
                .filter(|id| (1..=MAX_REFERENCE_LEN).contains(&id.len()))
                .map(str::to_owned),
            status: optional(status(object), "inquiry status"),
            template_id: optional(template_id(object), "inquiry template id"),
            created_at: optional(inflected(&data["attributes"], "created-at"), "event created-at"),
            id,
            name,
        })
    }
}

impl Event {
    /// What the event says of a user's inquiry, for the verification ledger; `None` for events
    /// that say nothing about one (other objects, or no reference id).
    pub fn report(&self) -> Option<EventReport<'_>> {
        Some(EventReport {
            event_id: &self.id,
            user: self.reference_id.as_deref()?,
            inquiry_id: self.inquiry_id.as_deref()?,
            status: self.status.as_deref()?,
            template_id: self.template_id.as_deref(),
            created_at: self.created_at.as_deref(),
        })
    }
}

fn not_an_event(reason: String) -> WebhookError {
    WebhookError::NotAnEvent(reason)
}

fn required(data: &Value, pointer: &str, key: &str) -> Result<String, WebhookError> {
    match data.pointer(pointer).and_then(Value::as_str) {
        Some(text) if header_safe(text) => Ok(text.to_owned()),
        Some(_) => Err(not_an_event(format!("{key} is not a plausible id or name"))),
        None => Err(not_an_event(format!("{key} is missing or not a string"))),
    }
}

/// A value the app cannot receive intact as a header is dropped rather than mangled; the app can
/// still read it from the body.
fn optional(value: Option<&str>, what: &str) -> Option<String> {
    let value = value?;
    if header_safe(value) {
        Some(value.to_owned())
    } else {
        tracing::warn!("webhook {what} is not header-safe; not sent as a header");
        None
    }
}

/// For inquiry events the object is the inquiry; other objects point at theirs.
fn inquiry_id(object: &Value) -> Option<&str> {
    if object["type"] == "inquiry" {
        object["id"].as_str()
    } else {
        object.pointer("/relationships/inquiry/data/id").and_then(Value::as_str)
    }
}

/// Webhooks send attribute keys in the inflection configured on the webhook (kebab by default).
fn reference_id(object: &Value) -> Option<&str> {
    if object["type"] != "inquiry" {
        return None;
    }
    inflected(&object["attributes"], "reference-id")
}

fn status(object: &Value) -> Option<&str> {
    if object["type"] != "inquiry" {
        return None;
    }
    object["attributes"]["status"].as_str()
}

/// A Dynamic Flow inquiry's template. (A legacy inquiry has `relationships.template` instead,
/// whose `blu_`/`tmpl_` id no flow can have.)
fn template_id(object: &Value) -> Option<&str> {
    if object["type"] != "inquiry" {
        return None;
    }
    spelled(&object["relationships"], "inquiry-template")?["data"]["id"].as_str()
}

/// `attributes[kebab]`, or its camelCase or snake_case spelling, as a string.
fn inflected<'a>(attributes: &'a Value, kebab: &str) -> Option<&'a str> {
    spelled(attributes, kebab)?.as_str()
}

/// `map[kebab]`, or its camelCase or snake_case spelling: webhooks send keys in the inflection
/// configured on the webhook.
fn spelled<'a>(map: &'a Value, kebab: &str) -> Option<&'a Value> {
    let snake = kebab.replace('-', "_");
    let camel: String = kebab
        .split('-')
        .enumerate()
        .map(|(i, word)| match (i, word.chars().next()) {
            (0, _) | (_, None) => word.to_owned(),
            (_, Some(first)) => first.to_ascii_uppercase().to_string() + &word[first.len_utf8()..],
        })
        .collect();
    [kebab, camel.as_str(), snake.as_str()]
        .iter()
        .map(|key| &map[*key])
        .find(|value| !value.is_null())
}

/// Visible ASCII without spaces and of a sane length, so it is a valid header value as is.
fn header_safe(text: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: &Value) -> Result<Event, WebhookError> {
        Event::parse(value.to_string().as_bytes())
    }

    #[test]
    fn reads_an_inquiry_event() {
        let event = parse(&json!({ "data": { "type": "event", "id": "evt_1", "attributes": {
            "name": "inquiry.completed",
            "payload": { "data": { "type": "inquiry", "id": "inq_1",
                                   "attributes": { "status": "completed", "reference-id": "user-42" },
                                   "relationships": { "inquiry-template": {
                                       "data": { "type": "inquiry-template", "id": "itmpl_kyc" } } } } },
            "created-at": "2024-02-15T23:48:17.732Z" } } }))
        .expect("event");
        assert_eq!(
            event,
            Event {
                id: "evt_1".into(),
                name: "inquiry.completed".into(),
                inquiry_id: Some("inq_1".into()),
                reference_id: Some("user-42".into()),
                status: Some("completed".into()),
                template_id: Some("itmpl_kyc".into()),
                created_at: Some("2024-02-15T23:48:17.732Z".into()),
            }
        );
    }

    #[test]
    fn other_inflections_and_objects() {
        let camel = parse(&json!({ "data": { "type": "event", "id": "evt_1", "attributes": {
            "name": "inquiry.approved",
            "payload": { "data": { "type": "inquiry", "id": "inq_1", "attributes": { "referenceId": "u" },
                "relationships": { "inquiryTemplate": { "data": { "type": "inquiry-template", "id": "itmpl_p" } } } } } } } }))
        .expect("event");
        assert_eq!(camel.reference_id.as_deref(), Some("u"));
        assert_eq!(camel.status, None);
        assert_eq!(camel.template_id.as_deref(), Some("itmpl_p"));
        let verification = parse(&json!({ "data": { "type": "event", "id": "evt_2", "attributes": {
            "name": "verification.passed",
            "payload": { "data": { "type": "verification/government-id", "id": "ver_1",
                "relationships": { "inquiry": { "data": { "type": "inquiry", "id": "inq_9" } } } } } } } }))
        .expect("event");
        assert_eq!(verification.inquiry_id.as_deref(), Some("inq_9"));
        assert_eq!(verification.reference_id, None);
        assert_eq!(verification.template_id, None);
        let legacy = parse(&json!({ "data": { "type": "event", "id": "evt_3", "attributes": {
            "name": "inquiry.approved",
            "payload": { "data": { "type": "inquiry", "id": "inq_1", "attributes": { "status": "approved" },
                "relationships": { "template": { "data": { "type": "template", "id": "blu_x" } } } } } } } }))
        .expect("event");
        assert_eq!(legacy.template_id, None);
    }

    #[test]
    fn reference_ids_are_kept_exactly_and_unsafe_inquiry_ids_dropped() {
        let event = |inquiry: &str, reference: &str| {
            parse(&json!({ "data": { "type": "event", "id": "evt_1", "attributes": {
                "name": "inquiry.completed",
                "payload": { "data": { "type": "inquiry", "id": inquiry,
                                       "attributes": { "reference-id": reference } } } } } }))
            .expect("event")
        };
        // Any text the gateway could have sent as a user id comes back as it is; the forwarder
        // encodes it for the header.
        let unicode = event("inq_1", "José 山田\r\nx-injected: 1");
        assert_eq!(unicode.reference_id.as_deref(), Some("José 山田\r\nx-injected: 1"));
        assert_eq!(event("inq_1", "").reference_id, None);
        assert_eq!(event("inq\r\n1", "u").inquiry_id, None);
    }

    #[test]
    fn non_events_are_refused() {
        for body in [
            json!([]),
            json!({ "data": { "type": "inquiry", "id": "inq_1", "attributes": { "name": "x" } } }),
            json!({ "data": { "type": "event", "attributes": { "name": "inquiry.completed" } } }),
            json!({ "data": { "type": "event", "id": "evt_1", "attributes": {} } }),
            json!({ "data": { "type": "event", "id": 7, "attributes": { "name": "inquiry.completed" } } }),
            json!({ "data": { "type": "event", "id": "evt 1", "attributes": { "name": "inquiry.completed" } } }),
            json!({ "data": { "type": "event", "id": "", "attributes": { "name": "inquiry.completed" } } }),
        ] {
            assert!(matches!(parse(&body), Err(WebhookError::NotAnEvent(_))), "{body}");
        }
        assert!(matches!(Event::parse(b"not json"), Err(WebhookError::NotAnEvent(_))));
    }
}
