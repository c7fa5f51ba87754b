//! What the app can rely on, tried as an attacker would, over raw sockets (a well-behaved
//! client library normalizes paths before sending, which is exactly what an attacker does not
//! do): every decision and the app read one canonical path, an ambiguous one is refused, the
//! gateway's own headers cannot be supplied in another spelling, and the authority is read once.
//!
//! The app here reads paths the way permissive frameworks do (percent-decoding everything, twice
//! if it can, `\` as `/`, `;params` stripped, slashes merged, dot segments resolved), so any
//! variant of a gated or protected path that slipped past the gateway would reach it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::common::{Emulator, KEY, TEMPLATE, TestGateway, base_config, client, raw_exchange, serve, user_token};

// ===== the app =====

/// A request as the permissive app read it.
#[derive(Debug)]
struct Seen {
    read_as: String,
}

/// The app: answers 200 with `{"raw", "read_as", "user", "headers"}` and reports every request.
async fn permissive_app(case_insensitive: bool) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (seen, arrivals) = mpsc::unbounded_channel();
    let addr = serve(move |req: Request<Incoming>| {
        let raw = req.uri().path().to_owned();
        let read_as = framework_reading(&raw, case_insensitive);
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), json!(String::from_utf8_lossy(v.as_bytes()))))
            .collect();
        let body = json!({
            "raw": raw,
            "query": req.uri().query(),
            "read_as": read_as,
            "headers": headers,
        });
        let _ = seen.send(Seen { read_as });
        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string())))) }
    })
    .await;
    (addr, arrivals)
}

/// How a permissive stack resolves a path before routing.
fn framework_reading(raw: &str, case_insensitive: bool) -> String {
    let mut text = raw.to_owned();
    // Decoding twice reads `%252F` as `/`: some stacks decode again in a later layer.
    for _ in 0..2 {
        text = percent_encoding::percent_decode_str(&text)
            .decode_utf8_lossy()
            .into_owned();
    }
    let text = text.replace('\\', "/");
    let mut kept: Vec<String> = Vec::new();
    for segment in text.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other.to_owned()),
        }
    }
    let path = format!("/{}", kept.join("/"));
    if case_insensitive { path.to_lowercase() } else { path }
}

fn reached_the_gated_area(seen: &Seen) -> bool {
    seen.read_as == "/walker" || seen.read_as.starts_with("/walker/")
}

// ===== the gateway =====

