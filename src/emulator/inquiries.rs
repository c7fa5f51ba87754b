//! Persona's inquiry endpoints under `/api/v1`: create, list, retrieve, redact, resume, expire,
//! approve, decline, mark-for-review and perform-simulate-actions, and the inquiry template read.
//! Input arrives with its keys already in kebab-case (field keys as sent); output is kebab-case
//! JSON:API, rendered for the request's API version, that the caller respells if asked to.
//!
//! Field keys follow the request's `Persona-Version`: from 2025-10-27 a key must be the
//! template's own key, character for character; before, any inflection of it matches. A key
//! that names no field of the template is refused with a 422 pointing at it. Persona's docs do
//! not say whether it refuses or drops such a key; refusing is the strict reading, and it makes
//! a misspelled prefill fail loudly instead of vanishing.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::clock::{self, DAY, SECOND};
use super::error::ApiError;
use super::ids::new_id;
use super::inflect::kebab;
use super::lifecycle::{self, Action, Effects};
use super::model::{Expiry, Inquiry, Schema, Status, View};
use super::settings::Settings;
use super::store::Store;
use crate::config::{FieldType, same_key_inflected};

/// A parsed `/api/v1` request.
pub(super) struct ApiRequest<'a> {
    pub method: &'a Method,
    /// Path segments after `/api/v1/`.
    pub segments: Vec<&'a str>,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The JSON body with kebab-case keys (field keys as sent); `None` when the body was empty.
    pub body: Option<Value>,
    /// How this request's API version takes field keys and renders inquiries.
    pub view: View,
}

/// Runs one request against the store.
///
/// # Errors
/// Persona's error for the request.
pub(super) fn route(
    store: &mut Store,
    settings: &Settings,
    req: &ApiRequest<'_>,
    fx: &mut Effects,
) -> Result<(StatusCode, Value), ApiError> {
    let ok = |value| Ok((StatusCode::OK, value));
    let view = req.view;
    match (req.method, req.segments.as_slice()) {
        (&Method::POST, ["inquiries"]) => create(store, settings, req, fx),
        (&Method::GET, ["inquiries"]) => ok(list(store, &req.query, fx, view)?),
        (&Method::GET, ["inquiries", id]) => ok(retrieve(store, id, &req.query, fx, view)?),
        (&Method::DELETE, ["inquiries", id]) => ok(redact(store, id, fx, view)?),
        (&Method::POST, ["inquiries", id, "resume"]) => {
            let (inquiry, token) = store.resume(id, fx)?;
            ok(json!({ "data": inquiry.to_json(view), "included": [], "meta": { "session-token": token } }))
        }
        (&Method::POST, ["inquiries", id, "expire"]) => ok(act(store, id, vec![Action::Expire], fx, view)?),
        (&Method::POST, ["inquiries", id, "approve"]) => {
            let comment = comment(req.body.as_ref());
            ok(act(store, id, vec![Action::Approve { comment }], fx, view)?)
        }
        (&Method::POST, ["inquiries", id, "decline"]) => {
            let comment = comment(req.body.as_ref());
            ok(act(store, id, vec![Action::Decline { comment }], fx, view)?)
        }
        (&Method::POST, ["inquiries", id, "mark-for-review"]) => {
            ok(act(store, id, vec![Action::MarkForReview], fx, view)?)
        }
        (&Method::POST, ["inquiries", id, "perform-simulate-actions"]) => {
            let actions = simulate_actions(req.body.as_ref())?;
            ok(act(store, id, actions, fx, view)?)
        }
        (&Method::GET, ["inquiry-templates", id]) => ok(template_resource(store, id)?),
        _ => Err(ApiError::NoRoute(format!(
            "{} /api/v1/{}",
            req.method,
            req.segments.join("/")
        ))),
    }
}

/// Applies `actions` in order to a copy of the inquiry and stores it only if all succeed.
///
/// # Errors
/// `RecordNotFound`, or the first action's `Conflict`.
pub(super) fn act(
    store: &mut Store,
    id: &str,
    actions: Vec<Action>,
    fx: &mut Effects,
    view: View,
) -> Result<Value, ApiError> {
    let mut inquiry = store.inquiry(id, fx)?.clone();
    let committed = fx.events.len();
    for action in actions {
        if let Err(e) = lifecycle::apply(&mut inquiry, action, fx) {
            fx.events.truncate(committed);
            return Err(e);
        }
    }
    let rendered = json!({ "data": inquiry.to_json(view), "included": [] });
    store.put(inquiry);
    Ok(rendered)
}

