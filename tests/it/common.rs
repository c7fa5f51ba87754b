//! The harness: a real upstream app (hyper, port 0) that echoes what it received, and a real
//! gateway bound to port 0 in front of it. Nothing here is faked beyond Persona itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// The HS256 secret the base config trusts.
pub const HS_SECRET: &str = "integration-test-secret-0123456789abcdef";

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 token signed with [`HS_SECRET`].
pub fn token(claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), claims, &key).expect("sign token")
}

/// A valid token for `user` that expires in an hour.
pub fn user_token(user: &str) -> String {
    token(&json!({ "sub": user, "exp": now() + 3600, "iat": now() }))
}

/// A GET as `user`, with a token minted for them.
pub async fn get_as(url: &str, user: &str) -> reqwest::Response {
    client()
        .get(url)
        .bearer_auth(user_token(user))
        .send()
        .await
        .expect("request")
}

/// A config that listens on plain HTTP port 0 in front of `upstream`, trusting [`HS_SECRET`].
/// `extra` is appended verbatim, for tests that add sections.
pub fn base_config(upstream: SocketAddr, extra: &str) -> String {
    gateway_config(upstream, &hs_auth("/public/"), extra)
}

/// Plain HTTP on port 0 in front of `upstream` with short timeouts; the `[auth]` table's body is
/// `auth` (its sub-tables included) and `extra` follows it.
pub fn gateway_config(upstream: SocketAddr, auth: &str, extra: &str) -> String {
    config_text(upstream, "", "timeout = \"2s\"", auth, extra)
}

/// A config like [`base_config`] where every path is public (the tests using it are about the
/// proxy and the server, not identity), with `limits` and `upstream` lines placed in those tables.
pub fn open_config(upstream: SocketAddr, limits: &str, upstream_extra: &str, extra: &str) -> String {
    config_text(upstream, limits, upstream_extra, &hs_auth("/"), extra)
}

/// The `[auth]` body of the configs above: header or `session` cookie, HS256 with [`HS_SECRET`].
fn hs_auth(public_path: &str) -> String {
    format!(
        r#"sources = ["header", "cookie"]
cookie = "session"
public_paths = ["{public_path}"]

[[auth.keys]]
algorithms = ["HS256"]
secret = {{ value = "{HS_SECRET}" }}
"#
    )
}

fn config_text(upstream: SocketAddr, limits: &str, upstream_lines: &str, auth: &str, extra: &str) -> String {
    format!(
        r#"
[server]
http = "127.0.0.1:0"

[limits]
shutdown_grace = "5s"
{limits}

[upstream]
url = "http://{upstream}"
connect_timeout = "1s"
{upstream_lines}

[auth]
{auth}

{extra}
"#
    )
}

/// The shipped config.toml with every listener moved to port 0, so the test runs beside a
/// running quick start without clashing.
pub fn shipped_config_on_free_ports() -> String {
    let text = std::fs::read_to_string(repo_path("config.toml")).expect("read config.toml");
    let mut out = String::new();
    for line in text.lines() {
        let moved = match line.split_once("\"127.0.0.1:") {
            Some((head, rest))
                if rest
                    .split_once('"')
                    .is_some_and(|(port, _)| port.parse::<u16>().is_ok()) =>
            {
                let tail = rest.split_once('"').map(|(_, t)| t).unwrap_or("");
                format!("{head}\"127.0.0.1:0\"{tail}")
            }
            _ => line.to_owned(),
        };
        out.push_str(&moved);
        out.push('\n');
    }
    out
}

/// A gateway serving on port 0 until dropped or shut down.
pub struct TestGateway {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    /// The embedded emulator and demo app, when the config has them.
    pub emulator: Option<SocketAddr>,
    pub demo: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    /// Starts a gateway from config text; relative paths resolve against the repository root.
    pub async fn start(config_text: &str) -> TestGateway {
        let config =
            persona_gate::config::parse(config_text, &repo_path("test-config.toml")).expect("valid test config");
        let bound = persona_gate::bind(config).await.expect("gateway binds");
        let (stop, stopped) = oneshot::channel::<()>();
        let (http, https) = (bound.http_addr(), bound.https_addr());
        let (emulator, demo) = (bound.emulator_addr(), bound.demo_addr());
        let task = tokio::spawn(bound.serve(async {
            let _ = stopped.await;
        }));
        TestGateway {
            http,
            https,
            emulator,
            demo,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.expect("http listener"))
    }

