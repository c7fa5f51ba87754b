//! Slowloris: `--conns` connections that each send the start of a request head and then one more
//! header line every `--interval`, never finishing it. A gateway that guards its head reads cuts
//! each of them `header_read_timeout` after it accepted it. Records, per connection, when it was
//! connected and when the server cut it (read end-of-stream, reset or a failed write); those
//! still open after `--max-time` survived.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::util::{self, Report, Result};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    addr: std::net::SocketAddr,
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    #[arg(long, default_value = "1s", value_parser = util::duration)]
    interval: Duration,
    /// Give up on connections still open after this long (from the start).
    #[arg(long, default_value = "60s", value_parser = util::duration)]
    max_time: Duration,
}

enum Fate {
    ConnectFailed(&'static str),
    Cut {
        connected_after: Duration,
        lifetime: Duration,
        how: &'static str,
    },
    Survived,
}

pub async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let give_up = started + args.max_time;
    let tasks: Vec<_> = (0..args.conns)
        .map(|i| tokio::spawn(slow_connection(args.addr, i, args.interval, started, give_up)))
        .collect();
    let mut fates = Vec::with_capacity(tasks.len());
    for task in tasks {
        fates.push(task.await?);
    }
    report(&fates).print();
    Ok(())
}

async fn slow_connection(
    addr: std::net::SocketAddr,
    i: usize,
    interval: Duration,
    started: Instant,
    give_up: Instant,
) -> Fate {
    let connect = tokio::time::timeout_at(give_up, TcpStream::connect(addr)).await;
    let mut stream = match connect {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Fate::ConnectFailed(util::io_kind(&e)),
        Err(_) => return Fate::ConnectFailed("connect_timeout"),
    };
    let connected = Instant::now();
    let cut = |how| Fate::Cut {
        connected_after: connected - started,
        lifetime: connected.elapsed(),
        how,
    };
    let head = format!("GET /slow-{i} HTTP/1.1\r\nHost: slowloris\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return cut("write_failed");
    }
    let mut buf = [0u8; 512];
    let mut line = 0u64;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => return cut("eof"),
                // An answer (a 408, say) before the close: keep reading to the end.
                Ok(_) => {}
                Err(_) => return cut("reset"),
            },
            () = tokio::time::sleep(interval) => {
                line += 1;
                if stream.write_all(format!("X-Slow-{line}: 1\r\n").as_bytes()).await.is_err() {
                    return cut("write_failed");
                }
            }
            () = tokio::time::sleep_until(give_up) => return Fate::Survived,
        }
    }
}

fn report(fates: &[Fate]) -> Report {
    let mut lifetimes = Vec::new();
    let mut early = Vec::new();
    let (mut survived, mut eof, mut reset, mut write_failed) = (0, 0, 0, 0);
    let mut failed: Vec<&str> = Vec::new();
    let mut latest_connect = Duration::ZERO;
    for fate in fates {
        match fate {
            Fate::ConnectFailed(kind) => failed.push(kind),
            Fate::Survived => survived += 1,
            Fate::Cut {
                connected_after,
                lifetime,
                how,
            } => {
                let micros = u64::try_from(lifetime.as_micros()).unwrap_or(u64::MAX);
                lifetimes.push(micros);
                // Connected in the first half second: accepted at once, so cut one
                // header_read_timeout after connecting.
                if *connected_after < Duration::from_millis(500) {
                    early.push(micros);
                }
                latest_connect = latest_connect.max(*connected_after);
                match *how {
                    "eof" => eof += 1,
                    "reset" => reset += 1,
                    _ => write_failed += 1,
                }
            }
        }
    }
    lifetimes.sort_unstable();
    early.sort_unstable();
    let mut report = Report::default();
    report
        .add("conns", fates.len())
        .add("connected", fates.len() - failed.len())
        .add("connect_failed", failed.len())
        .add("cut", lifetimes.len())
        .add("survived", survived)
        .add("cut_eof", eof)
        .add("cut_reset", reset)
        .add("cut_write_failed", write_failed)
        .add("early", early.len())
        .ms("early_min_ms", early.first().copied().unwrap_or(0))
        .ms("early_p50_ms", util::percentile(&early, 50.0))
        .ms("early_max_ms", early.last().copied().unwrap_or(0))
        .ms("lifetime_min_ms", lifetimes.first().copied().unwrap_or(0))
        .ms("lifetime_p50_ms", util::percentile(&lifetimes, 50.0))
        .ms("lifetime_max_ms", lifetimes.last().copied().unwrap_or(0))
        .add("latest_connect_ms", latest_connect.as_millis());
    failed.sort_unstable();
    failed.dedup();
    report.add(
        "connect_failed_kinds",
        if failed.is_empty() {
            "-".into()
        } else {
            failed.join(",")
        },
    );
    report
}
