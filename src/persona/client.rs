//! HTTP to Persona: one pooled reqwest client, JSON:API bodies, a timeout on every attempt and
//! retries within a total deadline. Failures are classified here, once: a bad key or template is
//! `Misconfigured` (never retried), a spent outbound budget is `BudgetExhausted`, a create that
//! Persona answered with a 5xx is `Indeterminate`, a refused resume is `Refused`, everything else
//! that goes wrong is `Unavailable`.
//!
//! Every call sends `Key-Inflection: kebab`, so the keys parsed here (`reference-id`,
//! `meta.session-token`, ...) never depend on the API key's dashboard default, and
//! `Persona-Version`, so neither do the shapes.
//!
//! POSTs carry an `Idempotency-Key`. Persona stores the first answer of a key, 5xx included, and
//! replays it, so after a timeout or a dropped connection the same key is sent again (Persona
//! replays what it stored, or runs the request if it never got it), but after a 5xx the same key
//! can only replay the 5xx: a resume then retries with a new key (a second resume is harmless),
//! and a create stops as `Indeterminate`, for the caller to look up what exists before creating
//! again (see `inquiry`).
//!
//! Calls are made in a [`Round`]: the outbound budget for all of its planned calls is reserved
//! when it starts (see `budget`). A call made on the client itself is a round of one.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::budget::{Budget, Held};
use super::error::PersonaError;
use super::inquiry::{Inquiry, Resumed};
use super::retry::{backoff, is_retryable, server_wait};
use crate::config::{BudgetConfig, PersonaConfig, Secret};
use crate::store::Store;

/// Persona's answers for one inquiry are a few kilobytes; anything past this is not Persona.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Query values keep the characters that are safe unencoded; everything else is escaped.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[derive(Debug, thiserror::Error)]
pub enum PersonaSetupError {
    #[error("persona.api_key: not usable in an HTTP header")]
    BadKey,
    #[error("persona.version: not usable in an HTTP header")]
    BadVersion,
    #[error("building the Persona HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Cheap to clone: the HTTP client and the store are shared handles, so the get-or-create route
/// and the verification reads share one connection pool and one budget.
#[derive(Clone)]
pub struct PersonaClient {
    http: reqwest::Client,
    base_url: String,
    /// `Bearer <key>`, marked sensitive so `Debug` of the header map never shows it.
    authorization: HeaderValue,
    /// Kept only to scrub it from anything Persona echoes back into an error message.
    key: Secret,
    version: HeaderValue,
    timeout: Duration,
    deadline: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    /// `rate_limit.persona_budget`: every attempt is paid from it first.
    budget: Option<Budget>,
}

/// Calls made under one reservation of the outbound budget. End it with [`Round::finish`] to give
/// back what it did not spend; a round that is only dropped keeps its units spent until their
/// window ends (fewer Persona calls, never more).
pub struct Round<'a> {
    client: &'a PersonaClient,
    held: Held,
}

/// `GET /inquiries` for one user (Persona's `reference-id`) on one flow's template, newest first.
/// An empty `statuses` means any status.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    pub template_id: &'a str,
    pub reference_id: &'a str,
    pub statuses: &'a [&'a str],
    pub page_size: u8,
}

/// One logical call; retried attempts reuse all of it, the idempotency key included until a 5xx.
struct Call<'a> {
    op: &'static str,
    method: Method,
    url: String,
    body: Option<&'a Value>,
    idempotency: Option<Idempotency>,
    /// The template a create names, for the message when Persona refuses it.
    template_id: Option<&'a str>,
}

