//! Several verification flows over real sockets, against a standalone Persona emulator that knows
//! each flow's template (its call log shows which template every call named): each flow gets its
//! own inquiry for one user, a click storm makes one inquiry per flow, gate rules require a flow
//! (a user approved in one flow passes no rule of another; a webhook is attributed to its flow by
//! the inquiry's template), reads per flow, the config errors `persona-gate check` names, and, on
//! a private `redis-server`, the per-flow lock and ledger shared by two replicas.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::common::*;
use super::inquiry::count;
use super::webhook::signature;

const PAYOUT: &str = "itmpl_emulator_payout";
/// A template the emulator knows and no flow uses.
const OTHER: &str = "itmpl_emulator_other";
const ROUTE: &str = "/api/inquiries/get-or-create";
const PAYOUT_ROUTE: &str = "/api/inquiries/payout/get-or-create";
const SECRET: &str = "wbhsec_flows_test";

// ===== harness =====

async fn emulator(extra: &str) -> Emulator {
    Emulator::start(&format!(
        "templates = [\"{TEMPLATE}\", \"{PAYOUT}\", \"{OTHER}\"]\n{extra}"
    ))
    .await
}

/// The default flow on [`TEMPLATE`] (prefilled with the first name and birthdate) and `payout` on
/// [`PAYOUT`] (the last name only), then `gate` and `extra`.
fn config(upstream: SocketAddr, emulator: &Emulator, gate: &str, extra: &str) -> String {
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

[inquiry.fields]
given_name = "name_first"
birthdate = "birthdate"

[[inquiry.flows]]
name = "payout"
path = "{PAYOUT_ROUTE}"
template_id = "{PAYOUT}"
[inquiry.flows.fields]
family_name = "name_last"

[webhook]
secrets = [{{ value = "{SECRET}" }}]
forward_path = "/persona/events"

{gate}
{extra}
"#,
            base = emulator.base_url
        ),
    )
}

async fn gateway(emulator: &Emulator, gate: &str) -> TestGateway {
    let upstream = echo_upstream().await;
    TestGateway::start(&config(upstream, emulator, gate, "")).await
}

/// The default flow on `/walker/`, `payout` on `/payouts/`.
const SEPARATE_RULES: &str = r#"
[gate]
paths = ["/walker/"]

[[gate.rules]]
paths = ["/payouts/"]
flow = "payout"
"#;

fn alexander(user: &str) -> String {
    token(&json!({
        "sub": user, "given_name": "Alexander", "family_name": "Sample", "birthdate": "1977-08-31",
        "exp": now() + 3600, "iat": now(),
    }))
}

async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A get-or-create on `route` as `user`, which must answer 200.
async fn get_or_create(gw: &TestGateway, route: &str, user: &str) -> Value {
    let response = client()
        .post(gw.url(route))
        .bearer_auth(alexander(user))
        .send()
        .await
        .expect("get-or-create");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 200, "{route}: {body}");
    body
}

fn id(answer: &Value) -> String {
    answer["inquiry_id"].as_str().expect("inquiry_id").to_owned()
}

async fn get(gw: &TestGateway, path: &str, user: &str) -> (u16, Value) {
    let response = client()
        .get(gw.url(path))
        .bearer_auth(user_token(user))
        .send()
        .await
        .expect("request");
    status_and_json(response).await
}

/// The create calls the emulator received, by the template each named.
fn creates_by_template(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c["method"] == "POST" && c["path"] == "/api/v1/inquiries")
        .map(|c| {
            c["body"]["data"]["attributes"]["inquiry-template-id"]
                .as_str()
                .expect("template")
                .to_owned()
        })
        .collect()
}

/// The inquiry as Persona has it now: the shape its webhooks carry.
async fn inquiry(emulator: &Emulator, id: &str) -> Value {
    emulator.inquiry(id, "2025-10-27").await["data"].clone()
}

/// Starts and completes `id`; the emulator approves it at once unless `auto_approve = false`.
async fn complete(emulator: &Emulator, id: &str) {
    emulator.advance(id, "start", true).await;
    emulator.advance(id, "complete", true).await;
}

