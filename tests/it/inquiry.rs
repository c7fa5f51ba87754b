//! `POST /api/inquiries/get-or-create` against the Persona emulator over real sockets: the
//! tutorial's scenarios, the policy table, the click storm, Persona faults (asserted on the
//! emulator's call log), CORS/CSRF, and the API key never leaking.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::{
    ConfigFile, Emulator, GatewayProcess, KEY, TEMPLATE, TestGateway, base_config, client, echo_upstream, now,
    repo_path, token, user_token,
};

const ROUTE: &str = "/api/inquiries/get-or-create";
const ORIGIN: &str = "https://app.example.com";

const TUTORIAL_POLICY: &str = r#"
[inquiry.policy]
completed = "new"
approved = "new"
declined = "new"
failed = "new"
needs_review = "new"
expired = "new"
"#;

const REPORT_POLICY: &str = r#"
[inquiry.policy]
completed = "report"
approved = "report"
declined = "report"
failed = "report"
needs_review = "report"
expired = "resume"
"#;

const EXPIRED_REPORT_POLICY: &str = r#"
[inquiry.policy]
expired = "report"
"#;

pub(super) fn persona_section(emulator: &Emulator, key: &str) -> String {
    format!(
        r#"
[persona]
base_url = "{}"
api_key = {{ value = "{key}" }}
template_id = "{TEMPLATE}"
timeout = "300ms"
connect_timeout = "300ms"
deadline = "1500ms"
backoff_initial = "20ms"
backoff_max = "100ms"

[inquiry]
allowed_origins = ["{ORIGIN}"]
"#,
        emulator.base_url
    )
}

async fn gateway(emulator: &Emulator, policy: &str) -> TestGateway {
    let upstream = echo_upstream().await;
    let extra = format!("{}{policy}", persona_section(emulator, KEY));
    TestGateway::start(&base_config(upstream, &extra)).await
}

/// A get-or-create for `user` with a bearer token; the key is checked absent from the answer.
pub(super) async fn call(gw: &TestGateway, user: &str) -> (u16, Value) {
    let response = client()
        .post(gw.url(ROUTE))
        .bearer_auth(user_token(user))
        .send()
        .await
        .expect("call");
    read(response).await
}

pub(super) async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    for (name, value) in response.headers() {
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains(KEY),
            "key in header {name}"
        );
    }
    let text = response.text().await.expect("body");
    assert!(!text.contains(KEY), "key in body: {text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(super) fn count(calls: &[Value], method: &str, path_suffix: &str) -> usize {
    calls
        .iter()
        .filter(|c| c["method"] == method && c["path"].as_str().is_some_and(|p| p.ends_with(path_suffix)))
        .count()
}

pub(super) fn id(answer: &Value) -> String {
    answer["inquiry_id"].as_str().expect("inquiry_id").to_owned()
}

#[tokio::test]
async fn tutorial_scenarios_in_order() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, TUTORIAL_POLICY).await;
    let user = "usr_ABC123";

    // Scenario 1: nothing yet, so one is created.
    let (status, first) = call(&gw, user).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "created");
    assert_eq!(first["session_token"], Value::Null);
    let calls = emulator.calls().await;
    assert_eq!(count(&calls, "GET", "/inquiries"), 1);
    assert_eq!(count(&calls, "POST", "/inquiries"), 1);
    let create = calls.iter().find(|c| c["method"] == "POST").expect("create call");
    assert_eq!(create["persona_version"], "2025-10-27");
    assert!(create["idempotency_key"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(create["body"]["data"]["attributes"]["reference-id"], user);
    assert_eq!(create["body"]["data"]["attributes"]["inquiry-template-id"], TEMPLATE);

    // Scenario 2: the created one comes back, without a token.
    let (_, second) = call(&gw, user).await;
    assert_eq!(second, first);

    // Scenario 3: a government id was submitted, so it is pending and needs a token.
    emulator.advance(&id(&first), "submit_government_id", true).await;
    emulator.clear_calls().await;
    let (_, third) = call(&gw, user).await;
    assert_eq!(id(&third), id(&first));
    assert_eq!(third["status"], "pending");
    let token = third["session_token"].as_str().expect("session token").to_owned();
    // A second click resumes again, as the tutorial does; Persona hands back the unused session.
    let (_, again) = call(&gw, user).await;
    assert_eq!(again["session_token"], token.as_str());
    assert_eq!(count(&emulator.calls().await, "POST", "/resume"), 2);

    // Scenario 4: completed (then approved by the workflow), so the tutorial creates anew.
    emulator.advance(&id(&first), "submit_selfie", true).await;
    let (_, fourth) = call(&gw, user).await;
    assert_ne!(id(&fourth), id(&first));
    assert_eq!(fourth["status"], "created");
    assert_eq!(emulator.inquiries_of(user).await.len(), 2);
}

/// A user id outside ASCII is Persona's `reference-id` exactly: created under it, found again
/// by it (the lookup's query carries it percent-encoded as UTF-8), and never duplicated.
#[tokio::test]
async fn a_unicode_user_gets_one_inquiry_under_their_exact_id() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    for user in ["José García", "山田太郎", "usr+1%2F&x=y"] {
        let (status, first) = call(&gw, user).await;
        assert_eq!(status, 200, "{user}: {first}");
        let (_, second) = call(&gw, user).await;
        assert_eq!(id(&second), id(&first), "{user}: the lookup found the first inquiry");
        let stored = emulator.inquiries_of(user).await;
        assert_eq!(stored.len(), 1, "{user}: {stored:?}");
        assert_eq!(
            stored[0]["attributes"]["reference-id"], user,
            "Persona stores the exact id"
        );
    }
}