/// The key of a POST and what a 5xx answer means for it.
struct Idempotency {
    key: String,
    after_server_error: AfterServerError,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterServerError {
    /// Doing it twice is harmless (resume): retry with a fresh key, the old one replays the 5xx.
    NewKey,
    /// Doing it twice may duplicate (create): stop, the caller finds out what exists.
    Stop,
}

impl Idempotency {
    fn new(after_server_error: AfterServerError) -> Option<Idempotency> {
        Some(Idempotency {
            key: idempotency_key(),
            after_server_error,
        })
    }
}

/// What one attempt got back, before anyone decided whether it is good.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl PersonaClient {
    /// `base_url` and `api_key` come from the config or, for the embedded emulator, from the
    /// running emulator.
    ///
    /// # Errors
    /// The key or version cannot be a header value, or the TLS client cannot be built.
    pub fn new(config: &PersonaConfig, base_url: &str, api_key: &Secret) -> Result<Self, PersonaSetupError> {
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", api_key.expose())).map_err(|_| PersonaSetupError::BadKey)?;
        authorization.set_sensitive(true);
        let version = HeaderValue::from_str(&config.version).map_err(|_| PersonaSetupError::BadVersion)?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("persona-gate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(PersonaSetupError::Client)?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorization,
            key: api_key.clone(),
            version,
            timeout: config.timeout,
            deadline: config.deadline,
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max,
            budget: None,
        })
    }

    /// Keeps every attempt (retries included) within `budget`, counted in `store`.
    pub fn with_budget(mut self, store: Store, budget: BudgetConfig) -> Self {
        self.budget = Some(Budget::new(store, budget));
        self
    }

    /// Starts a round of up to `calls` planned calls, reserving them all from the outbound budget
    /// before any is made.
    ///
    /// # Errors
    /// `BudgetExhausted` when the budget cannot cover them all; nothing was reserved then.
    pub async fn round(&self, calls: u32) -> Result<Round<'_>, PersonaError> {
        let held = match &self.budget {
            Some(budget) => budget.reserve(calls).await.map_err(|wait| {
                tracing::debug!(calls, wait_ms = millis(wait), "persona budget spent, round refused");
                PersonaError::budget_exhausted("the outbound Persona budget is spent", wait)
            })?,
            None => Held::default(),
        };
        Ok(Round { client: self, held })
    }

    /// A single call outside any round.
    ///
    /// # Errors
    /// As [`Round::list_inquiries`].
    pub async fn list_inquiries(&self, query: &ListQuery<'_>) -> Result<Vec<Inquiry>, PersonaError> {
        let mut round = self.round(1).await?;
        let result = round.list_inquiries(query).await;
        round.finish().await;
        result
    }

    /// The most one call may take, retries included.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    fn inquiry_url(&self, id: &str, suffix: &str) -> Result<String, PersonaError> {
        if !crate::config::is_plain_id(id) {
            return Err(PersonaError::unavailable(
                "Persona returned an inquiry id that is not plain",
            ));
        }
        Ok(format!("{}/inquiries/{id}{suffix}", self.base_url))
    }

    /// Runs `call` until it succeeds, fails for good, or the deadline leaves no room for the
    /// next wait and attempt.
    async fn send(&self, call: &mut Call<'_>, held: &mut Held) -> Result<Value, PersonaError> {
        let deadline = Instant::now() + self.deadline;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pay(call.op, held, attempt > 1).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let started = Instant::now();
            let outcome = tokio::time::timeout(self.timeout.min(remaining), self.attempt(call)).await;
            crate::metrics::persona_call(
                call.op,
                outcome.as_ref().ok().map(|r| r.as_ref().map(|r| r.status)),
                started.elapsed(),
            );
            let (reason, asked_wait, throttled) = match outcome {
                Ok(Ok(reply)) if reply.status.is_success() => return parse_json(call.op, &reply.body),
                Ok(Ok(reply)) if reply.status.is_server_error() && call.idempotency.is_some() => {
                    self.after_server_error(call, &reply, attempt)?;
                    (format!("Persona answered {}", reply.status), None, false)
                }
                Ok(Ok(reply)) if is_retryable(reply.status) => (
                    format!("Persona answered {}", reply.status),
                    server_wait(reply.status, &reply.headers),
                    reply.status == http::StatusCode::TOO_MANY_REQUESTS,
                ),
                Ok(Ok(reply)) => return Err(self.rejected(call, &reply)),
                Ok(Err(e)) => (e.without_url().to_string(), None, false),
                Err(_) => (
                    format!("no answer within {:?}", self.timeout.min(remaining)),
                    None,
                    false,
                ),
            };
            let wait = asked_wait.unwrap_or_else(|| backoff(attempt, self.backoff_initial, self.backoff_max));
            if Instant::now() + wait >= deadline {
                let message = self.scrub(format!("{}: {reason}; gave up after {attempt} attempt(s)", call.op));
                return Err(match (throttled, asked_wait) {
                    (true, Some(wait)) => PersonaError::rate_limited(message, wait),
                    _ => PersonaError::unavailable(message),
                });
            }
            tracing::warn!(
                op = call.op,
                attempt,
                wait_ms = millis(wait),
                reason = %self.scrub(reason),
                "persona call failed, retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// A POST answered 5xx: Persona has stored that answer under the key and would replay it.
    /// A create stops here (`Indeterminate`); anything else goes on with a fresh key.
    fn after_server_error(&self, call: &mut Call<'_>, reply: &Reply, attempt: u32) -> Result<(), PersonaError> {
        let Some(idempotency) = call.idempotency.as_mut() else {
            return Ok(());
        };
        match idempotency.after_server_error {
            AfterServerError::Stop => {
                tracing::warn!(
                    op = call.op,
                    attempt,
                    status = reply.status.as_u16(),
                    "persona answered a create with a server error; whether it was created is unknown"
                );
                Err(PersonaError::indeterminate(format!(
                    "{}: Persona answered {} (attempt {attempt}); the outcome is unknown",
                    call.op, reply.status
                )))
            }
            AfterServerError::NewKey => {
                idempotency.key = idempotency_key();
                Ok(())
            }
        }
    }

    /// Pays for one attempt from the outbound budget. A spent budget ends the call at once, retries
    /// included: waiting for the next window would hold the request (and the user's round) for up
    /// to a minute, and the user can retry as well as we can; `Retry-After` tells them when.
    async fn pay(&self, op: &str, held: &mut Held, retry: bool) -> Result<(), PersonaError> {
        let Some(budget) = &self.budget else { return Ok(()) };
        budget.pay(held, retry).await.map_err(|wait| {
            crate::metrics::persona_budget_refused(op);
            tracing::debug!(op, retry, wait_ms = millis(wait), "persona budget spent");
            PersonaError::budget_exhausted(format!("{op}: the outbound Persona budget is spent"), wait)
        })
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Reply, reqwest::Error> {
        let mut request = self
            .http
            .request(call.method.clone(), &call.url)
            .header(http::header::AUTHORIZATION, self.authorization.clone())
            .header("persona-version", self.version.clone())
            .header("key-inflection", "kebab")
            .header(http::header::ACCEPT, "application/json");
        if let Some(idempotency) = &call.idempotency {
            request = request.header("idempotency-key", &idempotency.key);
        }
        if let Some(body) = call.body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let mut response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply { status, headers, body })
    }

    /// A final non-2xx answer. A refused key (401/403) or, on create, a refused template
    /// (404/422) is a configuration problem: logged loudly, answered 500, not retried. A 409 on
    /// resume means the inquiry can no longer be resumed (finished or redacted meanwhile).
    fn rejected(&self, call: &Call<'_>, reply: &Reply) -> PersonaError {
        let detail = self.scrub(error_detail(&reply.body));
        let status = reply.status.as_u16();
        let is_create = call.op == "create inquiry";
        match status {
            409 if call.op == "resume inquiry" => {
                tracing::info!(detail = %detail, "persona refused to resume the inquiry");
                PersonaError::refused(format!("{}: Persona answered 409: {detail}", call.op))
            }
            401 | 403 => {
                tracing::error!(
                    op = call.op,
                    status,
                    detail = %detail,
                    "Persona rejected the API key: check persona.api_key and its permissions"
                );
                PersonaError::misconfigured(format!("{}: Persona rejected the API key ({status})", call.op))
            }
            404 | 422 if is_create => {
                let template = call.template_id.unwrap_or("-");
                tracing::error!(
                    op = call.op,
                    status,
                    template,
                    detail = %detail,
                    "Persona refused the inquiry template: check the flow's template_id \
                     (persona.template_id for the default flow)"
                );
                PersonaError::misconfigured(format!(
                    "{}: Persona refused template {template} ({status}: {detail})",
                    call.op
                ))
            }
            _ => PersonaError::unavailable(format!("{}: Persona answered {status}: {detail}", call.op)),
        }
    }

    /// Defence in depth: whatever text came from outside, the key is cut out of it.
    fn scrub(&self, text: String) -> String {
        let key = self.key.expose();
        if key.is_empty() || !text.contains(key) {
            return text;
        }
        text.replace(key, "[redacted]")
    }
}

impl Round<'_> {
    /// # Errors
    /// `Unavailable` when Persona cannot be reached in time or answers with garbage;
    /// `Misconfigured` for a rejected key; `BudgetExhausted` when a retry finds the budget spent.
    pub async fn list_inquiries(&mut self, query: &ListQuery<'_>) -> Result<Vec<Inquiry>, PersonaError> {
        let mut params = vec![
            ("filter[reference-id]", query.reference_id.to_owned()),
            ("filter[inquiry-template-id]", query.template_id.to_owned()),
            ("page[size]", query.page_size.clamp(1, 100).to_string()),
        ];
        if !query.statuses.is_empty() {
            params.push(("filter[status]", query.statuses.join(",")));
        }
        let mut call = Call {
            op: "list inquiries",
            method: Method::GET,
            url: format!("{}/inquiries?{}", self.client.base_url, encode_query(&params)),
            body: None,
            idempotency: None,
            template_id: None,
        };
        let body = self.client.send(&mut call, &mut self.held).await?;
        let data = body
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(call.op))?;
        data.iter()
            .map(|r| inquiry(r).ok_or_else(|| malformed(call.op)))
            .collect()
    }

    /// Creates an inquiry on `template_id` for `reference_id` with prefilled `fields`, their keys
    /// sent exactly as given. One idempotency key is made per create and sent on each of its attempts, so a
    /// create whose answer was lost (timeout, reset) is replayed by Persona instead of made
    /// twice.
    ///
    /// # Errors
    /// As [`Self::list_inquiries`]; a template Persona does not accept is `Misconfigured`; a 5xx
    /// answer (first or replayed) is `Indeterminate` and is not retried.
    pub async fn create_inquiry(
        &mut self,
        template_id: &str,
        reference_id: &str,
        fields: &Map<String, Value>,
    ) -> Result<Inquiry, PersonaError> {
        // `data.attributes.reference-id`, not `meta.auto-create-account-reference-id`: the
        // attribute is what `filter[reference-id]` matches, so the next lookup is guaranteed to
        // find this inquiry, and Persona still creates/links the account by that same reference
        // id. The meta key is the newer spelling but only sets the account's reference id, and
        // whether the inquiry's own `reference-id` filter sees it is not documented; sending both
        // risks a mismatch error for no gain. (Persona marks the attribute deprecated, not removed.)
        let body = json!({
            "data": { "attributes": {
                "inquiry-template-id": template_id,
                "reference-id": reference_id,
                "fields": fields,
            } }
        });
        let mut call = Call {
            op: "create inquiry",
            method: Method::POST,
            url: format!("{}/inquiries", self.client.base_url),
            body: Some(&body),
            idempotency: Idempotency::new(AfterServerError::Stop),
            template_id: Some(template_id),
        };
        let answer = self.client.send(&mut call, &mut self.held).await?;
        answer.get("data").and_then(inquiry).ok_or_else(|| malformed(call.op))
    }

    /// The `itmplv_` id of the template's latest published version
    /// (`GET /inquiry-templates/{id}`, `relationships.latest-published-version`).
    ///
    /// # Errors
    /// As [`Self::list_inquiries`].
    pub async fn latest_template_version(&mut self, template_id: &str) -> Result<String, PersonaError> {
        if !crate::config::is_plain_id(template_id) {
            return Err(PersonaError::misconfigured("the flow's template id is not a plain id"));
        }
        let mut call = Call {
            op: "template retrieve",
            method: Method::GET,
            url: format!("{}/inquiry-templates/{template_id}", self.client.base_url),
            body: None,
            idempotency: None,
            template_id: None,
        };
        let answer = self.client.send(&mut call, &mut self.held).await?;
        answer
            .pointer("/data/relationships/latest-published-version/data/id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| malformed(call.op))
    }

    /// Resumes an inquiry and returns the session token: Persona's unused session if it has one,
    /// else a new one. An answer without a token is an error: the caller must never hand out a
    /// pending inquiry without its token.
    ///
    /// # Errors
    /// As [`Self::list_inquiries`]; Persona refusing the resume (409: finished or redacted) is
    /// `Refused`.
    pub async fn resume_inquiry(&mut self, id: &str) -> Result<Resumed, PersonaError> {
        let body = json!({ "meta": {} });
        let mut call = Call {
            op: "resume inquiry",
            method: Method::POST,
            url: self.client.inquiry_url(id, "/resume")?,
            body: Some(&body),
            idempotency: Idempotency::new(AfterServerError::NewKey),
            template_id: None,
        };
        let answer = self.client.send(&mut call, &mut self.held).await?;
        let inquiry = answer.get("data").and_then(inquiry).ok_or_else(|| malformed(call.op))?;
        let token = answer
            .pointer("/meta/session-token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PersonaError::unavailable("resume inquiry: Persona answered without a session token"))?;
        Ok(Resumed {
            inquiry,
            session_token: token.to_owned(),
        })
    }

    /// Gives the units this round did not spend back to the budget.
    pub async fn finish(self) {
        if let Some(budget) = &self.client.budget {
            budget.refund(self.held).await;
        }
    }
}

/// A fresh key per logical POST; its attempts share it.
fn idempotency_key() -> String {
    format!("pg-{:032x}", rand::random::<u128>())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn encode_query(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, QUERY), utf8_percent_encode(v, QUERY)))
        .collect::<Vec<_>>()
        .join("&")
}

