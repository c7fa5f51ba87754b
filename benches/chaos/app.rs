//! The app behind the gateway: a hyper HTTP/1.1 server that answers everything with a small 200,
//! waits on `/slow?ms=N` first, and records every webhook forward by event id, so the script
//! can tell how many times each event reached the app. With `--fail-first-half` the first
//! delivery of every other event (by a hash of its id) is answered 500, as an app that is
//! briefly failing would.
//!
//! `GET /_stats` reports the counts as `key=value` lines; `POST /_reset` clears them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::util::Result;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    listen: SocketAddr,
    /// Where the gateway forwards verified webhook events.
    #[arg(long, default_value = "/persona/events")]
    webhook_path: String,
    /// Answer 500 to the first delivery of half the events.
    #[arg(long)]
    fail_first_half: bool,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    /// Event id -> (deliveries received, deliveries accepted).
    events: HashMap<String, (u32, u32)>,
    failed_on_purpose: u64,
}

struct App {
    webhook_path: String,
    fail_first_half: bool,
    stats: Mutex<Stats>,
}

pub async fn run(args: Args) -> Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("chaos app listening on {}", listener.local_addr()?);
    let app = Arc::new(App {
        webhook_path: args.webhook_path,
        fail_first_half: args.fail_first_half,
        stats: Mutex::new(Stats::default()),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl App {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        // Read every body, so kept-alive connections stay usable.
        let _ = body.collect().await;
        self.stats().requests += 1;
        let path = parts.uri.path();
        match (&parts.method, path) {
            (&Method::GET, "/_stats") => text(StatusCode::OK, self.report()),
            (&Method::POST, "/_reset") => {
                *self.stats() = Stats::default();
                text(StatusCode::OK, "reset\n".into())
            }
            (&Method::POST, p) if p == self.webhook_path => {
                let id = parts
                    .headers
                    .get("x-persona-event-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                self.webhook(&id)
            }
            (_, "/slow") => {
                let ms = parts
                    .uri
                    .query()
                    .and_then(|q| q.strip_prefix("ms="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, "slow\n".into())
            }
            _ => text(StatusCode::OK, "hello from the chaos app\n".into()),
        }
    }

    fn webhook(&self, id: &str) -> Response<Full<Bytes>> {
        let mut stats = self.stats();
        let fail = self.fail_first_half && fnv(id).is_multiple_of(2);
        let entry = stats.events.entry(id.to_owned()).or_default();
        entry.0 += 1;
        if fail && entry.0 == 1 {
            stats.failed_on_purpose += 1;
            return text(StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose\n".into());
        }
        entry.1 += 1;
        text(StatusCode::OK, "stored\n".into())
    }

    fn report(&self) -> String {
        let stats = self.stats();
        let accepted = |n: u32| stats.events.values().filter(|(_, a)| *a == n).count();
        let more = stats.events.values().filter(|(_, a)| *a > 1).count();
        let deliveries: u64 = stats.events.values().map(|(d, _)| u64::from(*d)).sum();
        format!(
            "requests={}\nevents={}\nwebhook_deliveries={deliveries}\naccepted_never={}\naccepted_once={}\naccepted_more={more}\nfailed_on_purpose={}\n",
            stats.requests,
            stats.events.len(),
            accepted(0),
            accepted(1),
            stats.failed_on_purpose,
        )
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// FNV-1a: a stable hash, so which events fail does not depend on the run.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
