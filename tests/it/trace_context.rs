//! W3C Trace Context through the gateway: the app receives the client's trace with the gateway's
//! span as its parent (or a fresh trace), and the gateway's log lines for a request (its access
//! line, its Persona calls, its webhook forwards) carry that trace id.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::common::{
    ConfigFile, Emulator, GatewayProcess, KEY, TEMPLATE, TestGateway, base_config, client, echo_upstream, echoed, now,
    open_config, seen_header, serve, user_token,
};
use super::webhook::signature;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// `(trace id, parent id, flags)` of a traceparent the app saw, checked to be well formed.
fn parts(value: &str) -> (String, String, String) {
    let fields: Vec<&str> = value.split('-').collect();
    assert_eq!(fields.len(), 4, "{value}");
    assert_eq!(fields[0], "00", "{value}");
    assert!(
        fields[1].len() == 32 && fields[2].len() == 16 && fields[3].len() == 2,
        "{value}"
    );
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    assert!(hex(fields[1]) && hex(fields[2]) && hex(fields[3]), "{value}");
    assert!(fields[1] != "0".repeat(32) && fields[2] != "0".repeat(16), "{value}");
    (fields[1].into(), fields[2].into(), fields[3].into())
}

/// An app that reports each request's path and `traceparent`, and answers 200.
async fn tracing_app() -> (SocketAddr, mpsc::UnboundedReceiver<(String, Option<String>)>) {
    let (seen, arrivals) = mpsc::unbounded_channel();
    let addr = serve(move |req: http::Request<hyper::body::Incoming>| {
        let parent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = seen.send((req.uri().path().to_owned(), parent));
        async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"{}")))) }
    })
    .await;
    (addr, arrivals)
}

async fn seen_by_app(gw: &TestGateway, headers: &[(&str, &str)]) -> Value {
    let mut request = client().get(gw.url("/page"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    echoed(request.send().await.expect("request")).await
}

#[tokio::test]
async fn the_app_receives_the_clients_trace_with_the_gateway_as_parent_or_a_fresh_one() {
    let gw = TestGateway::start(&open_config(echo_upstream().await, "", "", "")).await;
    let incoming = traceparent(TRACE, CLIENT_SPAN);
    let echo = seen_by_app(&gw, &[("traceparent", &incoming), ("tracestate", "congo=t61rcWkgMzE")]).await;
    let (trace, parent, flags) = parts(seen_header(&echo, "traceparent").expect("traceparent"));
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"));
    assert_ne!(parent, CLIENT_SPAN, "the gateway is a hop of its own");
    assert_eq!(seen_header(&echo, "tracestate"), Some("congo=t61rcWkgMzE"));
    // Each request is a span of its own.
    let again = seen_by_app(&gw, &[("traceparent", &incoming)]).await;
    let (_, second_parent, _) = parts(seen_header(&again, "traceparent").expect("traceparent"));
    assert_ne!(second_parent, parent);

    let mut fresh = Vec::new();
    for headers in [
        vec![],
        vec![("traceparent", "00-not-a-trace-01"), ("tracestate", "a=b")],
        vec![("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")],
        vec![("traceparent", incoming.as_str()), ("traceparent", incoming.as_str())],
    ] {
        let echo = seen_by_app(&gw, &headers).await;
        let (trace, _, flags) = parts(seen_header(&echo, "traceparent").expect("traceparent"));
        assert_ne!(trace, TRACE, "{headers:?}");
        assert_eq!(flags, "01", "a new trace is sampled: {headers:?}");
        assert_eq!(seen_header(&echo, "tracestate"), None, "{headers:?}");
        fresh.push(trace);
    }
    fresh.dedup();
    assert_eq!(fresh.len(), 4, "every new trace has its own id");
    // The request id is untouched by all this.
    let echo = seen_by_app(&gw, &[("traceparent", &incoming), ("x-request-id", "req-trace-1")]).await;
    assert_eq!(seen_header(&echo, "x-request-id"), Some("req-trace-1"));
}

/// The real binary, whose log is its own: each line a request causes names its trace id.
#[tokio::test]
async fn log_lines_of_a_request_carry_its_trace_id() {
    const SECRET: &str = "wbhsec_trace_test";
    let emulator = Emulator::start("").await;
    let (app, mut arrivals) = tracing_app().await;
    let extra = format!(
        r#"
[persona]
base_url = "{}"
api_key = {{ value = "{KEY}" }}
template_id = "{TEMPLATE}"
timeout = "1s"
deadline = "3s"
backoff_initial = "20ms"
backoff_max = "50ms"

[webhook]
secrets = [{{ value = "{SECRET}" }}]
forward_path = "/persona/events"
"#,
        emulator.base_url
    );
    let file = ConfigFile::new(&base_config(app, &extra));
    let mut gw = GatewayProcess::start(&file.path, "info").await;
    let traces = [
        "11111111111111111111111111111111",
        "22222222222222222222222222222222",
        "33333333333333333333333333333333",
    ];

    // The access line of a proxied request.
    let response = client()
        .get(gw.url("/dashboard"))
        .bearer_auth(user_token("usr_trace"))
        .header("traceparent", traceparent(traces[0], CLIENT_SPAN))
        .send()
        .await
        .expect("proxied");
    assert_eq!(response.status(), 200);
    let line = gw.wait_for_log("/dashboard").await;
    assert!(line.contains(&format!("trace_id=\"{}\"", traces[0])), "{line}");

    // A Persona call that fails once and is retried: the retry's line names the trace.
    emulator
        .fault(json!({ "fault": { "kind": "status", "status": 503 }, "times": 1, "method": "GET" }))
        .await;
    let response = client()
        .post(gw.url("/api/inquiries/get-or-create"))
        .bearer_auth(user_token("usr_trace"))
        .header("traceparent", traceparent(traces[1], CLIENT_SPAN))
        .send()
        .await
        .expect("get-or-create");
    assert_eq!(response.status(), 200);
    let line = gw.wait_for_log("persona call failed, retrying").await;
    assert!(line.contains(traces[1]), "{line}");
    let line = gw.wait_for_log("created inquiry").await;
    assert!(line.contains(traces[1]), "{line}");

    // A webhook forwarded to the app: the line, and the app's request, carry the trace.
    let body = json!({ "data": { "type": "event", "id": "evt_trace_1", "attributes": {
        "name": "inquiry.approved", "created-at": "2026-01-01T00:00:00.000Z",
        "payload": { "data": { "type": "inquiry", "id": "inq_trace", "attributes": { "status": "approved", "reference-id": "usr_trace" } } } } } })
    .to_string();
    let response = client()
        .post(gw.url("/webhooks/persona"))
        .header("content-type", "application/json")
        .header("persona-signature", signature(SECRET, now(), body.as_bytes()))
        .header("traceparent", traceparent(traces[2], CLIENT_SPAN))
        .body(body)
        .send()
        .await
        .expect("delivery");
    assert_eq!(response.status(), 200);
    let line = gw.wait_for_log("webhook forwarded to the app").await;
    assert!(line.contains(traces[2]), "{line}");
    let seen: Vec<(String, Option<String>)> = std::iter::from_fn(|| arrivals.try_recv().ok()).collect();
    let paths: Vec<&str> = seen.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["/dashboard", "/persona/events"]);
    for ((path, parent), trace) in seen.iter().zip([traces[0], traces[2]]) {
        let (seen_trace, parent_id, _) = parts(parent.as_deref().expect("a traceparent"));
        assert_eq!(seen_trace, trace, "{path}");
        assert_ne!(parent_id, CLIENT_SPAN, "{path}");
    }
}