fn gated_config(app: SocketAddr, emulator: &Emulator, extra: &str) -> String {
    base_config(
        app,
        &format!(
            r#"
[persona]
base_url = "{}"
api_key = {{ value = "{KEY}" }}
template_id = "{TEMPLATE}"

[gate]
paths = ["/walker/"]

{extra}
"#,
            emulator.base_url
        ),
    )
    .replace(r#"public_paths = ["/public/"]"#, r#"public_paths = ["/static/"]"#)
}

/// One raw HTTP/1.1 request with `target` as written: (status, JSON body or Null).
async fn raw_get(gw: &TestGateway, target: &str, headers: &str) -> (u16, Value) {
    let request = format!("GET {target} HTTP/1.1\r\nhost: gateway.test\r\n{headers}connection: close\r\n\r\n");
    let (head, body) = raw_exchange(gw.http.expect("http listener"), request.as_bytes()).await;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line in {head:?}"));
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn bearer(user: &str) -> String {
    format!("authorization: Bearer {}\r\n", user_token(user))
}

/// Every spelling of the gated page an unverified user could try.
const GATED_VARIANTS: &[&str] = &[
    "/walker/secret",
    "/walker",
    "/walker/",
    "/x/../walker/secret",
    "/./walker/secret",
    "/walker/./secret",
    "/walker/secret/.",
    "/walker/x/../secret",
    "/%77alker/secret",
    "/walker/%73ecret",
    "/%2e/walker/secret",
    "/x/%2e%2e/walker/secret",
    "/x/.%2E/walker/secret",
    "/x/%2E./walker/secret",
    "//walker/secret",
    "///walker//secret",
    "/walker//secret",
    "/walker%2Fsecret",
    "/walker%2fsecret",
    "/x/..%2Fwalker/secret",
    "/walker%5Csecret",
    "/walker\\secret",
    "/x\\..\\walker\\secret",
    "/%252e%252e/walker/secret",
    "/x/%252e%252e/walker/secret",
    "/walker%252Fsecret",
    "/%25%37%37alker/secret",
    "/walker;x=1/secret",
    "/walker;/secret",
    "/x;/../walker/secret",
    "/walker/secret;jsessionid=1",
    "/walker%00/secret",
    "/walker%0a/../walker/secret",
    "/../walker/secret",
    "/%2e%2e/walker/secret",
    "http://gateway.test/x/../walker/secret",
    "http://gateway.test//walker/secret",
    "http://gateway.test/%77alker/secret",
];

#[tokio::test]
async fn no_variant_of_a_gated_path_reaches_the_app_for_an_unverified_user() {
    let emulator = Emulator::start("").await;
    let (app, mut arrivals) = permissive_app(false).await;
    let gw = TestGateway::start(&gated_config(app, &emulator, "")).await;
    let user = bearer("usr_never_verified");
    for target in GATED_VARIANTS {
        let (status, body) = raw_get(&gw, target, &user).await;
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            (status, code) == (403, "verification_required") || (status, code) == (400, "path_ambiguous"),
            "{target}: {status} {body}"
        );
    }
    // The same, one stream each, over HTTP/2 with prior knowledge.
    for target in [
        "/x/../walker/secret",
        "//walker/secret",
        "/%77alker/secret",
        "/walker%2Fsecret",
    ] {
        let status = h2_get(gw.http.expect("http"), target, "usr_never_verified").await;
        assert!(status == 403 || status == 400, "h2 {target}: {status}");
    }
    // A path the gate does not cover still reaches the app, canonical, so the app was there.
    let (status, body) = raw_get(&gw, "/x/../walkers-guide?next=/walker/../x", &user).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["raw"], "/walkers-guide");
    assert_eq!(
        body["query"], "next=/walker/../x",
        "the query is passed through unchanged"
    );
    let seen: Vec<Seen> = std::iter::from_fn(|| arrivals.try_recv().ok()).collect();
    assert!(!seen.is_empty());
    let leaked: Vec<&Seen> = seen.iter().filter(|s| reached_the_gated_area(s)).collect();
    assert!(leaked.is_empty(), "the app served the gated area: {leaked:?}");
}

/// An app that routes case-insensitively is covered once the operator says so.
#[tokio::test]
async fn case_insensitive_apps_are_gated_in_every_case_when_configured() {
    let emulator = Emulator::start("").await;
    let (app, mut arrivals) = permissive_app(true).await;
    let gw = TestGateway::start(&gated_config(app, &emulator, "[paths]\ncase_insensitive = true\n")).await;
    let user = bearer("usr_never_verified");
    for target in ["/WALKER/secret", "/Walker/secret", "/%57ALKER/secret", "/x/../wAlKeR"] {
        let (status, body) = raw_get(&gw, target, &user).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("verification_required")),
            "{target}"
        );
    }
    let (status, _) = raw_get(&gw, "/Walkers-Guide", &user).await;
    assert_eq!(status, 200);
    let seen: Vec<Seen> = std::iter::from_fn(|| arrivals.try_recv().ok()).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!reached_the_gated_area(&seen[0]));
}

