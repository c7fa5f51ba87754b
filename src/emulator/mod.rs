//! A local stand-in for Persona's API, for demos, tests and benchmarks: the inquiry endpoints
//! under `/api/v1` as Persona documents them (and the template read), a `/_emulator` control API
//! (advance inquiries, move the clock, publish template versions, inject faults and latency,
//! read the call log, redeliver webhooks), and signed webhook deliveries on every status change.
//! It is not a Persona simulator beyond the inquiry flow the gateway uses, but within that flow
//! it is as strict as Persona: version-dependent field keys, inflection, idempotency replays,
//! the rate limit and expiry on its own clock (see "Persona facts we rely on" in
//! ARCHITECTURE.md).
//!
//! Layout: `mod.rs` serves HTTP and routes by prefix; `api` is the `/api/v1` pipeline and
//! `inquiries` its endpoints; `lifecycle` the state machine; `store` and `model` the data;
//! `limiter` the rate limit; `expiry` the worker that expires inquiries on time; `control` the
//! control API; `webhooks` signing and delivery; `inflect`, `clock`, `error` the small pieces
//! Persona's wire format needs.

mod api;
mod clock;
mod control;
mod embed;
mod error;
mod expiry;
mod inflect;
mod inquiries;
mod lifecycle;
mod limiter;
mod model;
mod store;
mod webhooks;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::body::{CollectError, collect_limited};
use crate::config::{EmulatorConfig, Secret};

use self::api::Answer;
use self::clock::{Clock, Millis};
use self::control::ControlState;
use self::inflect::Inflection;
use self::limiter::RateWindow;
use self::model::View;
use self::store::Store;
use self::webhooks::{Event, Webhooks};

/// Request bodies larger than this are refused; Persona's inquiry bodies are a few KiB.
const MAX_BODY: usize = 1024 * 1024;

/// What the endpoints need from the config, fixed at bind time: the API key and its own
/// settings (default inflection and version), the template expiry, the workflow.
struct Settings {
    api_key: Secret,
    auto_approve: bool,
    key_inflection: Inflection,
    api_version: String,
    /// How webhook payloads render: the webhooks' API version (the key's).
    webhook_view: View,
    inquiry_expiry: Millis,
}

struct State {
    store: Store,
    control: ControlState,
    limiter: RateWindow,
}

/// Everything a connection needs. The state sits behind a std mutex: no code holds it across an
/// await, and every critical section is a few map operations.
struct Shared {
    state: Mutex<State>,
    settings: Settings,
    clock: Clock,
    /// Wakes the expiry worker when an inquiry's expiry or the clock may have moved.
    expiry: Notify,
    webhooks: Option<Webhooks>,
    outbox: mpsc::UnboundedSender<Event>,
}

impl Shared {
    /// A panic elsewhere cannot leave the maps half-written in a way that matters to an
    /// emulator, so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the expiry worker to look again.
    fn expiries_changed(&self) {
        self.expiry.notify_one();
    }

    /// Queues events for delivery, if a webhook URL wants them.
    fn publish(&self, events: Vec<Event>) {
        let Some(webhooks) = &self.webhooks else { return };
        for event in events.into_iter().filter(|e| webhooks.wants(e.name)) {
            // Fails only once the worker has stopped, i.e. during shutdown.
            let _ = self.outbox.send(event);
        }
    }
}

/// An emulator with its socket bound, not yet serving.
pub struct Emulator {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    outbox: mpsc::UnboundedReceiver<Event>,
}