    /// Signals shutdown and returns the serve task, which ends once the drain is over.
    pub fn begin_shutdown(&mut self) -> &mut tokio::task::JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        &mut self.task
    }

    pub async fn shutdown(mut self) {
        let _ = self.begin_shutdown().await;
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A fake app. Every request is answered with a JSON echo of what arrived:
/// `{"method", "path", "query", "headers": {name: [values]}, "body_len", "body"}`. Special paths:
/// - `/slow/<ms>`: waits that long before answering;
/// - `/stream`: answers as soon as the first body chunk arrives, then streams the total byte
///   count when the request body ends (proves neither side was buffered whole);
/// - `/drip/<n>`: streams `n` bytes, then keeps the response open until the client leaves;
/// - `/hop-headers`: answers with hop-by-hop headers (`Connection: x-hop-secret`, `Keep-Alive`,
///   `X-Hop-Secret`, `Proxy-Authenticate`) beside an ordinary `X-Kept`;
/// - any request with `Connection: upgrade`: answers 101 and echoes raw bytes afterwards.
pub async fn echo_upstream() -> SocketAddr {
    echo_upstream_observed().await.0
}

/// [`echo_upstream`] that also reports the path of each request as it arrives, before answering,
/// so a test can wait for "the app has the request" instead of sleeping.
pub async fn echo_upstream_observed() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel::<String>();
    let addr = serve(move |req| {
        let _ = arrived.send(req.uri().path().to_owned());
        async move { Ok::<_, Infallible>(echo(req).await) }
    })
    .await;
    (addr, arrivals)
}

/// An HTTP/1.1 server on 127.0.0.1:0 (upgrades allowed) that answers every request with
/// `answer`, until the test's runtime ends: the one accept loop of the tests' fake apps and IdPs.
/// `answer` runs as each request arrives, so it can report the request before answering; an
/// `Err` closes the connection without an answer, as a crashing app would.
pub async fn serve<F, Fut, B, E>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a test server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            let service = service_fn(answer.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            );
        }
    });
    addr
}

type EchoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn echo(mut req: Request<Incoming>) -> Response<EchoBody> {
    let path = req.uri().path().to_owned();
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|ms| ms.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if req.headers().contains_key(http::header::UPGRADE) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let protocol = req.headers()[http::header::UPGRADE].clone();
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(http::header::CONNECTION, "upgrade")
            .header(http::header::UPGRADE, protocol)
            .body(Full::new(Bytes::new()).boxed())
            .expect("response");
    }
    if path == "/stream" {
        return stream_count(req.into_body()).await;
    }
    if let Some(n) = path.strip_prefix("/drip/").and_then(|n| n.parse::<usize>().ok()) {
        return drip(n);
    }
    if path == "/hop-headers" {
        return Response::builder()
            .header(http::header::CONNECTION, "x-hop-secret")
            .header("keep-alive", "timeout=5")
            .header("x-hop-secret", "1")
            .header(http::header::PROXY_AUTHENTICATE, "Basic")
            .header("x-kept", "1")
            .body(Full::new(Bytes::from_static(b"ok")).boxed())
            .expect("response");
    }
    let summary = summarize(&req);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut summary = summary;
    summary["body_len"] = json!(body.len());
    summary["body"] = json!(String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]));
    Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", "echo")
        .body(Full::new(Bytes::from(summary.to_string())).boxed())
        .expect("response")
}

fn summarize(req: &Request<Incoming>) -> Value {
    let mut headers = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<Value> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| json!(String::from_utf8_lossy(v.as_bytes())))
            .collect();
        headers.insert(name.as_str().to_owned(), Value::Array(values));
    }
    json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
    })
}