/// Persona's `name` event for `inquiry` as it is now, signed and delivered; the receiver's
/// acknowledgement (`forwarded`, `duplicate`, ...).
async fn deliver(gw: &TestGateway, emulator: &Emulator, name: &str, id: &str) -> String {
    let inquiry = inquiry(emulator, id).await;
    let created_at = inquiry["attributes"]["updated-at"]
        .as_str()
        .expect("updated-at")
        .to_owned();
    let event = json!({ "data": { "type": "event", "id": format!("evt_{}", rand::random::<u64>()), "attributes": {
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
    let (status, ack) = status_and_json(response).await;
    assert_eq!(status, 200, "delivery refused: {ack}");
    ack["status"].as_str().expect("acknowledgement").to_owned()
}

/// An inquiry for `user` made in Persona directly on `template`.
async fn created_in_persona(emulator: &Emulator, template: &str, user: &str) -> String {
    let body = json!({ "data": { "attributes": { "inquiry-template-id": template, "reference-id": user } } });
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
    created["data"]["id"].as_str().expect("inquiry id").to_owned()
}

fn assert_refused_for(answer: &(u16, Value), flow: &str, route: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 403, "{body}");
    assert_eq!(body["error"]["code"], "verification_required", "{body}");
    assert_eq!(body["error"]["flow"], flow, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(route), "names the flow's route: {message}");
}

fn seen_status(echo: &Value) -> Option<&str> {
    echo["headers"]["x-verification-status"][0].as_str()
}

// ===== get-or-create per flow =====

#[tokio::test]
async fn each_flow_gets_its_own_inquiry_for_one_user() {
    let emulator = emulator("").await;
    let gw = gateway(&emulator, "").await;
    let user = "usr_flows_two";

    let default = get_or_create(&gw, ROUTE, user).await;
    let payout = get_or_create(&gw, PAYOUT_ROUTE, user).await;
    assert_eq!(
        (default["status"].as_str(), payout["status"].as_str()),
        (Some("created"), Some("created"))
    );
    assert_ne!(id(&default), id(&payout), "one inquiry per flow");

    let calls = emulator.calls().await;
    assert_eq!(creates_by_template(&calls), [TEMPLATE, PAYOUT]);
    let lists: Vec<&str> = calls
        .iter()
        .filter(|c| c["method"] == "GET")
        .map(|c| c["query"].as_str().expect("query"))
        .collect();
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert!(
        lists[0].contains(&format!("filter[inquiry-template-id]={TEMPLATE}")),
        "{lists:?}"
    );
    assert!(
        lists[1].contains(&format!("filter[inquiry-template-id]={PAYOUT}")),
        "{lists:?}"
    );
    // Each flow is prefilled with its own fields.
    let fields: Vec<&Value> = calls
        .iter()
        .filter(|c| c["method"] == "POST")
        .map(|c| &c["body"]["data"]["attributes"]["fields"])
        .collect();
    assert_eq!(
        *fields[0],
        json!({ "name_first": "Alexander", "birthdate": "1977-08-31" })
    );
    assert_eq!(*fields[1], json!({ "name_last": "Sample" }));

    // Again: each flow finds its own inquiry, and neither creates another.
    emulator.clear_calls().await;
    assert_eq!(get_or_create(&gw, PAYOUT_ROUTE, user).await, payout);
    assert_eq!(get_or_create(&gw, ROUTE, user).await, default);
    assert!(creates_by_template(&emulator.calls().await).is_empty());

    // A finished inquiry in one flow is reported in that flow only.
    complete(&emulator, &id(&payout)).await;
    assert_eq!(get_or_create(&gw, PAYOUT_ROUTE, user).await["status"], "approved");
    assert_eq!(get_or_create(&gw, ROUTE, user).await, default);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_click_storm_on_both_flows_makes_one_inquiry_per_flow() {
    let emulator = emulator("latency = \"50ms\"").await;
    let gw = Arc::new(gateway(&emulator, "").await);
    let user = "usr_flows_storm";
    let clicks: Vec<_> = (0..40)
        .map(|i| {
            let gw = gw.clone();
            let route = if i % 2 == 0 { ROUTE } else { PAYOUT_ROUTE };
            tokio::spawn(async move { (route, id(&get_or_create(&gw, route, user).await)) })
        })
        .collect();
    let mut ids: Vec<(&str, String)> = Vec::new();
    for click in clicks {
        ids.push(click.await.expect("join"));
    }
    let of = |route: &str| -> Vec<&String> { ids.iter().filter(|(r, _)| *r == route).map(|(_, id)| id).collect() };
    let (default, payout) = (of(ROUTE), of(PAYOUT_ROUTE));
    assert!(default.iter().all(|i| *i == default[0]), "{default:?}");
    assert!(payout.iter().all(|i| *i == payout[0]), "{payout:?}");
    assert_ne!(default[0], payout[0]);
    let mut made = creates_by_template(&emulator.calls().await);
    made.sort();
    assert_eq!(made, [TEMPLATE, PAYOUT], "one create per flow");
    assert_eq!(emulator.inquiries_of(user).await.len(), 2);
}

// ===== gate rules =====

#[tokio::test]
async fn a_rule_for_one_flow_refuses_a_user_approved_only_in_another() {
    let emulator = emulator("").await;
    let gw = gateway(&emulator, SEPARATE_RULES).await;
    let user = "usr_flows_gate";
    let default = id(&get_or_create(&gw, ROUTE, user).await);
    complete(&emulator, &default).await;
    assert_eq!(deliver(&gw, &emulator, "inquiry.approved", &default).await, "forwarded");

    let (status, echo) = get(&gw, "/walker/lesson-1", user).await;
    assert_eq!((status, seen_status(&echo)), (200, Some("approved")), "{echo}");
    // Approved in the default flow, nothing in payout: Persona is asked about payout only.
    emulator.clear_calls().await;
    assert_refused_for(&get(&gw, "/payouts/account", user).await, "payout", PAYOUT_ROUTE);
    let calls = emulator.calls().await;
    assert_eq!(count(&calls, "GET", "/inquiries"), 1, "{calls:?}");
    assert!(
        calls[0]["query"].as_str().is_some_and(|q| q.contains(PAYOUT)),
        "{calls:?}"
    );

    // The payout inquiry's approval arrives by webhook, attributed to payout by its template.
    let payout = id(&get_or_create(&gw, PAYOUT_ROUTE, user).await);
    assert_refused_for(&get(&gw, "/payouts/account", user).await, "payout", PAYOUT_ROUTE);
    complete(&emulator, &payout).await;
    assert_eq!(
        inquiry(&emulator, &payout).await["relationships"]["inquiry-template"]["data"]["id"],
        PAYOUT
    );
    emulator.clear_calls().await;
    assert_eq!(deliver(&gw, &emulator, "inquiry.approved", &payout).await, "forwarded");
    let (status, echo) = get(&gw, "/payouts/account", user).await;
    assert_eq!((status, seen_status(&echo)), (200, Some("approved")), "{echo}");
    let calls = emulator.calls().await;
    assert_eq!(
        count(&calls, "GET", "/inquiries"),
        0,
        "the webhook told the gate: {calls:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn webhooks_of_each_flow_update_only_that_flow() {
    let emulator = emulator("auto_approve = false").await;
    let gw = gateway(&emulator, SEPARATE_RULES).await;
    let user = "usr_flows_webhooks";
    let default = id(&get_or_create(&gw, ROUTE, user).await);
    let payout = id(&get_or_create(&gw, PAYOUT_ROUTE, user).await);
    emulator.clear_calls().await;

    // Approving the payout inquiry opens the payout rule only.
    complete(&emulator, &payout).await;
    emulator.advance(&payout, "approve", true).await;
    assert_eq!(deliver(&gw, &emulator, "inquiry.approved", &payout).await, "forwarded");
    assert_eq!(get(&gw, "/payouts/x", user).await.0, 200);
    let walker = get(&gw, "/walker/x", user).await;
    assert_refused_for(&walker, "default", ROUTE);
    assert!(
        walker.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("created")),
        "{walker:?}"
    );

    // An inquiry on a template no flow has is forwarded to the app and touches no flow.
    let other = created_in_persona(&emulator, OTHER, user).await;
    complete(&emulator, &other).await;
    emulator.advance(&other, "approve", true).await;
    assert_eq!(deliver(&gw, &emulator, "inquiry.approved", &other).await, "forwarded");
    assert_refused_for(&get(&gw, "/walker/x", user).await, "default", ROUTE);

    // The default inquiry's own events move the default flow, and leave payout as it is.
    complete(&emulator, &default).await;
    assert_eq!(
        deliver(&gw, &emulator, "inquiry.completed", &default).await,
        "forwarded"
    );
    let walker = get(&gw, "/walker/x", user).await;
    assert!(
        walker.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("completed")),
        "{walker:?}"
    );
    emulator.advance(&default, "approve", true).await;
    assert_eq!(deliver(&gw, &emulator, "inquiry.approved", &default).await, "forwarded");
    assert_eq!(get(&gw, "/walker/x", user).await.0, 200);
    assert_eq!(get(&gw, "/payouts/x", user).await.0, 200);
    assert_eq!(
        count(&emulator.calls().await, "GET", "/inquiries"),
        0,
        "all from webhooks"
    );
    gw.shutdown().await;
}

/// `/walker/payouts` is under the default flow's `/walker/` and the payout rule: it needs both,
/// refusals follow the declared order, and the app receives the nearest rule's status.
#[tokio::test]
async fn a_path_under_two_rules_needs_both_and_carries_the_nearest_status() {
    let emulator = emulator("auto_approve = false").await;
    let gate = r#"
[gate]
paths = ["/walker/"]

[[gate.rules]]
paths = ["/walker/payouts"]
flow = "payout"
require = ["completed", "approved"]
"#;
    let gw = gateway(&emulator, gate).await;
    let user = "usr_flows_both";
    let default = id(&get_or_create(&gw, ROUTE, user).await);
    let payout = id(&get_or_create(&gw, PAYOUT_ROUTE, user).await);

    complete(&emulator, &payout).await;
    assert_eq!(deliver(&gw, &emulator, "inquiry.completed", &payout).await, "forwarded");
    assert_refused_for(&get(&gw, "/walker/payouts", user).await, "default", ROUTE);

    complete(&emulator, &default).await;
    emulator.advance(&default, "approve", true).await;
    assert_eq!(deliver(&gw, &emulator, "inquiry.approved", &default).await, "forwarded");
    let (status, echo) = get(&gw, "/walker/payouts/history", user).await;
    assert_eq!(
        (status, seen_status(&echo)),
        (200, Some("completed")),
        "the payout rule is nearer: {echo}"
    );
    let (status, echo) = get(&gw, "/walker/lessons", user).await;
    assert_eq!((status, seen_status(&echo)), (200, Some("approved")), "{echo}");
    gw.shutdown().await;
}

// ===== reads per flow =====

#[tokio::test]
async fn reads_answer_per_flow() {
    let emulator = emulator("").await;
    let gw = gateway(&emulator, "").await;
    let (user, other_user) = ("usr_flows_reads", "usr_flows_reads_other");
    let default = id(&get_or_create(&gw, ROUTE, user).await);
    let payout = id(&get_or_create(&gw, PAYOUT_ROUTE, user).await);
    let unconfigured = created_in_persona(&emulator, OTHER, user).await;
    let theirs = id(&get_or_create(&gw, PAYOUT_ROUTE, other_user).await);

    let current = |query: &'static str| {
        let gw = &gw;
        async move { get(gw, &format!("/api/inquiries/current{query}"), user).await }
    };
    let (status, body) = current("").await;
    assert_eq!(
        (status, body["inquiry_id"].as_str()),
        (200, Some(default.as_str())),
        "{body}"
    );
    let (status, body) = current("?flow=payout").await;
    assert_eq!(
        (status, body["inquiry_id"].as_str()),
        (200, Some(payout.as_str())),
        "{body}"
    );
    let (status, body) = current("?x=1&flow=pay%6Fut").await;
    assert_eq!(
        (status, body["inquiry_id"].as_str()),
        (200, Some(payout.as_str())),
        "decoded: {body}"
    );
    let (status, body) = current("?flow=nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("flow_not_found")),
        "{body}"
    );
    let (status, body) = current("?flow=payout&flow=default").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("flow_ambiguous")),
        "{body}"
    );

    // By id: any configured flow's inquiry of the caller's, or only the named flow's.
    let by_id = |id: &str, query: &str| {
        let (gw, path) = (&gw, format!("/api/inquiries/{id}{query}"));
        async move { get(gw, &path, user).await }
    };
    let (status, body) = by_id(&payout, "").await;
    assert_eq!(
        (status, body["inquiry_id"].as_str()),
        (200, Some(payout.as_str())),
        "{body}"
    );
    assert_eq!(by_id(&default, "").await.0, 200);
    assert_eq!(by_id(&payout, "?flow=payout").await.0, 200);
    let (status, body) = by_id(&payout, "?flow=default").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = by_id(&unconfigured, "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "no flow's template: {body}"
    );
    let (status, body) = by_id(&theirs, "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "another user's: {body}"
    );
    gw.shutdown().await;
}

