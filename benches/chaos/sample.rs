//! Samples a process every `--interval` until `--duration` ends (or it is stopped): resident
//! set, open file descriptors, CPU time, and, with `--metrics`, the gateway's open-connections
//! gauge. Writes `ms,rss_kb,fds,cpu_ms,connections` lines to `--out` as it goes, then prints the
//! peaks.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::util::{self, Conn, Outcome, Report, Result};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pid: u32,
    /// The admin listener's `/metrics` URL.
    #[arg(long)]
    metrics: Option<String>,
    #[arg(long, default_value = "100ms", value_parser = util::duration)]
    interval: Duration,
    #[arg(long, default_value = "600s", value_parser = util::duration)]
    duration: Duration,
    #[arg(long)]
    out: std::path::PathBuf,
}

pub async fn run(args: Args) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.out)?);
    let end = tokio::time::Instant::now() + args.duration;
    let mut tick = tokio::time::interval(args.interval);
    let (mut peak_rss, mut peak_fds, mut peak_conns) = (0, 0, 0);
    let mut metrics = None;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        let rss = util::rss_kb(args.pid);
        if rss == 0 {
            break; // the process is gone
        }
        let fds = util::fd_count(args.pid);
        let conns = match &args.metrics {
            Some(url) => gauge(url, &mut metrics).await.unwrap_or(-1),
            None => -1,
        };
        peak_rss = peak_rss.max(rss);
        peak_fds = peak_fds.max(fds);
        peak_conns = peak_conns.max(conns);
        writeln!(out, "{},{rss},{fds},{},{conns}", util::now_ms(), util::cpu_ms(args.pid))?;
        out.flush()?;
    }
    let mut report = Report::default();
    report
        .add("peak_rss_kb", peak_rss)
        .add("peak_fds", peak_fds)
        .add("peak_connections", peak_conns);
    report.print();
    Ok(())
}

/// `persona_gate_connections_in_flight` from the exposition, over a kept-alive connection.
async fn gauge(url: &str, conn: &mut Option<Conn>) -> Option<i64> {
    let (addr, path) = util::target(url).ok()?;
    if !conn.as_ref().is_some_and(Conn::is_open) {
        *conn = Conn::open(addr, Duration::from_secs(1)).await.ok();
    }
    let c = conn.as_mut()?;
    let Outcome::Status { status: 200, body, .. } = c
        .send(
            util::request(Method::GET, &path, None, Bytes::new()),
            Duration::from_secs(2),
        )
        .await
    else {
        *conn = None;
        return None;
    };
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find(|l| l.starts_with("persona_gate_connections_in_flight "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}
