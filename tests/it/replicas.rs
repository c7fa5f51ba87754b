//! What replicas share through the store, over real sockets: get-or-create takes turns per user
//! across two gateways on one Redis (one inquiry, never two), the outbound Persona budget caps
//! what the emulator sees and admits whole rounds, refunding what a round did not need (in one
//! process and shared by replicas), webhook dedupe spans replicas,
//! and the get-or-create route is rate-limited per user with its CORS headers. Each Redis test
//! starts its own `redis-server` (see `common::Redis`).

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::hmac;
use serde_json::Value;

use super::common::*;

const ROUTE: &str = "/api/inquiries/get-or-create";
const ORIGIN: &str = "https://app.example.com";

// ===== harness =====

/// `[persona]` on `emulator` and `[inquiry]`, plus `extra` (store, budget, policies).
fn persona_config(upstream: SocketAddr, emulator: &Emulator, extra: &str) -> String {
    base_config(
        upstream,
        &format!(
            r#"
[persona]
base_url = "{}"
api_key = {{ value = "{KEY}" }}
template_id = "{TEMPLATE}"
timeout = "1s"
connect_timeout = "500ms"
deadline = "1500ms"
backoff_initial = "20ms"
backoff_max = "100ms"

[inquiry]
allowed_origins = ["{ORIGIN}"]
{extra}
"#,
            emulator.base_url
        ),
    )
}

fn budget(requests: u32) -> String {
    format!("\n[rate_limit.persona_budget]\nrequests = {requests}\nwindow = \"1m\"\n")
}

/// A get-or-create for `user`: status, `Retry-After`, JSON body.
async fn call(http: &reqwest::Client, gw: &TestGateway, user: &str) -> (u16, Option<u64>, Value) {
    let response = http
        .post(gw.url(ROUTE))
        .bearer_auth(user_token(user))
        .send()
        .await
        .expect("call");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry_after, response.json().await.unwrap_or(Value::Null))
}

fn creates(calls: &[Value]) -> usize {
    calls
        .iter()
        .filter(|c| c["method"] == "POST" && c["path"].as_str().is_some_and(|p| p.ends_with("/inquiries")))
        .count()
}

fn id(answer: &Value) -> String {
    answer["inquiry_id"].as_str().expect("inquiry_id").to_owned()
}

fn id_of(inquiry: &Value) -> String {
    inquiry["id"].as_str().expect("id").to_owned()
}

// ===== get-or-create across replicas =====

#[tokio::test]
async fn two_hundred_calls_across_two_replicas_make_one_inquiry() {
    let Some(redis) = Redis::start().await else { return };
    // Latency makes the race certain: without the lock both replicas look up "nothing" first.
    let emulator = Emulator::start("latency = \"50ms\"").await;
    let upstream = echo_upstream().await;
    let config = persona_config(upstream, &emulator, &redis_store(&redis.url(), "deny"));
    let replicas = Arc::new([TestGateway::start(&config).await, TestGateway::start(&config).await]);
    let http = client();
    let user = "usr_two_replicas";
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let (replicas, http) = (replicas.clone(), http.clone());
            tokio::spawn(async move { call(&http, &replicas[i % 2], user).await })
        })
        .collect();
    let mut ids = Vec::new();
    for c in calls {
        let (status, _, answer) = c.await.expect("join");
        assert_eq!(status, 200, "{answer}");
        ids.push(id(&answer));
    }
    let inquiries: Vec<String> = emulator.inquiries_of(user).await.iter().map(id_of).collect();
    assert_eq!(inquiries.len(), 1, "exactly one inquiry: {inquiries:?}");
    let only = &inquiries[0];
    assert!(ids.iter().all(|i| i == only), "all 200 got its id");
    assert_eq!(creates(&emulator.calls().await), 1, "one create call");
}

