//! Malformed input at rate. `fuzz` sends mutated requests over raw TCP, one per connection, from
//! five seeds (a proxied GET, a get-or-create POST, a chunked upload, a signed webhook delivery,
//! an HTTP/2 preface with a request), in four families: mutated request heads, mutated bodies
//! (webhook bodies re-signed, so they reach the event parser), mutated tokens, and mutated
//! `Persona-Signature` headers. It reads each answer's status line; a 5xx is a finding, written
//! to `--findings` with the request that caused it.
//!
//! `fuzz-config` mutates a config file's values and lines: every mutant goes through the
//! library's parser in this process (a panic is caught and is a finding), and a sample of the
//! valid ones through the real binary, `check` and then a start-up, where a panic is a finding.
//!
//! Both are seeded (`--seed`), so a run's inputs are the same every time.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::util::{self, Report, Result};
use crate::webhooks;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    addr: std::net::SocketAddr,
    #[arg(long, default_value = "20s", value_parser = util::duration)]
    duration: Duration,
    /// Requests per second over all connections.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    #[arg(long, default_value_t = 32)]
    conns: usize,
    /// The HS256 secret the gateway trusts.
    #[arg(long)]
    secret: String,
    #[arg(long)]
    webhook_secret: String,
    #[arg(long, default_value = "/webhooks/persona")]
    webhook_path: String,
    #[arg(long, default_value_t = 20)]
    seed: u64,
    /// The gateway's pid, for its resident set a third of the way in and at the end.
    #[arg(long)]
    pid: u32,
    #[arg(long)]
    findings: std::path::PathBuf,
}

#[derive(Clone, Copy)]
enum Family {
    Head,
    Body,
    Token,
    Signature,
}

const FAMILIES: [Family; 4] = [Family::Head, Family::Body, Family::Token, Family::Signature];

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Head => "head",
            Family::Body => "body",
            Family::Token => "token",
            Family::Signature => "signature",
        }
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    s1xx: AtomicU64,
    s2xx: AtomicU64,
    s3xx: AtomicU64,
    s4xx: AtomicU64,
    s5xx: AtomicU64,
    closed: AtomicU64,
    no_answer: AtomicU64,
    h2: AtomicU64,
    other: AtomicU64,
    statuses: Mutex<std::collections::BTreeMap<u16, u64>>,
    findings: Mutex<String>,
}

/// What fuzzing needs to build valid requests before mutating them.
struct Seeds {
    token: String,
    webhook_key: hmac::Key,
    webhook_path: String,
}

