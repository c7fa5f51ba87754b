//! Listeners, TLS, limits and lifecycle, and health: what a client sees of the server itself,
//! driven through real (often raw) sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::common::*;

const WAIT: Duration = Duration::from_secs(3);

fn tls_config(upstream: std::net::SocketAddr) -> String {
    with_tls(&open_config(upstream, "", "", ""))
}

/// `config` with an HTTPS listener (the dev certificate) beside its plain one.
fn with_tls(config: &str) -> String {
    config.replace(
        "[server]\n",
        "[server]\nhttps = \"127.0.0.1:0\"\ntls_cert = \"certs/dev-cert.pem\"\ntls_key = \"certs/dev-key.pem\"\n",
    )
}

/// A TLS client that trusts only the dev CA and offers `alpn`.
fn tls_connector(alpn: &[&[u8]], versions: &[&'static rustls::SupportedProtocolVersion]) -> tokio_rustls::TlsConnector {
    tls_connector_with(alpn, versions, rustls::crypto::aws_lc_rs::default_provider())
}

/// [`tls_connector`] with the cipher suites, in their order of preference, of `provider`.
fn tls_connector_with(
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
    provider: rustls::crypto::CryptoProvider,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(repo_path("certs/dev-ca.pem")).expect("dev ca") {
        roots.add(cert.expect("ca pem")).expect("ca cert");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    gw: &TestGateway,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(gw.https.expect("https listener"))
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    tls_connector(alpn, versions)
        .connect(name, tcp)
        .await
        .expect("handshake with the dev CA")
}

/// Begins the drain and waits for it to close `connection` (a client connection's task, idle)
/// cleanly, and for the server to finish.
async fn drain_closes(gw: &mut TestGateway, connection: tokio::task::JoinHandle<hyper::Result<()>>) {
    let serve_task = gw.begin_shutdown();
    tokio::time::timeout(WAIT, connection)
        .await
        .expect("the idle connection was closed when shutdown began")
        .expect("task")
        .expect("connection ended cleanly");
    tokio::time::timeout(WAIT, serve_task)
        .await
        .expect("serve task ends once drained")
        .expect("serve task");
}

async fn echo_json(response: http::Response<hyper::body::Incoming>) -> serde_json::Value {
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("echo json")
}

#[tokio::test]
async fn tls_negotiates_h2_and_answers_over_http2() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&tls_config(upstream)).await;
    let tls = tls_connect(&gw, &[b"h2", b"http/1.1"], rustls::ALL_VERSIONS).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, _connection) = h2_over(tls).await;
    let request = http::Request::get("https://localhost/over/h2?q=1")
        .header("x-user-id", "usr_spoof")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("h2 response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert!(response.headers().contains_key("x-request-id"));
    let echo = echo_json(response).await;
    assert_eq!(echo["path"], "/over/h2");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(seen_header(&echo, "x-forwarded-proto"), Some("https"));
    // HTTP/2 has no Host header: the app gets the request's :authority as both.
    assert_eq!(seen_header(&echo, "host"), Some("localhost"));
    assert_eq!(seen_header(&echo, "x-forwarded-host"), Some("localhost"));
    assert_eq!(seen_header(&echo, "x-user-id"), None);
    gw.shutdown().await;
}

#[tokio::test]
async fn tls_http1_1_works_including_on_tls_1_2() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&tls_config(upstream)).await;
    let tls = tls_connect(&gw, &[b"http/1.1"], &[&rustls::version::TLS12]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let request = http::Request::get("/over/h1")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("h1 response");
    assert_eq!(response.version(), http::Version::HTTP_11);
    let echo = echo_json(response).await;
    assert_eq!(echo["path"], "/over/h1");
    assert_eq!(seen_header(&echo, "x-forwarded-proto"), Some("https"));
    gw.shutdown().await;
}