impl Emulator {
    /// Binds `config.listen` (port 0 allowed) and builds the emulator's state.
    ///
    /// # Errors
    /// The address cannot be bound, or the webhook HTTP client cannot be built.
    pub async fn bind(config: &EmulatorConfig) -> std::io::Result<Emulator> {
        // reqwest's rustls needs a process-wide provider; the gateway installs the same one.
        crate::tls::install_crypto_provider();
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, outbox) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                store: Store::new(&config.templates),
                control: ControlState::new(config.latency),
                limiter: RateWindow::new(config.rate_limit),
            }),
            settings: Settings {
                api_key: config.api_key.clone(),
                auto_approve: config.auto_approve,
                key_inflection: config.key_inflection.into(),
                api_version: config.api_version.clone(),
                webhook_view: View::for_version(&config.api_version),
                inquiry_expiry: u64::try_from(config.inquiry_expiry.as_millis()).unwrap_or(u64::MAX),
            },
            clock: Clock::default(),
            expiry: Notify::new(),
            webhooks: Webhooks::new(config)?,
            outbox: tx,
        });
        Ok(Emulator {
            listener,
            addr,
            shared,
            outbox,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/api/v1`; an unspecified listen address is reached via loopback.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/api/v1", SocketAddr::new(ip, self.addr.port()))
    }

    pub fn api_key(&self) -> &Secret {
        &self.shared.settings.api_key
    }

    /// Serves until `shutdown` resolves; then open connections, hung calls included, are closed
    /// and queued webhook deliveries are dropped.
    pub fn spawn(self, shutdown: impl Future<Output = ()> + Send + 'static) -> tokio::task::JoinHandle<()> {
        let Emulator {
            listener,
            shared,
            outbox,
            ..
        } = self;
        tokio::spawn(async move {
            tokio::select! {
                () = accept(listener, shared.clone(), shutdown) => {}
                () = webhooks::worker(shared.clone(), outbox) => {}
                () = expiry::worker(shared) => {}
            }
        })
    }
}

/// Serves an emulator built from `config` until `shutdown` resolves (the CLI's entry point).
///
/// # Errors
/// As [`Emulator::bind`].
pub async fn run(config: &EmulatorConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let emulator = Emulator::bind(config).await?;
    tracing::info!(base_url = %emulator.base_url(), "persona emulator listening");
    if emulator.api_key().expose() == crate::config::DEMO_API_KEY {
        tracing::info!("accepting the public demo key {}", crate::config::DEMO_API_KEY);
    }
    emulator.spawn(shutdown).await.map_err(std::io::Error::other)
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Nothing in an emulator is worth draining; hung calls would never finish anyway.
    connections.shutdown().await;
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, peer, req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, %peer, "emulator connection ended");
    }
}

/// A request with its body read.
struct Received {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

async fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let is_api = under(&path, "/api/v1");
    let body = match collect_limited(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => {
            tracing::debug!(error = %e, "emulator refused a request body");
            let status = match e {
                CollectError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                CollectError::Read(_) => StatusCode::BAD_REQUEST,
            };
            return respond(Answer::json(status, &error::status_body(status)));
        }
    };
    if under(&path, "/_emulator") {
        if !peer.ip().is_loopback() {
            let answer = json!({ "error": "the control API only answers loopback callers" });
            return respond(Answer::json(StatusCode::FORBIDDEN, &answer));
        }
        let (status, value) = control::handle(shared, &parts.method, &path, &body).await;
        return respond(Answer::json(status, &value));
    }
    if under(&path, "/embed") {
        return embed::handle(shared, &parts.method, &path, &parts.headers, &body);
    }
    if !is_api {
        let e = error::ApiError::NoRoute(format!("{} {path}", parts.method));
        return respond(Answer::json(e.status(), &e.body()));
    }
    let received = Received {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
    };
    match api::serve(shared, &received).await {
        Some(answer) => respond(answer),
        // A hang fault: the caller waits until it gives up or the emulator shuts down.
        None => std::future::pending().await,
    }
}

fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Adds the headers Persona sends on every response.
fn respond(answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(answer.body));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    if let Ok(id) = HeaderValue::from_str(&store::new_id("req_")) {
        headers.insert(HeaderName::from_static("request-id"), id);
    }
    if let Some(seconds) = answer.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(window) = answer.rate {
        headers.insert(
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(window.limit),
        );
        headers.insert(
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from(window.remaining),
        );
        headers.insert(
            HeaderName::from_static("ratelimit-reset"),
            HeaderValue::from(window.reset),
        );
    }
    response
}
