//! The production client's Persona rules, each driven through the gateway against the strict
//! emulator, and each a test the old, lenient emulator (or the old client) would have failed:
//! field keys reach the template verbatim (the shipped config's prefill arrives intact);
//! `Key-Inflection: kebab` on every call; no same-key retry after a 5xx, a lookup and a new key
//! instead; expired inquiries replaced by default, resumed only on the template's latest
//! version; a resume for every answer that hands out a token; redacted inquiries finished; and
//! each supported `Persona-Version` handled.

use serde_json::{Value, json};

use super::common::{
    Emulator, KEY, TEMPLATE, TestGateway, base_config, client, echo_upstream, shipped_config_on_free_ports,
};
use super::inquiry::{call, count, drive_to, id, persona_section};

const ROUTE: &str = "/api/inquiries/get-or-create";

async fn gateway_with(emulator: &Emulator, extra: &str) -> TestGateway {
    let upstream = echo_upstream().await;
    let text = format!("{}{extra}", persona_section(emulator, KEY));
    TestGateway::start(&base_config(upstream, &text)).await
}

/// The `POST /inquiries` calls in the log.
fn creates(calls: &[Value]) -> Vec<&Value> {
    calls
        .iter()
        .filter(|c| c["method"] == "POST" && c["path"] == "/api/v1/inquiries")
        .collect()
}

#[tokio::test]
async fn the_shipped_config_prefills_the_kyc_template_fields_intact() {
    let gw = TestGateway::start(&shipped_config_on_free_ports()).await;
    let emulator = gw.emulator.expect("embedded emulator");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signed_in = http.post(gw.url("/demo/sign-in")).send().await.expect("sign in");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let answer: Value = http
        .post(gw.url(ROUTE))
        .header("cookie", &cookie)
        .header("origin", format!("http://{}", gw.http.expect("http")))
        .send()
        .await
        .expect("get-or-create")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["status"], "created", "{answer}");
    let inquiry: Value = client()
        .get(format!(
            "http://{emulator}/api/v1/inquiries/{}",
            answer["inquiry_id"].as_str().expect("id")
        ))
        .bearer_auth(persona_gate::config::DEMO_API_KEY)
        .header("persona-version", "2025-10-27")
        .send()
        .await
        .expect("retrieve")
        .json()
        .await
        .expect("json");
    let fields = &inquiry["data"]["attributes"]["fields"];
    for (key, value) in [
        ("name_first", "Alexander"),
        ("name_last", "Sample"),
        ("birthdate", "1977-08-31"),
    ] {
        assert_eq!(fields[key]["value"], value, "{key}: {fields}");
    }
    gw.shutdown().await;
}

/// The emulator's key defaults to camelCase here, as a dashboard setting can: the gateway
/// still reads every answer (ids, statuses, session tokens, template versions), because each
/// of its calls asks for kebab-case.
#[tokio::test]
async fn every_call_asks_for_kebab_case_whatever_the_keys_default() {
    let emulator = Emulator::start("key_inflection = \"camel\"\nauto_approve = false").await;
    let gw = gateway_with(&emulator, "[inquiry.policy]\nexpired = \"resume\"\n").await;
    let (status, created) = call(&gw, "usr_camel").await;
    assert_eq!(status, 200, "{created}");
    emulator.advance(&id(&created), "submit_government_id", true).await;
    let (status, pending) = call(&gw, "usr_camel").await;
    assert_eq!(status, 200, "{pending}");
    assert!(pending["session_token"].is_string(), "{pending}");
    emulator.advance(&id(&created), "expire", true).await;
    let (status, resumed) = call(&gw, "usr_camel").await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!((id(&resumed), &resumed["status"]), (id(&created), &json!("pending")));
    let current = client()
        .get(gw.url("/api/inquiries/current"))
        .bearer_auth(super::common::user_token("usr_camel"))
        .send()
        .await
        .expect("current");
    assert_eq!(current.status(), 200);
    let calls = emulator.calls().await;
    assert!(count(&calls, "GET", &format!("/inquiry-templates/{TEMPLATE}")) >= 1);
    assert!(calls.len() >= 6, "{calls:?}");
    for c in &calls {
        assert_eq!(c["key_inflection"], "kebab", "{c}");
        assert_eq!(c["persona_version"], "2025-10-27", "{c}");
    }
}

