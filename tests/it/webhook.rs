//! Persona webhooks through a real gateway into a real app: what is forwarded (once, verified,
//! byte for byte, with the `x-persona-*` headers), what is refused and never forwarded, and how a
//! failing app makes Persona retry. Payloads are signed here with aws-lc-rs, as Persona signs them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::common::*;

const SECRET: &str = "wbhsec_test_current";
const OLD_SECRET: &str = "wbhsec_test_previous";
const FORWARD_PATH: &str = "/persona/events";
const PERSONA_HEADERS: [&str; 5] = [
    "x-persona-event-name",
    "x-persona-event-id",
    "x-persona-inquiry-id",
    "x-persona-reference-id",
    "x-persona-verified",
];

// === the app ===

/// One request the app accepted with a 2xx.
#[derive(Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// How the app answers its next requests.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Mode {
    Accept,
    /// 500, like an app whose handler threw.
    Fail,
    /// Closes the connection without answering, like a crashed process.
    Crash,
    /// Never answers.
    Hang,
}

/// A fake app that records every request it accepted and fails on demand.
#[derive(Clone)]
struct App {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Received>>>,
    attempts: Arc<AtomicUsize>,
    mode: Arc<AtomicU8>,
}

impl App {
    async fn start() -> App {
        let mut app = App {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            accepted: Arc::default(),
            attempts: Arc::default(),
            mode: Arc::new(AtomicU8::new(Mode::Accept as u8)),
        };
        let serving = app.clone();
        app.addr = serve(move |req| {
            let app = serving.clone();
            async move { app.answer(req).await }
        })
        .await;
        app
    }

    async fn answer(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let status = match self.mode.load(Ordering::SeqCst) {
            m if m == Mode::Fail as u8 => StatusCode::INTERNAL_SERVER_ERROR,
            // An error from the service makes hyper drop the connection without a response.
            m if m == Mode::Crash as u8 => return Err(std::io::Error::other("app crashed")),
            m if m == Mode::Hang as u8 => std::future::pending().await,
            _ => StatusCode::OK,
        };
        if status.is_success() {
            self.accepted.lock().expect("lock").push(Received {
                path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                headers: parts.headers,
                body,
            });
        }
        Ok(Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("response"))
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn accepted(&self) -> Vec<Received> {
        self.accepted.lock().expect("lock").clone()
    }

    /// Events the app accepted, i.e. requests on the forward path.
    fn events(&self) -> Vec<Received> {
        self.accepted().into_iter().filter(|r| r.path == FORWARD_PATH).collect()
    }
}

// === Persona's side ===

fn webhook_config(app: SocketAddr, extra: &str) -> String {
    base_config(
        app,
        &format!(
            r#"
[webhook]
secrets = [{{ value = "{SECRET}" }}, {{ value = "{OLD_SECRET}" }}]
forward_path = "{FORWARD_PATH}"
forward_timeout = "500ms"
{extra}
"#
        ),
    )
}

/// `t=<t>,v1=<hex>` as Persona computes it: HMAC-SHA256 over `"<t>.<raw body>"`.
pub(super) fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    let hex: String = hmac::sign(&key, &message)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// A Persona event written the way no serializer would (odd spacing, an escaped `é`), so a
/// byte-for-byte match proves the gateway forwarded the raw body.
fn event(id: &str, name: &str) -> String {
    format!(
        concat!(
            "{{\"data\": {{\"type\":\"event\", \"id\":\"{id}\",\n  \"attributes\":{{\"name\":\"{name}\",",
            "\"payload\":{{\"data\":{{\"type\":\"inquiry\",\"id\":\"inq_{id}\",\"attributes\":",
            "{{\"status\":\"completed\", \"reference-id\":\"user-42\",\"name-first\":\"Ren\\u00e9e\"}}}}}},",
            "\"created-at\":\"2024-02-15T23:48:17.732Z\"}}}}}}\n"
        ),
        id = id,
        name = name
    )
}

async fn deliver(gw: &TestGateway, body: impl Into<reqwest::Body>, signature: Option<&str>) -> reqwest::Response {
    let mut request = client()
        .post(gw.url("/webhooks/persona"))
        .header("content-type", "application/json; charset=utf-8")
        .header("persona-webhook-attempts-made", "1")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("persona-signature", signature);
    }
    request.send().await.expect("delivery")
}

