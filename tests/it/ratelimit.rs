//! Rate limits and the shared store, over real sockets: the memory backend in one gateway, the
//! Redis backend shared by two gateways (each Redis test starts its own `redis-server` on a free
//! port), Redis outages, and the store's locks, dedupe keys and budget across two instances.

use std::time::{Duration, Instant};

use persona_gate::auth::Identity;
use persona_gate::config::TokenSource;
use persona_gate::ratelimit::{RateLimiter, RequestFacts};
use persona_gate::store::Store;
use serde_json::{Map, Value, json};

use super::common::*;

// ===== harness =====

fn anon_policy(rate: &str, burst: u32, headers: bool) -> String {
    format!(
        r#"
[[rate_limit.policies]]
name = "anon"
rate = "{rate}"
burst = {burst}
key = "ip"
routes = ["/public/"]
headers = {headers}
"#
    )
}

async fn get(url: &str, xff: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.expect("request")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn assert_limited(r: reqwest::Response) -> reqwest::Response {
    assert_eq!(r.status(), 429);
    assert!(header(&r, "retry-after").is_some());
    assert!(header(&r, "ratelimit").is_some() && header(&r, "ratelimit-policy").is_some());
    r
}

/// Polls `/readyz` until its store check reads `want` (the store's probe runs every second).
async fn wait_store_check(gw: &TestGateway, want: bool) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(&gw.url("/readyz"), None).await;
        let status = r.status();
        let body: Value = r.json().await.expect("readyz json");
        if body["checks"]["store"] == json!(want) {
            return get(&gw.url("/readyz"), None).await;
        }
        assert!(Instant::now() < deadline, "store check stayed {body} (status {status})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two stores on one Redis, as two replicas would have.
fn two_stores(url: &str) -> (Store, Store) {
    let config = persona_gate::config::parse(
        &base_config("127.0.0.1:9".parse().expect("addr"), &redis_store(url, "allow")),
        &repo_path("test-config.toml"),
    )
    .expect("config");
    let a = Store::new(&config.store).expect("store a");
    let b = Store::new(&config.store).expect("store b");
    (a, b)
}

fn identity(user: &str, claims: Value) -> Identity {
    let claims: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
    Identity::new(user.into(), claims, TokenSource::Header)
}

// ===== memory backend, through the gateway =====

#[tokio::test]
async fn burst_then_429_with_retry_after_and_fields() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, &anon_policy("1/m", 2, true))).await;
    let first = get(&gw.url("/public/a"), None).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "ratelimit-policy"), Some("\"anon\";q=1;w=60"));
    assert_eq!(header(&first, "ratelimit"), Some("\"anon\";r=1;t=60"));
    assert_eq!(get(&gw.url("/public/a"), None).await.status(), 200);
    let refused = assert_limited(get(&gw.url("/public/a"), None).await).await;
    let retry: u64 = header(&refused, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("seconds");
    assert!((59..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(
        header(&refused, "ratelimit"),
        Some(format!("\"anon\";r=0;t={retry}").as_str())
    );
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    // Paths outside the policy's routes are not counted.
    assert_eq!(get(&gw.url("/healthz"), None).await.status(), 200);
}

#[tokio::test]
async fn refills_at_the_configured_rate() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, &anon_policy("10/s", 2, false))).await;
    let http = client();
    let send = || http.get(gw.url("/public/a")).send();
    // The burst goes through, then the limit bites (the loop allows for a slow machine).
    let mut before_refusal = 0;
    let refused = loop {
        let r = send().await.expect("request");
        if r.status() != 200 {
            break r;
        }
        assert!(
            header(&r, "ratelimit").is_none(),
            "headers = false on allowed responses"
        );
        before_refusal += 1;
        assert!(before_refusal < 50, "never limited");
    };
    assert!(before_refusal >= 2, "the burst of 2 went through");
    let refused = assert_limited(refused).await;
    assert_eq!(header(&refused, "retry-after"), Some("1"));
    // One request is earned back every 100 ms: over one second, about 10 get through.
    let started = Instant::now();
    let mut allowed = 0;
    while started.elapsed() < Duration::from_secs(1) {
        if send().await.expect("request").status() == 200 {
            allowed += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!((8..=12).contains(&allowed), "{allowed} allowed in one second at 10/s");
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, &anon_policy("1/m", 1, false))).await;
    assert_eq!(get(&gw.url("/public/a"), Some("198.51.100.1")).await.status(), 200);
    assert_limited(get(&gw.url("/public/a"), Some("198.51.100.2")).await).await;
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let upstream = echo_upstream().await;
    let extra = format!(
        "[rate_limit]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{}",
        anon_policy("1/m", 1, false)
    );
    let gw = TestGateway::start(&base_config(upstream, &extra)).await;
    assert_eq!(get(&gw.url("/public/a"), Some("198.51.100.1")).await.status(), 200);
    assert_eq!(get(&gw.url("/public/a"), Some("198.51.100.2")).await.status(), 200);
    // The client cannot escape by prepending its own entries: the right-most untrusted one counts.
    assert_limited(get(&gw.url("/public/a"), Some("203.0.113.5, 198.51.100.1")).await).await;
}