/// The gateway picks AES-128-GCM even for a client that prefers AES-256-GCM (as OpenSSL's clients
/// do), on TLS 1.3 and 1.2; a client that offers only AES-256-GCM still gets it.
#[tokio::test]
async fn tls_prefers_aes_128_gcm_whatever_the_clients_order() {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384,
    };
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&tls_config(upstream)).await;
    let is_aes_256 = |suite: &rustls::SupportedCipherSuite| format!("{:?}", suite.suite()).contains("AES_256_GCM");
    let handshake = |provider: rustls::crypto::CryptoProvider, version: &'static rustls::SupportedProtocolVersion| {
        let connector = tls_connector_with(&[b"http/1.1"], &[version], provider);
        let https = gw.https.expect("https listener");
        async move {
            let tcp = TcpStream::connect(https).await.expect("connect");
            let name = ServerName::try_from("localhost").expect("name");
            let tls = connector.connect(name, tcp).await.expect("handshake");
            tls.get_ref().1.negotiated_cipher_suite().expect("suite").suite()
        }
    };
    let mut aes_256_first = rustls::crypto::aws_lc_rs::default_provider();
    aes_256_first.cipher_suites.sort_by_key(|suite| !is_aes_256(suite));
    assert!(is_aes_256(&aes_256_first.cipher_suites[0]));
    assert_eq!(
        handshake(aes_256_first.clone(), &rustls::version::TLS13).await,
        TLS13_AES_128_GCM_SHA256
    );
    assert_eq!(
        handshake(aes_256_first.clone(), &rustls::version::TLS12).await,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    let mut only_aes_256 = aes_256_first;
    only_aes_256.cipher_suites.retain(is_aes_256);
    assert_eq!(
        handshake(only_aes_256, &rustls::version::TLS13).await,
        TLS13_AES_256_GCM_SHA384
    );
    gw.shutdown().await;
}

/// A hand-made TLS 1.1 ClientHello (legacy version 3.2, no `supported_versions` extension, but
/// ciphers and signature schemes the server could otherwise use): the server must answer with a
/// `protocol_version` alert, never a ServerHello.
#[tokio::test]
async fn tls_1_1_is_refused() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&tls_config(upstream)).await;
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[0x42; 32]);
    // Session id: none. Ciphers: ECDHE-ECDSA/RSA-AES128-GCM-SHA256. Compression: null.
    hello.extend_from_slice(&[0x00, 0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f, 0x01, 0x00]);
    // Extensions: signature_algorithms = ecdsa_secp256r1_sha256, rsa_pkcs1_sha256.
    hello.extend_from_slice(&[0x00, 0x0a, 0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01]);
    let mut handshake = vec![0x01, 0x00, 0x00, u8::try_from(hello.len()).expect("short")];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, u8::try_from(handshake.len()).expect("short")];
    record.extend_from_slice(&handshake);

    let mut stream = TcpStream::connect(gw.https.expect("https")).await.expect("connect");
    stream.write_all(&record).await.expect("write hello");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("server closes after refusing");
    assert!(answer.len() >= 7, "no alert: {answer:?}");
    assert_eq!(answer[0], 0x15, "expected an alert record, got {answer:?}");
    assert_eq!(answer[6], 70, "expected protocol_version (70), got {answer:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_works_on_the_plain_listener() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&open_config(upstream, "", "", "")).await;
    let (mut sender, _connection) = h2c_connect(&gw).await;
    let response = sender.send_request(h2c_get("/h2c")).await.expect("response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    let echo = echo_json(response).await;
    assert_eq!(seen_header(&echo, "x-forwarded-proto"), Some("http"));
    gw.shutdown().await;
}

/// hyper would keep an HTTP/2 connection for as long as its client answers pings; the gateway
/// closes one that has had no open stream for `idle_timeout`, whether or not it ever sent one,
/// over TLS or not.
#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&with_tls(&open_config(upstream, "idle_timeout = \"500ms\"", "", ""))).await;
    let tls = tls_connect(&gw, &[b"h2"], rustls::ALL_VERSIONS).await;
    let (_tls_sender, over_tls) = h2_over(tls).await;
    let (_silent_sender, silent) = h2c_connect(&gw).await;
    let (mut sender, used) = h2c_connect(&gw).await;
    let response = sender.send_request(h2c_get("/once")).await.expect("response");
    assert_eq!(response.status(), http::StatusCode::OK);
    response.into_body().collect().await.expect("body");
    let answered = Instant::now();
    for connection in [over_tls, silent, used] {
        let closed = tokio::time::timeout(WAIT, connection).await;
        assert!(matches!(closed, Ok(Ok(Ok(())))), "still open or failed: {closed:?}");
    }
    assert!(
        answered.elapsed() >= Duration::from_millis(400),
        "closed before it was idle"
    );
    gw.shutdown().await;
}

