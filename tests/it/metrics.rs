//! `GET /metrics` on the admin listener after a scripted mix of traffic shows exactly what was
//! sent. The recorder is process-global and other tests share this process, so the gateway under
//! test is the real binary, run as a child process with its own config file.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::common::*;

const WEBHOOK_SECRET: &str = "wbhsec_metrics_test";
const GET_OR_CREATE: &str = "/api/inquiries/get-or-create";

/// The counter families whose every series the test accounts for.
const COUNTERS: [&str; 10] = [
    "persona_gate_requests_total",
    "persona_gate_auth_failures_total",
    "persona_gate_rate_limit_decisions_total",
    "persona_gate_persona_calls_total",
    "persona_gate_get_or_create_total",
    "persona_gate_single_flight_joins_total",
    "persona_gate_webhooks_total",
    "persona_gate_jwks_refreshes_total",
    "persona_gate_store_errors_total",
    "persona_gate_config_reloads_total",
];

/// The gateway binary, killed when the test ends, whether it passed or panicked.
struct Gateway {
    process: GatewayProcess,
    http: SocketAddr,
    admin: SocketAddr,
    file: ConfigFile,
}

impl Gateway {
    async fn start(upstream: SocketAddr) -> Gateway {
        let file = ConfigFile::new(&config(upstream));
        // `info` for the lines that report the listeners' addresses.
        let process = GatewayProcess::start(&file.path, "info").await;
        let (http, admin) = (process.http, process.admin.expect("admin listener"));
        Gateway {
            process,
            http,
            admin,
            file,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    async fn scrape(&self) -> Scrape {
        let response = plain_client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200);
        Scrape::parse(&response.text().await.expect("metrics text"))
    }
}

fn config(upstream: SocketAddr) -> String {
    format!(
        r#"
[server]
http = "127.0.0.1:0"

[log]
level = "error"

[admin]
listen = "127.0.0.1:0"

[upstream]
url = "http://{upstream}"
connect_timeout = "1s"

[auth]
sources = ["header"]

[[auth.keys]]
algorithms = ["HS256"]
secret = {{ value = "{HS_SECRET}" }}

[[rate_limit.policies]]
name = "tight"
rate = "1/h"
burst = 1
key = "user"
routes = ["/limited/"]

[webhook]
secrets = [{{ value = "{WEBHOOK_SECRET}" }}]
forward_path = "/persona/events"
events = ["inquiry.approved"]

# The emulator sends no events of its own, so every delivery the gateway sees is the test's.
[emulator]
listen = "127.0.0.1:0"
webhook_events = []

[persona]
use_emulator = true
template_id = "itmpl_emulator_kyc"
"#
    )
}

/// No pooling: every request has its own connection, so the connection gauge settles at zero.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Polls `/readyz` until it answers 200 and returns how often each status was answered, since
/// every answer is a request the metrics count.
async fn wait_ready(gw: &mut Gateway) -> HashMap<u16, u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answers = HashMap::new();
    loop {
        if let Ok(response) = plain_client().get(gw.url("/readyz")).send().await {
            let status = response.status().as_u16();
            *answers.entry(status).or_default() += 1;
            if status == 200 {
                return answers;
            }
        }
        let exited = gw.process.exited();
        assert!(
            exited.is_none(),
            "persona-gate exited ({exited:?}); its stderr says why"
        );
        assert!(Instant::now() < deadline, "persona-gate did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(path: &str, gw: &Gateway, token: Option<&str>) -> u16 {
    let mut request = plain_client().get(gw.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request").status().as_u16()
}

async fn get_or_create(gw: &Gateway, user: &str) -> serde_json::Value {
    let response = plain_client()
        .post(gw.url(GET_OR_CREATE))
        .bearer_auth(user_token(user))
        .send()
        .await
        .expect("get-or-create");
    assert_eq!(response.status(), 200);
    response.json().await.expect("answer")
}

fn event(id: &str, name: &str) -> String {
    json!({ "data": { "type": "event", "id": id, "attributes": {
        "name": name,
        "payload": { "data": { "type": "inquiry", "id": format!("inq_{id}"),
            "attributes": { "status": "approved", "reference-id": "usr_metrics" } } },
    } } })
    .to_string()
}

async fn deliver(gw: &Gateway, body: &str, secret: &str) -> u16 {
    plain_client()
        .post(gw.url("/webhooks/persona"))
        .header("content-type", "application/json")
        .header(
            "persona-signature",
            super::webhook::signature(secret, now(), body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .expect("delivery")
        .status()
        .as_u16()
}

/// One scrape: every sample by series, labels in a canonical (sorted) order.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((canonical(series), value.parse().ok()?))
            })
            .collect();
        Scrape(samples)
    }

    /// The sample's value; 0 for a series never recorded (Prometheus reads absent as nothing
    /// happened, and so do these assertions).
    fn value(&self, series: &str) -> f64 {
        self.0.get(&canonical(series)).copied().unwrap_or(0.0)
    }

    fn assert(&self, expected: &[(&str, f64)]) {
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(series, want)| self.value(series) != *want)
            .map(|(series, want)| format!("{series}: want {want}, got {}", self.value(series)))
            .collect();
        assert!(wrong.is_empty(), "unexpected metrics:\n{}", wrong.join("\n"));
    }
}

