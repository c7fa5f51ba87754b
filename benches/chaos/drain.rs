//! SIGTERM under load: `--conns` connections keep slow requests in flight; after
//! `--signal-after` this sends SIGTERM to `--pid` itself (so the moment is known to the
//! millisecond) and stops starting requests. Every request in flight at that moment must still
//! be answered. Meanwhile new connections are tried: a draining gateway must refuse them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::util::{self, Conn, Outcome, Report, Result};

#[derive(clap::Args)]
pub struct Args {
    /// A slow route through the gateway, e.g. http://127.0.0.1:PORT/slow?ms=1500.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 64)]
    conns: usize,
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value = "2s", value_parser = util::duration)]
    signal_after: Duration,
    #[arg(long)]
    secret: String,
    #[arg(long, default_value = "30s", value_parser = util::duration)]
    timeout: Duration,
    /// New connections tried after the signal.
    #[arg(long, default_value_t = 20)]
    probes: usize,
}

struct Done {
    start_ms: u64,
    end_ms: u64,
    outcome: Outcome,
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, path) = util::target(&args.url)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..args.conns {
        let (stop, path, timeout) = (stop.clone(), path.clone(), args.timeout);
        let token = util::mint(&args.secret, &format!("drain-user-{i}"));
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut conn: Option<Conn> = None;
            while !stop.load(Ordering::SeqCst) {
                let start_ms = util::now_ms();
                if !conn.as_ref().is_some_and(Conn::is_open) {
                    conn = Conn::open(addr, timeout).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let outcome = c
                    .send(util::request(Method::GET, &path, Some(&token), Bytes::new()), timeout)
                    .await;
                done.push(Done {
                    start_ms,
                    end_ms: util::now_ms(),
                    outcome,
                });
            }
            done
        }));
    }
    tokio::time::sleep(args.signal_after).await;
    let signal_ms = util::now_ms();
    stop.store(true, Ordering::SeqCst);
    let sent = tokio::process::Command::new("kill")
        .args(["-TERM", &args.pid.to_string()])
        .status()
        .await?;
    if !sent.success() {
        return Err(format!("kill -TERM {} failed", args.pid).into());
    }
    let (refused, accepted) = probe(addr, args.probes).await;
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    report(&all, signal_ms, refused, accepted).print();
    Ok(())
}

/// Tries new connections for half a second, from 200 ms after the signal (time for the process
/// to get it and close its listeners); a connection that is accepted is asked for `/healthz`.
async fn probe(addr: std::net::SocketAddr, probes: usize) -> (usize, usize) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut refused, mut accepted) = (0, 0);
    for _ in 0..probes {
        match TcpStream::connect(addr).await {
            Err(_) => refused += 1,
            Ok(mut stream) => {
                let _ = stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                let mut buf = [0u8; 64];
                let read = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
                )
                .await;
                // Accepted by the kernel but never answered still counts as refused service.
                match read {
                    Ok(Ok(n)) if n > 0 => accepted += 1,
                    _ => refused += 1,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500 / probes.max(1) as u64)).await;
    }
    (refused, accepted)
}

fn report(all: &[Done], signal_ms: u64, refused: usize, accepted: usize) -> Report {
    let in_flight: Vec<&Done> = all
        .iter()
        .filter(|d| d.start_ms < signal_ms && d.end_ms >= signal_ms)
        .collect();
    let ok = |d: &Done| matches!(d.outcome, Outcome::Status { status: 200, .. });
    let inflight_ok = in_flight.iter().filter(|d| ok(d)).count();
    let before: Vec<&Done> = all.iter().filter(|d| d.end_ms < signal_ms).collect();
    let last_answer = in_flight.iter().map(|d| d.end_ms).max().unwrap_or(signal_ms);
    let mut report = Report::default();
    report
        .add("signal_ms", signal_ms)
        .add("completed_before", before.len())
        .add("completed_before_ok", before.iter().filter(|d| ok(d)).count())
        .add("inflight", in_flight.len())
        .add("inflight_ok", inflight_ok)
        .add("inflight_failed", in_flight.len() - inflight_ok)
        .add("last_inflight_answer_after_ms", last_answer - signal_ms)
        .add("new_refused", refused)
        .add("new_accepted", accepted);
    let mut kinds: Vec<String> = in_flight.iter().filter(|d| !ok(d)).map(|d| d.outcome.label()).collect();
    kinds.sort();
    kinds.dedup();
    report.add(
        "inflight_fail_kinds",
        if kinds.is_empty() { "-".into() } else { kinds.join(",") },
    );
    report
}