/// A stream waiting on a slow app is activity: the connection outlives `idle_timeout` and takes
/// the next request.
#[tokio::test]
async fn http2_connection_with_a_stream_in_flight_is_not_idle() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&open_config(
        upstream,
        "idle_timeout = \"500ms\"",
        "timeout = \"5s\"",
        "",
    ))
    .await;
    let (mut sender, _connection) = h2c_connect(&gw).await;
    let slow = sender.send_request(h2c_get("/slow/1500")).await.expect("slow response");
    assert_eq!(slow.status(), http::StatusCode::OK);
    let next = sender
        .send_request(h2c_get("/next"))
        .await
        .expect("a second request on the connection");
    assert_eq!(next.status(), http::StatusCode::OK);
    gw.shutdown().await;
}

type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// An HTTP/2 (prior knowledge) connection to the plain listener, its driver spawned.
async fn h2c_connect(gw: &TestGateway) -> (H2Sender, tokio::task::JoinHandle<hyper::Result<()>>) {
    h2_over(TcpStream::connect(gw.http.expect("http")).await.expect("connect")).await
}

/// HTTP/2 over an open connection (TCP, or TLS that negotiated h2), its driver spawned; the
/// driver's task ends when the gateway closes the connection.
async fn h2_over<I>(io: I) -> (H2Sender, tokio::task::JoinHandle<hyper::Result<()>>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::handshake(executor(), TokioIo::new(io))
        .await
        .expect("h2 handshake");
    (sender, tokio::spawn(connection))
}

fn h2c_get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("http://localhost{path}"))
        .body(Empty::<Bytes>::new())
        .expect("request")
}

#[tokio::test]
async fn graceful_drain_finishes_in_flight_and_refuses_new_connections() {
    let (upstream, mut arrivals) = echo_upstream_observed().await;
    let mut gw = TestGateway::start(&open_config(upstream, "", "timeout = \"5s\"", "")).await;
    let addr = gw.http.expect("http");
    let in_flight = tokio::spawn(client().get(gw.url("/slow/1000")).send());
    assert_eq!(arrivals.recv().await.as_deref(), Some("/slow/1000"));

    let serve_task = gw.begin_shutdown();
    // The listener closes promptly; poll for it rather than guess how long that takes.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "new connections still accepted after shutdown began");
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before the app answered"
    );

    let response = in_flight.await.expect("task").expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(echoed(response).await["path"], "/slow/1000");
    tokio::time::timeout(WAIT, serve_task)
        .await
        .expect("serve task ends once drained")
        .expect("serve task");
}

/// A kept-alive connection with nothing in flight is closed as soon as shutdown begins, not left
/// to its idle timeout (75 s): the drain has to wake a connection that is only waiting.
#[tokio::test]
async fn graceful_drain_closes_idle_keep_alive_connections() {
    let upstream = echo_upstream().await;
    let mut gw = TestGateway::start(&open_config(upstream, "", "", "")).await;
    let stream = TcpStream::connect(gw.http.expect("http")).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let connection = tokio::spawn(connection);
    let request = http::Request::get("/a")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");

    drain_closes(&mut gw, connection).await;
}