#[tokio::test]
async fn authenticated_requests_are_counted_per_user() {
    let upstream = echo_upstream().await;
    let extra = r#"
[[rate_limit.policies]]
name = "per-user"
rate = "1/m"
burst = 1
key = "user"
headers = true
"#;
    let gw = TestGateway::start(&base_config(upstream, extra)).await;
    let url = gw.url("/api/thing");
    let call = |user: &'static str| get_as(&url, user);
    assert_eq!(call("alice").await.status(), 200);
    assert_limited(call("alice").await).await;
    assert_eq!(call("bob").await.status(), 200);
}

// ===== the limiter's decisions, without auth in the way =====

#[tokio::test]
async fn users_and_claims_are_isolated_and_anonymous_requests_use_ip_policies() {
    let config = persona_gate::config::parse(
        &base_config(
            "127.0.0.1:9".parse().expect("addr"),
            r#"
[[rate_limit.policies]]
name = "user"
rate = "1/m"
burst = 1
key = "user"
routes = ["/api/"]

[[rate_limit.policies]]
name = "tenant"
rate = "4/m"
burst = 4
key = "claim:tenant"
routes = ["/api/"]

[[rate_limit.policies]]
name = "anon"
rate = "1/m"
burst = 1
key = "ip"
routes = ["/"]
"#,
        ),
        &repo_path("test-config.toml"),
    )
    .expect("config");
    let store = Store::new(&config.store).expect("store");
    let limiter = RateLimiter::new(&config.rate_limit, &store);
    let headers = http::HeaderMap::new();
    let facts = |identity, peer: &str| RequestFacts {
        path: "/api/x",
        peer: peer.parse().expect("ip"),
        headers: &headers,
        identity,
    };
    let alice = identity("alice", json!({ "tenant": "acme" }));
    let bob = identity("bob", json!({ "tenant": "acme" }));
    let carol = identity("carol", json!({ "tenant": "acme" }));
    let dave = identity("dave", json!({ "tenant": "acme" }));
    assert!(limiter.check(&facts(Some(&alice), "10.0.0.1")).await.is_ok());
    assert!(
        limiter.check(&facts(Some(&alice), "10.0.0.1")).await.is_err(),
        "alice limited"
    );
    assert!(
        limiter.check(&facts(Some(&bob), "10.0.0.1")).await.is_ok(),
        "bob is not alice"
    );
    assert!(limiter.check(&facts(Some(&carol), "10.0.0.1")).await.is_ok());
    // Every matching policy counts a request, so alice's refused one used one of acme's 4.
    assert!(
        limiter.check(&facts(Some(&dave), "10.0.0.1")).await.is_err(),
        "tenant limited"
    );
    // The ip policy ignores authenticated requests but counts anonymous ones.
    assert!(limiter.check(&facts(None, "10.0.0.1")).await.is_ok());
    assert!(limiter.check(&facts(None, "10.0.0.1")).await.is_err());
    assert!(limiter.check(&facts(None, "10.0.0.2")).await.is_ok());
}

// ===== redis backend =====