/// Drives a fresh inquiry of `user` to `status` through the emulator's control API.
pub(super) async fn drive_to(emulator: &Emulator, inquiry: &str, status: &str) {
    emulator.advance(inquiry, "start", true).await;
    match status {
        "completed" => emulator.advance(inquiry, "complete", true).await,
        "approved" => {
            emulator.advance(inquiry, "complete", true).await;
            emulator.advance(inquiry, "approve", true).await;
        }
        "declined" => emulator.advance(inquiry, "decline", true).await,
        "failed" => emulator.advance(inquiry, "fail", true).await,
        "needs_review" => emulator.advance(inquiry, "mark_for_review", true).await,
        "expired" => emulator.advance(inquiry, "expire", true).await,
        other => panic!("no way to reach {other}"),
    }
}

#[tokio::test]
async fn each_finished_status_follows_the_policy() {
    let emulator = Emulator::start("auto_approve = false").await;
    let tutorial = gateway(&emulator, TUTORIAL_POLICY).await;
    let report = gateway(&emulator, REPORT_POLICY).await;
    let expired_report = gateway(&emulator, EXPIRED_REPORT_POLICY).await;
    let statuses = ["completed", "approved", "declined", "failed", "needs_review", "expired"];
    for (policy, gw) in [("new", &tutorial), ("report", &report)] {
        for status in statuses {
            let user = format!("usr_{policy}_{status}");
            let (_, created) = call(gw, &user).await;
            drive_to(&emulator, &id(&created), status).await;
            let (code, answer) = call(gw, &user).await;
            assert_eq!(code, 200, "{policy}/{status}: {answer}");
            match (policy, status) {
                ("new", _) => {
                    assert_ne!(id(&answer), id(&created), "{status}: a new inquiry");
                    assert_eq!(answer["status"], "created");
                }
                ("report", "expired") => {
                    assert_eq!(id(&answer), id(&created), "expired is resumed");
                    assert_eq!(answer["status"], "pending");
                    assert!(answer["session_token"].is_string(), "resumed with a token");
                }
                _ => {
                    assert_eq!(id(&answer), id(&created), "{status}: reported, not replaced");
                    assert_eq!(answer["status"], status);
                    assert_eq!(answer["session_token"], Value::Null);
                }
            }
            let expected = if policy == "new" { 2 } else { 1 };
            assert_eq!(emulator.inquiries_of(&user).await.len(), expected, "{policy}/{status}");
        }
    }
    let (_, created) = call(&expired_report, "usr_report_expired_plain").await;
    drive_to(&emulator, &id(&created), "expired").await;
    let (_, answer) = call(&expired_report, "usr_report_expired_plain").await;
    assert_eq!((id(&answer), &answer["status"]), (id(&created), &json!("expired")));
    assert_eq!(answer["session_token"], Value::Null);
}