fn parse_json(op: &str, body: &[u8]) -> Result<Value, PersonaError> {
    serde_json::from_slice(body).map_err(|_| malformed(op))
}

fn malformed(op: &str) -> PersonaError {
    PersonaError::unavailable(format!("{op}: Persona's answer is not the expected JSON:API document"))
}

/// `{"type":"inquiry","id":..,"attributes":{"status":..}}` -> [`Inquiry`]. Keys are kebab-case
/// because every call asks for that inflection.
fn inquiry(resource: &Value) -> Option<Inquiry> {
    let id = resource.get("id")?.as_str()?;
    let status = resource.pointer("/attributes/status")?.as_str()?;
    let text = |key: &str| resource["attributes"][key].as_str().map(str::to_owned);
    Some(Inquiry {
        id: id.to_owned(),
        status: status.to_owned(),
        reference_id: text("reference-id"),
        created_at: text("created-at"),
        completed_at: text("completed-at"),
        redacted: resource["attributes"]["redacted-at"].is_string(),
        template_version_id: resource
            .pointer("/relationships/inquiry-template-version/data/id")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Persona's `{"errors":[{"title","details"}]}`, shortened for a log line.
fn error_detail(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let first = parsed.as_ref().and_then(|v| v.pointer("/errors/0"));
    let title = first.and_then(|e| e.get("title")).and_then(Value::as_str);
    let details = first.and_then(|e| e.get("details")).and_then(Value::as_str);
    let text = match (title, details) {
        (Some(t), Some(d)) => format!("{t}: {d}"),
        (Some(t), None) => t.to_owned(),
        _ => "no error body".to_owned(),
    };
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_percent_encoded() {
        let q = encode_query(&[("filter[reference-id]", "usr 1+2".into()), ("page[size]", "1".into())]);
        assert_eq!(q, "filter%5Breference-id%5D=usr%201%2B2&page%5Bsize%5D=1");
    }

    #[test]
    fn error_detail_reads_persona_errors() {
        let body = br#"{"errors":[{"title":"Record not found","details":"no template"}]}"#;
        assert_eq!(error_detail(body), "Record not found: no template");
        assert_eq!(error_detail(b"<html>"), "no error body");
    }
}