/// `DELETE /inquiries/{id}`: Persona's redaction (see `lifecycle::redact`).
fn redact(store: &mut Store, id: &str, fx: &mut Effects, view: View) -> Result<Value, ApiError> {
    let mut inquiry = store.inquiry(id, fx)?.clone();
    lifecycle::redact(&mut inquiry, fx);
    let rendered = json!({ "data": inquiry.to_json(view), "included": [] });
    store.put(inquiry);
    Ok(rendered)
}

/// `GET /inquiry-templates/{id}`: the part of Persona's inquiry template a client checks, its
/// latest published version.
fn template_resource(store: &Store, id: &str) -> Result<Value, ApiError> {
    let template = store.template(id).ok_or(ApiError::RecordNotFound)?;
    Ok(json!({
        "data": {
            "type": "inquiry-template",
            "id": template.id,
            "attributes": { "name": template.id, "status": "active" },
            "relationships": {
                "latest-published-version": {
                    "data": { "type": "inquiry-template-version", "id": template.latest_version() },
                },
            },
        },
        "included": [],
    }))
}

fn comment(body: Option<&Value>) -> Option<String> {
    body?.get("meta")?.get("comment")?.as_str().map(str::to_owned)
}

fn simulate_actions(body: Option<&Value>) -> Result<Vec<Action>, ApiError> {
    let items = body
        .and_then(|b| b.get("meta"))
        .and_then(|m| m.get("simulate-actions"))
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| ApiError::BadRequest("meta.simulate-actions must be a non-empty array".into()))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
            Action::simulated(kind).ok_or_else(|| {
                ApiError::at(
                    &format!("/meta/simulate-actions/{i}/type"),
                    format!("{kind:?} is not a supported simulate action"),
                )
            })
        })
        .collect()
}

// === create ===

const ATTRIBUTES: [&str; 14] = [
    "inquiry-template-id",
    "inquiry-template-version-id",
    "template-id",
    "reference-id",
    "account-id",
    "creator-email-address",
    "theme-id",
    "theme-set-id",
    "redirect-uri",
    "note",
    "fields",
    "tags",
    "initial-step-name",
    "country-code",
];

const META: [&str; 11] = [
    "auto-create-account",
    "auto-create-account-type-id",
    "auto-create-account-reference-id",
    "expiration-after-create-interval-seconds",
    "expiration-after-start-interval-seconds",
    "expiration-after-resume-interval-seconds",
    "one-time-link-expiration-seconds",
    "auto-create-inquiry-session",
    "auto-create-one-time-link",
    "ios-app-attest-team-id",
    "ios-app-attest-bundle-id",
];

/// Persona validates `data` and `meta` against closed schemas (`additionalProperties: false`).
fn closed_object<'a>(
    value: Option<&'a Value>,
    name: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, ApiError> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let map = match value {
        None | Some(Value::Null) => EMPTY.get_or_init(Map::new),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiError::BadRequest(format!("{name} must be an object"))),
    };
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::BadRequest(format!(
            "{name}.{unknown} is not a permitted parameter"
        ))),
        None => Ok(map),
    }
}

fn string_attr<'a>(map: &'a Map<String, Value>, key: &str, pointer: &str) -> Result<Option<&'a str>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::BadRequest(format!("{pointer}.{key} must be a string"))),
    }
}

fn bool_meta(meta: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ApiError> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::BadRequest(format!("meta.{key} must be a boolean"))),
    }
}

fn seconds_meta(meta: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(s) if s > 0 => Ok(Some(s * SECOND)),
            _ => Err(ApiError::BadRequest(format!("meta.{key} must be a positive integer"))),
        },
    }
}

