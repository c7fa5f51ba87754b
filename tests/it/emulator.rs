//! The Persona emulator, driven over HTTP like a Persona client would: the inquiry lifecycle,
//! Persona's error shapes, version-dependent field keys and template schemas, key inflection
//! (the header and the API key's default), idempotency replays, the rate limit, expiry on the
//! emulator's own clock, redaction, template versions, pagination, injected faults, the call log
//! and signed webhook deliveries checked by an independent receiver.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Full};
use persona_gate::emulator::Emulator;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::common::{base_config, client, now, serve};

const KEY: &str = "persona_sandbox_emulator_test_key";
const TEMPLATE: &str = "itmpl_test_kyc";

/// An emulator on port 0, stopped when dropped.
struct Emu {
    addr: SocketAddr,
    base_url: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

/// `extra` is appended to `[emulator]`; it may name its own `templates` (and sub-tables last).
async fn start(extra: &str) -> Emu {
    let templates = if extra.contains("templates =") {
        String::new()
    } else {
        format!("templates = [\"{TEMPLATE}\"]\n")
    };
    let text = base_config(
        "127.0.0.1:9".parse().expect("addr"),
        &format!("[emulator]\nlisten = \"127.0.0.1:0\"\napi_key = {{ value = \"{KEY}\" }}\n{templates}{extra}"),
    );
    let config = persona_gate::config::parse(&text, std::path::Path::new("emulator-test.toml")).expect("config");
    let emulator = Emulator::bind(config.emulator.as_ref().expect("[emulator]"))
        .await
        .expect("bind");
    assert_eq!(emulator.api_key().expose(), KEY);
    let (addr, base_url) = (emulator.addr(), emulator.base_url());
    let (stop, stopped) = oneshot::channel::<()>();
    emulator.spawn(async {
        let _ = stopped.await;
    });
    Emu {
        addr,
        base_url,
        http: client(),
        _stop: stop,
    }
}

impl Emu {
    fn api(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(KEY)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn create(&self, body: Value) -> Value {
        let response = self
            .api(Method::POST, "/inquiries")
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("json")
    }

    async fn create_for(&self, reference: &str) -> String {
        let created = self
            .create(json!({
                "data": { "attributes": { "inquiry-template-id": TEMPLATE } },
                "meta": { "auto-create-account-reference-id": reference },
            }))
            .await;
        id(&created)
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.api(Method::GET, path).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self.api(Method::POST, path).json(&body).send().await.expect("post");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(&format!("/_emulator{path}")));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("control");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }

    async fn advance(&self, id: &str, action: &str, pass: bool) -> (StatusCode, Value) {
        let body = json!({ "action": action, "pass": pass });
        self.control(Method::POST, &format!("/inquiries/{id}/advance"), Some(body))
            .await
    }

    async fn fault(&self, body: Value) {
        let (status, _) = self.control(Method::POST, "/faults", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED);
    }

    async fn calls(&self) -> Vec<Value> {
        let (_, body) = self.control(Method::GET, "/calls", None).await;
        body["calls"].as_array().expect("calls").clone()
    }

    /// The webhook delivery log once it holds `n` entries (attempts are logged after the
    /// receiver answers, so a test can see the delivery before the log does).
    async fn deliveries(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_, log) = self.control(Method::GET, "/webhooks", None).await;
            let deliveries = log["deliveries"].as_array().expect("deliveries").clone();
            if deliveries.len() >= n || Instant::now() > deadline {
                return deliveries;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn ids_for(&self, reference: &str) -> Vec<String> {
        let list = self
            .get(&format!("/inquiries?filter[reference-id]={reference}&page[size]=100"))
            .await;
        ids(&list)
    }
}

fn id(document: &Value) -> String {
    document["data"]["id"].as_str().expect("data.id").to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

fn status(document: &Value) -> &str {
    document["data"]["attributes"]["status"].as_str().expect("status")
}

fn attr<'a>(document: &'a Value, name: &str) -> &'a Value {
    &document["data"]["attributes"][name]
}

fn is_iso_millis(value: &Value) -> bool {
    let text = value.as_str().unwrap_or_default();
    text.len() == 24
        && text.ends_with('Z')
        && text.as_bytes().get(19) == Some(&b'.')
        && text.as_bytes().get(10) == Some(&b'T')
}

fn token_of(document: &Value) -> String {
    document["meta"]["session-token"]
        .as_str()
        .expect("session token")
        .to_owned()
}

#[tokio::test]
async fn inquiry_goes_from_created_to_approved_with_resumes_along_the_way() {
    let emu = start("").await;
    let response = emu
        .api(Method::POST, "/inquiries")
        .header("persona-version", "2025-10-27")
        .json(&json!({
            "data": { "attributes": {
                "inquiry-template-id": TEMPLATE,
                "fields": { "name_first": "Jane", "birthdate": "1995-09-08" },
            } },
            "meta": { "auto-create-account-reference-id": "user-1" },
        }))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED);
    let headers = response.headers().clone();
    assert!(headers["request-id"].to_str().expect("ascii").starts_with("req_"));
    assert_eq!(headers["ratelimit-limit"], "300");
    assert!(headers.contains_key("ratelimit-remaining") && headers.contains_key("ratelimit-reset"));
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    let created: Value = response.json().await.expect("json");
    let inquiry = id(&created);
    assert!(inquiry.starts_with("inq_"));
    assert_eq!(created["data"]["type"], "inquiry");
    assert_eq!(status(&created), "created");
    assert_eq!(attr(&created, "reference-id"), "user-1");
    assert_eq!(attr(&created, "next-step-name"), "government_id");
    assert_eq!(
        attr(&created, "fields")["name_first"],
        json!({ "type": "string", "value": "Jane" })
    );
    assert_eq!(
        attr(&created, "fields")["birthdate"],
        json!({ "type": "date", "value": "1995-09-08" })
    );
    assert_eq!(
        attr(&created, "fields")["address_street_2"],
        json!({ "type": "string", "value": null })
    );
    assert_eq!(
        attr(&created, "name-first"),
        &Value::Null,
        "no flat PII copies from 2025-10-27"
    );
    for name in ["created-at", "updated-at", "expires-at"] {
        assert!(is_iso_millis(attr(&created, name)), "{name}: {}", attr(&created, name));
    }
    assert_eq!(attr(&created, "completed-at"), &Value::Null);
    assert!(
        created["data"]["relationships"]["account"]["data"]["id"]
            .as_str()
            .expect("account")
            .starts_with("act_")
    );
    assert_eq!(
        created["data"]["relationships"]["inquiry-template"]["data"]["id"],
        TEMPLATE
    );
    assert!(created.get("meta").is_none());

    let listed = emu
        .get("/inquiries?filter[reference-id]=user-1&filter[status]=created,pending")
        .await;
    assert_eq!(ids(&listed), vec![inquiry.clone()]);
    assert_eq!(emu.get(&format!("/inquiries/{inquiry}")).await["data"]["id"], inquiry);

