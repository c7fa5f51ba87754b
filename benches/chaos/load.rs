//! A steady load: `--conns` keep-alive HTTP/1.1 connections sharing `--rate` requests a second
//! (each on its own schedule, so the rate holds however slow single answers get), for
//! `--duration`. A connection that fails is opened again for its next request; a request that
//! could not even connect counts as failed, by kind (`refused`, `reset`, ...).
//!
//! SIGTERM ends the load early, as if its duration were over (the script stops a load that
//! spans a case that way).
//!
//! Latency is measured from the moment a request is sent, like wrk's. Requests that started more
//! than 50 ms behind their schedule are counted as `late`: a run with many of them had too few
//! connections for its rate, and its latencies understate the queueing.
//!
//! With `--timeline FILE`, every request is written as `start_ms,end_ms,outcome,micros` (epoch
//! ms, and the latency), so the script can ask what was answered in a given window (while the
//! app was down, say); `window` gives the percentiles of the requests begun in a window.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio::time::Instant;

use crate::util::{self, Conn, Outcome, Report, Result};

#[derive(clap::Args, Clone)]
pub struct Args {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Requests per second over all connections; 0 sends as fast as answers come back.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value = "10s", value_parser = util::duration)]
    duration: Duration,
    /// HS256 secret to mint the users' tokens with; without it no token is sent.
    #[arg(long)]
    secret: Option<String>,
    /// Distinct users whose tokens rotate over the requests.
    #[arg(long, default_value_t = 100)]
    users: usize,
    #[arg(long, default_value = "10s", value_parser = util::duration)]
    timeout: Duration,
    #[arg(long)]
    timeline: Option<std::path::PathBuf>,
    /// A prefix for this load's user ids, so two loads do not share users.
    #[arg(long, default_value = "load-user")]
    user_prefix: String,
}

/// One request as recorded.
pub struct Record {
    pub start_ms: u64,
    pub end_ms: u64,
    pub micros: u64,
    pub late: bool,
    pub outcome: Outcome,
}

pub async fn run(args: Args) -> Result<()> {
    let records = drive(&args).await?;
    if let Some(path) = &args.timeline {
        let mut text = String::with_capacity(records.len() * 32);
        for r in &records {
            let _ = writeln!(text, "{},{},{},{}", r.start_ms, r.end_ms, r.outcome.label(), r.micros);
        }
        std::fs::write(path, text)?;
    }
    summarize(&records, args.duration).print();
    Ok(())
}

/// Runs the load and returns every request it made, in no particular order.
pub async fn drive(args: &Args) -> Result<Vec<Record>> {
    let (addr, path) = util::target(&args.url)?;
    let tokens: Arc<Vec<String>> = Arc::new(match &args.secret {
        Some(secret) => (0..args.users.max(1))
            .map(|i| util::mint(secret, &format!("{}-{i}", args.user_prefix)))
            .collect(),
        None => Vec::new(),
    });
    let conns = args.conns.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        terminate.recv().await;
        on_signal.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    let end = started + args.duration;
    // Each connection sends every `conns / rate` seconds, the connections spread evenly.
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(conns as f64 / args.rate as f64));
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let (tokens, path, timeout, stop) = (tokens.clone(), path.clone(), args.timeout, stop.clone());
        let offset = interval.map_or(Duration::ZERO, |every| every.mul_f64(i as f64 / conns as f64));
        tasks.push(tokio::spawn(async move {
            let mut records = Vec::new();
            let mut conn: Option<Conn> = None;
            let mut next = started + offset;
            let mut n = i;
            while next < end {
                if interval.is_some() {
                    tokio::time::sleep_until(next).await;
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let late = interval.is_some() && Instant::now().duration_since(next) > Duration::from_millis(50);
                let token = (!tokens.is_empty()).then(|| tokens[n % tokens.len()].as_str());
                n += conns;
                let start_ms = util::now_ms();
                let t = Instant::now();
                if !conn.as_ref().is_some_and(Conn::is_open) {
                    conn = match Conn::open(addr, timeout).await {
                        Ok(c) => Some(c),
                        Err(kind) => {
                            records.push(Record {
                                start_ms,
                                end_ms: util::now_ms(),
                                micros: 0,
                                late,
                                outcome: Outcome::Failed(kind),
                            });
                            None
                        }
                    };
                }
                match conn.as_mut() {
                    Some(c) => {
                        let request = util::request(Method::GET, &path, token, Bytes::new());
                        let outcome = c.send(request, timeout).await;
                        if matches!(outcome, Outcome::Failed(_)) {
                            conn = None;
                        }
                        records.push(Record {
                            start_ms,
                            end_ms: util::now_ms(),
                            micros: u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
                            late,
                            outcome,
                        });
                    }
                    // Refused connections come back at once; do not spin on them.
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
                next = match interval {
                    Some(every) => next + every,
                    None => Instant::now(),
                };
            }
            records
        }));
    }
    let mut records = Vec::new();
    for task in tasks {
        records.extend(task.await?);
    }
    Ok(records)
}