#[tokio::test]
async fn a_redis_outage_follows_on_store_error_for_the_lock() {
    let Some(mut redis) = Redis::start().await else { return };
    let emulator = Emulator::start("latency = \"0ms\"").await;
    let upstream = echo_upstream().await;
    let allow = TestGateway::start(&persona_config(
        upstream,
        &emulator,
        &redis_store(&redis.url(), "allow"),
    ))
    .await;
    let deny = TestGateway::start(&persona_config(upstream, &emulator, &redis_store(&redis.url(), "deny"))).await;
    redis.kill().await;
    let http = client();
    let (status, retry_after, body) = call(&http, &deny, "usr_outage_deny").await;
    assert_eq!((status, retry_after), (503, Some(1)), "{body}");
    assert_eq!(body["error"]["code"], "inquiry_lock_unavailable");
    assert!(emulator.calls().await.is_empty(), "deny: Persona was not asked");
    let (status, retry_after, body) = call(&http, &allow, "usr_outage_allow").await;
    assert_eq!(
        (status, retry_after),
        (503, Some(1)),
        "allow: runs without the lock, which may not create: {body}"
    );
    assert_eq!(body["error"]["code"], "inquiry_lock_unavailable");
    assert_eq!(creates(&emulator.calls().await), 0, "allow: nothing was created");
}

/// Regression (scripts/chaos.sh, case 1): with Redis down and `allow`, two replicas ran the rounds
/// of one new user unlocked at the same time, both found no inquiry and both created one. An
/// unlocked round now hands out what it finds and never creates.
#[tokio::test]
async fn without_the_lock_a_round_creates_nothing_and_returning_users_are_served() {
    let Some(mut redis) = Redis::start().await else { return };
    let emulator = Emulator::start("latency = \"50ms\"").await;
    let upstream = echo_upstream().await;
    let config = persona_config(upstream, &emulator, &redis_store(&redis.url(), "allow"));
    let replicas = Arc::new([TestGateway::start(&config).await, TestGateway::start(&config).await]);
    let http = client();
    let (status, _, before) = call(&http, &replicas[0], "usr_returning").await;
    assert_eq!(status, 200, "{before}");
    redis.kill().await;
    emulator.clear_calls().await;
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let (replicas, http) = (replicas.clone(), http.clone());
            let user = if i % 2 == 0 {
                "usr_new_in_outage"
            } else {
                "usr_returning"
            };
            tokio::spawn(async move { (user, call(&http, &replicas[i % 2], user).await) })
        })
        .collect();
    for c in calls {
        let (user, (status, retry_after, body)) = c.await.expect("join");
        if user == "usr_returning" {
            assert_eq!(status, 200, "a returning user is served: {body}");
            assert_eq!(id(&body), id(&before), "with the inquiry it has");
        } else {
            assert_eq!((status, retry_after), (503, Some(1)), "{body}");
            assert_eq!(body["error"]["code"], "inquiry_lock_unavailable");
        }
    }
    assert_eq!(
        creates(&emulator.calls().await),
        0,
        "nothing was created without the lock"
    );
    assert!(emulator.inquiries_of("usr_new_in_outage").await.is_empty());
}

// ===== the outbound Persona budget =====

/// Budget windows reset on the minute (on the wall clock, like Persona's), so a storm that
/// straddled a reset would get two budgets. Start one well inside a minute.
async fn clear_of_a_minute_edge() {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        % 60_000;
    let left = 60_000 - u64::try_from(into).expect("ms");
    if left < 4_000 {
        tokio::time::sleep(std::time::Duration::from_millis(left + 50)).await;
    }
}