    // A created inquiry can be resumed; an unused session is handed out again.
    let (code, resumed) = emu.post(&format!("/inquiries/{inquiry}/resume"), json!({})).await;
    assert_eq!(code, StatusCode::OK);
    let first_token = token_of(&resumed);
    assert_eq!(first_token.split('.').count(), 3, "a JWT-shaped token");
    assert_eq!(status(&resumed), "created");
    let (_, again) = emu.post(&format!("/inquiries/{inquiry}/resume"), json!({})).await;
    assert_eq!(token_of(&again), first_token);

    // The user submits a passing document: pending, the selfie is next, the session was used.
    let (code, submitted) = emu.advance(&inquiry, "submit_government_id", true).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status(&submitted), "pending");
    assert_eq!(attr(&submitted, "next-step-name"), "selfie");
    assert!(is_iso_millis(attr(&submitted, "started-at")));
    let pending = emu
        .get("/inquiries?filter[reference-id]=user-1&filter[status]=pending")
        .await;
    assert_eq!(ids(&pending), vec![inquiry.clone()]);
    assert!(
        ids(&emu
            .get("/inquiries?filter[reference-id]=user-1&filter[status]=created")
            .await)
        .is_empty()
    );
    let (_, resumed) = emu.post(&format!("/inquiries/{inquiry}/resume"), json!({})).await;
    assert_ne!(
        token_of(&resumed),
        first_token,
        "a used session is not handed out again"
    );

    // A passing selfie completes it, and the workflow approves it.
    let (_, done) = emu.advance(&inquiry, "submit_selfie", true).await;
    assert_eq!(status(&done), "approved");
    assert_eq!(attr(&done, "next-step-name"), "success");
    assert!(is_iso_millis(attr(&done, "completed-at")) && is_iso_millis(attr(&done, "decisioned-at")));
    let (code, refused) = emu.post(&format!("/inquiries/{inquiry}/resume"), json!({})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(refused["errors"][0]["title"], "Conflict");
}

#[tokio::test]
async fn simulate_actions_and_endpoints_reach_every_status() {
    let emu = start("auto_approve = false").await;
    let simulate = |actions: &[&str]| {
        let items: Vec<Value> = actions.iter().map(|a| json!({ "type": a })).collect();
        json!({ "meta": { "simulate-actions": items } })
    };
    let cases: [(&[&str], &str); 7] = [
        (&["start_inquiry"], "pending"),
        (&["start_inquiry", "complete_inquiry"], "completed"),
        (
            &["create_passed_verification", "create_passed_verification"],
            "completed",
        ),
        (
            &["start_inquiry", "create_failed_verification", "fail_inquiry"],
            "failed",
        ),
        (&["expire_inquiry"], "expired"),
        (&["complete_inquiry", "mark_for_review_inquiry"], "needs_review"),
        (&["complete_inquiry", "decline_inquiry"], "declined"),
    ];
    for (actions, expected) in cases {
        let inquiry = emu.create_for("sim").await;
        let (code, body) = emu
            .post(
                &format!("/inquiries/{inquiry}/perform-simulate-actions"),
                simulate(actions),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{actions:?}: {body}");
        assert_eq!(status(&body), expected, "{actions:?}");
    }

    // The action endpoints: expire, resume back to pending, review, approve, and the 409s.
    let inquiry = emu.create_for("actions").await;
    let path = |action: &str| format!("/inquiries/{inquiry}/{action}");
    let (_, expired) = emu.post(&path("expire"), json!({})).await;
    assert_eq!(status(&expired), "expired");
    assert!(is_iso_millis(attr(&expired, "expired-at")));
    let (_, resumed) = emu.post(&path("resume"), json!({})).await;
    assert_eq!(status(&resumed), "pending");
    assert!(!token_of(&resumed).is_empty());
    let (_, review) = emu.post(&path("mark-for-review"), json!({})).await;
    assert_eq!(status(&review), "needs_review");
    let (code, _) = emu.post(&path("resume"), json!({})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (_, approved) = emu
        .post(&path("approve"), json!({ "meta": { "comment": "looks fine" } }))
        .await;
    assert_eq!(status(&approved), "approved");
    assert_eq!(attr(&approved, "reviewer-comment"), "looks fine");
    for action in ["decline", "mark-for-review", "expire", "resume"] {
        let (code, body) = emu.post(&path(action), json!({})).await;
        assert_eq!(code, StatusCode::CONFLICT, "{action} after approval: {body}");
    }

    // A list of actions applies all or nothing.
    let inquiry = emu.create_for("atomic").await;
    let (code, _) = emu
        .post(
            &format!("/inquiries/{inquiry}/perform-simulate-actions"),
            simulate(&["approve_inquiry", "decline_inquiry"]),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(status(&emu.get(&format!("/inquiries/{inquiry}")).await), "created");
    let (code, body) = emu
        .post(
            &format!("/inquiries/{inquiry}/perform-simulate-actions"),
            simulate(&["teleport_inquiry"]),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["source"]["pointer"], "/meta/simulate-actions/0/type");

    // The control API follows the same state machine.
    let inquiry = emu.create_for("control").await;
    let (code, _) = emu.advance(&inquiry, "submit_selfie", true).await;
    assert_eq!(code, StatusCode::CONFLICT, "no selfie before the document");
    let (_, failed) = emu.advance(&inquiry, "submit_government_id", false).await;
    assert_eq!(attr(&failed, "next-step-name"), "government_id");
    emu.advance(&inquiry, "submit_government_id", true).await;
    let (_, failed) = emu.advance(&inquiry, "submit_selfie", false).await;
    assert_eq!(status(&failed), "failed");
    assert_eq!(attr(&failed, "next-step-name"), "fail");
    let (code, _) = emu.advance(&inquiry, "levitate", true).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, body) = emu.advance("inq_missing", "start", true).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({ "errors": [{ "title": "Record not found" }] }));
}

#[tokio::test]
async fn reference_id_and_key_inflection_are_accepted_in_every_spelling() {
    let emu = start("").await;
    let kebab = emu
        .create(json!({ "data": { "attributes": { "inquiry-template-id": TEMPLATE, "reference-id": "user-7" } } }))
        .await;
    let snake = emu
        .create(json!({
            "data": { "attributes": { "inquiry_template_id": TEMPLATE, "fields": { "name_first": "Ann" } } },
            "meta": { "auto_create_account_reference_id": "user-7" },
        }))
        .await;
    let camel = emu
        .create(json!({
            "data": { "attributes": { "inquiryTemplateId": TEMPLATE, "fields": { "addressStreet1": "1 Main St" } } },
            "meta": { "autoCreateAccountReferenceId": "user-7", "autoCreateInquirySession": true },
        }))
        .await;
    assert_eq!(attr(&snake, "fields")["name-first"]["value"], "Ann");
    assert_eq!(attr(&camel, "fields")["address-street-1"]["value"], "1 Main St");
    assert!(
        !token_of(&camel).is_empty(),
        "auto-create-inquiry-session returns a token"
    );
    let mut expected = vec![id(&camel), id(&snake), id(&kebab)];
    assert_eq!(emu.ids_for("user-7").await, expected);
    let account = |d: &Value| d["data"]["relationships"]["account"]["data"]["id"].clone();
    assert_eq!(account(&kebab), account(&snake));
    assert_eq!(account(&kebab), account(&camel));
    let by_account = emu
        .get(&format!(
            "/inquiries?filter[account-id]={}",
            account(&kebab).as_str().expect("id")
        ))
        .await;
    assert_eq!(ids(&by_account), expected);
    expected.sort();

    let get_inflected = |inflection: &'static str| {
        emu.api(Method::GET, &format!("/inquiries/{}", id(&kebab)))
            .header("key-inflection", inflection)
            .send()
    };
    let snake_out: Value = get_inflected("snake").await.expect("get").json().await.expect("json");
    assert_eq!(snake_out["data"]["attributes"]["reference_id"], "user-7");
    assert!(snake_out["data"]["attributes"]["fields"]["address_street_1"].is_object());
    let camel_out: Value = get_inflected("camel").await.expect("get").json().await.expect("json");
    assert_eq!(camel_out["data"]["attributes"]["nextStepName"], "government_id");

    let sparse = emu
        .get(&format!(
            "/inquiries/{}?fields[inquiry]=status,fields.name-first",
            id(&snake)
        ))
        .await;
    let attributes = sparse["data"]["attributes"].as_object().expect("attributes");
    assert_eq!(attributes.len(), 2, "{attributes:?}");
    assert_eq!(attributes["fields"].as_object().expect("fields").len(), 1);
}

