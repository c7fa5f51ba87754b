//! What every tool shares: the report format, tokens, clocks, percentiles, a minimal HTTP/1.1
//! client connection, and readings from `/proc`.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// `key=value` lines, in the order added, printed together at the end.
#[derive(Default)]
pub struct Report {
    lines: Vec<String>,
}

impl Report {
    pub fn add(&mut self, key: &str, value: impl Display) -> &mut Self {
        self.lines.push(format!("{key}={value}"));
        self
    }

    pub fn ms(&mut self, key: &str, micros: u64) -> &mut Self {
        self.add(key, format!("{:.2}", micros as f64 / 1000.0))
    }

    pub fn print(&self) {
        for line in &self.lines {
            println!("{line}");
        }
    }
}

/// Milliseconds since the epoch: the clock the script's `date +%s%3N` reads too, so the two can
/// compare timestamps.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// An HS256 token for `user`, valid for two hours.
pub fn mint(secret: &str, user: &str) -> String {
    let now = now_secs();
    let claims = json!({ "sub": user, "iat": now, "exp": now + 7200 });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &key,
    )
    .unwrap_or_default()
}

/// Durations as the gateway's config writes them (`250ms`, `3s`).
pub fn duration(text: &str) -> std::result::Result<Duration, String> {
    persona_gate::config::parse_duration(text)
}

/// The `p`th percentile (0-100) of sorted values; 0 when there are none.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `http://host:port/path?query` → the address to connect to and the request target.
pub fn target(url: &str) -> Result<(SocketAddr, String)> {
    let uri: Uri = url.parse()?;
    let authority = uri.authority().ok_or("the URL has no host:port")?;
    let addr: SocketAddr = authority.as_str().parse()?;
    let path = uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
    Ok((addr, path))
}

/// One HTTP/1.1 keep-alive connection, one request at a time.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
}

/// What a request got: a status (and the JSON error code and `Retry-After`, for refusals), or a
/// transport failure named by kind.
#[derive(Debug, Clone)]
pub enum Outcome {
    Status {
        status: u16,
        code: Option<String>,
        retry_after: bool,
        body: Bytes,
    },
    Failed(&'static str),
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Outcome::Status { status, .. } => status.to_string(),
            Outcome::Failed(kind) => (*kind).to_owned(),
        }
    }
}

impl Conn {
    pub async fn open(addr: SocketAddr, timeout: Duration) -> std::result::Result<Conn, &'static str> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(io_kind(&e)),
            Err(_) => return Err("connect_timeout"),
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|_| "handshake")?;
        tokio::spawn(connection);
        Ok(Conn { sender })
    }

    /// Sends `request` and reads the whole answer within `timeout`.
    pub async fn send(&mut self, request: http::Request<Full<Bytes>>, timeout: Duration) -> Outcome {
        let exchange = async {
            self.sender.ready().await.map_err(|e| hyper_kind(&e))?;
            let response = self.sender.send_request(request).await.map_err(|e| hyper_kind(&e))?;
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key(http::header::RETRY_AFTER);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| hyper_kind(&e))?
                .to_bytes();
            Ok::<_, &'static str>((status, retry_after, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((status, retry_after, body))) => {
                let code = (status >= 400).then(|| error_code(&body)).flatten();
                Outcome::Status {
                    status,
                    code,
                    retry_after,
                    body,
                }
            }
            Ok(Err(kind)) => Outcome::Failed(kind),
            Err(_) => Outcome::Failed("timeout"),
        }
    }

    /// False once the server closed the connection (or it failed).
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// The gateway's `{"error":{"code":...}}`.
pub fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .pointer("/error/code")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

pub fn request(method: http::Method, path: &str, token: Option<&str>, body: Bytes) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "chaos.test");
    if let Some(token) = token {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if !body.is_empty() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    builder.body(Full::new(body)).unwrap_or_default()
}

pub fn io_kind(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "refused",
        std::io::ErrorKind::ConnectionReset => "reset",
        std::io::ErrorKind::BrokenPipe => "broken_pipe",
        std::io::ErrorKind::TimedOut => "timeout",
        _ => "io_error",
    }
}

fn hyper_kind(e: &hyper::Error) -> &'static str {
    if e.is_canceled() {
        "canceled"
    } else if e.is_incomplete_message() {
        "incomplete"
    } else if e.is_closed() {
        "closed"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_parse() {
        "parse_error"
    } else {
        let text = format!("{e:?}");
        if text.contains("ConnectionReset") {
            "reset"
        } else {
            "transport"
        }
    }
}

/// A process's resident set (VmRSS) in KiB; 0 when it is gone.
pub fn rss_kb(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// The high-water mark of the resident set (VmHWM) in KiB.
pub fn hwm_kb(pid: u32) -> u64 {
    status_field(pid, "VmHWM:")
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// User plus system CPU time of a process, in milliseconds.
pub fn cpu_ms(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    // fixed, utime and stime being the 12th and 13th of them.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    ticks * 10
}

#[derive(clap::Args)]
pub struct PortsArgs {
    /// How many free ports.
    #[arg(default_value_t = 1)]
    count: usize,
}

/// Binds `count` listeners on port 0 at once (so the ports differ), prints them, and lets go.
pub fn ports(args: &PortsArgs) -> Result<()> {
    let listeners = (0..args.count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    for listener in &listeners {
        println!("{}", listener.local_addr()?.port());
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct TokenArgs {
    #[arg(long)]
    secret: String,
    #[arg(long)]
    user: String,
}

pub fn token(args: &TokenArgs) -> Result<()> {
    println!("{}", mint(&args.secret, &args.user));
    Ok(())
}