#[tokio::test]
async fn a_public_prefix_does_not_open_a_protected_path() {
    let emulator = Emulator::start("").await;
    let (app, mut arrivals) = permissive_app(false).await;
    let gw = TestGateway::start(&gated_config(app, &emulator, "")).await;
    for target in [
        "/static/../app/profile",
        "/static/%2e%2e/app/profile",
        "/static/./../app/profile",
        "//static/../app/profile",
        "/static/..%2Fapp/profile",
        "/static;/../app/profile",
        "/static\\..\\app\\profile",
        "/staticx/page",
        "/static-files/page",
    ] {
        let (status, body) = raw_get(&gw, target, "").await;
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            (status, code) == (401, "token_missing") || (status, code) == (400, "path_ambiguous"),
            "{target}: {status} {body}"
        );
    }
    // The public prefix itself still works, canonically.
    let (status, body) = raw_get(&gw, "/static//css/../app.css", "").await;
    assert_eq!((status, &body["raw"]), (200, &json!("/static/app.css")));
    let seen: Vec<Seen> = std::iter::from_fn(|| arrivals.try_recv().ok()).collect();
    let reads: Vec<&str> = seen.iter().map(|s| s.read_as.as_str()).collect();
    assert_eq!(reads, ["/static/app.css"], "only the public file reached the app");
}

#[tokio::test]
async fn each_ambiguity_is_refused_with_path_ambiguous_and_each_can_be_relaxed() {
    let emulator = Emulator::start("").await;
    let (app, _arrivals) = permissive_app(false).await;
    let strict = TestGateway::start(&gated_config(app, &emulator, "")).await;
    let cases = [
        ("encoded_slash", "/a%2Fb", "/a%2Fb"),
        ("backslash", "/a\\b", "/a\\b"),
        ("double_encoding", "/a%252Fb", "/a%252Fb"),
        ("control", "/a%0Db", "/a%0Db"),
        ("invalid_utf8", "/a%FFb", "/a%FFb"),
        ("above_root", "/../a/b", "/a/b"),
        ("semicolon", "/a;v=1/b", "/a;v=1/b"),
    ];
    let user = bearer("usr_paths");
    for (_, target, _) in cases {
        let (status, body) = raw_get(&strict, target, &user).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(body["error"]["code"], "path_ambiguous", "{target}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    for (relax, target, delivered) in cases {
        let relaxed = TestGateway::start(&gated_config(
            app,
            &emulator,
            &format!("[paths]\nallow = [\"{relax}\"]\n"),
        ))
        .await;
        let (status, body) = raw_get(&relaxed, target, &user).await;
        assert_eq!((status, &body["raw"]), (200, &json!(delivered)), "{relax}: {target}");
    }
    // A malformed escape is never valid, whatever is relaxed.
    let (status, body) = raw_get(&strict, "/a%zz", &user).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("path_ambiguous")));
}

#[tokio::test]
async fn the_app_receives_the_canonical_path_and_its_query_unchanged() {
    let emulator = Emulator::start("").await;
    let (app, _arrivals) = permissive_app(false).await;
    let gw = TestGateway::start(&gated_config(app, &emulator, "")).await;
    let user = bearer("usr_paths");
    for (target, path) in [
        ("/app/%7Euser/%41bc", "/app/~user/Abc"),
        ("/app//x/./y/../z/", "/app/x/z/"),
        ("/app/caf%c3%a9", "/app/caf%C3%A9"),
        ("/app/a%20b%3f", "/app/a%20b%3F"),
        ("http://gateway.test/app/../home", "/home"),
    ] {
        let (status, body) = raw_get(&gw, &format!("{target}?q=%2F..%2f&x=/./"), &user).await;
        assert_eq!(status, 200, "{target}: {body}");
        assert_eq!(body["raw"], path, "{target}");
        assert_eq!(body["query"], "q=%2F..%2f&x=/./", "{target}");
    }
    let unmerged = TestGateway::start(&gated_config(app, &emulator, "[paths]\nmerge_slashes = false\n")).await;
    let (status, body) = raw_get(&unmerged, "/app//x/../y", &user).await;
    assert_eq!((status, &body["raw"]), (200, &json!("/app//y")));
}

// ===== headers =====

const SPOOFED: &[(&str, &str)] = &[
    ("x-user-id", "mallory"),
    ("x_user_id", "mallory"),
    ("X_User_Id", "mallory"),
    ("x-user_id", "mallory"),
    ("x_user-id", "mallory"),
    ("x-verification-status", "approved"),
    ("X-Verification_Status", "approved"),
    ("x_verification_status", "approved"),
    ("x_persona_verified", "true"),
    ("x-persona_event_name", "inquiry.approved"),
    ("x_persona_reference_id", "mallory"),
    ("x_forwarded_for", "6.6.6.6"),
    ("x_forwarded_proto", "https"),
    ("x-forwarded_host", "evil.test"),
    ("x_request_id", "forged"),
];