// ===== config =====

#[test]
fn check_names_every_flow_and_rule_mistake_by_key() {
    let upstream: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let text = base_config(
        upstream,
        &format!(
            r#"
[persona]
base_url = "https://api.withpersona.com/api/v1"
api_key = {{ value = "k" }}
template_id = "{TEMPLATE}"

[[inquiry.flows]]
name = "payout"
path = "/api/inquiries/get-or-create"
template_id = "{PAYOUT}"

[[inquiry.flows]]
name = "payout"
path = "/api/payout/../inquiries/payout"
template_id = "{TEMPLATE}"

[[inquiry.flows]]
name = "default"
path = "/api/inquiries/again"
template_id = "{OTHER}"

[[inquiry.flows]]
name = "Bank Details"
path = "/api/inquiries/bank"
template_id = "tmpl_legacy"

[[gate.rules]]
paths = ["/walker/"]
flow = "owner"
"#
        ),
    );
    let file = ConfigFile::new(&text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_persona-gate"))
        .args(["check", "--config"])
        .arg(&file.path)
        .output()
        .expect("run persona-gate check");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (key, says) in [
        (
            "inquiry.flows[0].path",
            "already the path of flow \"default\" (inquiry.path)",
        ),
        ("inquiry.flows[1].name", "declared twice (also inquiry.flows[0].name)"),
        ("inquiry.flows[1].path", "/api/inquiries/payout"),
        (
            "inquiry.flows[1].template_id",
            "already the template of flow \"default\" (persona.template_id)",
        ),
        ("inquiry.flows[2].name", "\"default\" is the flow of [inquiry]"),
        ("inquiry.flows[3].name", "is not a flow name"),
        ("inquiry.flows[3].template_id", "is not an inquiry template id"),
        ("gate.rules[0].flow", "\"owner\" is not a configured flow"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("{key}: ")) && l.contains(says));
        assert!(line.is_some(), "missing {key}: ...{says}... in:\n{stderr}");
    }

    // The same flows, written right, pass.
    let valid = base_config(
        upstream,
        &format!(
            r#"
[persona]
base_url = "https://api.withpersona.com/api/v1"
api_key = {{ value = "k" }}
template_id = "{TEMPLATE}"

[[inquiry.flows]]
name = "payout"
path = "/api/inquiries/payout/get-or-create"
template_id = "{PAYOUT}"

[[gate.rules]]
paths = ["/walker/"]
flow = "payout"
"#
        ),
    );
    persona_gate::config::parse(&valid, &repo_path("test-config.toml")).expect("valid flows");

    // Flows without [persona] are refused; with the emulator, a template it does not list is
    // named by a warning (every create would be a 404).
    let flows_only = base_config(
        upstream,
        &format!("[[inquiry.flows]]\nname = \"payout\"\npath = \"{PAYOUT_ROUTE}\"\ntemplate_id = \"{PAYOUT}\"\n"),
    );
    let err = persona_gate::config::parse(&flows_only, &repo_path("test-config.toml")).expect_err("refused");
    assert_eq!(err.problems().len(), 1, "{:?}", err.problems());
    assert!(err.problems()[0].starts_with("inquiry.flows: "), "{:?}", err.problems());
    let emulated = base_config(
        upstream,
        &format!(
            r#"
[emulator]
templates = ["{TEMPLATE}"]

[persona]
use_emulator = true
template_id = "{TEMPLATE}"

[[inquiry.flows]]
name = "payout"
path = "{PAYOUT_ROUTE}"
template_id = "{PAYOUT}"
"#
        ),
    );
    let config = persona_gate::config::parse(&emulated, &repo_path("test-config.toml")).expect("valid");
    let warned: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].starts_with("inquiry.flows[0].template_id: ") && warned[0].contains("emulator.templates"),
        "{warned:?}"
    );
}