pub async fn run(args: Args) -> Result<()> {
    let seeds = Arc::new(Seeds {
        token: util::mint(&args.secret, "fuzz-user"),
        webhook_key: hmac::Key::new(hmac::HMAC_SHA256, args.webhook_secret.as_bytes()),
        webhook_path: args.webhook_path.clone(),
    });
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let end = started + args.duration;
    let conns = args.conns.max(1);
    let every = Duration::from_secs_f64(conns as f64 / args.rate.max(1) as f64);
    let rss_third = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            let (seeds, tally, rss_third) = (seeds.clone(), tally.clone(), rss_third.clone());
            let (addr, pid) = (args.addr, args.pid);
            let mut rng = StdRng::seed_from_u64(args.seed.wrapping_mul(1000).wrapping_add(i as u64));
            let third = started + args.duration / 3;
            tokio::spawn(async move {
                let mut next = started + every.mul_f64(i as f64 / conns as f64);
                let mut n = i;
                while next < end {
                    tokio::time::sleep_until(next).await;
                    next += every;
                    if Instant::now() >= third && rss_third.load(Ordering::Relaxed) == 0 {
                        rss_third.store(util::rss_kb(pid), Ordering::Relaxed);
                    }
                    let family = FAMILIES[n % FAMILIES.len()];
                    n += 1;
                    let request = build(family, &seeds, &mut rng);
                    let answer = exchange(addr, &request).await;
                    record(&tally, family, &request, &answer).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    std::fs::write(&args.findings, tally.findings.lock().await.as_str())?;
    let mut report = Report::default();
    report
        .add("sent", load(&tally.sent))
        .add("status_1xx", load(&tally.s1xx))
        .add("status_2xx", load(&tally.s2xx))
        .add("status_3xx", load(&tally.s3xx))
        .add("status_4xx", load(&tally.s4xx))
        .add("status_5xx", load(&tally.s5xx))
        .add("closed_without_answer", load(&tally.closed))
        .add("no_answer_in_2s", load(&tally.no_answer))
        .add("h2_answers", load(&tally.h2))
        .add("other", load(&tally.other))
        .add("rss_third_kb", load(&rss_third))
        .add("rss_end_kb", util::rss_kb(args.pid));
    let statuses: Vec<String> = tally
        .statuses
        .lock()
        .await
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect();
    report.add("statuses", statuses.join(","));
    report.print();
    Ok(())
}

/// What came back on the connection.
enum Answer {
    Status(u16),
    H2,
    Closed,
    Silence,
    Other,
}

/// Writes the request (a write that fails half-way is fine: the server may cut us off) and reads
/// until the status line is in, the server closes, or 2 s pass.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> Answer {
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await else {
        return Answer::Other;
    };
    let _ = stream.write_all(request).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if got.len() >= 12 {
                return;
            }
        }
    })
    .await;
    if got.len() >= 12 && got.starts_with(b"HTTP/1.") {
        return std::str::from_utf8(&got[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(Answer::Other, Answer::Status);
    }
    // An HTTP/2 server speaks first with its SETTINGS frame (type 4).
    if got.len() >= 9 && got[3] == 4 {
        return Answer::H2;
    }
    match (read, got.is_empty()) {
        (Err(_), true) => Answer::Silence,
        (Ok(()), true) => Answer::Closed,
        _ => Answer::Other,
    }
}

async fn record(tally: &Tally, family: Family, request: &[u8], answer: &Answer) {
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let counter = match answer {
        Answer::Status(s) => {
            *tally.statuses.lock().await.entry(*s).or_default() += 1;
            match s {
                100..=199 => &tally.s1xx,
                200..=299 => &tally.s2xx,
                300..=399 => &tally.s3xx,
                400..=499 => &tally.s4xx,
                _ => &tally.s5xx,
            }
        }
        Answer::H2 => &tally.h2,
        Answer::Closed => &tally.closed,
        Answer::Silence => &tally.no_answer,
        Answer::Other => &tally.other,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Answer::Status(s @ 500..) = answer {
        let mut findings = tally.findings.lock().await;
        // The first few in full; a flood of one kind of finding would drown the file.
        if findings.len() < 200_000 {
            let _ = writeln!(findings, "{} -> {s}: {}", family.name(), escape(request));
        }
    }
}

/// Bytes as Rust-like escaped text, one line.
fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

fn build(family: Family, seeds: &Seeds, rng: &mut StdRng) -> Vec<u8> {
    match family {
        Family::Head => {
            let seed = match rng.random_range(0..5) {
                0 => get(&seeds.token),
                1 => get_or_create(&seeds.token, b"{}"),
                2 => chunked(&seeds.token),
                3 => webhook(seeds, &webhooks::event("evt_fuzz_", rng.random_range(0..1000))),
                _ => h2_request(&seeds.token),
            };
            mutate(seed, rng)
        }
        Family::Body => {
            if rng.random_bool(0.5) {
                let body = mutate(
                    webhooks::event("evt_fuzz_", rng.random_range(0..1000)).into_bytes(),
                    rng,
                );
                webhook(seeds, &String::from_utf8_lossy(&body))
            } else {
                let body = mutate(b"{\"fields\":{\"name-first\":\"x\"}}".to_vec(), rng);
                get_or_create(&seeds.token, &body)
            }
        }
        Family::Token => {
            let token = mutate_token(&seeds.token, rng);
            let mut request = b"GET / HTTP/1.1\r\nHost: chaos.test\r\nAuthorization: Bearer ".to_vec();
            request.extend_from_slice(&token);
            request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
            request
        }
        Family::Signature => {
            let body = webhooks::event("evt_fuzz_sig_", rng.random_range(0..1000));
            let t = util::now_secs();
            let good = webhooks::signature(&seeds.webhook_key, t, &body);
            let header = mutate(good.into_bytes(), rng);
            let mut request = format!(
                "POST {} HTTP/1.1\r\nHost: chaos.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nPersona-Signature: ",
                seeds.webhook_path,
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(&header);
            request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
            request.extend_from_slice(body.as_bytes());
            request
        }
    }
}

fn get(token: &str) -> Vec<u8> {
    format!("GET /some/path?q=1 HTTP/1.1\r\nHost: chaos.test\r\nAuthorization: Bearer {token}\r\nAccept: */*\r\nConnection: close\r\n\r\n").into_bytes()
}

fn get_or_create(token: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /api/inquiries/get-or-create HTTP/1.1\r\nHost: chaos.test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn chunked(token: &str) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: chaos.test\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").into_bytes()
}

fn webhook(seeds: &Seeds, body: &str) -> Vec<u8> {
    let signature = webhooks::signature(&seeds.webhook_key, util::now_secs(), body);
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: chaos.test\r\nContent-Type: application/json\r\nPersona-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        seeds.webhook_path,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// The HTTP/2 preface, an empty SETTINGS and a GET with the token (HPACK literals).
fn h2_request(token: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 10];
    block.extend_from_slice(b"chaos.test");
    block.extend_from_slice(&[0x0f, 0x08]);
    let value = format!("Bearer {token}");
    block.push(127);
    let mut rest = value.len() - 127;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend_from_slice(value.as_bytes());
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let len = block.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 1, 5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    out
}

/// Bytes that break parsers: line ends, NUL, separators, non-ASCII.
const NASTY: &[u8] = b"\r\n\0 \t:;,=\"'%/\\.?#[]{}\x7f\x80\xff";

/// Header lines that have tricked proxies before.
const NASTY_LINES: &[&str] = &[
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: gzip, chunked\r\n",
    "Transfer-Encoding : chunked\r\n",
    "Content-Length: 99999999999999999999\r\n",
    "Content-Length: -1\r\n",
    "Content-Length: 5\r\nContent-Length: 6\r\n",
    "Content-Length: 1048577\r\n",
    "Host: a\r\nHost: b\r\n",
    "Expect: 100-continue\r\n",
    "Connection: upgrade\r\nUpgrade: websocket\r\n",
    "Connection: keep-alive, x-user-id, authorization\r\n",
    "X-Forwarded-For: garbage, , 999.1.1.1\r\n",
    "X-User-Id: admin\r\n",
    "x-persona-verified: true\r\n",
    "X-Verification-Status: approved\r\n",
    "Cookie: session=eyJ.eyJ.sig; session=\r\n",
    "Authorization: Bearer a.b.c\r\n",
    "Authorization: Basic Zm9vOmJhcg==\r\n",
    "X-Request-Id: ../../etc/passwd\r\n",
    "Origin: https://evil.example\r\n",
    " folded: continuation\r\n",
    "Te: trailers\r\n",
    "Trailer: x-user-id\r\n",
];

fn mutate(mut bytes: Vec<u8>, rng: &mut StdRng) -> Vec<u8> {
    for _ in 0..rng.random_range(1..=4) {
        let len = bytes.len();
        let at = if len == 0 { 0 } else { rng.random_range(0..len) };
        match rng.random_range(0..11) {
            0 if len > 0 => bytes[at] = rng.random(),
            1 => bytes.insert(at, NASTY[rng.random_range(0..NASTY.len())]),
            2 if len > 0 => {
                let end = (at + rng.random_range(1..=16)).min(len);
                bytes.drain(at..end);
            }
            3 if len > 0 => {
                let end = (at + rng.random_range(1..=64)).min(len);
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            4 => {
                // A nasty header line at the start of some line.
                let line = NASTY_LINES[rng.random_range(0..NASTY_LINES.len())];
                let at = line_start(&bytes, at);
                bytes.splice(at..at, line.bytes());
            }
            5 => bytes.truncate(at),
            6 => {
                // A huge header, or very many small ones.
                let at = line_start(&bytes, at);
                let block = if rng.random_bool(0.5) {
                    format!("X-Big: {}\r\n", "b".repeat(rng.random_range(1000..40_000)))
                } else {
                    (0..rng.random_range(50..600))
                        .map(|i| format!("X-H{i}: v\r\n"))
                        .collect()
                };
                bytes.splice(at..at, block.bytes());
            }
            7 => {
                let method: &[u8] = [
                    &b"get"[..],
                    b"POST",
                    b"CONNECT",
                    b"OPTIONS",
                    b"TRACE",
                    b"G\0T",
                    b"PRI",
                    b"X",
                ][rng.random_range(0..8)];
                if let Some(space) = bytes.iter().position(|b| *b == b' ') {
                    bytes.splice(..space, method.iter().copied());
                }
            }
            8 => {
                let target: &[u8] = [
                    &b"*"[..],
                    b"http://evil.example/x",
                    b"//double",
                    b"/%00",
                    b"/../../etc/passwd",
                    b"/%2e%2e/%2f",
                    b"/api/inquiries/get-or-create/../x",
                    b"/webhooks/persona?x=1",
                    b"/\xc3\xa9",
                    b"",
                ][rng.random_range(0..10)];
                replace_target(&mut bytes, target);
            }
            9 => {
                let version: &[u8] = [
                    &b"HTTP/1.0"[..],
                    b"HTTP/2.0",
                    b"HTTP/9.9",
                    b"HTTP/1.1 x",
                    b"",
                    b"http/1.1",
                ][rng.random_range(0..6)];
                if let Some(end) = find(&bytes, b"HTTP/1.1\r\n") {
                    bytes.splice(end..end + 8, version.iter().copied());
                }
            }
            _ => {
                // A number somewhere (Content-Length, a chunk size) made extreme.
                let extreme: &[u8] = [
                    &b"0"[..],
                    b"-0",
                    b"18446744073709551616",
                    b"ffffffffffffffff",
                    b"1e3",
                    b" 7",
                ][rng.random_range(0..6)];
                if let Some(digit) = bytes[at..].iter().position(u8::is_ascii_digit) {
                    let start = at + digit;
                    let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
                    bytes.splice(start..end, extreme.iter().copied());
                }
            }
        }
    }
    bytes
}

fn line_start(bytes: &[u8], at: usize) -> usize {
    bytes[..at.min(bytes.len())]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_target(bytes: &mut Vec<u8>, target: &[u8]) {
    let Some(first) = bytes.iter().position(|b| *b == b' ') else {
        return;
    };
    let Some(second) = bytes[first + 1..].iter().position(|b| *b == b' ') else {
        return;
    };
    bytes.splice(first + 1..first + 1 + second, target.iter().copied());
}

/// A token mutated as bytes, or rebuilt from crafted header and claims.
fn mutate_token(token: &str, rng: &mut StdRng) -> Vec<u8> {
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let parts: Vec<&str> = token.split('.').collect();
    let now = util::now_secs();
    match rng.random_range(0..4) {
        0 => mutate(token.as_bytes().to_vec(), rng),
        1 => {
            let header = [
                r#"{"alg":"none","typ":"JWT"}"#,
                r#"{"alg":"HS512"}"#,
                r#"{"alg":"RS256","kid":"../../k"}"#,
                r#"{"alg":"HS256","crit":["exp"]}"#,
                r#"{"alg":["HS256"]}"#,
                r#"{"alg":"HS256","jku":"http://evil/"}"#,
                r#"[]"#,
                r#"{"#,
            ][rng.random_range(0..8)];
            format!("{}.{}.{}", b64(header), parts[1], parts[2]).into_bytes()
        }
        2 => {
            let claims = [
                format!(r#"{{"sub":7,"exp":{}}}"#, now + 60),
                format!(r#"{{"sub":"","exp":{}}}"#, now + 60),
                format!(r#"{{"sub":"é\u0000","exp":{}}}"#, now + 60),
                format!(r#"{{"sub":"{}","exp":{}}}"#, "x".repeat(5000), now + 60),
                r#"{"sub":"u","exp":"tomorrow"}"#.to_owned(),
                r#"{"sub":"u","exp":1e400}"#.to_owned(),
                r#"{"sub":"u","exp":-1}"#.to_owned(),
                format!(r#"{{"sub":"u","exp":{},"nbf":{}}}"#, now + 60, u64::MAX),
                format!(r#"{{"sub":" u ","exp":{}}}"#, now + 60),
            ][rng.random_range(0..9)]
            .clone();
            // Signed correctly? Only with the real secret, which the fuzzer does not use here:
            // the signature stays the original's, so these must all be refused.
            format!("{}.{}.{}", parts[0], b64(&claims), parts[2]).into_bytes()
        }
        _ => {
            let shapes = [
                format!("{token}."),
                format!(".{token}"),
                token.replace('.', ""),
                format!("{token}=="),
                format!("{} {}", parts[0], parts[1]),
                token.repeat(60),
                format!("{}..{}", parts[0], parts[2]),
            ];
            shapes[rng.random_range(0..shapes.len())].clone().into_bytes()
        }
    }
}

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// The `persona-gate` binary.
    #[arg(long)]
    binary: std::path::PathBuf,
    /// A valid, self-contained config (listeners on port 0, absolute paths).
    #[arg(long)]
    config: std::path::PathBuf,
    /// Random mutants through the library's parser (after the systematic ones).
    #[arg(long, default_value_t = 20_000)]
    parse: u64,
    /// Valid mutants through the binary (check, then a start-up).
    #[arg(long, default_value_t = 60)]
    start: u64,
    #[arg(long, default_value_t = 20)]
    seed: u64,
    /// Where mutants the binary runs, and findings, are written.
    #[arg(long)]
    workdir: std::path::PathBuf,
}

/// Values that have broken config code elsewhere: extremes, zeros, units, overflow.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "nan",
    "inf",
    "true",
    "\"\"",
    "\"0ms\"",
    "\"0s\"",
    "\"1ms\"",
    "\"18446744073709551615ms\"",
    "\"18446744073709551615d\"",
    "\"213503982334601d\"",
    "\"-1s\"",
    "\"1.5s\"",
    "\"1 s\"",
    "\"\u{1F642}\"",
    "\"\\u0000\"",
    "\"0/s\"",
    "\"4294967295/1ms\"",
    "\"1/0s\"",
    "\"4294967295/s\"",
    "\"1/213503982334601d\"",
    "\"redis://\"",
    "\"http://\"",
    "\"127.0.0.1:0\"",
    "\"[::1]:0\"",
    "\"/\"",
    "\"*\"",
    "[]",
    "[\"\"]",
    "[\"*\", \"/\"]",
    "{}",
    "{ value = \"\" }",
    "{ env = \"CHAOS_UNSET_VARIABLE\" }",
    "{ file = \"/nonexistent\" }",
];

pub async fn run_config(args: ConfigArgs) -> Result<()> {
    let base = std::fs::read_to_string(&args.config)?;
    let path = args.config.clone();
    std::fs::create_dir_all(&args.workdir)?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    // Panics are caught and counted; their default message would only repeat them on stderr.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let (mut valid, mut invalid, mut panics) = (Vec::new(), 0u64, Vec::new());
    // Every value of VALUES in every `key = value` line, one at a time, then random mutants: the
    // valid ones of the first kind are the first the binary starts (an extreme number that
    // validates but breaks the server at start-up shows up there).
    let systematic = substitutions(&base);
    let parsed_count = systematic.len() as u64 + args.parse;
    let random = (0..args.parse).map(|_| mutate_config(&base, &mut rng));
    for mutant in systematic.into_iter().chain(random) {
        let parsed = std::panic::catch_unwind(|| persona_gate::config::parse(&mutant, &path).is_ok());
        match parsed {
            Ok(true) => valid.push(mutant),
            Ok(false) => invalid += 1,
            Err(_) => panics.push(mutant),
        }
    }
    std::panic::set_hook(default_hook);
    let mut findings = String::new();
    for mutant in &panics {
        let _ = writeln!(findings, "parse panicked on:\n{mutant}\n----");
    }
    let (mut started, mut start_panics, mut exits) = (0u64, 0u64, std::collections::BTreeMap::new());
    for (n, mutant) in valid
        .iter()
        .take(usize::try_from(args.start).unwrap_or(usize::MAX))
        .enumerate()
    {
        let file = args.workdir.join(format!("mutant-{n}.toml"));
        std::fs::write(&file, mutant)?;
        let (code, stderr) = start(&args.binary, &file).await?;
        started += 1;
        *exits.entry(code).or_insert(0u64) += 1;
        if code == 101 || stderr.contains("panicked") {
            start_panics += 1;
            let _ = writeln!(
                findings,
                "the binary panicked (exit {code}) on:\n{mutant}\nstderr:\n{stderr}\n----"
            );
        }
    }
    std::fs::write(args.workdir.join("findings.txt"), &findings)?;
    let exits: Vec<String> = exits.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    let mut report = Report::default();
    report
        .add("parsed", parsed_count)
        .add("valid", valid.len())
        .add("invalid", invalid)
        .add("parse_panics", panics.len())
        .add("started", started)
        .add("start_exits", exits.join(","))
        .add("start_panics", start_panics);
    report.print();
    Ok(())
}

/// `check`, then, for a mutant `check` accepts, a start-up stopped with SIGTERM after 300 ms (a
/// config that breaks the server does so as it starts).
/// Returns the exit code of the start-up (or of `check` when it refused) and its stderr.
async fn start(binary: &std::path::Path, file: &std::path::Path) -> Result<(i32, String)> {
    let check = tokio::process::Command::new(binary)
        .arg("check")
        .arg("--config")
        .arg(file)
        .output()
        .await?;
    let code = check.status.code().unwrap_or(-1);
    if code != 0 {
        return Ok((code, String::from_utf8_lossy(&check.stderr).into_owned()));
    }
    let mut child = tokio::process::Command::new(binary)
        .arg("--config")
        .arg(file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let collect = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let status = match tokio::time::timeout(Duration::from_millis(300), child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            if let Some(pid) = child.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
                Ok(status) => status?,
                Err(_) => {
                    child.kill().await?;
                    child.wait().await?
                }
            }
        }
    };
    let text = collect.await.unwrap_or_default();
    Ok((status.code().unwrap_or(-1), text))
}

/// The base with one `key = value` line's value replaced by one of [`VALUES`], for every such
/// line and value.
fn substitutions(base: &str) -> Vec<String> {
    let lines: Vec<&str> = base.lines().collect();
    let mut out = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        for value in VALUES {
            let mut mutant: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            mutant[at] = format!("{key} = {value}");
            out.push(mutant.join("\n"));
        }
    }
    out
}

/// One to three edits: a value replaced by one of [`VALUES`], a line dropped or doubled, a
/// section header doubled, or a byte changed.
fn mutate_config(base: &str, rng: &mut StdRng) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
    for _ in 0..rng.random_range(1..=3) {
        if lines.is_empty() {
            break;
        }
        let at = rng.random_range(0..lines.len());
        match rng.random_range(0..10) {
            0..=5 => {
                if let Some((key, _)) = lines[at].split_once(" = ") {
                    lines[at] = format!("{key} = {}", VALUES[rng.random_range(0..VALUES.len())]);
                }
            }
            6 => {
                lines.remove(at);
            }
            7 => {
                let copy = lines[at].clone();
                lines.insert(at, copy);
            }
            8 => {
                let mut bytes = lines[at].clone().into_bytes();
                if !bytes.is_empty() {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = NASTY[rng.random_range(0..NASTY.len())];
                }
                lines[at] = String::from_utf8_lossy(&bytes).into_owned();
            }
            _ => {
                // A key the file does not have, in some section.
                lines.insert(at, "unknown_key = 1".to_owned());
            }
        }
    }
    lines.join("\n")
}