/// A create answered 5xx is not sent again with its key (that could only replay the 5xx): the
/// round looks the user up, and creates with a new key because nothing was made.
#[tokio::test]
async fn a_create_answered_5xx_is_looked_up_then_made_with_a_new_key() {
    let emulator = Emulator::start("").await;
    let gw = gateway_with(&emulator, "").await;
    emulator
        .fault(json!({ "fault": { "kind": "status", "status": 500 }, "method": "POST", "path_contains": "/inquiries" }))
        .await;
    let (status, answer) = call(&gw, "usr_500").await;
    assert_eq!(status, 200, "{answer}");
    let calls = emulator.calls().await;
    let creates = creates(&calls);
    assert_eq!(creates.len(), 2, "{calls:?}");
    assert_eq!(creates[0]["status"], 500);
    assert_eq!(creates[1]["status"], 201);
    assert_ne!(
        creates[0]["idempotency_key"], creates[1]["idempotency_key"],
        "a new key"
    );
    let methods: Vec<&Value> = calls.iter().map(|c| &c["method"]).collect();
    assert_eq!(
        methods,
        ["GET", "POST", "GET", "POST"],
        "looked up before creating again"
    );
    let inquiries = emulator.inquiries_of("usr_500").await;
    assert_eq!(inquiries.len(), 1);
    assert_eq!(inquiries[0]["id"], answer["inquiry_id"]);
}

/// The 5xx came after the inquiry was made: the lookup finds it and nothing more is created.
#[tokio::test]
async fn a_create_that_went_through_before_its_5xx_is_found_not_made_again() {
    let emulator = Emulator::start("").await;
    let gw = gateway_with(&emulator, "").await;
    emulator
        .fault(json!({ "fault": { "kind": "process_then_status", "status": 502 }, "method": "POST", "path_contains": "/inquiries" }))
        .await;
    let (status, answer) = call(&gw, "usr_made").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "created");
    let inquiries = emulator.inquiries_of("usr_made").await;
    assert_eq!(inquiries.len(), 1, "exactly one inquiry");
    assert_eq!(inquiries[0]["id"], answer["inquiry_id"]);
    assert_eq!(creates(&emulator.calls().await).len(), 1, "never created again");
}

/// After a timeout the same key is right (Persona replays what it stored); when what it stored
/// is a 5xx, the replay is handled like a 5xx: lookup, then a new key only if nothing was made.
#[tokio::test]
async fn a_replayed_5xx_after_a_timeout_is_handled_like_a_5xx() {
    let emulator = Emulator::start("").await;
    let gw = gateway_with(&emulator, "").await;
    for (user, kind, made) in [
        ("usr_lost_500", "status", false),
        ("usr_lost_made", "process_then_status", true),
    ] {
        emulator.clear_calls().await;
        emulator
            .fault(json!({ "fault": { "kind": kind, "status": 500, "lost": true }, "method": "POST", "path_contains": "/inquiries" }))
            .await;
        let (status, answer) = call(&gw, user).await;
        assert_eq!(status, 200, "{user}: {answer}");
        let calls = emulator.calls().await;
        let creates = creates(&calls);
        assert_eq!(
            creates[0]["idempotency_key"], creates[1]["idempotency_key"],
            "{user}: same key after a timeout"
        );
        assert_eq!(creates[1]["status"], 500, "{user}: the stored 500, replayed");
        if made {
            assert_eq!(creates.len(), 2, "{user}: found, not made again");
        } else {
            assert_eq!(creates.len(), 3, "{user}: {calls:?}");
            assert_ne!(creates[2]["idempotency_key"], creates[0]["idempotency_key"]);
        }
        let inquiries = emulator.inquiries_of(user).await;
        assert_eq!(inquiries.len(), 1, "{user}");
        assert_eq!(inquiries[0]["id"], answer["inquiry_id"]);
    }
}

/// Persona failing every create: a bounded number of tries, each after a lookup, then 502; the
/// next click, once Persona is well, makes exactly one inquiry. Nobody is stuck, nothing doubles.
#[tokio::test]
async fn persistent_create_failures_end_in_502_and_the_next_click_recovers() {
    let emulator = Emulator::start("").await;
    let gw = gateway_with(&emulator, "").await;
    emulator
        .fault(json!({ "fault": { "kind": "status", "status": 503 }, "times": 1000, "method": "POST", "path_contains": "/inquiries" }))
        .await;
    let (status, body) = call(&gw, "usr_down").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "persona_unavailable");
    let calls = emulator.calls().await;
    assert_eq!(creates(&calls).len(), 3, "at most three creates: {calls:?}");
    assert_eq!(
        count(&calls, "GET", "/inquiries"),
        4,
        "the first lookup, then one after each create"
    );
    emulator.clear_faults().await;
    let (status, answer) = call(&gw, "usr_down").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(emulator.inquiries_of("usr_down").await.len(), 1);
}