/// The template the create names (exactly one selector, of a known template) and the version
/// the inquiry is pinned to: the one named, or the template's latest published version.
fn template(attributes: &Map<String, Value>, store: &Store) -> Result<(String, String, Schema), ApiError> {
    let selectors = ["inquiry-template-id", "inquiry-template-version-id", "template-id"];
    let given: Vec<(&str, &str)> = selectors
        .iter()
        .filter_map(|key| match string_attr(attributes, key, "data.attributes") {
            Ok(Some(value)) => Some(Ok((*key, value))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    let [(key, value)] = given.as_slice() else {
        return Err(ApiError::at(
            "/data/attributes/inquiry-template-id",
            "Exactly one of inquiry-template-id, inquiry-template-version-id or template-id is required",
        ));
    };
    let (template, version) = match *key {
        "inquiry-template-id" => {
            let template = store.template(value).ok_or(ApiError::RecordNotFound)?;
            (template, template.latest_version().to_owned())
        }
        "inquiry-template-version-id" => {
            let template = store.template_of_version(value).ok_or(ApiError::RecordNotFound)?;
            (template, (*value).to_owned())
        }
        // Emulator inquiries never use legacy templates.
        _ => return Err(ApiError::RecordNotFound),
    };
    Ok((template.id.clone(), version, template.schema.clone()))
}

/// The schema key a request's field key names: the same key from 2025-10-27, any inflection of
/// it before.
fn schema_key<'s>(schema: &'s Schema, key: &str, view: View) -> Option<&'s (String, FieldType)> {
    schema.iter().find(|(name, _)| {
        if view.verbatim_fields {
            name == key
        } else {
            same_key_inflected(name, key)
        }
    })
}

/// A written field value, checked against the type the template declares.
fn field(name: &str, kind: FieldType, value: &Value) -> Result<Value, ApiError> {
    let pointer = format!("/data/attributes/fields/{name}");
    let fits = match (kind, value) {
        (_, Value::Null) => true,
        (FieldType::Date, Value::String(s)) => {
            if !clock::is_date(s) {
                return Err(ApiError::at(
                    &pointer,
                    format!("{name} must be a date formatted YYYY-MM-DD"),
                ));
            }
            true
        }
        (FieldType::String | FieldType::Choices | FieldType::Datetime, Value::String(_))
        | (FieldType::Number, Value::Number(_))
        | (FieldType::Boolean, Value::Bool(_))
        | (FieldType::MultiChoices | FieldType::Array, Value::Array(_))
        | (FieldType::Hash | FieldType::File, Value::Object(_)) => true,
        _ => false,
    };
    if !fits {
        return Err(ApiError::at(&pointer, format!("{name} must be a {}", kind.as_str())));
    }
    Ok(value.clone())
}

/// The create's field values by schema key.
fn fields(
    attributes: &Map<String, Value>,
    schema: &Schema,
    template_id: &str,
    view: View,
) -> Result<BTreeMap<String, Value>, ApiError> {
    let map = match attributes.get("fields") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiError::BadRequest("data.attributes.fields must be an object".into())),
    };
    map.iter()
        .map(|(key, value)| {
            let Some((name, kind)) = schema_key(schema, key, view) else {
                return Err(ApiError::at(
                    &format!("/data/attributes/fields/{key}"),
                    format!("{key} is not a field of inquiry template {template_id}"),
                ));
            };
            Ok((name.clone(), field(key, *kind, value)?))
        })
        .collect()
}

fn tags(attributes: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    match attributes.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::BadRequest("data.attributes.tags must be strings".into()))
            })
            .collect(),
        Some(_) => Err(ApiError::BadRequest("data.attributes.tags must be an array".into())),
    }
}