async fn stream_count(mut body: Incoming) -> Response<EchoBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let first = body.frame().await;
    tokio::spawn(async move {
        let mut total = 0usize;
        let mut next = first;
        while let Some(Ok(frame)) = next {
            if let Some(data) = frame.data_ref() {
                total += data.len();
            }
            next = body.frame().await;
        }
        let _ = tx.send(Ok(Frame::data(Bytes::from(format!("received {total}"))))).await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::new(StreamBody::new(stream).boxed())
}

/// `n` bytes of `x` in 64 KiB chunks, produced as they are sent, then the body stays open until
/// the client goes away. A proxy that waits for the end of a response never delivers any of it.
fn drip(n: usize) -> Response<EchoBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut left = n;
        while left > 0 {
            let take = left.min(chunk.len());
            if tx.send(Ok(Frame::data(chunk.slice(..take)))).await.is_err() {
                return;
            }
            left -= take;
        }
        tx.closed().await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::new(StreamBody::new(stream).boxed())
}

/// The echo JSON of a proxied response.
pub async fn echoed(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "expected a proxied 200");
    response.json().await.expect("echo json")
}

/// The first value of `header` as the app saw it.
pub fn seen_header<'a>(echo: &'a Value, header: &str) -> Option<&'a str> {
    echo["headers"][header].get(0).and_then(Value::as_str)
}

pub fn executor() -> TokioExecutor {
    TokioExecutor::new()
}

/// Reads from `stream` until the end of a response head and returns it (lossy UTF-8) with any
/// bytes that arrived after it. Raw sockets let tests send what well-behaved clients never would.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = bytes.split_off(end + 4);
            return (String::from_utf8_lossy(&bytes).into_owned(), rest);
        }
        let n = stream.read(&mut buf).await.expect("read response head");
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// Reads one whole response with a `Content-Length` body from a kept-alive `stream`, leaving it
/// ready for the next: (head, body).
pub async fn read_response(stream: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let (head, mut body) = read_head(stream).await;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("content-length");
    let mut rest = vec![0u8; length - body.len()];
    stream.read_exact(&mut rest).await.expect("body");
    body.extend(rest);
    (head, body)
}

/// Sends raw request bytes (which should say `Connection: close`) and returns the whole response
/// as (head, body). The body is read to EOF, so only use this for non-chunked answers.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let (head, mut body) = read_head(&mut stream).await;
    stream.read_to_end(&mut body).await.expect("read body");
    (head, body)
}

/// A private `redis-server` on a free loopback port, killed on drop.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// `None` (with a loud note) when redis-server is not installed, unless `CI=true`, where a
    /// missing Redis is a failure: CI must run these tests.
    pub async fn start() -> Option<Redis> {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "redis-server is not installed, and CI must run the Redis tests"
            );
            eprintln!("\n!!! SKIPPED: redis-server is not installed; this Redis test did not run !!!\n");
            return None;
        }
        // Another test may take the free port before redis-server binds it; then try another.
        for _ in 0..5 {
            let mut redis = Redis {
                port: free_port(),
                child: None,
            };
            if redis.try_restart().await {
                return Some(redis);
            }
        }
        panic!("redis-server could not bind any of five free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts redis-server again on the same port (the clients under test reconnect to it).
    pub async fn restart(&mut self) {
        assert!(
            self.try_restart().await,
            "redis-server could not bind {} again",
            self.port
        );
    }

    /// False when redis-server exited at once, which it does when its port is taken.
    async fn try_restart(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            if child.try_wait().expect("redis-server status").is_some() {
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server did not start listening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
        true
    }

    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }
}

/// Binding port 0 and releasing it, for programs that cannot report an ephemeral port back to
/// us (redis-server, chromedriver): their harnesses retry when another test took it meanwhile.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An address where every connection is refused for as long as the socket is held: bound, so no
/// one else can take the port, and never listening.
pub fn refusing_addr() -> (SocketAddr, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    (socket.local_addr().expect("addr"), socket)
}

/// A `[store]` section for the Redis at `url`.
pub fn redis_store(url: &str, on_error: &str) -> String {
    format!(
        r#"
[store]
backend = "redis"
redis_url = "{url}"
timeout = "250ms"
on_store_error = "{on_error}"
"#
    )
}

