//! `--count` distinct users, one request each, through the proxy over `--conns` keep-alive
//! connections: every request is a new token the gateway has never seen, so its verified-token
//! cache and the rate limiter's keys fill up and must evict. The gateway's resident set is read
//! before the first request and after every tenth of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::util::{self, Conn, Outcome, Report, Result};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    #[arg(long, default_value_t = 64)]
    conns: usize,
    #[arg(long)]
    secret: String,
    /// The gateway's pid, for its resident set.
    #[arg(long)]
    pid: u32,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    non2xx: AtomicU64,
    failed: AtomicU64,
    done: AtomicU64,
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, path) = util::target(&args.url)?;
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let step = (args.count / 10).max(1);
    let checkpoints = Arc::new(Mutex::new(Vec::new()));
    let idle_kb = util::rss_kb(args.pid);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.conns)
        .map(|_| {
            let (next, tally, checkpoints, path, secret) = (
                next.clone(),
                tally.clone(),
                checkpoints.clone(),
                path.clone(),
                args.secret.clone(),
            );
            let (count, pid) = (args.count, args.pid);
            tokio::spawn(async move {
                let mut conn: Option<Conn> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    if !conn.as_ref().is_some_and(Conn::is_open) {
                        conn = Conn::open(addr, Duration::from_secs(5)).await.ok();
                    }
                    let outcome = match conn.as_mut() {
                        Some(c) => {
                            let token = util::mint(&secret, &format!("million-{i}"));
                            c.send(
                                util::request(Method::GET, &path, Some(&token), Bytes::new()),
                                Duration::from_secs(10),
                            )
                            .await
                        }
                        None => Outcome::Failed("connect"),
                    };
                    match outcome {
                        Outcome::Status { status, .. } if (200..300).contains(&status) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Status { .. } => {
                            tally.non2xx.fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Failed(_) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                    let done = tally.done.fetch_add(1, Ordering::Relaxed) + 1;
                    if done % step == 0 {
                        checkpoints.lock().await.push((done, util::rss_kb(pid)));
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let mut points = checkpoints.lock().await.clone();
    points.sort_unstable();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mb = |kb: u64| format!("{:.1}", kb as f64 / 1024.0);
    let mut report = Report::default();
    report
        .add("requests", load(&tally.done))
        .add("ok", load(&tally.ok))
        .add("non2xx", load(&tally.non2xx))
        .add("failed", load(&tally.failed))
        .add("seconds", format!("{:.1}", elapsed.as_secs_f64()))
        .add(
            "rate",
            format!("{:.0}", load(&tally.done) as f64 / elapsed.as_secs_f64()),
        )
        .add("rss_idle_mb", mb(idle_kb));
    for (n, (_, kb)) in points.iter().enumerate() {
        report.add(&format!("rss_{}pct_mb", (n + 1) * 10), mb(*kb));
    }
    report.add("rss_peak_mb", mb(util::hwm_kb(args.pid)));
    report.print();
    Ok(())
}
