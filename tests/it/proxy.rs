//! The reverse proxy: what reaches the app, and what the client gets back when the app fails.

use super::common::*;

#[tokio::test]
async fn public_path_is_proxied_without_a_token() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let echo = echoed(
        client()
            .get(gw.url("/public/app.css?v=1"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(echo["path"], "/public/app.css");
    assert_eq!(echo["query"], "v=1");
    assert_eq!(seen_header(&echo, "x-forwarded-proto"), Some("http"));
    assert_eq!(seen_header(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert!(seen_header(&echo, "x-request-id").is_some_and(|id| id.len() == 32));
    gw.shutdown().await;
}

/// A kept-alive client's later requests travel over its own upstream connection, not the pool's;
/// they must reach the app exactly as its first one did.
#[tokio::test]
async fn requests_on_a_kept_alive_connection_are_forwarded_alike() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let client = client();
    let host = gw
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    for i in 0..4 {
        let response = client
            .post(gw.url(&format!("/public/items/{i}?n={i}")))
            .body(format!("body {i}"))
            .send()
            .await
            .expect("request");
        let echo = echoed(response).await;
        assert_eq!(echo["path"], format!("/public/items/{i}"));
        assert_eq!(echo["query"], format!("n={i}"));
        assert_eq!(echo["body"], format!("body {i}"));
        assert_eq!(seen_header(&echo, "host"), Some(host.as_str()));
        assert_eq!(seen_header(&echo, "x-forwarded-host"), Some(host.as_str()));
        assert_eq!(echo["headers"]["host"].as_array().map(Vec::len), Some(1));
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn method_path_query_and_body_are_forwarded() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    for method in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::PATCH] {
        let response = client()
            .request(method.clone(), gw.url("/public/items/42?a=1&b=two%20words"))
            .header("content-type", "text/plain")
            .body("hello upstream")
            .send()
            .await
            .expect("request");
        let echo = echoed(response).await;
        assert_eq!(echo["method"], method.as_str());
        assert_eq!(echo["path"], "/public/items/42");
        assert_eq!(echo["query"], "a=1&b=two%20words");
        assert_eq!(echo["body"], "hello upstream");
        assert_eq!(echo["body_len"], 14);
        assert_eq!(seen_header(&echo, "content-type"), Some("text/plain"));
    }
    let response = client()
        .delete(gw.url("/public/items/42"))
        .send()
        .await
        .expect("request");
    assert_eq!(echoed(response).await["method"], "DELETE");
    gw.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_removed() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let request = "GET /public/hop HTTP/1.1\r\nHost: app.example\r\n\
        Connection: close, x-drop-me\r\nX-Drop-Me: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
        Trailer: x-checksum\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n\
        Upgrade: h2c\r\nX-Kept: yes\r\n\r\n";
    let (head, body) = raw_exchange(gw.http.expect("http"), request.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echo: serde_json::Value = serde_json::from_slice(&body).expect("echo json");
    for dropped in [
        "x-drop-me",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert_eq!(seen_header(&echo, dropped), None, "{dropped} reached the app");
    }
    // hyper's client adds its own `connection` only when it must; the client's never crosses.
    assert_ne!(seen_header(&echo, "connection"), Some("close, x-drop-me"));
    assert_eq!(seen_header(&echo, "x-kept"), Some("yes"));
    gw.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&open_config(upstream, "", "", "")).await;
    let response = client().get(gw.url("/hop-headers")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    for dropped in ["x-hop-secret", "keep-alive", "proxy-authenticate"] {
        assert!(headers.get(dropped).is_none(), "{dropped} reached the client");
    }
    assert_eq!(headers["x-kept"], "1");
    gw.shutdown().await;
}

#[tokio::test]
async fn forwarded_headers_describe_the_client_connection() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let response = client()
        .get(gw.url("/public/x"))
        .header("host", "app.example:8080")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .expect("request");
    let echo = echoed(response).await;
    assert_eq!(seen_header(&echo, "x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(seen_header(&echo, "x-forwarded-proto"), Some("http"));
    assert_eq!(seen_header(&echo, "x-forwarded-host"), Some("app.example:8080"));
    assert_eq!(seen_header(&echo, "host"), Some("app.example:8080"));
    assert_eq!(echo["headers"]["x-forwarded-host"].as_array().map(Vec::len), Some(1));
    gw.shutdown().await;
}

#[tokio::test]
async fn client_forwarded_host_never_passes_through() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    // HTTP/1.0 needs no Host, so the gateway has no host of its own to put in X-Forwarded-Host.
    let request = "GET /public/x HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\n\r\n";
    let (head, body) = raw_exchange(gw.http.expect("http"), request.as_bytes()).await;
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let echo: serde_json::Value = serde_json::from_slice(&body).expect("echo json");
    assert_ne!(seen_header(&echo, "x-forwarded-host"), Some("evil.example"));
    gw.shutdown().await;
}

/// A request without `Host` reaches the app with the app's own authority, as the first request
/// (through the pool) and as later ones (over the connection's dedicated upstream connection).
#[tokio::test]
async fn requests_without_host_reach_the_app_with_its_authority() {
    use tokio::io::AsyncWriteExt;
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let mut stream = tokio::net::TcpStream::connect(gw.http.expect("http"))
        .await
        .expect("connect");
    for _ in 0..3 {
        stream
            .write_all(b"GET /public/x HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let echo: serde_json::Value = serde_json::from_slice(&body).expect("echo json");
        assert_eq!(seen_header(&echo, "host"), Some(upstream.to_string().as_str()));
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn sane_request_id_is_propagated_and_echoed() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let response = client()
        .get(gw.url("/public/x"))
        .header("x-request-id", "trace-01:abc_DEF.9")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "trace-01:abc_DEF.9");
    let echo = echoed(response).await;
    assert_eq!(seen_header(&echo, "x-request-id"), Some("trace-01:abc_DEF.9"));
    gw.shutdown().await;
}

#[tokio::test]
async fn insane_request_id_is_replaced_and_the_new_one_echoed() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let too_long = "a".repeat(129);
    for given in ["has space", "semi;colon", "quote\"d", too_long.as_str(), ""] {
        let response = client()
            .get(gw.url("/public/x"))
            .header("x-request-id", given)
            .send()
            .await
            .expect("request");
        let returned = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
        assert_ne!(returned, given);
        assert!(
            returned.len() == 32 && returned.bytes().all(|b| b.is_ascii_hexdigit()),
            "{returned}"
        );
        let echo = echoed(response).await;
        assert_eq!(seen_header(&echo, "x-request-id"), Some(returned.as_str()));
        assert_eq!(echo["headers"]["x-request-id"].as_array().map(Vec::len), Some(1));
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn client_identity_headers_are_stripped_on_public_paths() {
    let upstream = echo_upstream().await;
    let identity = "[identity]\nforward_token = false\n[identity.claim_headers]\nemail = \"x-user-email\"\n";
    let gw = TestGateway::start(&base_config(upstream, identity)).await;
    let response = client()
        .get(gw.url("/public/x"))
        .header("x-user-id", "usr_admin")
        .header("X-User-Id", "usr_other")
        .header("x-user-email", "admin@example.com")
        .header("authorization", "Bearer not-for-the-app")
        .header("cookie", "theme=dark; session=not-for-the-app; lang=en")
        .send()
        .await
        .expect("request");
    let echo = echoed(response).await;
    assert_eq!(seen_header(&echo, "x-user-id"), None);
    assert_eq!(seen_header(&echo, "x-user-email"), None);
    assert_eq!(seen_header(&echo, "authorization"), None);
    assert_eq!(seen_header(&echo, "cookie"), Some("theme=dark; lang=en"));
    // A bearer token behind another `Authorization` copy is found too; another scheme alone is
    // the app's.
    let response = client()
        .get(gw.url("/public/x"))
        .header("authorization", "Basic dXNlcjpwdw==")
        .header("authorization", "bearer second-copy")
        .send()
        .await
        .expect("request");
    assert_eq!(
        echoed(response).await["headers"]["authorization"],
        serde_json::Value::Null
    );
    let response = client()
        .get(gw.url("/public/x"))
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .expect("request");
    assert_eq!(
        seen_header(&echoed(response).await, "authorization"),
        Some("Basic dXNlcjpwdw==")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn credentials_reach_the_app_when_forward_token_is_on() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let response = client()
        .get(gw.url("/public/x"))
        .header("x-user-id", "usr_admin")
        .header("authorization", "Bearer for-the-app")
        .header("cookie", "session=for-the-app")
        .send()
        .await
        .expect("request");
    let echo = echoed(response).await;
    assert_eq!(seen_header(&echo, "x-user-id"), None);
    assert_eq!(seen_header(&echo, "authorization"), Some("Bearer for-the-app"));
    assert_eq!(seen_header(&echo, "cookie"), Some("session=for-the-app"));
    gw.shutdown().await;
}

const FIFTY_MB: usize = 50 * 1024 * 1024;

/// The app answers `/stream` after the first chunk. The rest of the body is only sent once the
/// response head is back, so a proxy that buffers the request body never answers.
#[tokio::test]
async fn large_request_body_streams_without_buffering() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&open_config(upstream, "", "timeout = \"20s\"", "")).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let pending = tokio::spawn(client().post(gw.url("/stream")).body(body).send());
    let chunk = bytes::Bytes::from(vec![b'z'; 1024 * 1024]);
    tx.send(Ok(chunk.clone())).await.expect("first chunk");
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), pending)
        .await
        .expect("no response head while the body was still open: the proxy buffers request bodies")
        .expect("task")
        .expect("response");
    assert_eq!(response.status(), 200);
    let sender = tokio::spawn(async move {
        for _ in 1..FIFTY_MB / chunk.len() {
            tx.send(Ok(chunk.clone())).await.expect("chunk");
        }
    });
    let text = tokio::time::timeout(std::time::Duration::from_secs(20), response.text())
        .await
        .expect("body ends")
        .expect("body");
    sender.await.expect("sender");
    assert_eq!(text, format!("received {FIFTY_MB}"));
    gw.shutdown().await;
}

/// The app sends 50 MB and then keeps the response open, so a proxy that waits for the end of
/// the response before passing it on delivers nothing.
#[tokio::test]
async fn large_response_streams_without_buffering() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&open_config(upstream, "", "", "")).await;
    let mut response = client()
        .get(gw.url(&format!("/drip/{FIFTY_MB}")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    let all = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while received < FIFTY_MB {
            let chunk = response.chunk().await.expect("chunk").expect("body still open");
            assert!(chunk.iter().all(|&b| b == b'x'));
            received += chunk.len();
        }
    })
    .await;
    assert!(
        all.is_ok(),
        "only {received} of {FIFTY_MB} bytes arrived: the proxy buffers responses"
    );
    assert_eq!(received, FIFTY_MB);
    gw.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrade_round_trips_through_the_gateway() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let mut stream = tokio::net::TcpStream::connect(gw.http.expect("http"))
        .await
        .expect("connect");
    let request = "GET /public/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("write");
    let (head, early) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(early.is_empty());
    for message in [&b"hello through the tunnel"[..], &[0u8, 159, 255, 1][..]] {
        stream.write_all(message).await.expect("write frame");
        let mut back = vec![0u8; message.len()];
        tokio::time::timeout(std::time::Duration::from_secs(3), stream.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("read echo");
        assert_eq!(back, message);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn refused_upstream_is_502_upstream_unavailable() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let gw = TestGateway::start(&base_config(closed, "")).await;
    let response = client()
        .get(gw.url("/public/x"))
        .header("x-request-id", "req-502")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-request-id"], "req-502");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert!(body["error"]["message"].is_string());
    // The detail (addresses, OS errors) goes to the log, not to the client.
    assert!(!body.to_string().contains(&closed.port().to_string()));
    gw.shutdown().await;
}

/// Regression (scripts/chaos.sh, case 9): a client's malformed chunked body failed the upstream
/// request and was answered 502 upstream_unavailable, blaming the app. It is the client's fault:
/// 400 body_unreadable, on the first request of a connection (the pool) and on a later one (its
/// dedicated upstream connection).
#[tokio::test]
async fn a_malformed_request_body_is_400_not_the_apps_fault() {
    use tokio::io::AsyncWriteExt;
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    // A chunk size that is not hex.
    let chunks = "5\r\nhello\r\nzz\r\n world\r\n0\r\n\r\n";
    let head_of = |connection: &str| {
        format!(
            "POST /public/upload HTTP/1.1\r\nHost: app.example\r\n{connection}Transfer-Encoding: chunked\r\n\r\n{chunks}"
        )
    };
    let (head, body) = raw_exchange(gw.http.expect("http"), head_of("Connection: close\r\n").as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["code"], "body_unreadable");
    // The second request of a kept-alive connection goes over its own upstream connection.
    let mut stream = tokio::net::TcpStream::connect(gw.http.expect("http"))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /public/first HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(head_of("").as_bytes()).await.expect("write");
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["code"], "body_unreadable");
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_is_504_upstream_timeout() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&open_config(upstream, "", "timeout = \"300ms\"", "")).await;
    let response = client().get(gw.url("/slow/3000")).send().await.expect("request");
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "upstream_timeout");
    // A fast request right after shows the gateway is unharmed.
    let ok = client().get(gw.url("/slow/1")).send().await.expect("request");
    assert_eq!(ok.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn request_timeout_bounds_the_whole_request() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&open_config(
        upstream,
        "request_timeout = \"300ms\"",
        "timeout = \"5s\"",
        "",
    ))
    .await;
    let response = client().get(gw.url("/slow/3000")).send().await.expect("request");
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "request_timeout");
    gw.shutdown().await;
}
