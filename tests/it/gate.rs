//! The verification gate and the scoped inquiry reads, over real sockets, against a standalone
//! Persona emulator (whose call log shows every Persona call the gateway made) and, for the
//! restart test, a private `redis-server`.

use serde_json::{Value, json};

use super::common::{Emulator, KEY, TEMPLATE};
use super::common::{Redis, TestGateway, base_config, client, echo_upstream, now, redis_store, repo_path, user_token};
use super::inquiry::count;

use super::webhook::signature;

const SECRET: &str = "wbhsec_gate_test";
const GATED: &str = "/walker/lesson-1";

// ===== harness =====

/// A gateway in front of an echo app, asking `emulator`, with `/walker/` gated. `extra` goes into
/// `[gate]` first, so it may set gate keys and then open other sections.
async fn gateway(emulator: &Emulator, extra: &str) -> TestGateway {
    let upstream = echo_upstream().await;
    TestGateway::start(&config(upstream, emulator, extra)).await
}

fn config(upstream: std::net::SocketAddr, emulator: &Emulator, extra: &str) -> String {
    base_config(
        upstream,
        &format!(
            r#"
[persona]
base_url = "{base}"
api_key = {{ value = "{KEY}" }}
template_id = "{TEMPLATE}"
timeout = "1s"
connect_timeout = "300ms"
deadline = "2s"
backoff_initial = "20ms"
backoff_max = "100ms"

[webhook]
secrets = [{{ value = "{SECRET}" }}]
forward_path = "/persona/events"

[gate]
paths = ["/walker/"]
{extra}
"#,
            base = emulator.base_url
        ),
    )
}

async fn get(gw: &TestGateway, path: &str, user: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .bearer_auth(user_token(user))
        .header("x-verification-status", "forged-by-client")
        .send()
        .await
        .expect("request")
}

async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

/// Starts the user's verification through the gateway, as the page would.
async fn get_or_create(gw: &TestGateway, user: &str) -> String {
    let response = client()
        .post(gw.url("/api/inquiries/get-or-create"))
        .bearer_auth(user_token(user))
        .send()
        .await
        .expect("get-or-create");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 200, "{body}");
    body["inquiry_id"].as_str().expect("inquiry_id").to_owned()
}

/// An inquiry for `user` made in Persona directly, behind the gateway's back, and approved.
async fn approved_in_persona(emulator: &Emulator, user: &str) -> String {
    let body = json!({ "data": { "attributes": { "inquiry-template-id": TEMPLATE, "reference-id": user } } });
    let created: Value = client()
        .post(format!("{}/inquiries", emulator.base_url))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("create json");
    let id = created["data"]["id"].as_str().expect("inquiry id").to_owned();
    approve(emulator, &id).await;
    id
}

/// Start and complete; the emulator approves completed inquiries right away (`auto_approve`).
async fn approve(emulator: &Emulator, id: &str) {
    emulator.advance(id, "start", true).await;
    emulator.advance(id, "complete", true).await;
}

/// The inquiry as Persona has it now.
async fn inquiry(emulator: &Emulator, id: &str) -> Value {
    let body: Value = client()
        .get(format!("{}/inquiries/{id}", emulator.base_url))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("retrieve")
        .json()
        .await
        .expect("retrieve json");
    body["data"].clone()
}

/// Persona's event for `inquiry`, signed with [`SECRET`] and delivered to the gateway.
async fn deliver(gw: &TestGateway, event_id: &str, name: &str, inquiry: &Value, created_at: &str) {
    let event = json!({ "data": { "type": "event", "id": event_id, "attributes": {
        "name": name, "payload": { "data": inquiry }, "created-at": created_at } } });
    let body = event.to_string();
    let response = client()
        .post(gw.url("/webhooks/persona"))
        .header("content-type", "application/json")
        .header("persona-signature", signature(SECRET, now(), body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("delivery");
    assert_eq!(response.status(), 200, "delivery refused");
}

fn persona_lists(calls: &[Value]) -> usize {
    count(calls, "GET", "/inquiries")
}

fn seen_status(echo: &Value) -> Option<&str> {
    echo["headers"]["x-verification-status"][0].as_str()
}

async fn assert_refused(response: reqwest::Response, status_named: &str) {
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "verification_required");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("/api/inquiries/get-or-create"), "{message}");
    assert!(message.contains(status_named), "{message}");
}

// ===== the gate =====