/// The inquiry's reference id and account. The deprecated `reference-id` attribute and
/// `meta.auto-create-account-reference-id` both set the reference id (so `filter[reference-id]`
/// finds the inquiry either way) and both link the account kept for that reference id.
fn account(
    store: &mut Store,
    attributes: &Map<String, Value>,
    meta: &Map<String, Value>,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let attribute_ref = string_attr(attributes, "reference-id", "data.attributes")?;
    let meta_ref = string_attr(meta, "auto-create-account-reference-id", "meta")?;
    let auto_create = bool_meta(meta, "auto-create-account", true)?;
    if meta_ref.is_some() && !auto_create {
        return Err(ApiError::at(
            "/meta/auto-create-account-reference-id",
            "auto-create-account-reference-id requires auto-create-account",
        ));
    }
    let reference = match (attribute_ref, meta_ref) {
        (Some(a), Some(m)) if a != m => {
            return Err(ApiError::at(
                "/data/attributes/reference-id",
                "reference-id and meta.auto-create-account-reference-id disagree",
            ));
        }
        (a, m) => m.or(a).map(str::to_owned),
    };
    if let Some(account_id) = string_attr(attributes, "account-id", "data.attributes")? {
        let account_ref = store.account(account_id).ok_or(ApiError::RecordNotFound)?;
        if reference.is_some() && account_ref.is_some() && reference != account_ref {
            return Err(ApiError::at(
                "/data/attributes/account-id",
                "account-id belongs to another reference-id",
            ));
        }
        return Ok((reference.or(account_ref), Some(account_id.to_owned())));
    }
    let account = match (&reference, auto_create) {
        (Some(reference), true) => Some(store.account_for_reference(reference)),
        (None, true) => Some(store.anonymous_account()),
        (_, false) => None,
    };
    Ok((reference, account))
}

fn create(
    store: &mut Store,
    settings: &Settings,
    req: &ApiRequest<'_>,
    fx: &mut Effects,
) -> Result<(StatusCode, Value), ApiError> {
    let body = req
        .body
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("request body must be a JSON object".into()))?;
    if !body.is_object() {
        return Err(ApiError::BadRequest("request body must be a JSON object".into()));
    }
    let data = closed_object(body.get("data"), "data", &["attributes"])?;
    let attributes = closed_object(data.get("attributes"), "data.attributes", &ATTRIBUTES)?;
    let meta = closed_object(body.get("meta"), "meta", &META)?;
    if bool_meta(meta, "auto-create-one-time-link", false)? {
        return Err(ApiError::at(
            "/meta/auto-create-one-time-link",
            "the emulator does not generate one-time links",
        ));
    }
    let (template_id, template_version_id, schema) = template(attributes, store)?;
    let fields = fields(attributes, &schema, &template_id, req.view)?;
    let tags = tags(attributes)?;
    let note = string_attr(attributes, "note", "data.attributes")?.map(str::to_owned);
    let after_create =
        seconds_meta(meta, "expiration-after-create-interval-seconds")?.unwrap_or(settings.inquiry_expiry);
    let expiry = Expiry {
        after_create,
        after_start: seconds_meta(meta, "expiration-after-start-interval-seconds")?.unwrap_or(after_create),
        after_resume: seconds_meta(meta, "expiration-after-resume-interval-seconds")?.unwrap_or(DAY),
    };
    let with_session = bool_meta(meta, "auto-create-inquiry-session", false)?;
    let (reference_id, account_id) = account(store, attributes, meta)?;
    let now = fx.now;
    let mut inquiry = Inquiry {
        id: new_id("inq_"),
        status: Status::Created,
        reference_id,
        account_id,
        template_version_id,
        template_id,
        schema,
        note,
        tags,
        fields,
        reviewer_comment: None,
        created_at: now,
        updated_at: now,
        started_at: None,
        completed_at: None,
        failed_at: None,
        marked_for_review_at: None,
        decisioned_at: None,
        expired_at: None,
        redacted_at: None,
        expires_at: now + expiry.after_create,
        expiry,
        previous_step: "start",
        next_step: "government_id",
        verifications: Vec::new(),
        sessions: Vec::new(),
    };
    let token = if with_session {
        Some(store.session_token(&mut inquiry, now)?)
    } else {
        None
    };
    lifecycle::set_status(&mut inquiry, Status::Created, fx);
    let mut response = json!({ "data": inquiry.to_json(req.view), "included": [] });
    if let Some(token) = token {
        response["meta"] = json!({ "session-token": token });
    }
    store.insert(inquiry);
    Ok((StatusCode::CREATED, response))
}

// === read ===