/// `users` distinct new users call get-or-create at once, spread over `replicas`, under a budget
/// of 60 calls a minute. Each admitted round reserves its lookup and its create together, so the
/// budget serves 30 users completely and refuses everyone else before Persona is called: Persona
/// sees at most 60 calls and none of them is wasted on a user who is then refused.
async fn storm_under_budget(replicas: Vec<TestGateway>, emulator: &Emulator, users: usize) {
    let replicas = Arc::new(replicas);
    let http = client();
    clear_of_a_minute_edge().await;
    let calls: Vec<_> = (0..users)
        .map(|i| {
            let (replicas, http) = (replicas.clone(), http.clone());
            tokio::spawn(async move { call(&http, &replicas[i % replicas.len()], &format!("usr_budget_{i}")).await })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for c in calls {
        match c.await.expect("join") {
            (200, _, answer) => {
                assert!(id(&answer).starts_with("inq_"), "{answer}");
                served += 1;
            }
            (503, Some(after), body) => {
                assert_eq!(body["error"]["code"], "persona_budget_exhausted", "{body}");
                assert!((1..=60).contains(&after), "Retry-After {after}");
                refused += 1;
            }
            other => panic!("only 200 or 503 budget_exhausted may come back: {other:?}"),
        }
    }
    let seen = emulator.calls().await.len();
    assert!(seen <= 60, "Persona saw {seen} calls, over the budget of 60");
    assert!(served >= 25, "only {served} users served");
    assert_eq!(
        seen,
        2 * served,
        "every call served someone: a lookup and a create each"
    );
    assert_eq!(served + refused, users);
}

#[tokio::test]
async fn five_hundred_users_at_once_stay_within_the_budget() {
    let emulator = Emulator::start("latency = \"0ms\"").await;
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&persona_config(upstream, &emulator, &budget(60))).await;
    storm_under_budget(vec![gw], &emulator, 500).await;
}

#[tokio::test]
async fn replicas_share_one_budget_through_redis() {
    let Some(redis) = Redis::start().await else { return };
    let emulator = Emulator::start("latency = \"0ms\"").await;
    let upstream = echo_upstream().await;
    let extra = format!("{}{}", redis_store(&redis.url(), "deny"), budget(60));
    let config = persona_config(upstream, &emulator, &extra);
    let replicas = vec![TestGateway::start(&config).await, TestGateway::start(&config).await];
    storm_under_budget(replicas, &emulator, 500).await;
}

/// Under a budget of 5: a new user's round spends 2 calls; that user's next round finds the
/// inquiry with its lookup alone and gives the create's unit back, which is what lets a second new
/// user in (2 + 1 + 2 = 5); a third finds 0 left and is refused without a call. `a` and `b` may be
/// one gateway or two replicas.
async fn unneeded_units_are_refunded(a: &TestGateway, b: &TestGateway, emulator: &Emulator) {
    let http = client();
    clear_of_a_minute_edge().await;
    let (status, _, first) = call(&http, a, "usr_refund_a").await;
    assert_eq!(status, 200, "{first}");
    let (status, _, again) = call(&http, b, "usr_refund_a").await;
    assert_eq!((status, id(&again)), (200, id(&first)), "found by the lookup alone");
    let (status, _, other) = call(&http, a, "usr_refund_b").await;
    assert_eq!(status, 200, "admitted thanks to the refunded unit: {other}");
    assert_eq!(emulator.calls().await.len(), 5);
    let (status, retry_after, body) = call(&http, b, "usr_refund_c").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "persona_budget_exhausted");
    assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)), "{retry_after:?}");
    assert_eq!(emulator.calls().await.len(), 5, "refused before calling Persona");
}

#[tokio::test]
async fn a_round_gives_back_the_call_it_did_not_need() {
    let emulator = Emulator::start("latency = \"0ms\"").await;
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&persona_config(upstream, &emulator, &budget(5))).await;
    unneeded_units_are_refunded(&gw, &gw, &emulator).await;
}

#[tokio::test]
async fn replicas_refund_to_the_shared_budget() {
    let Some(redis) = Redis::start().await else { return };
    let emulator = Emulator::start("latency = \"0ms\"").await;
    let upstream = echo_upstream().await;
    let extra = format!("{}{}", redis_store(&redis.url(), "deny"), budget(5));
    let config = persona_config(upstream, &emulator, &extra);
    let (a, b) = (TestGateway::start(&config).await, TestGateway::start(&config).await);
    unneeded_units_are_refunded(&a, &b, &emulator).await;
}

// ===== webhooks across replicas =====

const SECRET: &str = "wbhsec_replicas_test";
const FORWARD_PATH: &str = "/persona/events";

fn webhook_config(app: SocketAddr, redis: &Redis) -> String {
    base_config(
        app,
        &format!(
            "{}\n[webhook]\nsecrets = [{{ value = \"{SECRET}\" }}]\nforward_path = \"{FORWARD_PATH}\"\nforward_timeout = \"500ms\"\n",
            redis_store(&redis.url(), "deny")
        ),
    )
}