// ===== replicas =====

/// Two replicas on one Redis: a click storm across both makes one inquiry per flow (each flow
/// its own lock), and a payout webhook one replica receives opens the payout rule on the other
/// (each flow its own ledger entry). The default flow's keys keep the shape they had before
/// flows; the payout flow's are its own.
#[tokio::test]
async fn replicas_share_a_lock_and_a_ledger_per_flow() {
    let Some(redis) = Redis::start().await else { return };
    let emulator = emulator("latency = \"50ms\"").await;
    let upstream = echo_upstream().await;
    let text = config(upstream, &emulator, SEPARATE_RULES, &redis_store(&redis.url(), "deny"));
    let replicas = Arc::new([TestGateway::start(&text).await, TestGateway::start(&text).await]);
    let user = "usr_flows_replicas";
    let clicks: Vec<_> = (0..40)
        .map(|i| {
            let replicas = replicas.clone();
            let route = if i % 4 < 2 { ROUTE } else { PAYOUT_ROUTE };
            tokio::spawn(async move { (route, id(&get_or_create(&replicas[i % 2], route, user).await)) })
        })
        .collect();
    let mut ids: Vec<(&str, String)> = Vec::new();
    for click in clicks {
        ids.push(click.await.expect("join"));
    }
    let mut made = creates_by_template(&emulator.calls().await);
    made.sort();
    assert_eq!(made, [TEMPLATE, PAYOUT], "one create per flow across both replicas");
    let payout = ids
        .iter()
        .find(|(route, _)| *route == PAYOUT_ROUTE)
        .map(|(_, id)| id.clone())
        .expect("a payout click");
    assert!(
        ids.iter()
            .filter(|(r, _)| *r == PAYOUT_ROUTE)
            .all(|(_, i)| *i == payout)
    );

    emulator.latency(0).await;
    complete(&emulator, &payout).await;
    assert_eq!(
        deliver(&replicas[0], &emulator, "inquiry.approved", &payout).await,
        "forwarded"
    );
    emulator.clear_calls().await;
    let (status, echo) = get(&replicas[1], "/payouts/x", user).await;
    assert_eq!((status, seen_status(&echo)), (200, Some("approved")), "{echo}");
    assert_refused_for(&get(&replicas[1], "/walker/x", user).await, "default", ROUTE);
    assert_eq!(
        count(&emulator.calls().await, "GET", "/inquiries"),
        0,
        "both from the shared ledger"
    );

    let mut keys = redis_keys(&redis, "persona-gate:val:verification*").await;
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("persona-gate:val:verification/payout:{user}"),
            format!("persona-gate:val:verification:{user}"),
        ]
    );
}

async fn redis_keys(redis: &Redis, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut connection)
        .await
        .expect("KEYS")
}