async fn spoofing_get(gw: &TestGateway, path: &str, user: Option<&str>) -> reqwest::Response {
    let mut request = client().get(gw.url(path)).header("x_custom", "1");
    for (name, value) in SPOOFED {
        request = request.header(*name, *value);
    }
    if let Some(user) = user {
        request = request.bearer_auth(user_token(user));
    }
    request.send().await.expect("request")
}

fn header_names(body: &Value) -> Vec<String> {
    body["headers"]
        .as_object()
        .map(|h| h.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn reserved_headers_are_removed_in_every_spelling_on_public_and_protected_paths() {
    let emulator = Emulator::start("").await;
    let (app, _arrivals) = permissive_app(false).await;
    let gw = TestGateway::start(&gated_config(app, &emulator, "")).await;
    for (path, user) in [("/static/page", None), ("/app/page", Some("usr_real"))] {
        let body: Value = spoofing_get(&gw, path, user).await.json().await.expect("echo");
        let names = header_names(&body);
        let underscored: Vec<&String> = names.iter().filter(|n| n.contains('_')).collect();
        assert!(
            underscored.is_empty(),
            "{path}: underscore headers dropped: {underscored:?}"
        );
        assert_eq!(body["headers"]["x-user-id"].as_str(), user, "{path}");
        assert!(body["headers"]["x-verification-status"].is_null(), "{path}");
        assert_eq!(body["headers"]["x-forwarded-proto"], "http", "{path}");
        assert_eq!(body["headers"]["x-forwarded-for"], "127.0.0.1", "{path}");
        assert!(!names.iter().any(|n| n.starts_with("x-persona")), "{path}");
    }
    // `allow` passes other underscore headers, never a spelling of the gateway's own.
    let allow = TestGateway::start(
        &gated_config(app, &emulator, "").replace("[limits]\n", "[limits]\nheaders_with_underscores = \"allow\"\n"),
    )
    .await;
    let body: Value = spoofing_get(&allow, "/app/page", Some("usr_real"))
        .await
        .json()
        .await
        .expect("echo");
    let underscored: Vec<String> = header_names(&body).into_iter().filter(|n| n.contains('_')).collect();
    assert_eq!(underscored, ["x_custom"]);
    assert_eq!(body["headers"]["x-user-id"], "usr_real");
    // `reject` refuses the request at the edge, on every route.
    let reject = TestGateway::start(
        &gated_config(app, &emulator, "").replace("[limits]\n", "[limits]\nheaders_with_underscores = \"reject\"\n"),
    )
    .await;
    for path in ["/static/page", "/app/page", "/api/inquiries/get-or-create", "/healthz"] {
        let response = client()
            .get(reject.url(path))
            .header("x_custom", "1")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "header_underscore", "{path}");
    }
}

#[tokio::test]
async fn the_authority_is_read_once_and_two_hosts_are_refused() {
    let emulator = Emulator::start("").await;
    let (app, _arrivals) = permissive_app(false).await;
    let gw = TestGateway::start(&gated_config(app, &emulator, "")).await;
    let user = bearer("usr_hosts");
    let (status, body) = raw_get(&gw, "/app/page", &format!("{user}host: second.test\r\n")).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("host_ambiguous")));
    // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2), for the app too.
    let (status, body) = raw_get(&gw, "http://target.test/app/page", &user).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["host"], "target.test");
    assert_eq!(body["headers"]["x-forwarded-host"], "target.test");
}

/// One HTTP/2 GET with prior knowledge and `path` exactly as written; its status.
async fn h2_get(addr: SocketAddr, path: &str, user: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(super::common::executor(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let request = Request::builder()
        .uri(format!("http://gateway.test{path}"))
        .header("authorization", format!("Bearer {}", user_token(user)))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("h2 response");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}