/// A signed delivery of event `id`; returns the status and the receiver's `status` word.
async fn deliver(gw: &TestGateway, id: &str) -> (u16, String) {
    let body = format!(
        r#"{{"data":{{"type":"event","id":"{id}","attributes":{{"name":"inquiry.approved","payload":{{"data":{{"type":"inquiry","id":"inq_1","attributes":{{"status":"approved","reference-id":"user-1"}}}}}}}}}}}}"#
    );
    let t = now();
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = hmac::sign(&key, format!("{t}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let response = client()
        .post(gw.url("/webhooks/persona"))
        .header("content-type", "application/json")
        .header("persona-signature", format!("t={t},v1={hex}"))
        .body(body)
        .send()
        .await
        .expect("delivery");
    let status = response.status().as_u16();
    let answer: Value = response.json().await.expect("json");
    let word = answer["status"]
        .as_str()
        .or(answer["error"]["code"].as_str())
        .unwrap_or_default();
    (status, word.to_owned())
}

/// The requests the app received on the forward path so far. The app reports a request before
/// answering it, and the gateway answers Persona only after the app answered, so nothing is late.
fn forwarded(arrivals: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> usize {
    std::iter::from_fn(|| arrivals.try_recv().ok())
        .filter(|p| p == FORWARD_PATH)
        .count()
}

#[tokio::test]
async fn one_event_delivered_to_two_replicas_is_forwarded_once() {
    let Some(redis) = Redis::start().await else { return };
    let (app, mut arrivals) = echo_upstream_observed().await;
    let config = webhook_config(app, &redis);
    let (a, b) = (TestGateway::start(&config).await, TestGateway::start(&config).await);
    let (first, second) = tokio::join!(deliver(&a, "evt_both"), deliver(&b, "evt_both"));
    let mut outcomes = [first, second];
    outcomes.sort();
    assert_eq!(
        outcomes,
        [(200, "duplicate".to_owned()), (200, "forwarded".to_owned())],
        "one replica forwards, the other sees the duplicate"
    );
    assert_eq!(deliver(&a, "evt_both").await, (200, "duplicate".to_owned()));
    assert_eq!(forwarded(&mut arrivals), 1, "the app got the event once");
}

#[tokio::test]
async fn an_event_one_replica_failed_to_forward_is_forwarded_by_another() {
    let Some(redis) = Redis::start().await else { return };
    let (app, mut arrivals) = echo_upstream_observed().await;
    let (dead_app, _held) = refusing_addr();
    let broken = TestGateway::start(&webhook_config(dead_app, &redis)).await;
    let healthy = TestGateway::start(&webhook_config(app, &redis)).await;
    let (status, _) = deliver(&broken, "evt_retry").await;
    assert_eq!(status, 502, "the app was unreachable, so Persona must retry");
    assert_eq!(
        deliver(&healthy, "evt_retry").await,
        (200, "forwarded".to_owned()),
        "the failed id was forgotten in the shared store"
    );
    assert_eq!(forwarded(&mut arrivals), 1);
}

// ===== the route's own rate limit =====

#[tokio::test]
async fn get_or_create_is_rate_limited_per_user_with_cors_headers() {
    let emulator = Emulator::start("latency = \"0ms\"").await;
    let upstream = echo_upstream().await;
    let policy = format!(
        "\n[[rate_limit.policies]]\nname = \"get-or-create\"\nrate = \"1/m\"\nburst = 1\nkey = \"user\"\nroutes = [\"{ROUTE}\"]\n"
    );
    let gw = TestGateway::start(&persona_config(upstream, &emulator, &policy)).await;
    let send = |user: &str| {
        client()
            .post(gw.url(ROUTE))
            .bearer_auth(user_token(user))
            .header("origin", ORIGIN)
            .send()
    };
    assert_eq!(send("usr_limited").await.expect("call").status(), 200);
    let persona_calls = emulator.calls().await.len();
    let refused = send("usr_limited").await.expect("call");
    assert_eq!(refused.status(), 429);
    let headers = refused.headers();
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        headers["access-control-allow-origin"], ORIGIN,
        "the page can read the 429"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["ratelimit-policy"], "\"get-or-create\";q=1;w=60");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(emulator.calls().await.len(), persona_calls, "refused before Persona");
    assert_eq!(send("usr_other").await.expect("call").status(), 200, "per user");
}