fn retrieve(
    store: &mut Store,
    id: &str,
    query: &[(String, String)],
    fx: &mut Effects,
    view: View,
) -> Result<Value, ApiError> {
    let mut sparse = None;
    for (key, value) in query {
        match key.as_str() {
            "include" if !value.is_empty() => {
                return Err(ApiError::BadRequest(
                    "include: the emulator does not return related resources".into(),
                ));
            }
            "fields[inquiry]" => sparse = Some(value.as_str()),
            _ => {}
        }
    }
    let mut data = store.inquiry(id, fx)?.to_json(view);
    if let Some(spec) = sparse {
        sparse_fields(&mut data, spec);
    }
    Ok(json!({ "data": data, "included": [] }))
}

/// Keeps only the attributes named in a `fields[inquiry]` list (names in any inflection);
/// `fields.name_first` keeps one inquiry field.
fn sparse_fields(inquiry: &mut Value, spec: &str) {
    let wanted: Vec<String> = spec.split(',').map(|s| kebab(s.trim())).collect();
    let Some(attributes) = inquiry.get_mut("attributes").and_then(Value::as_object_mut) else {
        return;
    };
    let field_names: Vec<&str> = wanted.iter().filter_map(|w| w.strip_prefix("fields.")).collect();
    attributes.retain(|key, _| wanted.contains(key) || (key == "fields" && !field_names.is_empty()));
    if let Some(Value::Object(fields)) = attributes.get_mut("fields")
        && !wanted.iter().any(|w| w == "fields")
    {
        fields.retain(|name, _| field_names.iter().any(|w| same_key_inflected(w, name)));
    }
}

/// The filters Persona's list takes; the list-valued ones accept commas or repeated `[]` keys.
#[derive(Default)]
struct Filters {
    reference_id: Option<String>,
    note: Option<String>,
    lists: Vec<(String, Vec<String>)>,
}

impl Filters {
    fn add(&mut self, name: &str, value: &str) -> Result<(), ApiError> {
        match name {
            "reference-id" => self.reference_id = Some(value.to_owned()),
            "note" => self.note = Some(value.to_owned()),
            "account-id" | "inquiry-template-id" | "template-id" | "status" | "inquiry-id" => {
                let values = value.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
                match self.lists.iter_mut().find(|(n, _)| n == name) {
                    Some((_, existing)) => existing.extend(values),
                    None => self.lists.push((name.to_owned(), values.collect())),
                }
            }
            "created-at-start" | "created-at-end" => {
                return Err(ApiError::BadRequest(format!(
                    "filter[{name}] is not supported by the emulator"
                )));
            }
            other => return Err(ApiError::BadRequest(format!("filter[{other}] is not a known filter"))),
        }
        Ok(())
    }

    fn matches(&self, inquiry: &Inquiry) -> bool {
        if self.reference_id.is_some() && self.reference_id != inquiry.reference_id {
            return false;
        }
        if self.note.is_some() && self.note != inquiry.note {
            return false;
        }
        self.lists.iter().all(|(name, values)| {
            let actual = match name.as_str() {
                "account-id" => inquiry.account_id.as_deref(),
                "inquiry-template-id" => Some(inquiry.template_id.as_str()),
                "status" => Some(inquiry.status.as_str()),
                "inquiry-id" => Some(inquiry.id.as_str()),
                // Emulator inquiries never use legacy templates.
                _ => None,
            };
            actual.is_some_and(|a| values.iter().any(|v| v == a))
        })
    }

    /// The filters as query parameters, for pagination links.
    fn query(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(r) = &self.reference_id {
            pairs.push(("filter[reference-id]".to_owned(), r.clone()));
        }
        if let Some(n) = &self.note {
            pairs.push(("filter[note]".to_owned(), n.clone()));
        }
        for (name, values) in &self.lists {
            pairs.push((format!("filter[{name}]"), values.join(",")));
        }
        pairs
    }

    fn is_note_alone(&self) -> bool {
        self.note.is_none() || (self.reference_id.is_none() && self.lists.is_empty())
    }
}

struct ListQuery {
    filters: Filters,
    size: usize,
    after: Option<String>,
    before: Option<String>,
    sparse: Option<String>,
}

/// `filter[reference-id]` / `filter[referenceId]` / `filter[status][]` → the kebab filter name.
fn bracketed<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    let inner = key.strip_prefix(prefix)?.strip_prefix('[')?;
    let inner = inner.strip_suffix("[]").unwrap_or(inner);
    inner.strip_suffix(']')
}