// ===== a standalone Persona emulator for the tests that drive get-or-create =====

/// The emulator's key in these tests; it must never show up in a response or a log line.
pub const KEY: &str = "persona_sandbox_it_SECRET_7c41d9e2";
pub const TEMPLATE: &str = "itmpl_emulator_kyc";
/// A standalone emulator on port 0, serving until the test's runtime ends.
pub struct Emulator {
    pub addr: SocketAddr,
    pub base_url: String,
}

impl Emulator {
    pub async fn start(extra: &str) -> Emulator {
        let upstream: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let text = base_config(
            upstream,
            &format!("[emulator]\nlisten = \"127.0.0.1:0\"\napi_key = {{ value = \"{KEY}\" }}\n{extra}"),
        );
        let config = persona_gate::config::parse(&text, &repo_path("test-config.toml")).expect("emulator config");
        let emulator = persona_gate::emulator::Emulator::bind(config.emulator.as_ref().expect("[emulator]"))
            .await
            .expect("emulator binds");
        let (addr, base_url) = (emulator.addr(), emulator.base_url());
        emulator.spawn(std::future::pending::<()>());
        Emulator { addr, base_url }
    }

    fn control(&self, path: &str) -> String {
        format!("http://{}/_emulator{path}", self.addr)
    }

    pub async fn calls(&self) -> Vec<Value> {
        let body: Value = client()
            .get(self.control("/calls"))
            .send()
            .await
            .expect("calls")
            .json()
            .await
            .expect("calls json");
        body["calls"].as_array().cloned().unwrap_or_default()
    }

    pub async fn clear_calls(&self) {
        self.control_call(Method::DELETE, "/calls", None).await;
    }

    pub async fn fault(&self, fault: Value) {
        self.control_call(Method::POST, "/faults", Some(fault)).await;
    }

    pub async fn clear_faults(&self) {
        self.control_call(Method::DELETE, "/faults", None).await;
    }

    pub async fn latency(&self, ms: u64) {
        self.control_call(Method::PUT, "/latency", Some(json!({ "ms": ms })))
            .await;
    }

    pub async fn advance(&self, inquiry: &str, action: &str, pass: bool) {
        let path = format!("/inquiries/{inquiry}/advance");
        let body = json!({ "action": action, "pass": pass });
        self.control_call(Method::POST, &path, Some(body)).await;
    }

    /// Lets `seconds` pass on the emulator's clock.
    pub async fn advance_clock(&self, seconds: u64) {
        self.control_call(Method::POST, "/clock", Some(json!({ "advance_seconds": seconds })))
            .await;
    }

    /// Publishes a new version of `template` and returns its id.
    pub async fn publish(&self, template: &str) -> String {
        let body: Value = client()
            .post(self.control(&format!("/templates/{template}/publish")))
            .send()
            .await
            .expect("publish")
            .json()
            .await
            .expect("publish json");
        body["latest_published_version"].as_str().expect("version").to_owned()
    }

    /// Redacts an inquiry through Persona's API.
    pub async fn redact(&self, inquiry: &str) {
        let r = client()
            .delete(format!("{}/inquiries/{inquiry}", self.base_url))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("redact");
        assert!(r.status().is_success(), "redact {inquiry}: {}", r.status());
    }

    /// One inquiry as Persona returns it on `version` (kebab-case keys).
    pub async fn inquiry(&self, inquiry: &str, version: &str) -> Value {
        client()
            .get(format!("{}/inquiries/{inquiry}", self.base_url))
            .bearer_auth(KEY)
            .header("persona-version", version)
            .send()
            .await
            .expect("retrieve")
            .json()
            .await
            .expect("retrieve json")
    }

