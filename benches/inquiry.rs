//! Get-or-create under load, in-process: the embedded emulator answering after 50 ms, a gateway
//! in front of it, and a client driving the route over loopback. Prints calls/s, p50/p99 and
//! Persona calls per get-or-create for 2,000 distinct users (first call: create; second call:
//! the created one) and for one hot user. A benchmark, not a test: it asserts nothing.
//! Run with `scripts/bench-inquiry.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

const SECRET: &str = "bench-hs256-secret-0123456789abcdef0123";
const LATENCY_MS: u64 = 50;
const USERS: usize = 2_000;
const HOT_CALLS: usize = 2_000;
/// Concurrent clients; `BENCH_CONCURRENCY` overrides it (a low value shows the added latency
/// without queueing, a high one the throughput).
fn concurrency() -> usize {
    std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(200)
}

#[tokio::main]
async fn main() {
    let concurrency = concurrency();
    // Persona's latency, not its 300/min rate limit: the benchmark measures what the gateway adds,
    // and thousands of users in a few seconds would otherwise meet the emulator's 429s.
    let emulator_only = parse(&base_config(
        "[emulator]\nlisten = \"127.0.0.1:0\"\nrate_limit = 1000000000\n",
    ));
    let emulator = persona_gate::emulator::Emulator::bind(emulator_only.emulator.as_ref().expect("[emulator]"))
        .await
        .expect("emulator");
    let control = format!("http://{}/_emulator", emulator.addr());
    let persona = format!(
        "[persona]\nbase_url = \"{}\"\napi_key = {{ value = \"{}\" }}\ntemplate_id = \"itmpl_emulator_kyc\"\n\
         timeout = \"10s\"\ndeadline = \"30s\"\n",
        emulator.base_url(),
        emulator.api_key().expose()
    );
    emulator.spawn(std::future::pending::<()>());
    let bound = persona_gate::bind(parse(&base_config(&persona)))
        .await
        .expect("gateway binds");
    let url = format!(
        "http://{}/api/inquiries/get-or-create",
        bound.http_addr().expect("http")
    );
    tokio::spawn(bound.serve(std::future::pending::<()>()));

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    http.put(format!("{control}/latency"))
        .json(&json!({ "ms": LATENCY_MS }))
        .send()
        .await
        .expect("set latency");

    let users: Vec<String> = (0..USERS).map(|i| format!("bench_user_{i}")).collect();
    println!("emulator latency {LATENCY_MS} ms per Persona call, {concurrency} concurrent clients");
    run(&http, &url, &control, "2000 users, first call (create)", &users).await;
    run(&http, &url, &control, "2000 users, second call (created)", &users).await;
    let hot = vec!["bench_hot_user".to_owned(); HOT_CALLS];
    run(&http, &url, &control, "1 hot user, 2000 calls", &hot).await;
}

async fn run(http: &reqwest::Client, url: &str, control: &str, label: &str, users: &[String]) {
    http.delete(format!("{control}/calls"))
        .send()
        .await
        .expect("clear calls");
    let limit = Arc::new(Semaphore::new(concurrency()));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(users.len());
    for user in users {
        let (http, url, limit) = (http.clone(), url.to_owned(), limit.clone());
        let token = token(user);
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore");
            let t = Instant::now();
            let ok = http
                .post(&url)
                .bearer_auth(token)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (t.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failures = 0;
    for task in tasks {
        let (latency, ok) = task.await.expect("join");
        latencies.push(latency);
        failures += usize::from(!ok);
    }
    let elapsed = started.elapsed();
    let calls: Value = http
        .get(format!("{control}/calls"))
        .send()
        .await
        .expect("calls")
        .json()
        .await
        .expect("calls json");
    let persona_calls = calls["calls"].as_array().map_or(0, Vec::len);
    latencies.sort();
    let n = latencies.len();
    let per_request = persona_calls as f64 / n as f64;
    let p50 = pct(&latencies, 50.0);
    let own = Duration::from_millis(LATENCY_MS).mul_f64(per_request.max(0.0));
    println!(
        "{label}: {n} calls in {:.2}s = {:.0} calls/s, p50 {:.1} ms, p99 {:.1} ms, {failures} failed, \
         {persona_calls} Persona calls = {per_request:.3} per get-or-create (p50 minus emulator time ~{:.1} ms)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        ms(p50),
        ms(pct(&latencies, 99.0)),
        ms(p50.saturating_sub(own)),
    );
}

fn base_config(extra: &str) -> String {
    format!(
        r#"
[server]
http = "127.0.0.1:0"
[limits]
max_connections = 100000
[upstream]
url = "http://127.0.0.1:9"
[auth]
sources = ["header"]
[[auth.keys]]
algorithms = ["HS256"]
secret = {{ value = "{SECRET}" }}
[log]
level = "warn"
{extra}
"#
    )
}

fn parse(text: &str) -> persona_gate::config::Config {
    persona_gate::config::parse(text, std::path::Path::new("bench.toml")).expect("bench config")
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn token(user: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = json!({ "sub": user, "iat": now, "exp": now + 3600 });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &key,
    )
    .expect("token")
}
