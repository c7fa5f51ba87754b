//! Persona's side of webhooks: `--events` signed inquiry events, each delivered `--copies` times
//! at the same instant (copy k to replica k mod replicas), as Persona's at-least-once delivery
//! can. A delivery answered 5xx (or not at all) is retried after `--retry-wait`, as Persona
//! retries, up to `--max-attempts`; a 2xx or 4xx answer is final.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::util::{self, Report, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Gateway base URLs (the replicas), comma-separated.
    #[arg(long, value_delimiter = ',')]
    urls: Vec<String>,
    #[arg(long, default_value = "/webhooks/persona")]
    path: String,
    #[arg(long, default_value_t = 1000)]
    events: usize,
    #[arg(long, default_value_t = 3)]
    copies: usize,
    /// The webhook secret Persona signs with.
    #[arg(long)]
    secret: String,
    /// Event ids are this prefix and a number, so two runs do not share ids.
    #[arg(long, default_value = "evt_chaos_")]
    prefix: String,
    /// Events whose copies are in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    max_attempts: u32,
    #[arg(long, default_value = "200ms", value_parser = util::duration)]
    retry_wait: Duration,
}

#[derive(Default)]
struct Tally {
    attempts: AtomicU64,
    retried: AtomicU64,
    forwarded: AtomicU64,
    duplicate: AtomicU64,
    other_2xx: AtomicU64,
    rejected: AtomicU64,
    gave_up: AtomicU64,
}

pub async fn run(args: Args) -> Result<()> {
    if args.urls.is_empty() {
        return Err("--urls names no gateway".into());
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?;
    let key = Arc::new(hmac::Key::new(hmac::HMAC_SHA256, args.secret.as_bytes()));
    let tally = Arc::new(Tally::default());
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let args = Arc::new(args);
    let mut events = Vec::with_capacity(args.events);
    for i in 0..args.events {
        let permit = limit.clone().acquire_owned().await?;
        let (http, key, tally, args) = (http.clone(), key.clone(), tally.clone(), args.clone());
        events.push(tokio::spawn(async move {
            let body = event(&args.prefix, i);
            let copies: Vec<_> = (0..args.copies)
                .map(|c| {
                    let url = format!("{}{}", args.urls[c % args.urls.len()], args.path);
                    let (http, key, tally, body, args) =
                        (http.clone(), key.clone(), tally.clone(), body.clone(), args.clone());
                    tokio::spawn(async move { deliver(&http, &url, &key, &body, &tally, &args).await })
                })
                .collect();
            for copy in copies {
                let _ = copy.await;
            }
            drop(permit);
        }));
    }
    for event in events {
        event.await?;
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut report = Report::default();
    report
        .add("events", args.events)
        .add("deliveries", args.events * args.copies)
        .add("attempts", load(&tally.attempts))
        .add("retried", load(&tally.retried))
        .add("forwarded", load(&tally.forwarded))
        .add("duplicate", load(&tally.duplicate))
        .add("other_2xx", load(&tally.other_2xx))
        .add("rejected", load(&tally.rejected))
        .add("gave_up", load(&tally.gave_up));
    report.print();
    Ok(())
}

async fn deliver(http: &reqwest::Client, url: &str, key: &hmac::Key, body: &str, tally: &Tally, args: &Args) {
    for _ in 0..args.max_attempts {
        tally.attempts.fetch_add(1, Ordering::Relaxed);
        let t = util::now_secs();
        let answer = http
            .post(url)
            .header("persona-signature", signature(key, t, body))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(_) => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(args.retry_wait).await;
                continue;
            }
        };
        let status = response.status();
        let json: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            let counter = match json["status"].as_str() {
                Some("forwarded") => &tally.forwarded,
                Some("duplicate") => &tally.duplicate,
                _ => &tally.other_2xx,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if status.is_client_error() {
            eprintln!("webhook delivery refused: {status} {json}");
            tally.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tally.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(args.retry_wait).await;
    }
    tally.gave_up.fetch_add(1, Ordering::Relaxed);
}

/// `t=<now>,v1=<hex HMAC-SHA256 of "t.body">`, as Persona signs.
pub fn signature(key: &hmac::Key, t: u64, body: &str) -> String {
    let tag = hmac::sign(key, format!("{t}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// A Persona `inquiry.completed` event in its JSON:API envelope.
pub fn event(prefix: &str, i: usize) -> String {
    json!({
        "data": {
            "type": "event",
            "id": format!("{prefix}{i}"),
            "attributes": {
                "name": "inquiry.completed",
                "created-at": "2026-01-01T00:00:00.000Z",
                "payload": { "data": {
                    "type": "inquiry",
                    "id": format!("inq_chaos{i:020}"),
                    "attributes": { "status": "completed", "reference-id": format!("hook-user-{i}") },
                } },
            },
        }
    })
    .to_string()
}