#[tokio::test]
async fn an_unverified_user_gets_403_and_ungated_paths_are_unaffected() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    let user = "usr_gate_unverified";
    get_or_create(&gw, user).await;
    emulator.clear_calls().await;

    assert_refused(get(&gw, GATED, user).await, "created").await;
    // get-or-create told the ledger; Persona is not asked again.
    assert_eq!(persona_lists(&emulator.calls().await), 0);

    let (status, echo) = status_and_json(get(&gw, "/dashboard", user).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        seen_status(&echo),
        None,
        "a client's X-Verification-Status never reaches the app"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_approved_user_unknown_to_the_gateway_passes_after_one_persona_call() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    let user = "usr_gate_approved";
    approved_in_persona(&emulator, user).await;
    emulator.clear_calls().await;

    for _ in 0..3 {
        let (status, echo) = status_and_json(get(&gw, GATED, user).await).await;
        assert_eq!(status, 200, "{echo}");
        assert_eq!(
            seen_status(&echo),
            Some("approved"),
            "set by the gateway, the client's copy dropped"
        );
        assert_eq!(echo["path"], GATED);
    }
    let calls = emulator.calls().await;
    assert_eq!(persona_lists(&calls), 1, "one lookup, then the recorded answer");
    let query = calls[0]["query"].as_str().expect("query");
    assert!(query.contains(&format!("filter[reference-id]={user}")), "{query}");
    gw.shutdown().await;
}