#[tokio::test]
async fn drain_gives_up_after_the_grace_period() {
    let (upstream, mut arrivals) = echo_upstream_observed().await;
    let config = open_config(upstream, "", "timeout = \"10s\"", "")
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"200ms\"");
    let mut gw = TestGateway::start(&config).await;
    let _in_flight = tokio::spawn(client().get(gw.url("/slow/8000")).send());
    assert_eq!(arrivals.recv().await.as_deref(), Some("/slow/8000"));
    let started = Instant::now();
    tokio::time::timeout(WAIT, gw.begin_shutdown())
        .await
        .expect("serve task ends at the grace deadline")
        .expect("serve task");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

/// Half a request head, then silence: the connection is closed after `header_read_timeout`.
#[tokio::test]
async fn slowloris_is_cut_off() {
    let (gw, mut stream) = short_header_timeout().await;
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    assert_closed_within(&mut stream, WAIT).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    gw.shutdown().await;
}

/// A client that connects and never sends a byte holds a connection slot; it must be cut off too.
#[tokio::test]
async fn silent_connection_is_cut_off() {
    let (gw, mut stream) = short_header_timeout().await;
    let started = Instant::now();
    assert_closed_within(&mut stream, WAIT).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    gw.shutdown().await;
}

/// An idle HTTP/1.1 keep-alive connection stays open past `header_read_timeout`, for
/// `idle_timeout` (a load balancer in front keeps its connections open for a while), then closes.
#[tokio::test]
async fn idle_keep_alive_connection_lasts_the_idle_timeout() {
    let (gw, mut stream) = short_header_timeout().await;
    get_kept_alive(&mut stream).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let head = get_kept_alive(&mut stream).await;
    assert!(!head.to_ascii_lowercase().contains("connection: close"), "{head}");
    let started = Instant::now();
    assert_closed_within(&mut stream, WAIT).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    gw.shutdown().await;
}