#[tokio::test]
async fn bad_requests_get_persona_errors() {
    let emu = start("").await;
    let create = |body: Value| emu.api(Method::POST, "/inquiries").json(&body).send();
    let template = json!({ "inquiry-template-id": TEMPLATE });

    for auth in [Some("Bearer persona_sandbox_wrong"), Some(KEY), None] {
        let mut request = emu.http.get(format!("{}/inquiries", emu.base_url));
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("list");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("request-id"));
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body,
            json!({ "errors": [{ "title": "Must be authenticated to access this endpoint" }] })
        );
    }

    let response = emu
        .api(Method::GET, "/inquiries/inq_doesnotexist")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "errors": [{ "title": "Record not found" }] })
    );

    let cases = [
        (
            json!({ "data": { "attributes": { "inquiry-template-id": "itmpl_unknown" } } }),
            404,
            None,
        ),
        (
            json!({ "data": { "attributes": {} } }),
            422,
            Some("/data/attributes/inquiry-template-id"),
        ),
        (
            json!({ "data": { "type": "inquiry", "attributes": template } }),
            400,
            None,
        ),
        (
            json!({ "data": { "attributes": template }, "meta": { "surprise": 1 } }),
            400,
            None,
        ),
        (
            json!({ "data": { "attributes": { "inquiry-template-id": TEMPLATE, "colour": "red" } } }),
            400,
            None,
        ),
        (
            json!({ "data": { "attributes": { "inquiry-template-id": TEMPLATE, "fields": { "birthdate": "09/08/1995" } } } }),
            422,
            Some("/data/attributes/fields/birthdate"),
        ),
        (
            json!({ "data": { "attributes": { "inquiry-template-id": TEMPLATE, "reference-id": "a" } },
                    "meta": { "auto-create-account-reference-id": "b" } }),
            422,
            None,
        ),
        (
            json!({ "data": { "attributes": { "inquiry-template-id": TEMPLATE, "account-id": "act_nope" } } }),
            404,
            None,
        ),
        (json!([1, 2]), 400, None),
    ];
    for (body, expected, pointer) in cases {
        let response = create(body.clone()).await.expect("create");
        assert_eq!(response.status().as_u16(), expected, "{body}");
        let error: Value = response.json().await.expect("json");
        assert!(error["errors"][0]["title"].is_string(), "{error}");
        if let Some(pointer) = pointer {
            assert_eq!(error["errors"][0]["source"]["pointer"], pointer, "{body}");
        }
    }

    let response = emu
        .api(Method::POST, "/inquiries")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let versioned = |version: &'static str| {
        emu.api(Method::GET, "/inquiries")
            .header("persona-version", version)
            .send()
    };
    assert_eq!(
        versioned("2099-01-01").await.expect("list").status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(versioned("2023-01-05").await.expect("list").status(), StatusCode::OK);

    for query in [
        "page[size]=0",
        "page[size]=101",
        "filter[colour]=red",
        "include=account",
        "page[after]=inq_x",
    ] {
        let response = emu
            .api(Method::GET, &format!("/inquiries?{query}"))
            .send()
            .await
            .expect("list");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    let response = emu.api(Method::DELETE, "/widgets").send().await.expect("unknown route");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response() {
    let emu = start("").await;
    let body = json!({
        "data": { "attributes": { "inquiry-template-id": TEMPLATE } },
        "meta": { "auto-create-account-reference-id": "idem-user" },
    });
    let send = |key: &'static str, body: &Value, api_key: &str| {
        emu.http
            .post(format!("{}/inquiries", emu.base_url))
            .bearer_auth(api_key)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let first = send("key-1", &body, KEY).await.expect("create");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    // Same parameters with keys in another order and spelling: the same request.
    let respelled = json!({
        "meta": { "autoCreateAccountReferenceId": "idem-user" },
        "data": { "attributes": { "inquiry_template_id": TEMPLATE } },
    });
    let replay = send("key-1", &respelled, KEY).await.expect("replay");
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.json::<Value>().await.expect("json"), first);

    // Persona's documented answer to a key reused with other parameters: 400 "Idempotency
    // error", every time, and the first answer stays stored.
    let mut other = body.clone();
    other["meta"]["auto-create-account-reference-id"] = json!("someone-else");
    for _ in 0..2 {
        let mismatch = send("key-1", &other, KEY).await.expect("mismatch");
        assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            mismatch.json::<Value>().await.expect("json")["errors"][0]["title"],
            "Idempotency error"
        );
    }
    let replay = send("key-1", &body, KEY).await.expect("replay");
    assert_eq!(replay.json::<Value>().await.expect("json"), first);

    // A 401 is not stored: the same key works once the key is right.
    let unauthorized = send("key-2", &body, "persona_sandbox_wrong").await.expect("401");
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    let second = send("key-2", &body, KEY).await.expect("create");
    assert_eq!(second.status(), StatusCode::CREATED);

    // Errors are stored like successes.
    let bad = json!({ "data": { "attributes": {} } });
    assert_eq!(
        send("key-3", &bad, KEY).await.expect("422").status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        send("key-3", &bad, KEY).await.expect("422").status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    assert_eq!(emu.ids_for("idem-user").await.len(), 2);
    let logged: Vec<Value> = emu.calls().await.iter().map(|c| c["idempotency_key"].clone()).collect();
    assert_eq!(logged.iter().filter(|k| **k == "key-1").count(), 5);
}

/// A 5xx is stored under its key like any answer, so the same key can only replay it; an
/// answer that failed after the work was done replays the failure while the inquiry exists; a
/// 429 comes before the idempotency layer and is not stored; a key is forgotten after 24 h.
#[tokio::test]
async fn idempotency_replays_server_errors_and_forgets_keys_after_a_day() {
    let emu = start("").await;
    let body = |user: &str| {
        json!({
            "data": { "attributes": { "inquiry-template-id": TEMPLATE } },
            "meta": { "auto-create-account-reference-id": user },
        })
    };
    let send = |key: &'static str, body: Value| {
        emu.api(Method::POST, "/inquiries")
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let post = json!({ "method": "POST", "path_contains": "/inquiries" });
    let with = |fault: Value| {
        let mut rule = post.clone();
        rule["fault"] = fault;
        rule
    };

    emu.fault(with(json!({ "kind": "status", "status": 500 }))).await;
    let first = send("k-500", body("u-500")).await.expect("500");
    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let first = first.bytes().await.expect("body");
    let replayed = send("k-500", body("u-500")).await.expect("replay");
    assert_eq!(
        replayed.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "the stored 500 comes back"
    );
    assert_eq!(replayed.bytes().await.expect("body"), first);
    assert!(emu.ids_for("u-500").await.is_empty(), "nothing was created");
    assert_eq!(
        send("k-500-new", body("u-500")).await.expect("new key").status(),
        StatusCode::CREATED
    );

    emu.fault(with(json!({ "kind": "process_then_status", "status": 502 })))
        .await;
    let failed = send("k-502", body("u-502")).await.expect("502");
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(emu.ids_for("u-502").await.len(), 1, "created in spite of the 502");
    assert_eq!(
        send("k-502", body("u-502")).await.expect("replay").status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(emu.ids_for("u-502").await.len(), 1, "the replay made nothing");

    emu.fault(with(json!({ "kind": "rate_limit", "reset": 1 }))).await;
    assert_eq!(
        send("k-429", body("u-429")).await.expect("429").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send("k-429", body("u-429")).await.expect("runs").status(),
        StatusCode::CREATED,
        "a 429 is not stored"
    );

    let (code, _) = emu
        .control(Method::POST, "/clock", Some(json!({ "advance_seconds": 86_400 + 120 })))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        send("k-429", body("u-429")).await.expect("pruned").status(),
        StatusCode::CREATED
    );
    assert_eq!(emu.ids_for("u-429").await.len(), 2, "after 24 h the key is new again");
}

#[tokio::test]
async fn pagination_links_walk_every_page_both_ways() {
    let emu = start("").await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(emu.create_for("pager").await);
    }
    emu.create_for("someone-else").await;
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let first = emu.get("/inquiries?filter[reference-id]=pager&page[size]=2").await;
    assert_eq!(ids(&first), newest_first[0..2]);
    assert_eq!(first["links"]["prev"], Value::Null);
    let next = first["links"]["next"].as_str().expect("next link");
    assert!(
        next.starts_with("/api/v1/inquiries?") && next.contains("page%5Bafter%5D="),
        "{next}"
    );
    let follow = |link: &str| emu.http.get(emu.url(link)).bearer_auth(KEY).send();

    let second: Value = follow(next).await.expect("page 2").json().await.expect("json");
    assert_eq!(ids(&second), newest_first[2..4]);
    let third: Value = follow(second["links"]["next"].as_str().expect("next"))
        .await
        .expect("page 3")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(&third), newest_first[4..5]);
    assert_eq!(third["links"]["next"], Value::Null);

    let back: Value = follow(third["links"]["prev"].as_str().expect("prev"))
        .await
        .expect("back")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(&back), newest_first[2..4]);
}