/// `limits.request_timeout` bounds the whole request, the gate's Persona lookup included: a
/// hung Persona costs the caller the request's deadline (300 ms here), not Persona's own budget
/// (`deadline = "2s"`).
#[tokio::test]
async fn the_request_deadline_bounds_the_gates_lookup() {
    let emulator = Emulator::start("").await;
    let upstream = echo_upstream().await;
    let text = config(upstream, &emulator, "").replacen("[limits]\n", "[limits]\nrequest_timeout = \"300ms\"\n", 1);
    assert!(text.contains("request_timeout = \"300ms\""), "{text}");
    let gw = TestGateway::start(&text).await;
    emulator
        .fault(json!({ "fault": { "kind": "hang" }, "method": "GET" }))
        .await;

    let started = std::time::Instant::now();
    let (status, body) = status_and_json(get(&gw, GATED, "usr_gate_deadline").await).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Ungated paths never wait on Persona.
    let (status, _) = status_and_json(get(&gw, "/dashboard", "usr_gate_deadline").await).await;
    assert_eq!(status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_of_an_unknown_user_share_one_lookup() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    let user = "usr_gate_storm";
    approved_in_persona(&emulator, user).await;
    emulator.clear_calls().await;
    // Slow answers make the requests overlap.
    emulator.latency(300).await;

    let requests = (0..10).map(|_| get(&gw, GATED, user));
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(persona_lists(&emulator.calls().await), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_negative_answer_is_cached_then_rechecked() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "recheck_after = \"400ms\"").await;
    let user = "usr_gate_newcomer";

    assert_refused(get(&gw, GATED, user).await, "no verification started").await;
    assert_refused(get(&gw, GATED, user).await, "no verification started").await;
    assert_eq!(
        persona_lists(&emulator.calls().await),
        1,
        "the negative answer is cached"
    );

    // Verified behind the gateway's back, with no webhook: the recheck finds it.
    approved_in_persona(&emulator, user).await;
    emulator.clear_calls().await;
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let (status, echo) = status_and_json(get(&gw, GATED, user).await).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(persona_lists(&emulator.calls().await), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_webhook_approval_opens_the_gate_without_a_persona_call() {
    webhook_approval_opens_the_gate("usr_gate_webhook").await;
}

/// The webhook's `reference-id` is the exact Unicode id the gateway created the inquiry under,
/// so it opens that user's gate and no one else's.
#[tokio::test]
async fn a_webhook_approval_opens_the_gate_of_a_unicode_user() {
    webhook_approval_opens_the_gate("José 山田").await;
}

async fn webhook_approval_opens_the_gate(user: &str) {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    let id = get_or_create(&gw, user).await;
    assert_refused(get(&gw, GATED, user).await, "created").await;

    approve(&emulator, &id).await;
    let approved = inquiry(&emulator, &id).await;
    let approved_at = approved["attributes"]["updated-at"]
        .as_str()
        .expect("updated-at")
        .to_owned();
    emulator.clear_calls().await;
    deliver(&gw, "evt_gate_approved", "inquiry.approved", &approved, &approved_at).await;

    let (status, echo) = status_and_json(get(&gw, GATED, user).await).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(seen_status(&echo), Some("approved"));

    // A late delivery of an older event does not close the gate again.
    let mut older = approved.clone();
    older["attributes"]["status"] = json!("pending");
    deliver(
        &gw,
        "evt_gate_started",
        "inquiry.started",
        &older,
        "2020-01-01T00:00:00.000Z",
    )
    .await;
    assert_eq!(get(&gw, GATED, user).await.status(), 200);

    assert!(emulator.calls().await.is_empty(), "no Persona call at all");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_restart_in_redis_mode_keeps_the_state() {
    let Some(redis) = Redis::start().await else { return };
    let emulator = Emulator::start("").await;
    let store = redis_store(&redis.url(), "allow");
    let user = "usr_gate_restart";
    let id = approved_in_persona(&emulator, user).await;
    let approved = inquiry(&emulator, &id).await;
    let approved_at = approved["attributes"]["updated-at"]
        .as_str()
        .expect("updated-at")
        .to_owned();

    let first = gateway(&emulator, &store).await;
    deliver(&first, "evt_gate_restart", "inquiry.approved", &approved, &approved_at).await;
    first.shutdown().await;

    emulator.clear_calls().await;
    let second = gateway(&emulator, &store).await;
    let (status, echo) = status_and_json(get(&second, GATED, user).await).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(seen_status(&echo), Some("approved"));
    assert!(
        emulator.calls().await.is_empty(),
        "the new gateway read the status from Redis"
    );
    second.shutdown().await;
}

#[test]
fn a_public_gated_path_or_a_gate_without_persona_is_a_config_error() {
    let text = base_config(
        "127.0.0.1:9".parse().expect("addr"),
        r#"
[persona]
template_id = "itmpl_x"
api_key = { value = "k" }

[gate]
paths = ["/public/videos/", "/walker/"]
"#,
    );
    let err = persona_gate::config::parse(&text, &repo_path("test-config.toml")).expect_err("refused");
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("gate.paths[0]: "), "{problems:?}");

    let without_persona = base_config("127.0.0.1:9".parse().expect("addr"), "[gate]\npaths = [\"/walker/\"]\n");
    let err = persona_gate::config::parse(&without_persona, &repo_path("test-config.toml")).expect_err("refused");
    assert_eq!(err.problems().len(), 1, "{:?}", err.problems());
    assert!(err.problems()[0].starts_with("gate.paths: "), "{:?}", err.problems());
}

// ===== scoped reads =====

#[tokio::test]
async fn scoped_reads_answer_only_the_callers_own_inquiries() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    let (alice, bob) = ("usr_read_alice", "usr_read_bob");
    let id = get_or_create(&gw, alice).await;

    let response = get(&gw, "/api/inquiries/current", alice).await;
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    let (status, current) = status_and_json(response).await;
    assert_eq!(status, 200, "{current}");
    assert_eq!(current["inquiry_id"], id.as_str());
    assert_eq!(current["status"], "created");
    assert!(
        current["created_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{current}"
    );
    assert_eq!(current["completed_at"], Value::Null);
    let keys: Vec<&String> = current.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["completed_at", "created_at", "inquiry_id", "status"]);

    let (status, by_id) = status_and_json(get(&gw, &format!("/api/inquiries/{id}"), alice).await).await;
    assert_eq!((status, &by_id), (200, &current));

    // Another user's id and an id that does not exist get the same answer.
    let theirs = get(&gw, &format!("/api/inquiries/{id}"), bob).await;
    let missing = get(&gw, "/api/inquiries/inq_doesnotexist000000000000", bob).await;
    assert_eq!((theirs.status().as_u16(), missing.status().as_u16()), (404, 404));
    let (theirs, missing) = (theirs.text().await.expect("body"), missing.text().await.expect("body"));
    assert_eq!(theirs, missing);
    let body: Value = serde_json::from_str(&theirs).expect("json");
    assert_eq!(body["error"]["code"], "not_found");

    let (status, none) = status_and_json(get(&gw, "/api/inquiries/current", bob).await).await;
    assert_eq!((status, none["error"]["code"].as_str()), (404, Some("not_found")));
    gw.shutdown().await;
}

#[tokio::test]
async fn scoped_reads_need_a_token_and_get() {
    let emulator = Emulator::start("").await;
    let gw = gateway(&emulator, "").await;
    let anonymous = client()
        .get(gw.url("/api/inquiries/current"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    let post = client()
        .post(gw.url("/api/inquiries/current"))
        .bearer_auth(user_token("usr_read_carol"))
        .send()
        .await
        .expect("request");
    assert_eq!(post.status(), 405);
    assert!(emulator.calls().await.is_empty());
    gw.shutdown().await;
}