/// Expired inquiries get a new inquiry by default, so the template's latest version applies.
/// This one expired the way Persona's do, by its time coming (24 h on the emulator's clock).
#[tokio::test]
async fn an_expired_inquiry_is_replaced_by_default() {
    let emulator = Emulator::start("").await;
    let gw = gateway_with(&emulator, "").await;
    let (_, first) = call(&gw, "usr_expired_default").await;
    emulator.advance_clock(86_400 + 1).await;
    let (status, second) = call(&gw, "usr_expired_default").await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(id(&second), id(&first));
    assert_eq!(second["status"], "created");
    assert_eq!(count(&emulator.calls().await, "POST", "/resume"), 0);
    assert_eq!(emulator.inquiries_of("usr_expired_default").await.len(), 2);
}

/// With `expired = "resume"`, an expired inquiry is resumed only while it is on the template's
/// latest published version (read once, then cached); after a new version it is replaced.
#[tokio::test]
async fn resume_checks_the_templates_current_version_first() {
    let emulator = Emulator::start("").await;
    let policy = "[inquiry.policy]\nexpired = \"resume\"\n";
    let gw = gateway_with(&emulator, policy).await;
    let mut expired = Vec::new();
    for user in ["usr_v_a", "usr_v_b", "usr_v_c"] {
        let (_, created) = call(&gw, user).await;
        drive_to(&emulator, &id(&created), "expired").await;
        expired.push(id(&created));
    }
    emulator.clear_calls().await;
    for (user, inquiry) in [("usr_v_a", &expired[0]), ("usr_v_b", &expired[1])] {
        let (status, answer) = call(&gw, user).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            (&id(&answer), &answer["status"]),
            (inquiry, &json!("pending")),
            "resumed"
        );
        assert!(answer["session_token"].is_string());
    }
    let calls = emulator.calls().await;
    assert_eq!(
        count(&calls, "GET", &format!("/inquiry-templates/{TEMPLATE}")),
        1,
        "one template read, cached for the next"
    );

    emulator.publish(TEMPLATE).await;
    let fresh = gateway_with(&emulator, policy).await;
    let (status, answer) = call(&fresh, "usr_v_c").await;
    assert_eq!(status, 200, "{answer}");
    assert_ne!(id(&answer), expired[2], "an inquiry on an old version is replaced");
    assert_eq!(answer["status"], "created");
    let replaced = emulator.inquiry(&expired[2], "2025-10-27").await;
    assert_eq!(replaced["data"]["attributes"]["status"], "expired", "not resumed");
}

/// Each answer that hands out a token comes from a resume: Persona gives back the unused
/// session, and once the user opened it, a new one. (The old hour-long cache handed out the
/// opened token again.) The cache is there only when `token_ttl` asks for it.
#[tokio::test]
async fn pending_inquiries_are_resumed_for_every_answer() {
    let emulator = Emulator::start("").await;
    let gw = gateway_with(&emulator, "").await;
    let (_, created) = call(&gw, "usr_tokens").await;
    emulator.advance(&id(&created), "submit_government_id", true).await;
    emulator.clear_calls().await;
    let (_, first) = call(&gw, "usr_tokens").await;
    let (_, second) = call(&gw, "usr_tokens").await;
    assert_eq!(
        count(&emulator.calls().await, "POST", "/resume"),
        2,
        "a resume per answer"
    );
    assert_eq!(
        first["session_token"], second["session_token"],
        "the unused session, again"
    );
    // The user opens the flow with it: that session is used now.
    emulator.advance(&id(&created), "start", true).await;
    let (_, third) = call(&gw, "usr_tokens").await;
    assert!(third["session_token"].is_string());
    assert_ne!(third["session_token"], first["session_token"], "a session of its own");

    let cached = gateway_with(&emulator, "token_ttl = \"10m\"\n").await;
    emulator.clear_calls().await;
    let (_, a) = call(&cached, "usr_tokens").await;
    let (_, b) = call(&cached, "usr_tokens").await;
    assert_eq!(a["session_token"], b["session_token"]);
    assert_eq!(count(&emulator.calls().await, "POST", "/resume"), 1, "opted in: cached");
}

