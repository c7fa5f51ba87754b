//! Rate-limit benchmark driver (run by `scripts/bench-ratelimit.sh`, not a test): decisions per
//! second of the memory backend, added latency per decision of the Redis backend (when
//! `REDIS_URL` is set), and resident memory per million tracked keys before and after eviction.

use std::time::{Duration, Instant};

use governor::clock::FakeRelativeClock;
use persona_gate::auth::Identity;
use persona_gate::config::{PolicyConfig, PolicyKey, TokenSource};
use persona_gate::ratelimit::{MemoryLimiter, RateLimiter, RequestFacts};
use persona_gate::store::Store;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    memory_decisions();
    runtime.block_on(gateway_path_decisions());
    memory_per_million_keys();
    if let Ok(url) = std::env::var("REDIS_URL") {
        runtime.block_on(redis_latency(&url));
    } else {
        println!("redis: skipped (REDIS_URL not set)");
    }
}

fn policy(rate: &str, burst: u32) -> String {
    format!("[[rate_limit.policies]]\nname = \"bench\"\nrate = \"{rate}\"\nburst = {burst}\nkey = \"user\"\n")
}

fn config(extra: &str) -> persona_gate::config::Config {
    let text = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nsources = [\"header\"]\n\
         [[auth.keys]]\nalgorithms = [\"HS256\"]\nsecret = {{ value = \"bench-secret-0123456789abcdef0123\" }}\n{extra}"
    );
    persona_gate::config::parse(&text, std::path::Path::new("bench.toml")).expect("bench config")
}

fn raw_policy() -> PolicyConfig {
    PolicyConfig {
        name: "bench".into(),
        requests: 1000,
        period: Duration::from_secs(1),
        burst: 1000,
        key: PolicyKey::User,
        routes: vec![persona_gate::target::PathPrefix::root()],
        headers: true,
    }
}

/// The governor limiter alone, 10,000 hot keys.
fn memory_decisions() {
    let limiter = MemoryLimiter::new(&raw_policy());
    let n = 5_000_000u64;
    let started = Instant::now();
    let mut allowed = 0u64;
    for i in 0..n {
        allowed += u64::from(limiter.check(i % 10_000).allowed);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "memory backend, limiter alone: {:.1} M decisions/s ({:.0} ns each; {allowed} allowed)",
        n as f64 / secs / 1e6,
        secs * 1e9 / n as f64
    );
}

/// What the gateway phase does per request: route match, key, hash, decision, header fields.
async fn gateway_path_decisions() {
    let config = config(&policy("1000/s", 1000));
    let store = Store::new(&config.store).expect("store");
    let limiter = RateLimiter::new(&config.rate_limit, &store);
    let users: Vec<Identity> = (0..10_000).map(identity).collect();
    let headers = http::HeaderMap::new();
    let n = 2_000_000usize;
    let started = Instant::now();
    for i in 0..n {
        let facts = RequestFacts {
            path: "/api/things",
            peer: [127, 0, 0, 1].into(),
            headers: &headers,
            identity: Some(&users[i % users.len()]),
        };
        let _ = limiter.check(&facts).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "memory backend, full gateway phase: {:.2} M decisions/s ({:.0} ns each)",
        n as f64 / secs / 1e6,
        secs * 1e9 / n as f64
    );
}

fn identity(i: usize) -> Identity {
    Identity::new(format!("user-{i:08}"), serde_json::Map::new(), TokenSource::Header)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// One million distinct keys through one policy (5/m, burst 2), then eviction once they refilled.
fn memory_per_million_keys() {
    let clock = FakeRelativeClock::default();
    let mut p = raw_policy();
    p.requests = 5;
    p.period = Duration::from_secs(60);
    p.burst = 2;
    let limiter = MemoryLimiter::with_clock(&p, clock.clone());
    let before = rss_mib();
    for key in 0..1_000_000u64 {
        limiter.check(key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    let tracked = rss_mib();
    println!(
        "memory backend: 1,000,000 tracked keys = {} entries, RSS +{:.1} MiB ({:.0} bytes/key)",
        limiter.len(),
        tracked - before,
        (tracked - before) * 1024.0 * 1024.0 / 1e6
    );
    // governor keeps a key until one emission interval after its TAT (12 s + 12 s here).
    clock.advance(Duration::from_secs(25));
    limiter.evict();
    println!(
        "memory backend: after eviction {} entries, RSS +{:.1} MiB over the start",
        limiter.len(),
        rss_mib() - before
    );
}

/// Sequential decisions through the Redis script: the latency a request pays for the shared limit.
async fn redis_latency(url: &str) {
    let config = config(&format!(
        "[store]\nbackend = \"redis\"\nredis_url = \"{url}\"\ntimeout = \"1s\"\n{}",
        policy("1000/s", 1000)
    ));
    let store = Store::new(&config.store).expect("store");
    let limiter = RateLimiter::new(&config.rate_limit, &store);
    let users: Vec<Identity> = (0..1000).map(identity).collect();
    let headers = http::HeaderMap::new();
    let mut samples = Vec::with_capacity(20_000);
    for i in 0..21_000usize {
        let facts = RequestFacts {
            path: "/api/things",
            peer: [127, 0, 0, 1].into(),
            headers: &headers,
            identity: Some(&users[i % users.len()]),
        };
        let started = Instant::now();
        let _ = limiter.check(&facts).await;
        if i >= 1000 {
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    let pct = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    println!(
        "redis backend (loopback, sequential): p50 {:.0} us, p99 {:.0} us, max {:.0} us per decision; store healthy: {}",
        pct(0.50),
        pct(0.99),
        pct(1.0),
        store.healthy()
    );
}
