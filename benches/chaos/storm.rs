//! A get-or-create storm: `--users` users, each starting at its own moment within `--spread` (so
//! new users keep arriving while a fault comes and goes), each sending `--per-user` calls in
//! bursts of one call per replica at the same instant, `--burst-gap` apart. That is the shape that
//! makes replicas race: two rounds for one new user, on two processes, at once.
//!
//! Every call is written to `--out` as `user,replica,start_ms,end_ms,status,code,retry_after,
//! inquiry_id`; the summary counts statuses and codes and names the slowest answer.
//!
//! `inquiries` asks Persona (the emulator, with its API key) how many inquiries each user has.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::util::{self, Report, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Gateway base URLs (the replicas), comma-separated.
    #[arg(long, value_delimiter = ',')]
    urls: Vec<String>,
    #[arg(long, default_value_t = 20)]
    users: usize,
    #[arg(long, default_value_t = 10)]
    per_user: usize,
    #[arg(long, default_value = "4s", value_parser = util::duration)]
    spread: Duration,
    #[arg(long, default_value = "250ms", value_parser = util::duration)]
    burst_gap: Duration,
    #[arg(long)]
    secret: String,
    #[arg(long, default_value = "storm-user")]
    prefix: String,
    #[arg(long, default_value = "30s", value_parser = util::duration)]
    timeout: Duration,
    #[arg(long, default_value = "/api/inquiries/get-or-create")]
    path: String,
    #[arg(long)]
    out: std::path::PathBuf,
}

struct Call {
    user: String,
    replica: usize,
    start_ms: u64,
    end_ms: u64,
    status: u16,
    code: String,
    retry_after: bool,
    inquiry_id: String,
}

pub async fn run(args: Args) -> Result<()> {
    if args.urls.is_empty() {
        return Err("--urls names no gateway".into());
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(args.timeout)
        .build()?;
    let started = Instant::now();
    let copies = args.urls.len();
    let bursts = args.per_user.div_ceil(copies);
    let mut tasks = Vec::new();
    for u in 0..args.users {
        let user = format!("{}-{u}", args.prefix);
        let token = util::mint(&args.secret, &user);
        let first = started + args.spread.mul_f64(u as f64 / args.users.max(1) as f64);
        for b in 0..bursts {
            for (replica, base) in args.urls.iter().enumerate() {
                if b * copies + replica >= args.per_user {
                    break;
                }
                let at = first + args.burst_gap * u32::try_from(b).unwrap_or(u32::MAX);
                let url = format!("{base}{}", args.path);
                let (http, user, token) = (http.clone(), user.clone(), token.clone());
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    call(&http, &url, &token, user, replica).await
                }));
            }
        }
    }
    let mut calls = Vec::with_capacity(tasks.len());
    for task in tasks {
        calls.push(task.await?);
    }
    let mut text = String::new();
    for c in &calls {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{},{},{}",
            c.user,
            c.replica,
            c.start_ms,
            c.end_ms,
            c.status,
            c.code,
            u8::from(c.retry_after),
            c.inquiry_id
        );
    }
    std::fs::write(&args.out, text)?;
    summarize(&calls).print();
    Ok(())
}

async fn call(http: &reqwest::Client, url: &str, token: &str, user: String, replica: usize) -> Call {
    let start_ms = util::now_ms();
    let answer = http.post(url).bearer_auth(token).send().await;
    let (status, retry_after, body) = match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key(http::header::RETRY_AFTER);
            let body = response.bytes().await.unwrap_or_default();
            (status, retry_after, body)
        }
        // A transport failure is status 0; its kind is the code.
        Err(e) => {
            let kind = if e.is_timeout() { "timeout" } else { "transport" };
            return Call {
                user,
                replica,
                start_ms,
                end_ms: util::now_ms(),
                status: 0,
                code: kind.into(),
                retry_after: false,
                inquiry_id: "-".into(),
            };
        }
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let code = json
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned();
    let inquiry_id = json.get("inquiry_id").and_then(Value::as_str).unwrap_or("-").to_owned();
    Call {
        user,
        replica,
        start_ms,
        end_ms: util::now_ms(),
        status,
        code,
        retry_after,
        inquiry_id,
    }
}

fn summarize(calls: &[Call]) -> Report {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut ids: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut latencies: Vec<u64> = Vec::with_capacity(calls.len());
    let mut no_retry_after = 0;
    for c in calls {
        *counts.entry(format!("status_{}", c.status)).or_default() += 1;
        if c.code != "-" {
            *counts.entry(format!("code_{}", c.code)).or_default() += 1;
        }
        if matches!(c.status, 429 | 503) && !c.retry_after {
            no_retry_after += 1;
        }
        if (200..300).contains(&c.status) {
            ids.entry(&c.user).or_default().insert(&c.inquiry_id);
        }
        latencies.push((c.end_ms - c.start_ms) * 1000);
    }
    latencies.sort_unstable();
    let ok = calls.iter().filter(|c| (200..300).contains(&c.status)).count();
    let mut report = Report::default();
    report
        .add("requests", calls.len())
        .add("ok", ok)
        .add("answered", calls.iter().filter(|c| c.status != 0).count())
        .add("no_retry_after", no_retry_after)
        .add("users_answered", ids.len())
        .add("users_given_two_ids", ids.values().filter(|s| s.len() > 1).count())
        .ms("p50_ms", util::percentile(&latencies, 50.0))
        .ms("p99_ms", util::percentile(&latencies, 99.0))
        .ms("max_ms", latencies.last().copied().unwrap_or(0));
    for (label, n) in &counts {
        report.add(label, n);
    }
    report
}

#[derive(clap::Args)]
pub struct InquiriesArgs {
    /// The emulator's API base, e.g. http://127.0.0.1:PORT/api/v1.
    #[arg(long)]
    base_url: String,
    #[arg(long)]
    key: String,
    #[arg(long, default_value = "storm-user")]
    prefix: String,
    #[arg(long)]
    users: usize,
}

/// How many inquiries Persona holds for each of the users `prefix-0` .. `prefix-(users-1)`.
pub async fn inquiries(args: InquiriesArgs) -> Result<()> {
    let http = reqwest::Client::new();
    let mut per_user = Vec::with_capacity(args.users);
    for u in 0..args.users {
        let user = format!("{}-{u}", args.prefix);
        let response = http
            .get(format!(
                "{}/inquiries?filter%5Breference-id%5D={user}&page%5Bsize%5D=100",
                args.base_url
            ))
            .bearer_auth(&args.key)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("listing {user}'s inquiries: {}", response.status()).into());
        }
        let json: Value = response.json().await?;
        per_user.push(json["data"].as_array().map_or(0, Vec::len));
    }
    let mut report = Report::default();
    report
        .add("users", per_user.len())
        .add("users_with_none", per_user.iter().filter(|n| **n == 0).count())
        .add("users_with_one", per_user.iter().filter(|n| **n == 1).count())
        .add("users_with_more", per_user.iter().filter(|n| **n > 1).count())
        .add("inquiries", per_user.iter().sum::<usize>())
        .add("most_per_user", per_user.iter().max().copied().unwrap_or(0));
    report.print();
    Ok(())
}