#[tokio::test]
async fn a_click_storm_makes_one_inquiry() {
    let emulator = Emulator::start("").await;
    emulator.latency(50).await;
    let gw = Arc::new(gateway(&emulator, "").await);
    let user = "usr_storm";
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { call(&gw, user).await })
        })
        .collect();
    let mut ids = Vec::new();
    for c in calls {
        let (status, answer) = c.await.expect("join");
        assert_eq!(status, 200, "{answer}");
        ids.push(id(&answer));
    }
    let inquiries = emulator.inquiries_of(user).await;
    assert_eq!(inquiries.len(), 1, "exactly one inquiry");
    let only = inquiries[0]["id"].as_str().expect("id");
    assert!(ids.iter().all(|i| i == only), "all 200 got its id");
    assert_eq!(count(&emulator.calls().await, "POST", "/inquiries"), 1);
}

#[tokio::test]
async fn a_failed_lookup_is_502_and_creates_nothing() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    let faults = [
        ("500", json!({ "kind": "status", "status": 500 })),
        ("hang", json!({ "kind": "hang" })),
        ("malformed", json!({ "kind": "malformed" })),
    ];
    for (name, fault) in faults {
        emulator.clear_calls().await;
        emulator
            .fault(json!({ "fault": fault, "times": 1000, "method": "GET", "path_contains": "/inquiries" }))
            .await;
        let (status, body) = call(&gw, &format!("usr_lookup_{name}")).await;
        emulator.clear_faults().await;
        assert_eq!(status, 502, "{name}: {body}");
        assert_eq!(body["error"]["code"], "persona_unavailable");
        let calls = emulator.calls().await;
        assert!(count(&calls, "GET", "/inquiries") >= 1, "{name}: looked up");
        assert_eq!(
            count(&calls, "POST", "/inquiries"),
            0,
            "{name}: no create after a failed lookup"
        );
    }
}

#[tokio::test]
async fn a_lost_create_answer_is_retried_with_the_same_idempotency_key() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    emulator
        .fault(json!({ "fault": { "kind": "process_then_hang" }, "times": 1, "method": "POST", "path_contains": "/inquiries" }))
        .await;
    let (status, answer) = call(&gw, "usr_lost_create").await;
    assert_eq!(status, 200, "{answer}");
    let calls = emulator.calls().await;
    let creates: Vec<&Value> = calls.iter().filter(|c| c["method"] == "POST").collect();
    assert!(creates.len() >= 2, "the create was retried: {creates:?}");
    let key = &creates[0]["idempotency_key"];
    assert!(key.is_string());
    assert!(
        creates.iter().all(|c| &c["idempotency_key"] == key),
        "same key on every attempt"
    );
    let inquiries = emulator.inquiries_of("usr_lost_create").await;
    assert_eq!(inquiries.len(), 1);
    assert_eq!(inquiries[0]["id"], answer["inquiry_id"]);
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_persona_says() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    for (name, retry_after) in [("retry-after", json!(1)), ("ratelimit-reset", Value::Null)] {
        emulator.clear_calls().await;
        emulator
            .fault(json!({ "fault": { "kind": "rate_limit", "reset": 1, "retry_after": retry_after }, "times": 1, "method": "GET" }))
            .await;
        let started = Instant::now();
        let (status, body) = call(&gw, &format!("usr_rate_{name}")).await;
        assert_eq!(status, 200, "{name}: {body}");
        // Backoff alone would have retried after at most 20 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{name}: waited {:?}",
            started.elapsed()
        );
        assert_eq!(count(&emulator.calls().await, "GET", "/inquiries"), 2, "{name}");
    }
}

/// Persona asking for a longer wait than the deadline allows is passed on as 503 with its wait,
/// not as a generic 502, and nothing is created meanwhile.
#[tokio::test]
async fn a_long_persona_rate_limit_becomes_503_with_its_retry_after() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    emulator
        .fault(
            json!({ "fault": { "kind": "rate_limit", "reset": 30, "retry_after": 30 }, "times": 1, "method": "GET" }),
        )
        .await;
    let started = Instant::now();
    let response = client()
        .post(gw.url(ROUTE))
        .bearer_auth(user_token("usr_throttled"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["retry-after"], "30");
    let (status, body) = read(response).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "persona_rate_limited");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up at once, not after 30 s"
    );
    let calls = emulator.calls().await;
    assert_eq!(count(&calls, "GET", "/inquiries"), 1, "not retried into the limit");
    assert_eq!(count(&calls, "POST", "/inquiries"), 0, "nothing created");
}