/// Quiet past `header_read_timeout`, a kept-alive connection is released by hyper and waits on
/// its socket alone (`timer`): over TLS it still answers its next request, on the same
/// connection, and the drain closes it at once like any idle connection.
#[tokio::test]
async fn a_released_tls_keep_alive_connection_serves_again_and_drains() {
    let upstream = echo_upstream().await;
    let limits = "header_read_timeout = \"200ms\"\nidle_timeout = \"30s\"";
    let mut gw = TestGateway::start(&with_tls(&open_config(upstream, limits, "", ""))).await;
    let tls = tls_connect(&gw, &[b"http/1.1"], rustls::ALL_VERSIONS).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    let connection = tokio::spawn(connection);
    for round in 0..3 {
        let request = http::Request::get(format!("/released/{round}"))
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("the same connection answers");
        assert_eq!(echo_json(response).await["path"], format!("/released/{round}"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drain_closes(&mut gw, connection).await;
}

/// Requests within the idle timeout keep a connection open for as long as they come, and it
/// closes one idle timeout after its last answer.
#[tokio::test]
async fn busy_keep_alive_connection_outlives_the_idle_timeout() {
    let (gw, mut stream) = short_header_timeout().await;
    let started = Instant::now();
    for _ in 0..4 {
        get_kept_alive(&mut stream).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1600),
        "outlived the idle timeout"
    );
    let idle_from = Instant::now() - Duration::from_millis(400);
    assert_closed_within(&mut stream, WAIT).await;
    assert!(idle_from.elapsed() >= Duration::from_millis(900));
    gw.shutdown().await;
}

/// On a kept-alive connection, the next request's head has `header_read_timeout` from its first
/// bytes, however long the connection was idle before them.
#[tokio::test]
async fn slow_head_on_a_kept_alive_connection_is_cut_off() {
    // Idle for 5 s: a head cut by the idle deadline instead would last 4.5 s more.
    let (gw, mut stream) = short_timeouts("5s").await;
    get_kept_alive(&mut stream).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    assert_closed_within(&mut stream, Duration::from_secs(2)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    gw.shutdown().await;
}

/// A gateway whose `header_read_timeout` is 300 ms and `idle_timeout` 1 s, and a raw connection
/// to it.
async fn short_header_timeout() -> (TestGateway, TcpStream) {
    short_timeouts("1s").await
}

async fn short_timeouts(idle_timeout: &str) -> (TestGateway, TcpStream) {
    let upstream = echo_upstream().await;
    let limits = format!("header_read_timeout = \"300ms\"\nidle_timeout = \"{idle_timeout}\"");
    let gw = TestGateway::start(&open_config(upstream, &limits, "", "")).await;
    let stream = TcpStream::connect(gw.http.expect("http")).await.expect("connect");
    (gw, stream)
}

/// Sends `GET /x` on an open keep-alive connection and reads its whole 200 answer; returns the head.
async fn get_kept_alive(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write (the connection must still be open)");
    let (head, _) = read_response(stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    head
}

/// The server closes the connection (possibly after an error response) within `limit`.
async fn assert_closed_within(stream: &mut TcpStream, limit: Duration) {
    let mut sink = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut sink)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Err(_) => panic!("connection still open after {limit:?}"),
    }
}

#[tokio::test]
async fn oversized_header_block_is_431() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&open_config(upstream, "max_header_bytes = 16384", "", "")).await;
    let big = "a".repeat(20 * 1024);
    let request = format!("GET /x HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let mut stream = TcpStream::connect(gw.http.expect("http")).await.expect("connect");
    // The server may answer and close before it has read everything; a failed write is fine.
    let _ = stream.write_all(request.as_bytes()).await;
    let (head, _) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");

    // Just under the limit is fine.
    let fits = "a".repeat(12 * 1024);
    let request = format!("GET /x HTTP/1.1\r\nHost: localhost\r\nX-Big: {fits}\r\nConnection: close\r\n\r\n");
    let (head, _) = raw_exchange(gw.http.expect("http"), request.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    gw.shutdown().await;
}

#[tokio::test]
async fn max_connections_bounds_concurrent_connections() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&open_config(upstream, "max_connections = 2", "", "")).await;
    let addr = gw.http.expect("http");
    let request = b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        open.push(stream);
    }
    // The kernel completes the third handshake, but the gateway does not take it on.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    third.write_all(request).await.expect("write");
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte)).await;
    assert!(early.is_err(), "a third connection was served while two were open");

    drop(open.pop());
    let (head, _) = tokio::time::timeout(WAIT, read_head(&mut third))
        .await
        .expect("served once a slot frees up");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    gw.shutdown().await;
}

#[tokio::test]
async fn health_endpoints_answer_without_the_app() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let gw = TestGateway::start(&base_config(closed, "")).await;
    let live = client().get(gw.url("/healthz")).send().await.expect("healthz");
    assert_eq!(live.status(), 200);
    assert!(live.headers().contains_key("x-request-id"));
    let body: serde_json::Value = live.json().await.expect("json");
    assert_eq!(body["status"], "ok");

    let ready = client().get(gw.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["config"], true);
    assert_eq!(body["checks"]["keys"], true);
    gw.shutdown().await;
}

#[tokio::test]
async fn health_paths_are_configurable() {
    let upstream = echo_upstream().await;
    let health = "[health]\nlive_path = \"/_live\"\nready_path = \"/_ready\"\n";
    let gw = TestGateway::start(&open_config(upstream, "", "", health)).await;
    let live = client().get(gw.url("/_live")).send().await.expect("live");
    assert_eq!(live.status(), 200);
    assert!(live.headers().get("x-upstream").is_none(), "health was proxied");
    let ready = client().get(gw.url("/_ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 200);
    assert!(ready.headers().get("x-upstream").is_none(), "readiness was proxied");
    // The old paths are now ordinary routes and go to the app.
    let old = client().get(gw.url("/healthz")).send().await.expect("old path");
    assert_eq!(old.headers()["x-upstream"], "echo");
    gw.shutdown().await;
}