    /// One control-API call that must succeed.
    async fn control_call(&self, method: Method, path: &str, body: Option<Value>) {
        let mut request = client().request(method.clone(), self.control(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.expect("emulator control call");
        assert!(r.status().is_success(), "{method} {path}: {}", r.status());
    }

    /// The user's inquiries as Persona itself lists them (newest first), on API version
    /// 2025-10-27: field keys as the template spells them.
    pub async fn inquiries_of(&self, user: &str) -> Vec<Value> {
        let body: Value = client()
            .get(format!(
                "{}/inquiries?filter%5Breference-id%5D={}&page%5Bsize%5D=100",
                self.base_url,
                percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC)
            ))
            .bearer_auth(KEY)
            .header("persona-version", "2025-10-27")
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list json");
        body["data"].as_array().cloned().unwrap_or_default()
    }
}

// ===== the real binary, as a child process =====

/// A config file in a fresh temporary directory, removed on drop: for tests that run the binary
/// or reload, since both read the config from a file.
pub struct ConfigFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!(
            "persona-gate-it-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let file = ConfigFile {
            path: dir.join("config.toml"),
            dir,
        };
        file.write(text);
        file
    }

    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).expect("write config file");
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The real `persona-gate` binary on a config file of its own, killed when dropped, with every
/// line it writes to stdout kept for the test to read.
///
/// Tests that read log lines or metrics use this rather than an in-process gateway: the tracing
/// dispatcher and the metrics recorder are process-wide, and a thread-local subscriber misses the
/// callsites whose interest another test's thread has already cached. A process of its own has
/// neither problem. It binds port 0 and reports its addresses in its log, so no port is guessed.
pub struct GatewayProcess {
    child: Child,
    pub http: SocketAddr,
    pub admin: Option<SocketAddr>,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    grew: std::sync::Arc<tokio::sync::Notify>,
}

impl GatewayProcess {
    /// Starts the binary on `config` with `RUST_LOG=rust_log` and waits for its listeners.
    pub async fn start(config: &Path, rust_log: &str) -> GatewayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_persona-gate"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start persona-gate");
        let stdout = child.stdout.take().expect("stdout piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let grew = std::sync::Arc::new(tokio::sync::Notify::new());
        let (sink, notify) = (lines.clone(), grew.clone());
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().expect("log lines").push(line);
                notify.notify_waiters();
            }
            // The binary ended: wake waiters so they can say so instead of timing out.
            notify.notify_waiters();
        });
        let mut process = GatewayProcess {
            child,
            http: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: None,
            lines,
            grew,
        };
        // The admin line is written after the listening lines, when `[admin]` is configured.
        let listening = process.wait_for_log("listening on http://").await;
        process.http = address_after(&listening, "listening on http://");
        let has_admin = std::fs::read_to_string(config).is_ok_and(|t| t.lines().any(|l| l.trim() == "[admin]"));
        if has_admin {
            let line = process.wait_for_log("admin listener on http://").await;
            process.admin = Some(address_after(&line, "admin listener on http://"));
        }
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Everything the binary has written so far, one line per log line.
    pub fn logs(&self) -> String {
        self.lines.lock().expect("log lines").join("\n")
    }

    /// Waits until a line containing `needle` has been written (or was already), and returns it.
    pub async fn wait_for_log(&mut self, needle: &str) -> String {
        self.wait_for_log_after(0, needle).await
    }

    /// The number of lines written so far, to wait for a line written after this point.
    pub fn log_mark(&self) -> usize {
        self.lines.lock().expect("log lines").len()
    }

    /// Like [`Self::wait_for_log`], looking only at lines after `mark`.
    pub async fn wait_for_log_after(&mut self, mark: usize, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let grew = self.grew.clone();
            let notified = grew.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = self
                .lines
                .lock()
                .expect("log lines")
                .iter()
                .skip(mark)
                .find(|l| l.contains(needle))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "persona-gate exited ({status}) before logging {needle:?}:\n{}",
                    self.logs()
                );
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no log line with {needle:?} in time:\n{}", self.logs());
            }
        }
    }

    /// The exit status, once the binary has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("child status")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("persona-gate is running")
    }

    /// Sends `signal` (a `kill` name such as `HUP` or `TERM`) to the binary.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.clone()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

/// The socket address written right after `marker` in a log line (text or JSON format).
fn address_after(line: &str, marker: &str) -> SocketAddr {
    let rest = line.split(marker).nth(1).expect("marker in line");
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().unwrap_or_else(|_| panic!("an address in {line:?}"))
}