fn list_query(query: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        filters: Filters::default(),
        size: 10,
        after: None,
        before: None,
        sparse: None,
    };
    for (key, value) in query {
        if key == "include" {
            return Err(ApiError::BadRequest(
                "include is not supported on list endpoints".into(),
            ));
        } else if let Some(name) = bracketed(key, "filter") {
            q.filters.add(&kebab(name), value)?;
        } else if let Some(name) = bracketed(key, "page") {
            match name {
                "size" => {
                    q.size = value
                        .parse()
                        .ok()
                        .filter(|s| (1..=100).contains(s))
                        .ok_or_else(|| ApiError::BadRequest("page[size] must be between 1 and 100".into()))?;
                }
                "after" => q.after = Some(value.clone()),
                "before" => q.before = Some(value.clone()),
                other => return Err(ApiError::BadRequest(format!("page[{other}] is not a known parameter"))),
            }
        } else if key == "fields[inquiry]" {
            q.sparse = Some(value.clone());
        }
    }
    if q.after.is_some() && q.before.is_some() {
        return Err(ApiError::BadRequest("use page[after] or page[before], not both".into()));
    }
    if !q.filters.is_note_alone() {
        return Err(ApiError::BadRequest("filter[note] must be the only filter".into()));
    }
    Ok(q)
}

fn cursor(store: &Store, id: &str, name: &str) -> Result<usize, ApiError> {
    store
        .position(id)
        .ok_or_else(|| ApiError::BadRequest(format!("page[{name}] {id:?} is not a known inquiry id")))
}

/// Newest first; `page[after]` pages towards older inquiries, `page[before]` towards newer.
fn list(store: &mut Store, query: &[(String, String)], fx: &mut Effects, view: View) -> Result<Value, ApiError> {
    let q = list_query(query)?;
    let after = q.after.as_deref().map(|id| cursor(store, id, "after")).transpose()?;
    let before = q.before.as_deref().map(|id| cursor(store, id, "before")).transpose()?;
    let all = store.all(fx);
    // Positions of matching inquiries, newest first.
    let matching: Vec<usize> = (0..all.len())
        .rev()
        .filter(|&p| all.get(p).is_some_and(|i| q.filters.matches(i)))
        .collect();
    let page: Vec<usize> = match (after, before) {
        (Some(after), _) => matching.iter().copied().filter(|&p| p < after).take(q.size).collect(),
        (None, Some(before)) => {
            let newer: Vec<usize> = matching.iter().copied().filter(|&p| p > before).collect();
            newer[newer.len().saturating_sub(q.size)..].to_vec()
        }
        (None, None) => matching.iter().copied().take(q.size).collect(),
    };
    let data: Vec<Value> = page
        .iter()
        .filter_map(|&p| all.get(p))
        .map(|inquiry| {
            let mut json = inquiry.to_json(view);
            if let Some(spec) = &q.sparse {
                sparse_fields(&mut json, spec);
            }
            json
        })
        .collect();
    let (first, last) = (page.first().copied(), page.last().copied());
    let has_newer = first.is_some_and(|f| matching.iter().any(|&p| p > f));
    let has_older = last.is_some_and(|l| matching.iter().any(|&p| p < l));
    let link = |cursor: &str, at: Option<usize>| {
        at.and_then(|p| all.get(p))
            .map(|inquiry| page_link(&q, cursor, &inquiry.id))
    };
    Ok(json!({
        "data": data,
        "links": {
            "prev": if has_newer { link("before", first) } else { None },
            "next": if has_older { link("after", last) } else { None },
        },
    }))
}

/// Characters left as they are in query values: RFC 3986 unreserved.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A relative link like Persona's (`/api/v1/inquiries?page%5Bafter%5D=inq_…`), keeping the
/// filters and page size so that following it continues the same listing.
fn page_link(q: &ListQuery, cursor: &str, id: &str) -> String {
    let mut pairs = q.filters.query();
    pairs.push(("page[size]".to_owned(), q.size.to_string()));
    pairs.push((format!("page[{cursor}]"), id.to_owned()));
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY_VALUE),
                utf8_percent_encode(v, QUERY_VALUE)
            )
        })
        .collect();
    format!("/api/v1/inquiries?{}", query.join("&"))
}