#[tokio::test]
async fn a_failed_resume_is_502_never_an_id_without_token() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    let (_, created) = call(&gw, "usr_resume_fails").await;
    emulator.advance(&id(&created), "submit_government_id", true).await;
    emulator
        .fault(json!({ "fault": { "kind": "status", "status": 503 }, "times": 1000, "path_contains": "/resume" }))
        .await;
    let (status, body) = call(&gw, "usr_resume_fails").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "persona_unavailable");
    assert!(body.get("inquiry_id").is_none());
}

#[tokio::test]
async fn a_wrong_key_is_a_500_config_error_and_not_retried() {
    let emulator = Emulator::start("").await;
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(
        upstream,
        &persona_section(&emulator, "persona_sandbox_wrong"),
    ))
    .await;
    let (status, body) = call(&gw, "usr_wrong_key").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "persona_misconfigured");
    let calls = emulator.calls().await;
    assert_eq!(calls.len(), 1, "not retried: {calls:?}");
    assert_eq!(calls[0]["authorized"], false);
}

#[tokio::test]
async fn cors_preflight_and_cookie_csrf() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    let http = client();
    let preflight = |origin: &str| {
        http.request(reqwest::Method::OPTIONS, gw.url(ROUTE))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight(ORIGIN).await.expect("preflight");
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    assert!(
        ok.headers()["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .contains("POST")
    );
    let refused = preflight("https://evil.example").await.expect("preflight");
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    let cookie = format!("session={}", user_token("usr_cookie"));
    for origin in [None, Some("https://evil.example")] {
        let mut request = http.post(gw.url(ROUTE)).header("cookie", &cookie);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let (status, body) = read(request.send().await.expect("call")).await;
        assert_eq!(status, 403, "{origin:?}: {body}");
        assert_eq!(body["error"]["code"], "origin_not_allowed");
    }
    assert!(emulator.calls().await.is_empty(), "refused before Persona was asked");
    let allowed = http
        .post(gw.url(ROUTE))
        .header("cookie", &cookie)
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("call");
    assert_eq!(allowed.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(allowed.headers()["cache-control"], "no-store");
    let (status, body) = read(allowed).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn fields_come_from_claims_and_the_profile_never_the_body() {
    let emulator = Emulator::start("").await;
    let profile = profile_server().await;
    let upstream = echo_upstream().await;
    let extra = format!(
        r#"{}
profile_url = "http://{profile}/profiles/{{user_id}}"
[inquiry.fields]
given_name = "name_first"
birthdate = "birthdate"
"#,
        persona_section(&emulator, KEY)
    );
    let gw = TestGateway::start(&base_config(upstream, &extra)).await;
    let jwt = token(&json!({
        "sub": "usr/with space", "exp": now() + 3600,
        "given_name": "Alexander", "birthdate": "1977-08-31", "family_name": "not mapped",
    }));
    let response = client()
        .post(gw.url(ROUTE))
        .bearer_auth(jwt)
        .json(&json!({ "fields": { "name_first": "Mallory" }, "reference-id": "someone-else" }))
        .send()
        .await
        .expect("call");
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    let calls = emulator.calls().await;
    let create = calls.iter().find(|c| c["method"] == "POST").expect("create");
    let attributes = &create["body"]["data"]["attributes"];
    assert_eq!(attributes["reference-id"], "usr/with space");
    assert_eq!(
        attributes["fields"],
        json!({ "name_first": "Alexander", "birthdate": "1977-08-31", "name_last": "Sample" })
    );
    // The keys reached the (strict) template intact: the inquiry holds the values.
    let stored = &emulator.inquiries_of("usr/with space").await[0]["attributes"]["fields"];
    for (key, value) in [
        ("name_first", "Alexander"),
        ("name_last", "Sample"),
        ("birthdate", "1977-08-31"),
    ] {
        assert_eq!(stored[key]["value"], value, "{key}: {stored}");
    }
}

/// The app's profile endpoint: answers `{"name_last":"Sample"}` for the percent-encoded user
/// `usr/with space` and 404 otherwise.
async fn profile_server() -> SocketAddr {
    super::common::serve(|req: http::Request<hyper::body::Incoming>| async move {
        let found = req.uri().path() == "/profiles/usr%2Fwith%20space";
        let (status, body) = if found {
            (200, r#"{"name_last":"Sample"}"#)
        } else {
            (404, "{}")
        };
        let response = http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("response");
        Ok::<_, std::convert::Infallible>(response)
    })
    .await
}

#[tokio::test]
async fn the_embedded_emulator_serves_the_route() {
    let upstream = echo_upstream().await;
    let extra = format!(
        r#"
[emulator]
listen = "127.0.0.1:0"

[persona]
use_emulator = true
template_id = "{TEMPLATE}"
"#
    );
    let gw = TestGateway::start(&base_config(upstream, &extra)).await;
    let (status, body) = call(&gw, "usr_embedded").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "created");
}

#[test]
fn a_missing_key_fails_startup_by_name() {
    let upstream: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let text = base_config(
        upstream,
        &format!("[persona]\napi_key = {{ env = \"PG_IT_SURELY_UNSET_PERSONA_KEY\" }}\ntemplate_id = \"{TEMPLATE}\"\n"),
    );
    let err = persona_gate::config::parse(&text, &repo_path("test-config.toml")).expect_err("no key");
    let problems = err.problems().join("\n");
    assert!(problems.contains("persona.api_key"), "{problems}");
    assert!(problems.contains("PG_IT_SURELY_UNSET_PERSONA_KEY"), "{problems}");
}

/// The gateway binary at TRACE, whose every log line is read: the key appears in none of them,
/// whether the call succeeded, Persona failed, or Persona refused the key. A process of its own,
/// because a log subscriber in this one would share callsite interest with every other test.
#[tokio::test]
async fn the_key_never_reaches_logs() {
    let emulator = Emulator::start("").await;
    let upstream = echo_upstream().await;
    let good = ConfigFile::new(&base_config(upstream, &persona_section(&emulator, KEY)));
    let wrong = format!("{KEY}_wrong");
    let bad = ConfigFile::new(&base_config(upstream, &persona_section(&emulator, &wrong)));
    let mut gw = GatewayProcess::start(&good.path, "trace").await;
    let mut refused = GatewayProcess::start(&bad.path, "trace").await;

    let post = |url: String| async move {
        let response = client()
            .post(url)
            .bearer_auth(user_token("usr_logs"))
            .send()
            .await
            .expect("call");
        read(response).await.0
    };
    assert_eq!(post(gw.url(ROUTE)).await, 200);
    emulator
        .fault(json!({ "fault": { "kind": "status", "status": 500 }, "times": 1000, "method": "GET" }))
        .await;
    assert_eq!(post(gw.url(ROUTE)).await, 502);
    emulator.clear_faults().await;
    assert_eq!(post(refused.url(ROUTE)).await, 500);

    gw.wait_for_log("persona call failed, retrying").await;
    refused.wait_for_log("Persona rejected the API key").await;
    // Every request's access line is written after its answer; wait for them before reading.
    gw.wait_for_log("status=502").await;
    refused.wait_for_log("status=500").await;
    for (name, process) in [("gateway", &gw), ("gateway with the wrong key", &refused)] {
        let logs = process.logs();
        assert!(logs.contains("TRACE"), "{name} logged at TRACE");
        assert!(!logs.contains(KEY), "the key leaked into the {name}'s logs");
    }
}

/// The route never reads a body, and one declared over `limits.max_body_bytes` is refused before
/// identity, rate limit or Persona see it.
#[tokio::test]
async fn an_oversized_body_is_refused_before_persona_is_asked() {
    let emulator = Emulator::start("").await;
    let upstream = echo_upstream().await;
    let text = base_config(upstream, &persona_section(&emulator, KEY))
        .replace("[limits]\n", "[limits]\nmax_body_bytes = 1024\n");
    let gw = TestGateway::start(&text).await;
    let response = client()
        .post(gw.url(ROUTE))
        .bearer_auth(user_token("usr_big_body"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("request");
    let (status, body) = read(response).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(emulator.calls().await.is_empty(), "Persona was not asked");
    let (status, _) = call(&gw, "usr_big_body").await;
    assert_eq!(status, 200, "a normal call still works");
}