/// Counts by status, transport failure and error code, and latency percentiles of the answered.
pub fn summarize(records: &[Record], duration: Duration) -> Report {
    let mut labels: BTreeMap<String, u64> = BTreeMap::new();
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let (mut ok, mut non2xx, mut failed, mut late, mut no_retry_after) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut latencies = Vec::with_capacity(records.len());
    for r in records {
        late += u64::from(r.late);
        match &r.outcome {
            Outcome::Status {
                status,
                code,
                retry_after,
                ..
            } => {
                *labels.entry(format!("status_{status}")).or_default() += 1;
                if let Some(code) = code {
                    *codes.entry(format!("code_{code}")).or_default() += 1;
                }
                if (200..300).contains(status) {
                    ok += 1;
                } else {
                    non2xx += 1;
                }
                if matches!(status, 429 | 503) && !retry_after {
                    no_retry_after += 1;
                }
                latencies.push(r.micros);
            }
            Outcome::Failed(kind) => {
                failed += 1;
                *labels.entry(format!("fail_{kind}")).or_default() += 1;
            }
        }
    }
    latencies.sort_unstable();
    let mut report = Report::default();
    report
        .add("requests", records.len())
        .add("ok", ok)
        .add("non2xx", non2xx)
        .add("failed", failed)
        .add("late", late)
        .add("no_retry_after", no_retry_after)
        .add("rate", format!("{:.0}", records.len() as f64 / duration.as_secs_f64()))
        .ms("p50_ms", util::percentile(&latencies, 50.0))
        .ms("p90_ms", util::percentile(&latencies, 90.0))
        .ms("p99_ms", util::percentile(&latencies, 99.0))
        .ms("max_ms", latencies.last().copied().unwrap_or(0));
    for (label, n) in labels.iter().chain(codes.iter()) {
        report.add(label, n);
    }
    report
}

#[derive(clap::Args)]
pub struct WindowArgs {
    #[arg(long)]
    timeline: std::path::PathBuf,
    /// Epoch ms: requests begun at or after this...
    #[arg(long)]
    from: u64,
    /// ...and before this.
    #[arg(long)]
    to: u64,
}

/// Counts and latency percentiles of the requests of a timeline begun in [from, to).
pub fn window(args: &WindowArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.timeline)?;
    let (mut ok, mut other) = (0u64, 0u64);
    let mut latencies = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let [start, _, outcome, micros] = fields.as_slice() else {
            continue;
        };
        let start: u64 = start.parse().unwrap_or(0);
        if start < args.from || start >= args.to {
            continue;
        }
        if outcome.starts_with('2') {
            ok += 1;
            latencies.push(micros.parse().unwrap_or(0));
        } else {
            other += 1;
        }
    }
    latencies.sort_unstable();
    let mut report = Report::default();
    report
        .add("requests", ok + other)
        .add("ok", ok)
        .add("not_ok", other)
        .ms("p50_ms", util::percentile(&latencies, 50.0))
        .ms("p99_ms", util::percentile(&latencies, 99.0))
        .ms("max_ms", latencies.last().copied().unwrap_or(0));
    report.print();
    Ok(())
}