async fn deliver_signed(gw: &TestGateway, body: &str) -> reqwest::Response {
    deliver(gw, body.to_owned(), Some(&signature(SECRET, now(), body.as_bytes()))).await
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json answer");
    let code = body["error"]["code"]
        .as_str()
        .or(body["status"].as_str())
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

fn header<'a>(received: &'a Received, name: &str) -> Option<&'a str> {
    received.headers.get(name).and_then(|v| v.to_str().ok())
}

// === tests ===

#[tokio::test]
async fn a_valid_event_is_forwarded_once_with_headers_and_the_exact_body() {
    let app = App::start().await;
    let gw = TestGateway::start(&webhook_config(app.addr, "")).await;
    let body = event("evt_valid", "inquiry.completed");
    let (status, outcome) = status_and_code(deliver_signed(&gw, &body).await).await;
    assert_eq!((status, outcome.as_str()), (200, "forwarded"));
    let events = app.events();
    assert_eq!(events.len(), 1);
    let got = &events[0];
    assert_eq!(got.body, body.as_bytes(), "the raw body, byte for byte");
    assert_eq!(header(got, "content-type"), Some("application/json"));
    assert_eq!(header(got, "x-persona-event-name"), Some("inquiry.completed"));
    assert_eq!(header(got, "x-persona-event-id"), Some("evt_valid"));
    assert_eq!(header(got, "x-persona-inquiry-id"), Some("inq_evt_valid"));
    assert_eq!(header(got, "x-persona-reference-id"), Some("user-42"));
    assert_eq!(header(got, "x-persona-verified"), Some("true"));
    assert!(header(got, "x-request-id").is_some());
    assert!(
        header(got, "persona-signature").is_none(),
        "the app gets the verdict, not the signature"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn the_same_event_delivered_three_times_is_forwarded_once() {
    let app = App::start().await;
    let gw = TestGateway::start(&webhook_config(app.addr, "")).await;
    let body = event("evt_dup", "inquiry.approved");
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(status_and_code(deliver_signed(&gw, &body).await).await);
    }
    let expected = [(200, "forwarded"), (200, "duplicate"), (200, "duplicate")];
    assert_eq!(outcomes, expected.map(|(s, c)| (s, c.to_owned())));
    assert_eq!(app.events().len(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn forged_stale_and_malformed_deliveries_are_refused_and_never_forwarded() {
    let app = App::start().await;
    let gw = TestGateway::start(&webhook_config(app.addr, "")).await;
    let body = event("evt_bad", "inquiry.completed");
    let t = now();
    let good = signature(SECRET, t, body.as_bytes());
    let tampered = body.replace("user-42", "user-43");
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        (
            "tampered body",
            tampered,
            Some(good.clone()),
            401,
            "webhook_signature_invalid",
        ),
        (
            "wrong secret",
            body.clone(),
            Some(signature("wbhsec_attacker", t, body.as_bytes())),
            401,
            "webhook_signature_invalid",
        ),
        (
            "timestamp altered",
            body.clone(),
            Some(good.replace(&format!("t={t}"), &format!("t={}", t - 1))),
            401,
            "webhook_signature_invalid",
        ),
        (
            "stale timestamp",
            body.clone(),
            Some(signature(SECRET, t - 600, body.as_bytes())),
            401,
            "webhook_timestamp_out_of_tolerance",
        ),
        (
            "future timestamp",
            body.clone(),
            Some(signature(SECRET, t + 600, body.as_bytes())),
            401,
            "webhook_timestamp_out_of_tolerance",
        ),
        ("missing header", body.clone(), None, 401, "webhook_signature_missing"),
        (
            "garbage header",
            body.clone(),
            Some("garbage".into()),
            400,
            "webhook_signature_malformed",
        ),
        (
            "no timestamp",
            body.clone(),
            Some(good.split(',').nth(1).unwrap_or_default().to_owned()),
            400,
            "webhook_signature_malformed",
        ),
        (
            "short hex",
            body.clone(),
            Some(good[..good.len() - 2].to_owned()),
            400,
            "webhook_signature_malformed",
        ),
        (
            "signed but not an event",
            "{\"data\":{\"type\":\"inquiry\",\"id\":\"inq_1\"}}".into(),
            Some(signature(
                SECRET,
                t,
                b"{\"data\":{\"type\":\"inquiry\",\"id\":\"inq_1\"}}",
            )),
            400,
            "webhook_not_an_event",
        ),
    ];
    for (case, body, signature, status, code) in cases {
        let got = status_and_code(deliver(&gw, body, signature.as_deref()).await).await;
        assert_eq!(got, (status, code.to_owned()), "{case}");
    }
    assert!(app.accepted().is_empty(), "nothing may reach the app");
    // The genuine delivery still goes through: no rejection above poisoned the event id.
    assert_eq!(
        status_and_code(deliver_signed(&gw, &event("evt_bad", "inquiry.completed")).await)
            .await
            .0,
        200
    );
    assert_eq!(app.events().len(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_ten_megabyte_body_is_refused_without_being_forwarded() {
    let app = App::start().await;
    let gw = TestGateway::start(&webhook_config(app.addr, "")).await;
    let prefix = event("evt_big", "inquiry.completed");
    let mut body = prefix.into_bytes();
    body.resize(10 * 1024 * 1024, b' ');
    let sig = signature(SECRET, now(), &body);
    // Once announced by Content-Length, once streamed in chunks with no length given.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    for body in [reqwest::Body::from(body), streamed] {
        let (status, code) = status_and_code(deliver(&gw, body, Some(&sig)).await).await;
        assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    }
    assert!(app.accepted().is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn both_rotated_secrets_are_accepted() {
    let app = App::start().await;
    let gw = TestGateway::start(&webhook_config(app.addr, "")).await;
    let t = now();
    // Persona mid-rotation: one set per secret, the new one first.
    let old_only = event("evt_old", "inquiry.completed");
    let new_only = event("evt_new", "inquiry.completed");
    let both = event("evt_both", "inquiry.completed");
    let rotating = format!(
        "{} {}",
        signature("wbhsec_not_yet_configured", t, both.as_bytes()),
        signature(OLD_SECRET, t, both.as_bytes())
    );
    for (body, sig) in [
        (&old_only, signature(OLD_SECRET, t, old_only.as_bytes())),
        (&new_only, signature(SECRET, t, new_only.as_bytes())),
        (&both, rotating),
    ] {
        let (status, _) = status_and_code(deliver(&gw, body.clone(), Some(&sig)).await).await;
        assert_eq!(status, 200, "{sig}");
    }
    let ids: Vec<_> = app
        .events()
        .iter()
        .filter_map(|r| header(r, "x-persona-event-id").map(str::to_owned))
        .collect();
    assert_eq!(ids, ["evt_old", "evt_new", "evt_both"]);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_failing_app_makes_persona_retry_and_the_retry_is_forwarded() {
    let app = App::start().await;
    let gw = TestGateway::start(&webhook_config(app.addr, "")).await;
    for (mode, status, code) in [
        (Mode::Fail, 502, "webhook_forward_failed"),
        (Mode::Crash, 502, "webhook_forward_failed"),
        (Mode::Hang, 504, "webhook_forward_timeout"),
    ] {
        let id = format!("evt_retry_{code}_{status}_{}", app.attempts.load(Ordering::SeqCst));
        let body = event(&id, "inquiry.failed");
        app.set(mode);
        let got = status_and_code(deliver_signed(&gw, &body).await).await;
        assert_eq!(got, (status, code.to_owned()));
        assert!(
            app.events()
                .iter()
                .all(|r| header(r, "x-persona-event-id") != Some(&id))
        );
        app.set(Mode::Accept);
        let retry = status_and_code(deliver_signed(&gw, &body).await).await;
        assert_eq!(retry, (200, "forwarded".to_owned()), "the retry is not a duplicate");
        let forwarded = app
            .events()
            .iter()
            .filter(|r| header(r, "x-persona-event-id") == Some(&id))
            .count();
        assert_eq!(forwarded, 1);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn an_app_that_is_not_listening_gets_a_502() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let gw = TestGateway::start(&webhook_config(closed, "")).await;
    let got = status_and_code(deliver_signed(&gw, &event("evt_down", "inquiry.completed")).await).await;
    assert_eq!(got, (502, "webhook_forward_failed".to_owned()));
    gw.shutdown().await;
}

#[tokio::test]
async fn an_unconfigured_event_is_acknowledged_but_not_forwarded() {
    let app = App::start().await;
    let gw = TestGateway::start(&webhook_config(app.addr, "events = [\"inquiry.approved\"]")).await;
    for name in ["inquiry.created", "inquiry.some-future-event", "inquiry.completed"] {
        let got = status_and_code(deliver_signed(&gw, &event("evt_other", name)).await).await;
        assert_eq!(got, (200, "ignored".to_owned()), "{name}");
    }
    assert!(app.accepted().is_empty());
    // Ignoring an event does not mark its id: the same id with a configured name still goes.
    let got = status_and_code(deliver_signed(&gw, &event("evt_other", "inquiry.approved")).await).await;
    assert_eq!(got, (200, "forwarded".to_owned()));
    gw.shutdown().await;
}

#[tokio::test]
async fn other_methods_on_the_webhook_path_are_405_and_not_proxied() {
    let app = App::start().await;
    let gw = TestGateway::start(&webhook_config(app.addr, "")).await;
    for method in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE] {
        let response = client()
            .request(method.clone(), gw.url("/webhooks/persona"))
            .header("authorization", format!("Bearer {}", user_token("user-1")))
            .send()
            .await
            .expect("request");
        assert_eq!(
            status_and_code(response).await,
            (405, "method_not_allowed".to_owned()),
            "{method}"
        );
    }
    assert!(app.accepted().is_empty());
    gw.shutdown().await;
}

/// The stripping is done for every proxied request, authenticated or public (the proxy's
/// `reserved` headers); a public path shows it without depending on a token.
#[tokio::test]
async fn clients_cannot_send_the_persona_headers_on_proxied_routes() {
    let app = App::start().await;
    let gw = TestGateway::start(&webhook_config(app.addr, "")).await;
    let mut request = client().post(gw.url("/public/webhooks/persona")).body("{}");
    for name in PERSONA_HEADERS {
        request = request.header(name, "true");
    }
    assert_eq!(request.send().await.expect("request").status(), 200);
    let seen = app.accepted();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/public/webhooks/persona");
    for name in PERSONA_HEADERS {
        assert!(header(&seen[0], name).is_none(), "{name} reached the app");
    }
    gw.shutdown().await;
}

/// Without a `[webhook]` section the headers are stripped all the same: the app may trust them
/// whatever the gateway's config.
#[tokio::test]
async fn persona_headers_are_stripped_even_without_a_webhook_section() {
    let app = App::start().await;
    let gw = TestGateway::start(&base_config(app.addr, "")).await;
    let mut request = client().post(gw.url("/public/events")).body("{}");
    for name in PERSONA_HEADERS {
        request = request.header(name, "true");
    }
    assert_eq!(request.send().await.expect("request").status(), 200);
    let seen = app.accepted();
    assert_eq!(seen.len(), 1);
    assert!(PERSONA_HEADERS.iter().all(|name| header(&seen[0], name).is_none()));
    gw.shutdown().await;
}

/// The whole path with nothing stubbed: the shipped config (embedded emulator, demo app as the
/// app), a user signed in through the demo, get-or-create, the user completing the inquiry in
/// the emulator, and the app receiving Persona's signed `inquiry.completed` for that user, marked
/// verified by the gateway (the demo app records nothing else).
#[tokio::test]
async fn a_completed_inquiry_reaches_the_app_as_a_verified_webhook_for_that_user() {
    let gw = TestGateway::start(&shipped_config_on_free_ports()).await;
    let (emulator, demo) = (gw.emulator.expect("embedded emulator"), gw.demo.expect("demo app"));
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
    let origin = format!("http://{}", gw.http.expect("http"));
    let answer: Value = http
        .post(gw.url("/api/inquiries/get-or-create"))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .send()
        .await
        .expect("get-or-create")
        .json()
        .await
        .expect("json");
    let inquiry = answer["inquiry_id"].as_str().expect("inquiry id").to_owned();
    for action in ["submit_government_id", "submit_selfie"] {
        let advanced = http
            .post(format!("http://{emulator}/_emulator/inquiries/{inquiry}/advance"))
            .json(&json!({ "action": action, "pass": true }))
            .send()
            .await
            .expect("advance");
        assert_eq!(advanced.status(), 200, "{action}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen: Vec<Value> = http
            .get(format!("http://{demo}/demo/webhooks"))
            .send()
            .await
            .expect("inbox")
            .json()
            .await
            .expect("json");
        let completed = seen.iter().any(|e| {
            e["name"] == "inquiry.completed" && e["inquiry_id"] == inquiry.as_str() && e["reference_id"] == "usr_ABC123"
        });
        if completed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the app never received inquiry.completed: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    gw.shutdown().await;
}