#[tokio::test]
async fn two_gateways_on_one_redis_share_the_limit() {
    let Some(redis) = Redis::start().await else { return };
    let upstream = echo_upstream().await;
    let config = base_config(
        upstream,
        &format!("{}{}", redis_store(&redis.url(), "deny"), anon_policy("5/m", 5, true)),
    );
    let (a, b) = (TestGateway::start(&config).await, TestGateway::start(&config).await);
    let mut allowed = 0;
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = get(&gw.url("/public/x"), None).await;
        match r.status().as_u16() {
            200 => allowed += 1,
            429 => {
                assert_limited(r).await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(allowed, 5, "both replicas together allow the configured 5, not 10");
}

#[tokio::test]
async fn redis_outage_with_allow_lets_traffic_through_and_recovers() {
    let Some(mut redis) = Redis::start().await else { return };
    let upstream = echo_upstream().await;
    let config = base_config(
        upstream,
        &format!("{}{}", redis_store(&redis.url(), "allow"), anon_policy("1/m", 1, false)),
    );
    let gw = TestGateway::start(&config).await;
    assert_eq!(get(&gw.url("/public/x"), None).await.status(), 200);
    assert_limited(get(&gw.url("/public/x"), None).await).await;

    redis.kill().await;
    for _ in 0..5 {
        assert_eq!(
            get(&gw.url("/public/x"), None).await.status(),
            200,
            "allowed while Redis is down"
        );
    }
    let ready = wait_store_check(&gw, false).await;
    assert_eq!(ready.status(), 200, "with allow the gateway stays ready, degraded");

    redis.restart().await;
    wait_store_check(&gw, true).await;
    // A fresh Redis starts with empty cells: the limit applies again from scratch.
    assert_eq!(get(&gw.url("/public/x"), None).await.status(), 200);
    assert_limited(get(&gw.url("/public/x"), None).await).await;
}

#[tokio::test]
async fn redis_outage_with_deny_refuses_and_recovers() {
    let Some(mut redis) = Redis::start().await else { return };
    let upstream = echo_upstream().await;
    let config = base_config(
        upstream,
        &format!(
            "{}{}",
            redis_store(&redis.url(), "deny"),
            anon_policy("100/s", 100, false)
        ),
    );
    let gw = TestGateway::start(&config).await;
    assert_eq!(get(&gw.url("/public/x"), None).await.status(), 200);

    redis.kill().await;
    let refused = get(&gw.url("/public/x"), None).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after"), Some("1"));
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limit_unavailable");
    assert_eq!(
        wait_store_check(&gw, false).await.status(),
        503,
        "deny makes the gateway unready"
    );

    redis.restart().await;
    assert_eq!(wait_store_check(&gw, true).await.status(), 200);
    assert_eq!(get(&gw.url("/public/x"), None).await.status(), 200);
}

// ===== the store's primitives, across two instances =====

async fn lock_contract(a: &Store, b: &Store) {
    let ttl = Duration::from_secs(30);
    let token = a.lock("user-1", ttl).await.expect("store").expect("a wins");
    assert!(
        b.lock("user-1", ttl).await.expect("store").is_none(),
        "b loses while a holds it"
    );
    let other = b
        .lock("user-2", ttl)
        .await
        .expect("store")
        .expect("another key is free");
    assert!(
        !b.unlock("user-1", &other).await.expect("store"),
        "only the owner unlocks"
    );
    assert!(b.lock("user-1", ttl).await.expect("store").is_none());
    assert!(a.unlock("user-1", &token).await.expect("store"));
    assert!(
        b.lock("user-1", ttl).await.expect("store").is_some(),
        "free after unlock"
    );

    let short = Duration::from_millis(150);
    let stale = a.lock("user-3", short).await.expect("store").expect("a wins");
    assert!(b.lock("user-3", short).await.expect("store").is_none());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let fresh = b.lock("user-3", ttl).await.expect("store").expect("expiry frees it");
    assert!(
        !a.unlock("user-3", &stale).await.expect("store"),
        "a's expired lock cannot free b's"
    );
    assert!(b.unlock("user-3", &fresh).await.expect("store"));
}

async fn once_contract(a: &Store, b: &Store) {
    let ttl = Duration::from_secs(30);
    assert!(a.once("evt_1", ttl).await.expect("store"));
    assert!(!b.once("evt_1", ttl).await.expect("store"), "seen by a");
    assert!(!a.once("evt_1", ttl).await.expect("store"));
    b.forget("evt_1").await.expect("store");
    assert!(b.once("evt_1", ttl).await.expect("store"), "forgotten");
    b.put("inq:alice", "approved", ttl).await.expect("store");
    assert_eq!(a.get("inq:alice").await.expect("store").as_deref(), Some("approved"));
    assert_eq!(a.get("inq:bob").await.expect("store"), None);
}

/// Take-N is all or nothing and shared by both instances, and a refund (from either) gives units
/// back to the window they came from.
async fn budget_contract(a: &Store, b: &Store) {
    let hour = Duration::from_secs(3600);
    let mut first = a.budget_take("persona", 2, 5, hour).await.expect("2 of 5");
    if first.remaining() < Duration::from_secs(5) {
        // Too close to the window's end for the checks below to share one window.
        tokio::time::sleep(first.remaining()).await;
        first = a.budget_take("persona", 2, 5, hour).await.expect("2 of 5, next window");
    }
    let second = b.budget_take("persona", 2, 5, hour).await.expect("4 of 5");
    assert_eq!(second.window(), first.window(), "one window, whichever instance asks");
    let wait = a
        .budget_take("persona", 2, 5, hour)
        .await
        .expect_err("2 more do not fit");
    assert!(
        wait > Duration::ZERO && wait <= first.remaining(),
        "until the window ends: {wait:?}"
    );
    b.budget_refund("persona", &first, 2).await.expect("refund");
    assert!(
        a.budget_take("persona", 3, 5, hour).await.is_ok(),
        "2 refunded and 1 never taken"
    );
    assert!(
        b.budget_take("persona", 1, 5, hour).await.is_err(),
        "all 5 used, not 5 each"
    );
}

/// A new window starts full, and a refund that arrives after its window ended adds nothing to
/// the next one.
async fn budget_window_contract(a: &Store, b: &Store) {
    let window = Duration::from_millis(300);
    let old = a.budget_take("edge", 3, 3, window).await.expect("fills its window");
    tokio::time::sleep(old.remaining()).await;
    let new = b
        .budget_take("edge", 3, 3, window)
        .await
        .expect("the next window starts full");
    assert!(new.window() > old.window());
    a.budget_refund("edge", &old, 3).await.expect("refund");
    // Refused is right; granted only if yet another window began meanwhile.
    if let Ok(late) = b.budget_take("edge", 1, 3, window).await {
        assert!(
            late.window() > new.window(),
            "the late refund re-opened the next window"
        );
    }
}

#[tokio::test]
async fn redis_store_locks_dedupe_and_budget_across_instances() {
    let Some(redis) = Redis::start().await else { return };
    let (a, b) = two_stores(&redis.url());
    lock_contract(&a, &b).await;
    once_contract(&a, &b).await;
    budget_contract(&a, &b).await;
    budget_window_contract(&a, &b).await;
    assert!(a.healthy() && b.healthy());
}

#[tokio::test]
async fn memory_store_keeps_the_same_contract_in_one_process() {
    let a = Store::Memory(persona_gate::store::MemoryStore::new(1000));
    let b = a.clone();
    lock_contract(&a, &b).await;
    once_contract(&a, &b).await;
    budget_contract(&a, &b).await;
    budget_window_contract(&a, &b).await;
}

#[tokio::test]
async fn redis_budget_falls_back_to_this_process_while_redis_is_down() {
    let Some(mut redis) = Redis::start().await else { return };
    let (a, _) = two_stores(&redis.url());
    redis.kill().await;
    // A day-long window, so that these few calls (each waiting out a Redis timeout first) share it.
    let window = Duration::from_secs(86_400);
    let grant = a.budget_take("persona", 1, 2, window).await.expect("local budget");
    assert!(a.budget_take("persona", 1, 2, window).await.is_ok());
    assert!(
        a.budget_take("persona", 1, 2, window).await.is_err(),
        "the local budget still holds"
    );
    a.budget_refund("persona", &grant, 1)
        .await
        .expect("refunds go to the local budget too");
    assert!(a.budget_take("persona", 1, 2, window).await.is_ok());
    assert!(a.lock("k", window).await.is_err(), "other calls report the outage");
    assert!(!a.healthy());
}