#[tokio::test]
async fn faults_shape_the_next_matching_calls() {
    let emu = start("").await;
    let inquiry = emu.create_for("faulty").await;
    let get = || emu.api(Method::GET, &format!("/inquiries/{inquiry}")).send();

    emu.fault(json!({ "fault": { "kind": "status", "status": 503 }, "times": 2, "method": "GET" }))
        .await;
    let post_meanwhile = emu.post(&format!("/inquiries/{inquiry}/resume"), json!({})).await;
    assert_eq!(post_meanwhile.0, StatusCode::OK, "a GET fault leaves POSTs alone");
    for _ in 0..2 {
        let response = get().await.expect("get");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.json::<Value>().await.expect("json")["errors"].is_array());
    }
    assert_eq!(get().await.expect("get").status(), StatusCode::OK);

    emu.fault(json!({ "fault": { "kind": "malformed" }, "path_contains": "/inquiries/" }))
        .await;
    let response = get().await.expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    emu.fault(json!({ "fault": { "kind": "rate_limit", "reset": 2, "retry_after": 2 } }))
        .await;
    emu.fault(json!({ "fault": { "kind": "rate_limit", "reset": 7, "retry_after": null } }))
        .await;
    let limited = get().await.expect("get");
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    assert_eq!(limited.headers()["ratelimit-reset"], "2");
    assert_eq!(limited.headers()["retry-after"], "2");
    let limited = get().await.expect("get");
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["ratelimit-reset"], "7");
    assert!(!limited.headers().contains_key("retry-after"));

    emu.fault(json!({ "fault": { "kind": "latency", "ms": 300 } })).await;
    let started = Instant::now();
    assert_eq!(get().await.expect("get").status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    emu.fault(json!({ "fault": { "kind": "hang" } })).await;
    let hung = emu
        .api(Method::GET, &format!("/inquiries/{inquiry}"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.expect_err("never answers").is_timeout());

    // Persona created it but the answer was lost: the retry with the same key finds it.
    emu.fault(json!({ "fault": { "kind": "process_then_hang" }, "method": "POST" }))
        .await;
    let body = json!({
        "data": { "attributes": { "inquiry-template-id": TEMPLATE } },
        "meta": { "auto-create-account-reference-id": "lost-answer" },
    });
    let lost = emu
        .api(Method::POST, "/inquiries")
        .header("idempotency-key", "create-lost-answer")
        .timeout(Duration::from_millis(300))
        .json(&body)
        .send()
        .await;
    assert!(lost.expect_err("never answers").is_timeout());
    let retried = emu
        .api(Method::POST, "/inquiries")
        .header("idempotency-key", "create-lost-answer")
        .json(&body)
        .send()
        .await
        .expect("retry");
    assert_eq!(retried.status(), StatusCode::CREATED);
    let retried_id = id(&retried.json().await.expect("json"));
    assert_eq!(emu.ids_for("lost-answer").await, vec![retried_id]);

    let calls = emu.calls().await;
    let faults: Vec<Value> = calls.iter().map(|c| c["fault"].clone()).collect();
    for kind in [
        "status",
        "malformed",
        "rate_limit",
        "latency",
        "hang",
        "process_then_hang",
    ] {
        assert!(faults.contains(&json!(kind)), "{kind} missing from {faults:?}");
    }
    let hang = calls.iter().find(|c| c["fault"] == "hang").expect("hang logged");
    assert_eq!(hang["status"], Value::Null);
    let lost = calls
        .iter()
        .find(|c| c["fault"] == "process_then_hang")
        .expect("logged");
    assert_eq!(lost["status"], 201);

    // Queued faults can be cleared, and base latency applies to every call.
    emu.fault(json!({ "fault": { "kind": "status", "status": 500 }, "times": 5 }))
        .await;
    let (code, _) = emu.control(Method::DELETE, "/faults", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(get().await.expect("get").status(), StatusCode::OK);
    emu.control(Method::PUT, "/latency", Some(json!({ "ms": 150 }))).await;
    let started = Instant::now();
    get().await.expect("get");
    assert!(started.elapsed() >= Duration::from_millis(150));
    emu.control(Method::PUT, "/latency", Some(json!({ "ms": 0 }))).await;

    let (code, _) = emu
        .control(Method::POST, "/faults", Some(json!({ "fault": { "kind": "meteor" } })))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn call_log_records_every_call_but_never_the_key() {
    let emu = start("").await;
    let inquiry = emu.create_for("logged").await;
    emu.api(Method::GET, "/inquiries?filter[reference-id]=logged")
        .header("persona-version", "2025-10-27")
        .send()
        .await
        .expect("list");
    emu.http
        .get(format!("{}/inquiries/{inquiry}", emu.base_url))
        .bearer_auth("persona_sandbox_wrong_key")
        .send()
        .await
        .expect("401");

    let (_, raw) = emu.control(Method::GET, "/calls", None).await;
    let text = raw.to_string();
    assert!(
        !text.contains(KEY) && !text.contains("persona_sandbox_wrong_key"),
        "{text}"
    );
    let calls = raw["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0]["method"], "POST");
    assert_eq!(calls[0]["path"], "/api/v1/inquiries");
    assert_eq!(calls[0]["status"], 201);
    assert_eq!(calls[0]["authorized"], true);
    assert_eq!(calls[0]["body"]["meta"]["auto-create-account-reference-id"], "logged");
    assert_eq!(calls[1]["query"], "filter[reference-id]=logged");
    assert_eq!(calls[1]["persona_version"], "2025-10-27");
    assert_eq!(calls[1]["body"], Value::Null);
    assert_eq!(calls[2]["authorized"], false);
    assert_eq!(calls[2]["status"], 401);
    assert!(calls[0]["seq"].as_u64() < calls[1]["seq"].as_u64());

    emu.control(Method::DELETE, "/calls", None).await;
    assert!(emu.calls().await.is_empty());
}

#[tokio::test]
async fn sessions_are_reused_until_used_and_capped_at_25() {
    let emu = start("").await;
    let inquiry = emu.create_for("sessions").await;
    let path = format!("/inquiries/{inquiry}/resume");
    let resume = || emu.post(&path, json!({}));
    let mut tokens = Vec::new();
    let (_, first) = resume().await;
    tokens.push(token_of(&first));
    emu.advance(&inquiry, "start", true).await;
    for _ in 1..25 {
        let (code, body) = resume().await;
        assert_eq!(code, StatusCode::OK);
        tokens.push(token_of(&body));
        // A failed document keeps the inquiry pending and uses the session.
        emu.advance(&inquiry, "submit_government_id", false).await;
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 25);
    let (code, body) = resume().await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let sessions = &emu.get(&format!("/inquiries/{inquiry}")).await["data"]["relationships"]["sessions"]["data"];
    assert_eq!(sessions.as_array().expect("sessions").len(), 25);
}

// === webhooks ===

/// One delivery as the receiver saw it.
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook receiver on port 0 that answers with the queued statuses (then 200) and passes
/// every delivery on.
async fn receiver(statuses: &[u16]) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let statuses = Arc::new(Mutex::new(statuses.iter().copied().collect::<VecDeque<u16>>()));
    let addr = serve(move |req: http::Request<hyper::body::Incoming>| {
        let (tx, statuses) = (tx.clone(), statuses.clone());
        async move {
            let headers = req.headers().clone();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let _ = tx.send(Received { headers, body });
            let status = statuses.lock().expect("lock").pop_front().unwrap_or(200);
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
            Ok::<_, Infallible>(response)
        }
    })
    .await;
    (format!("http://{addr}/hooks/persona"), rx)
}

async fn next_delivery(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a delivery within 5s")
        .expect("receiver open")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `Persona-Signature` the way Persona's docs say a receiver should, against each
/// secret; returns the signed timestamp.
fn verify(delivery: &Received, secrets: &[&str]) -> u64 {
    let header = delivery.headers["persona-signature"].to_str().expect("ascii");
    let sets: Vec<(&str, &str)> = header
        .split(' ')
        .map(|set| {
            let (t, v1) = set.split_once(',').expect("t=..,v1=..");
            (t.strip_prefix("t=").expect("t="), v1.strip_prefix("v1=").expect("v1="))
        })
        .collect();
    assert_eq!(sets.len(), secrets.len(), "one set per secret: {header}");
    for ((t, v1), secret) in sets.iter().zip(secrets) {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let mut message = format!("{t}.").into_bytes();
        message.extend_from_slice(&delivery.body);
        assert_eq!(
            *v1,
            hex(aws_lc_rs::hmac::sign(&key, &message).as_ref()),
            "signature for {secret}"
        );
    }
    sets[0].0.parse().expect("unix seconds")
}

fn event(delivery: &Received) -> Value {
    serde_json::from_slice(&delivery.body).expect("event json")
}

fn event_name(delivery: &Received) -> String {
    event(delivery)["data"]["attributes"]["name"]
        .as_str()
        .expect("name")
        .to_owned()
}

fn webhook_config(url: &str) -> String {
    format!("webhook_url = \"{url}\"\nwebhook_secrets = [{{ value = \"wbhsec_new\" }}, {{ value = \"wbhsec_old\" }}]")
}

#[tokio::test]
async fn status_changes_are_delivered_signed_and_can_be_redelivered() {
    let (url, mut rx) = receiver(&[]).await;
    let emu = start(&webhook_config(&url)).await;
    let secrets = ["wbhsec_new", "wbhsec_old"];
    let inquiry = emu.create_for("hooked").await;

    let created = next_delivery(&mut rx).await;
    let t = verify(&created, &secrets);
    assert!(t.abs_diff(now()) <= 5, "t is the send time");
    assert_eq!(created.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(created.headers["persona-webhook-attempts-made"], "1");
    assert_eq!(created.headers["persona-webhook-attempts-left"], "3");
    assert!(created.headers.contains_key("persona-webhook-first-attempted-at"));
    let body = event(&created);
    assert!(body["data"]["id"].as_str().expect("id").starts_with("evt_"));
    assert_eq!(body["data"]["type"], "event");
    assert_eq!(body["data"]["attributes"]["name"], "inquiry.created");
    assert!(is_iso_millis(&body["data"]["attributes"]["created-at"]));
    let payload = &body["data"]["attributes"]["payload"]["data"];
    assert_eq!(payload["id"], inquiry.as_str());
    assert_eq!(payload["attributes"]["reference-id"], "hooked");

    emu.advance(&inquiry, "submit_government_id", true).await;
    emu.advance(&inquiry, "submit_selfie", true).await;
    let mut names = Vec::new();
    let mut completed = None;
    for _ in 0..3 {
        let delivery = next_delivery(&mut rx).await;
        verify(&delivery, &secrets);
        names.push(event_name(&delivery));
        if event_name(&delivery) == "inquiry.completed" {
            assert_eq!(
                event(&delivery)["data"]["attributes"]["payload"]["data"]["attributes"]["status"],
                "completed"
            );
            completed = Some(delivery);
        }
    }
    assert_eq!(names, ["inquiry.started", "inquiry.completed", "inquiry.approved"]);
    let completed = completed.expect("completed delivered");
    let event_id = event(&completed)["data"]["id"].clone();

    // Duplicates carry the same bytes; a stale replay is signed validly but long ago.
    let (code, report) = emu
        .control(
            Method::POST,
            "/webhooks/redeliver",
            Some(json!({ "event_id": event_id, "times": 2, "stale_seconds": null })),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{report}");
    for _ in 0..2 {
        let duplicate = next_delivery(&mut rx).await;
        assert_eq!(duplicate.body, completed.body);
        verify(&duplicate, &secrets);
    }
    emu.control(
        Method::POST,
        "/webhooks/redeliver",
        Some(json!({ "event_id": event_id, "stale_seconds": 600 })),
    )
    .await;
    let stale = next_delivery(&mut rx).await;
    assert_eq!(stale.body, completed.body);
    let t = verify(&stale, &secrets);
    assert!(now().saturating_sub(t) >= 599, "signed 600 s in the past");

    let deliveries = emu.deliveries(7).await;
    assert_eq!(deliveries.len(), 7);
    assert!(deliveries.iter().all(|d| d["status"] == 200));
    assert_eq!(deliveries.iter().filter(|d| d["redelivery"] == true).count(), 3);
    assert_eq!(deliveries[0]["event_name"], "inquiry.created");
    assert_eq!(deliveries[0]["inquiry_id"], inquiry.as_str());

    let (code, _) = emu
        .control(
            Method::POST,
            "/webhooks/redeliver",
            Some(json!({ "event_id": "evt_unknown" })),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_events_can_be_filtered() {
    let (url, mut rx) = receiver(&[500, 503]).await;
    let emu = start(&format!(
        "{}\nwebhook_events = [\"inquiry.expired\"]",
        webhook_config(&url)
    ))
    .await;
    let inquiry = emu.create_for("retried").await;
    emu.post(&format!("/inquiries/{inquiry}/expire"), json!({})).await;

    let mut bodies = Vec::new();
    for attempt in 1..=3 {
        let delivery = next_delivery(&mut rx).await;
        assert_eq!(
            event_name(&delivery),
            "inquiry.expired",
            "inquiry.created is filtered out"
        );
        assert_eq!(
            delivery.headers["persona-webhook-attempts-made"],
            attempt.to_string().as_str()
        );
        assert_eq!(
            delivery.headers["persona-webhook-attempts-left"],
            (4 - attempt).to_string().as_str()
        );
        verify(&delivery, &["wbhsec_new", "wbhsec_old"]);
        bodies.push(delivery.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every attempt sends the same event"
    );
    let statuses: Vec<Value> = emu.deliveries(3).await.iter().map(|d| d["status"].clone()).collect();
    assert_eq!(statuses, [json!(500), json!(503), json!(200)]);
}

// === strict Persona: versions, inflection, limits, time, redaction, template versions ===

/// A create on `version` (or the key's own version when `None`) with these fields.
async fn create_with_fields(emu: &Emu, version: Option<&str>, template: &str, fields: Value) -> (StatusCode, Value) {
    let mut request = emu.api(Method::POST, "/inquiries").json(&json!({
        "data": { "attributes": { "inquiry-template-id": template, "fields": fields } },
        "meta": { "auto-create-account-reference-id": "fields-user" },
    }));
    if let Some(version) = version {
        request = request.header("persona-version", version);
    }
    let response = request.send().await.expect("create");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

/// From 2025-10-27 field keys are the template's own, taken and returned verbatim whatever the
/// inflection; a key the template does not define is refused, pointing at it. Before it, every
/// inflection of a template key names it and responses inflect field keys like other keys.
#[tokio::test]
async fn field_keys_follow_the_persona_version() {
    let emu = start("").await;
    for version in ["2025-10-27", "2025-12-08"] {
        let (code, created) = create_with_fields(
            &emu,
            Some(version),
            TEMPLATE,
            json!({ "name_first": "Alexander", "name_last": "Sample", "birthdate": "1977-08-31" }),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{version}: {created}");
        let fields = attr(&created, "fields");
        assert_eq!(fields["name_first"]["value"], "Alexander", "{version}");
        assert_eq!(fields["birthdate"], json!({ "type": "date", "value": "1977-08-31" }));
        assert!(fields.get("name-first").is_none());

        for wrong in ["name-first", "nameFirst", "first_name"] {
            let (code, refused) =
                create_with_fields(&emu, Some(version), TEMPLATE, json!({ wrong: "Alexander" })).await;
            assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{version} {wrong}: {refused}");
            assert_eq!(
                refused["errors"][0]["source"]["pointer"],
                format!("/data/attributes/fields/{wrong}")
            );
        }

        // Inflection respells attribute keys, never field keys.
        let camel: Value = emu
            .api(Method::GET, &format!("/inquiries/{}", id(&created)))
            .header("persona-version", version)
            .header("key-inflection", "camel")
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(camel["data"]["attributes"]["referenceId"], "fields-user");
        assert_eq!(
            camel["data"]["attributes"]["fields"]["name_first"]["value"],
            "Alexander"
        );
        assert!(camel["data"]["attributes"]["fields"]["address_street_1"].is_object());
    }

    for spelling in ["name_first", "name-first", "nameFirst"] {
        let (code, created) = create_with_fields(&emu, Some("2023-01-05"), TEMPLATE, json!({ spelling: "Ann" })).await;
        assert_eq!(code, StatusCode::CREATED, "{spelling}: {created}");
        assert_eq!(attr(&created, "fields")["name-first"]["value"], "Ann", "{spelling}");
        assert_eq!(attr(&created, "name-first"), "Ann", "flat copies before 2025-10-27");
    }
    let (code, _) = create_with_fields(&emu, Some("2023-01-05"), TEMPLATE, json!({ "loyalty_tier": 1 })).await;
    assert_eq!(
        code,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not a field of the KYC template"
    );
    let (code, _) = create_with_fields(&emu, Some("2021-02-21"), TEMPLATE, json!({})).await;
    assert_eq!(code, StatusCode::CREATED, "every published version is accepted");
    let (code, _) = create_with_fields(&emu, Some("2025-11-01"), TEMPLATE, json!({})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "an unpublished version is refused");
}

/// A template may declare its own field schema (keys in any style, typed); the key's default
/// version decides when a request names none.
#[tokio::test]
async fn templates_declare_field_schemas_and_the_key_has_a_version() {
    let custom = "itmpl_custom_fields";
    let emu = start(&format!(
        "templates = [\"{TEMPLATE}\", \"{custom}\"]\napi_version = \"2025-12-08\"\n\
         [emulator.template_fields.{custom}]\nnameFirst = \"string\"\nloyalty_tier = \"number\"\nvip = \"boolean\"\n"
    ))
    .await;
    let (code, created) = create_with_fields(
        &emu,
        None,
        custom,
        json!({ "nameFirst": "Ann", "loyalty_tier": 3, "vip": true }),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let fields = attr(&created, "fields").as_object().expect("fields").clone();
    assert_eq!(
        fields.keys().collect::<Vec<_>>(),
        ["loyalty_tier", "nameFirst", "vip"],
        "exactly the schema"
    );
    assert_eq!(fields["loyalty_tier"], json!({ "type": "number", "value": 3 }));
    let (code, refused) = create_with_fields(&emu, None, custom, json!({ "loyalty_tier": "gold" })).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "a typed field: {refused}");
    let (code, _) = create_with_fields(&emu, None, custom, json!({ "name_first": "Ann" })).await;
    assert_eq!(
        code,
        StatusCode::UNPROCESSABLE_ENTITY,
        "2025-12-08 by default: verbatim keys"
    );
    let (code, _) = create_with_fields(&emu, None, TEMPLATE, json!({ "name_first": "Ann" })).await;
    assert_eq!(code, StatusCode::CREATED, "the other template has the KYC fields");
}

/// Responses follow `Key-Inflection`, else the API key's default inflection, on every endpoint.
#[tokio::test]
async fn responses_follow_the_header_else_the_keys_default_inflection() {
    let emu = start("key_inflection = \"camel\"").await;
    let response = emu
        .api(Method::POST, "/inquiries")
        .json(&json!({
            "data": { "attributes": { "inquiry-template-id": TEMPLATE, "reference-id": "camel-user" } },
            "meta": { "auto-create-inquiry-session": true },
        }))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["data"]["attributes"]["referenceId"], "camel-user");
    assert!(created["data"]["attributes"].get("reference-id").is_none());
    assert!(created["meta"]["sessionToken"].is_string());
    let inquiry = id(&created);

    let list = emu.get("/inquiries?filter[reference-id]=camel-user").await;
    assert_eq!(list["data"][0]["attributes"]["nextStepName"], "government_id");
    let (_, resumed) = emu.post(&format!("/inquiries/{inquiry}/resume"), json!({})).await;
    assert!(resumed["meta"]["sessionToken"].is_string(), "{resumed}");
    assert!(resumed["meta"].get("session-token").is_none());
    let template = emu.get(&format!("/inquiry-templates/{TEMPLATE}")).await;
    assert!(template["data"]["relationships"]["latestPublishedVersion"]["data"]["id"].is_string());

    for (inflection, key) in [("kebab", "session-token"), ("snake", "session_token")] {
        let resumed: Value = emu
            .api(Method::POST, &format!("/inquiries/{inquiry}/resume"))
            .header("key-inflection", inflection)
            .json(&json!({}))
            .send()
            .await
            .expect("resume")
            .json()
            .await
            .expect("json");
        assert!(resumed["meta"][key].is_string(), "{inflection}: {resumed}");
    }
    let logged = emu.calls().await;
    assert_eq!(logged.last().expect("call")["key_inflection"], "snake");
}

/// 300 requests per minute per key by default; here 5. The sixth is refused with Persona's
/// 429 and headers, counted before the idempotency layer, and the window starts again a
/// minute after it began.
#[tokio::test]
async fn the_rate_limit_is_enforced_with_persona_headers() {
    let emu = start("rate_limit = 5").await;
    for remaining in (0..5).rev() {
        let response = emu.api(Method::GET, "/inquiries").send().await.expect("list");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-limit"], "5");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
        let reset: u64 = response.headers()["ratelimit-reset"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&reset), "{reset}");
    }
    let refused = emu
        .api(Method::POST, "/inquiries")
        .header("idempotency-key", "limited")
        .json(&json!({ "data": { "attributes": { "inquiry-template-id": TEMPLATE, "reference-id": "limited" } } }))
        .send()
        .await
        .expect("create");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["errors"][0]["title"], "Rate limit exceeded");
    let unauthenticated = emu
        .http
        .get(format!("{}/inquiries", emu.base_url))
        .bearer_auth("persona_sandbox_wrong")
        .send()
        .await
        .expect("401");
    assert_eq!(
        unauthenticated.status(),
        StatusCode::UNAUTHORIZED,
        "the key is checked first"
    );

    emu.control(Method::POST, "/clock", Some(json!({ "advance_seconds": 60 })))
        .await;
    let created = emu
        .api(Method::POST, "/inquiries")
        .header("idempotency-key", "limited")
        .json(&json!({ "data": { "attributes": { "inquiry-template-id": TEMPLATE, "reference-id": "limited" } } }))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED, "the 429 was not stored");
    assert_eq!(created.headers()["ratelimit-remaining"], "4", "a new window");
}

/// Inquiries expire when their time comes on the emulator's clock and `inquiry.expired` is sent
/// then, with nobody reading them; expiry follows the template setting (24 h by default).
#[tokio::test]
async fn inquiries_expire_on_the_emulators_clock_and_say_so() {
    let (url, mut rx) = receiver(&[]).await;
    let emu = start(&format!(
        "{}\nwebhook_events = [\"inquiry.expired\"]",
        webhook_config(&url)
    ))
    .await;
    let first = emu.create_for("expiring").await;
    let second = emu.create_for("expiring").await;
    emu.advance(&second, "start", true).await;
    let created = emu.get(&format!("/inquiries/{first}")).await;
    let expires = attr(&created, "expires-at").as_str().expect("expires-at").to_owned();
    let created_at = attr(&created, "created-at").as_str().expect("created-at").to_owned();
    assert_eq!(expires[11..], created_at[11..], "24 h after creation");
    assert_ne!(expires[..10], created_at[..10]);

    emu.control(Method::POST, "/clock", Some(json!({ "advance_seconds": 86_399 })))
        .await;
    emu.control(Method::POST, "/clock", Some(json!({ "advance_seconds": 2 })))
        .await;
    let mut expired = Vec::new();
    for _ in 0..2 {
        let delivery = next_delivery(&mut rx).await;
        assert_eq!(event_name(&delivery), "inquiry.expired");
        let payload = &event(&delivery)["data"]["attributes"]["payload"]["data"];
        assert_eq!(payload["attributes"]["status"], "expired");
        expired.push(payload["id"].as_str().expect("id").to_owned());
    }
    expired.sort();
    let mut both = vec![first.clone(), second];
    both.sort();
    assert_eq!(expired, both, "both expired without being read");
    assert_eq!(status(&emu.get(&format!("/inquiries/{first}")).await), "expired");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "each expired once"
    );
}

/// The expiry worker keeps its own time: with a one-second template expiry the event comes with
/// no clock moved and no read.
#[tokio::test]
async fn a_short_template_expiry_fires_by_itself() {
    let (url, mut rx) = receiver(&[]).await;
    let emu = start(&format!(
        "inquiry_expiry = \"1s\"\n{}\nwebhook_events = [\"inquiry.expired\"]",
        webhook_config(&url)
    ))
    .await;
    let inquiry = emu.create_for("soon").await;
    let delivery = next_delivery(&mut rx).await;
    assert_eq!(event_name(&delivery), "inquiry.expired");
    assert_eq!(
        event(&delivery)["data"]["attributes"]["payload"]["data"]["id"],
        inquiry.as_str()
    );
}

/// Redaction keeps the status, sets `redacted-at`, empties the data but the reference id, sends
/// `inquiry.redacted`, and leaves nothing that can resume, move, expire or open the inquiry.
#[tokio::test]
async fn redaction_keeps_the_status_and_refuses_everything_after() {
    let (url, mut rx) = receiver(&[]).await;
    let emu = start(&format!(
        "{}\nwebhook_events = [\"inquiry.redacted\"]",
        webhook_config(&url)
    ))
    .await;
    let created = emu
        .create(json!({
            "data": { "attributes": { "inquiry-template-id": TEMPLATE, "note": "n", "tags": ["t"],
                                      "fields": { "name_first": "Ann" } } },
            "meta": { "auto-create-account-reference-id": "redacted-user" },
        }))
        .await;
    let inquiry = id(&created);
    emu.advance(&inquiry, "submit_government_id", true).await;

    let response = emu
        .api(Method::DELETE, &format!("/inquiries/{inquiry}"))
        .send()
        .await
        .expect("redact");
    assert_eq!(response.status(), StatusCode::OK);
    let redacted: Value = response.json().await.expect("json");
    assert_eq!(status(&redacted), "pending", "the status stays");
    assert!(is_iso_millis(attr(&redacted, "redacted-at")));
    assert_eq!(attr(&redacted, "fields")["name-first"]["value"], Value::Null);
    assert_eq!(attr(&redacted, "name-first"), &Value::Null);
    assert_eq!(attr(&redacted, "note"), &Value::Null);
    assert_eq!(attr(&redacted, "tags"), &json!([]));
    assert_eq!(attr(&redacted, "reference-id"), "redacted-user");
    let delivery = next_delivery(&mut rx).await;
    assert_eq!(event_name(&delivery), "inquiry.redacted");

    let (code, body) = emu.post(&format!("/inquiries/{inquiry}/resume"), json!({})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    for action in ["approve", "expire", "decline"] {
        let (code, _) = emu.post(&format!("/inquiries/{inquiry}/{action}"), json!({})).await;
        assert_eq!(code, StatusCode::CONFLICT, "{action}");
    }
    let (code, _) = emu.advance(&inquiry, "submit_selfie", true).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let flow = emu
        .http
        .get(emu.url(&format!("/embed/inquiries/{inquiry}")))
        .send()
        .await
        .expect("flow");
    assert_eq!(flow.status(), StatusCode::CONFLICT, "the flow does not open it");

    emu.control(Method::POST, "/clock", Some(json!({ "advance_seconds": 3 * 86_400 })))
        .await;
    let later = emu.get(&format!("/inquiries/{inquiry}")).await;
    assert_eq!(status(&later), "pending", "a redacted inquiry does not expire either");
    let listed = emu.get("/inquiries?filter[reference-id]=redacted-user").await;
    assert_eq!(ids(&listed), vec![inquiry.clone()], "still listed, by its reference id");
    let again = emu
        .api(Method::DELETE, &format!("/inquiries/{inquiry}"))
        .send()
        .await
        .expect("redact again");
    assert_eq!(again.status(), StatusCode::OK);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "one redaction event"
    );
}

/// An inquiry keeps the template version it was created on; publishing a new one changes what
/// `GET /inquiry-templates/{id}` calls the latest and what new inquiries get.
#[tokio::test]
async fn templates_publish_versions_and_inquiries_keep_theirs() {
    let emu = start("").await;
    let version_of = |d: &Value| d["data"]["relationships"]["inquiry-template-version"]["data"]["id"].clone();
    let latest = |t: &Value| t["data"]["relationships"]["latest-published-version"]["data"]["id"].clone();
    let old = emu
        .get(&format!("/inquiries/{}", emu.create_for("versions").await))
        .await;
    let template = emu.get(&format!("/inquiry-templates/{TEMPLATE}")).await;
    assert_eq!(template["data"]["type"], "inquiry-template");
    assert_eq!(latest(&template), version_of(&old));

    let (code, published) = emu
        .control(Method::POST, &format!("/templates/{TEMPLATE}/publish"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let new_version = published["latest_published_version"].clone();
    assert_ne!(new_version, version_of(&old));
    assert_eq!(
        latest(&emu.get(&format!("/inquiry-templates/{TEMPLATE}")).await),
        new_version
    );
    assert_eq!(
        version_of(&emu.get(&format!("/inquiries/{}", id(&old))).await),
        version_of(&old),
        "the old inquiry keeps its version"
    );
    let fresh = emu
        .get(&format!("/inquiries/{}", emu.create_for("versions").await))
        .await;
    assert_eq!(version_of(&fresh), new_version);
    let pinned = emu
        .create(json!({ "data": { "attributes": { "inquiry-template-version-id": version_of(&old) } } }))
        .await;
    assert_eq!(version_of(&pinned), version_of(&old));

    let missing = emu
        .api(Method::GET, "/inquiry-templates/itmpl_missing")
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let (code, _) = emu
        .control(Method::POST, "/templates/itmpl_missing/publish", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}