/// `name{b="2",a="1"}` -> `name{a="1",b="2"}`; label values here never hold commas or quotes.
fn canonical(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_owned();
    };
    let labels: BTreeMap<&str, &str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Polls the scrape until no traffic connection is open (closed connections end their tasks a
/// moment after the client sees the answer).
async fn scrape_when_idle(gw: &Gateway) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let scrape = gw.scrape().await;
        if scrape.value("persona_gate_connections_in_flight") == 0.0 {
            return scrape;
        }
        assert!(Instant::now() < deadline, "connections never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_count_a_scripted_mix_of_traffic_exactly() {
    let upstream = echo_upstream().await;
    let mut gw = Gateway::start(upstream).await;
    let readyz = wait_ready(&mut gw).await;

    let alice = user_token("usr_alice");
    for _ in 0..3 {
        assert_eq!(get("/app/page", &gw, Some(&alice)).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(get("/app/page", &gw, None).await, 401);
    }
    let expired = token(&json!({ "sub": "usr_alice", "exp": now() - 3600, "iat": now() - 7200 }));
    assert_eq!(get("/app/page", &gw, Some(&expired)).await, 401);
    assert_eq!(get("/limited/x", &gw, Some(&alice)).await, 200);
    assert_eq!(get("/limited/x", &gw, Some(&alice)).await, 429);

    let first = get_or_create(&gw, "usr_bob").await;
    let second = get_or_create(&gw, "usr_bob").await;
    assert_eq!(first["status"], "created");
    assert_eq!(
        second["inquiry_id"], first["inquiry_id"],
        "the second call finds the first inquiry"
    );

    let approved = event("evt_metrics_1", "inquiry.approved");
    assert_eq!(deliver(&gw, &approved, WEBHOOK_SECRET).await, 200);
    assert_eq!(deliver(&gw, &approved, WEBHOOK_SECRET).await, 200);
    assert_eq!(
        deliver(&gw, &event("evt_metrics_2", "inquiry.created"), WEBHOOK_SECRET).await,
        200
    );
    assert_eq!(
        deliver(&gw, &event("evt_metrics_3", "inquiry.approved"), "wrong").await,
        401
    );

    let scrape = scrape_when_idle(&gw).await;
    let health_ok = readyz.get(&200).copied().unwrap_or(0) as f64;
    let health_unready = readyz.get(&503).copied().unwrap_or(0) as f64;
    let expected = [
        (r#"persona_gate_requests_total{route="proxy",status="200"}"#, 4.0),
        (r#"persona_gate_requests_total{route="proxy",status="401"}"#, 3.0),
        (r#"persona_gate_requests_total{route="proxy",status="429"}"#, 1.0),
        (
            r#"persona_gate_requests_total{route="get_or_create",status="200"}"#,
            2.0,
        ),
        (r#"persona_gate_requests_total{route="webhook",status="200"}"#, 3.0),
        (r#"persona_gate_requests_total{route="webhook",status="401"}"#, 1.0),
        (r#"persona_gate_requests_total{route="health",status="200"}"#, health_ok),
        (
            r#"persona_gate_requests_total{route="health",status="503"}"#,
            health_unready,
        ),
        (r#"persona_gate_request_duration_seconds_count{route="proxy"}"#, 8.0),
        (
            r#"persona_gate_request_duration_seconds_count{route="get_or_create"}"#,
            2.0,
        ),
        (r#"persona_gate_request_duration_seconds_count{route="webhook"}"#, 4.0),
        (r#"persona_gate_auth_failures_total{reason="token_missing"}"#, 2.0),
        (r#"persona_gate_auth_failures_total{reason="token_expired"}"#, 1.0),
        (
            r#"persona_gate_rate_limit_decisions_total{policy="tight",decision="allowed"}"#,
            1.0,
        ),
        (
            r#"persona_gate_rate_limit_decisions_total{policy="tight",decision="limited"}"#,
            1.0,
        ),
        (r#"persona_gate_persona_calls_total{endpoint="list",outcome="ok"}"#, 2.0),
        (
            r#"persona_gate_persona_calls_total{endpoint="create",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"persona_gate_persona_call_duration_seconds_count{endpoint="list"}"#,
            2.0,
        ),
        (
            r#"persona_gate_persona_call_duration_seconds_count{endpoint="create"}"#,
            1.0,
        ),
        (
            r#"persona_gate_get_or_create_total{flow="default",outcome="created"}"#,
            1.0,
        ),
        (
            r#"persona_gate_get_or_create_total{flow="default",outcome="resumed_created"}"#,
            1.0,
        ),
        (r#"persona_gate_single_flight_joins_total{flight="get_or_create"}"#, 0.0),
        (r#"persona_gate_webhooks_total{outcome="forwarded"}"#, 1.0),
        (r#"persona_gate_webhooks_total{outcome="duplicate"}"#, 1.0),
        (r#"persona_gate_webhooks_total{outcome="ignored"}"#, 1.0),
        (
            r#"persona_gate_webhooks_total{outcome="webhook_signature_invalid"}"#,
            1.0,
        ),
        ("persona_gate_connections_in_flight", 0.0),
    ];
    scrape.assert(&expected);
    // Nothing else was counted: no other route, status, reason or outcome appeared.
    let listed: Vec<String> = expected.iter().map(|(series, _)| canonical(series)).collect();
    let unlisted: Vec<&String> = scrape
        .0
        .keys()
        .filter(|series| COUNTERS.iter().any(|family| series.starts_with(&format!("{family}{{"))))
        .filter(|series| !listed.contains(series))
        .collect();
    assert!(unlisted.is_empty(), "series the script did not cause: {unlisted:#?}");

    // A connection held open is counted while it lasts.
    let mut held = tokio::net::TcpStream::connect(gw.http).await.expect("connect");
    held.write_all(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_head(&mut held).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let scrape = gw.scrape().await;
    scrape.assert(&[
        ("persona_gate_connections_in_flight", 1.0),
        (
            r#"persona_gate_requests_total{route="health",status="200"}"#,
            health_ok + 1.0,
        ),
    ]);
}

#[tokio::test]
async fn config_reloads_are_counted_by_outcome() {
    let upstream = echo_upstream().await;
    let mut gw = Gateway::start(upstream).await;
    wait_ready(&mut gw).await;
    let reload = || async {
        plain_client()
            .post(format!("http://{}/admin/reload", gw.admin))
            .send()
            .await
            .expect("reload")
            .status()
            .as_u16()
    };
    assert_eq!(reload().await, 200);
    assert_eq!(reload().await, 200);
    let good = std::fs::read_to_string(&gw.file.path).expect("config");
    gw.file.write(&good.replace("[server]", "[server]\nnonsense = 1"));
    assert_eq!(reload().await, 422, "an invalid file is refused");
    gw.file.write(&good);
    // SIGHUP goes through the same reload.
    gw.process.signal("HUP");
    let ok = r#"persona_gate_config_reloads_total{outcome="ok"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.scrape().await.value(ok) < 3.0 {
        assert!(Instant::now() < deadline, "the SIGHUP reload was never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.scrape().await.assert(&[
        (ok, 3.0),
        (r#"persona_gate_config_reloads_total{outcome="invalid"}"#, 1.0),
        (r#"persona_gate_config_reloads_total{outcome="failed"}"#, 0.0),
    ]);
}