/// A redacted inquiry keeps its status, but nothing can open or resume it: for a finished
/// status its policy applies (here "report"), anything else gets a new inquiry.
#[tokio::test]
async fn redacted_inquiries_count_as_finished_and_never_leave_a_user_stuck() {
    let emulator = Emulator::start("auto_approve = false").await;
    let report = "[inquiry.policy]\napproved = \"report\"\nexpired = \"resume\"\n";
    let gw = gateway_with(&emulator, report).await;
    for status in ["created", "pending", "expired", "approved"] {
        let user = format!("usr_redacted_{status}");
        let (_, created) = call(&gw, &user).await;
        let inquiry = id(&created);
        match status {
            "created" => {}
            "pending" => emulator.advance(&inquiry, "submit_government_id", true).await,
            other => drive_to(&emulator, &inquiry, other).await,
        }
        emulator.redact(&inquiry).await;
        emulator.clear_calls().await;
        let (code, answer) = call(&gw, &user).await;
        assert_eq!(code, 200, "{status}: {answer}");
        if status == "approved" {
            assert_eq!(
                (id(&answer), &answer["status"]),
                (inquiry, &json!("approved")),
                "reported"
            );
            assert_eq!(emulator.inquiries_of(&user).await.len(), 1);
        } else {
            assert_ne!(id(&answer), inquiry, "{status}: a new inquiry");
            assert_eq!(answer["status"], "created");
            assert_eq!(
                count(&emulator.calls().await, "POST", "/resume"),
                0,
                "{status}: never resumed"
            );
            assert_eq!(emulator.inquiries_of(&user).await.len(), 2, "{status}");
        }
    }
}

/// A resume Persona refuses though the list showed nothing against it: the inquiry is looked
/// up again; still resumable on paper, the round fails (502) rather than guess, and creates
/// nothing.
#[tokio::test]
async fn a_refused_resume_is_looked_up_again_and_never_guessed() {
    let emulator = Emulator::start("").await;
    let gw = gateway_with(&emulator, "").await;
    let (_, created) = call(&gw, "usr_refused").await;
    emulator.advance(&id(&created), "submit_government_id", true).await;
    emulator
        .fault(json!({ "fault": { "kind": "status", "status": 409 }, "path_contains": "/resume" }))
        .await;
    emulator.clear_calls().await;
    let (status, body) = call(&gw, "usr_refused").await;
    assert_eq!(status, 502, "{body}");
    let calls = emulator.calls().await;
    assert_eq!(count(&calls, "GET", "/inquiries"), 2, "looked up again");
    assert!(creates(&calls).is_empty());
    let (status, answer) = call(&gw, "usr_refused").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["session_token"].is_string());
}

/// Every supported version works end to end, with its own field-key rules: the snake_case keys
/// reach the template, and a pending inquiry is resumed.
#[tokio::test]
async fn each_supported_persona_version_gets_prefill_and_tokens_right() {
    let emulator = Emulator::start("").await;
    for version in persona_gate::config::SUPPORTED_VERSIONS {
        let extra = "[inquiry.fields]\ngiven_name = \"name_first\"\nbirthdate = \"birthdate\"\n";
        let text =
            persona_section(&emulator, KEY).replace("[persona]\n", &format!("[persona]\nversion = \"{version}\"\n"));
        let upstream = echo_upstream().await;
        let gw = TestGateway::start(&base_config(upstream, &format!("{text}{extra}"))).await;
        let user = format!("usr_version_{version}");
        let jwt = super::common::token(&json!({
            "sub": user, "exp": super::common::now() + 600,
            "given_name": "Alexander", "birthdate": "1977-08-31",
        }));
        let answer: Value = client()
            .post(gw.url(ROUTE))
            .bearer_auth(&jwt)
            .send()
            .await
            .expect("call")
            .json()
            .await
            .expect("json");
        let inquiry = id(&answer);
        let stored = emulator.inquiry(&inquiry, "2025-10-27").await;
        let fields = &stored["data"]["attributes"]["fields"];
        assert_eq!(fields["name_first"]["value"], "Alexander", "{version}: {fields}");
        assert_eq!(fields["birthdate"]["value"], "1977-08-31", "{version}");
        emulator.advance(&inquiry, "submit_government_id", true).await;
        let pending: Value = client()
            .post(gw.url(ROUTE))
            .bearer_auth(&jwt)
            .send()
            .await
            .expect("call")
            .json()
            .await
            .expect("json");
        assert!(pending["session_token"].is_string(), "{version}: {pending}");
        let calls = emulator.calls().await;
        assert!(calls.iter().any(|c| c["persona_version"] == version));
    }
}
