//! Listeners and connections: accepts TCP (and TLS), bounds how many connections are open, serves
//! HTTP/1.1 and HTTP/2 on each with hyper-util's auto builder, and drains them on shutdown.
//! What happens to a request once it is parsed is `gateway`'s business, not this module's.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::LimitsConfig;
use arc_swap::ArcSwap;

use crate::gateway::{Connection, Gateway};
use crate::idle::{self, Streams};
use crate::metrics::ConnectionGauge;
use crate::timer::HeaderTimer;

/// The bound sockets, ready to serve. Binding is separate from serving so that callers (tests,
/// the CLI) learn the real addresses of `:0` listeners before traffic starts.
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub https: Option<(TcpListener, TlsAcceptor)>,
}

impl Listeners {
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }
}

/// Accepts until `shutdown` resolves, then stops accepting, asks every connection to finish its
/// in-flight requests, and waits up to `limits.shutdown_grace` for them.
///
/// `gateway` is read once per request, so a reload that swaps it affects new requests only.
pub async fn serve(
    listeners: Listeners,
    gateway: Arc<ArcSwap<Gateway>>,
    limits: LimitsConfig,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (drain_tx, drain_rx) = watch::channel(false);
    // Each connection task holds a clone; `recv` returns `None` once every one has finished.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let builder = Arc::new(http_builder(&limits));
    tokio::pin!(shutdown);
    loop {
        // Waiting for a permit before accepting leaves excess clients in the kernel's backlog
        // instead of accepting sockets we would have to drop.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer, tls) = tokio::select! {
            accepted = accept(&listeners) => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE or a reset during accept; back off briefly and carry on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            peer,
            tls: tls.is_some(),
        };
        let task = ConnTask {
            gateway: gateway.clone(),
            builder: builder.clone(),
            drain: drain_rx.clone(),
            handshake_timeout: limits.tls_handshake_timeout,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            _done: done_tx.clone(),
            _permit: permit,
            _open: ConnectionGauge::open(),
        };
        tokio::spawn(task.run(stream, tls, conn));
    }
    drop(listeners);
    let _ = drain_tx.send(true);
    drop(done_tx);
    if tokio::time::timeout(limits.shutdown_grace, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "shutdown grace period over, closing remaining connections");
    }
}

fn http_builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The HTTP/1 timer is each connection's own (see `ConnTask::serve`).
    builder
        .http1()
        // hyper starts this timer whenever it waits for a request head, including the next one
        // on a kept-alive connection, where `HeaderTimer` makes the quiet before it `idle_timeout`.
        // It does not cover a connection's first bytes, which the auto builder reads itself (see
        // `ConnTask::serve`).
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(limits.idle_timeout / 2);
    builder
}

async fn accept(listeners: &Listeners) -> std::io::Result<(TcpStream, SocketAddr, Option<TlsAcceptor>)> {
    async fn on(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
        match l {
            Some(l) => l.accept().await,
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        r = on(listeners.http.as_ref()) => r.map(|(s, a)| (s, a, None)),
        r = on(listeners.https.as_ref().map(|(l, _)| l)) => {
            let acceptor = listeners.https.as_ref().map(|(_, a)| a.clone());
            r.map(|(s, a)| (s, a, acceptor))
        }
    }
}

/// Buffer for a connection's first read only: hyper's own reads are larger, so `BufReader` passes
/// them straight through once this is drained.
const FIRST_READ_BYTES: usize = 1024;

/// Everything one connection's task owns; dropping it releases the connection slot and tells the
/// drain that this connection is gone.
struct ConnTask {
    gateway: Arc<ArcSwap<Gateway>>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    drain: watch::Receiver<bool>,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    /// HTTP/2 connections with no open stream, and HTTP/1 ones between requests, close after this.
    idle_timeout: Duration,
    _done: mpsc::Sender<()>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// Counts this connection in `persona_gate_connections_in_flight` until the task ends.
    _open: ConnectionGauge,
}

impl ConnTask {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>, conn: Connection) {
        match tls {
            None => self.serve(stream, conn).await,
            Some(acceptor) => match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => self.serve(stream, conn).await,
                Ok(Err(e)) => tracing::debug!(peer = %conn.peer, error = %e, "tls handshake failed"),
                Err(_) => tracing::debug!(peer = %conn.peer, "tls handshake timed out"),
            },
        }
    }

    /// Waits up to `header_read_timeout` for the client's first bytes before handing the
    /// connection to hyper. hyper-util's auto builder reads those bytes itself to tell HTTP/2
    /// from HTTP/1 and has no timeout, so without this a client that connects and stays silent
    /// would hold a `max_connections` slot forever.
    async fn serve<I>(mut self, io: I, conn: Connection)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut io = BufReader::with_capacity(FIRST_READ_BYTES, io);
        // Only HTTP/2 connections count their streams, for their idle timeout.
        let streams = tokio::select! {
            first = tokio::time::timeout(self.header_read_timeout, io.fill_buf()) => match first {
                Ok(Ok(bytes)) if !bytes.is_empty() => idle::speaks_http2(bytes).then(Streams::default),
                Ok(Ok(_)) => return,
                Ok(Err(e)) => return tracing::debug!(peer = %conn.peer, error = %e, "connection failed before a request"),
                Err(_) => return tracing::debug!(peer = %conn.peer, "no request within header_read_timeout"),
            },
            () = drained(&mut self.drain) => return,
        };
        // Idle HTTP/1 keep-alive connections get `idle_timeout`, heads `header_read_timeout`.
        let timer = HeaderTimer::new(self.header_read_timeout, self.idle_timeout);
        let io = TokioIo::new(timer.count_reads(io));
        let gateway = self.gateway.clone();
        let counted = streams.clone();
        let service = service_fn(move |req| {
            // The pipeline current when the request arrived serves it to the end, reload or not.
            let gateway = gateway.load_full();
            let stream = counted.as_ref().map(Streams::open);
            async move {
                let response = gateway.handle(req, conn).await;
                Ok::<_, std::convert::Infallible>(match stream {
                    Some(stream) => response.map(|body| idle::guarded(body, stream)),
                    None => response,
                })
            }
        });
        let mut builder = (*self.builder).clone();
        builder.http1().timer(timer);
        let connection = builder.serve_connection_with_upgrades(io, service);
        // hyper runs HTTP/1 requests inside this future, so they can share an upstream connection
        // kept with it (see `proxy`).
        crate::proxy::with_dedicated_upstream(async move {
            tokio::pin!(connection);
            let close = tokio::select! {
                result = connection.as_mut() => return log_connection_end(result, conn),
                () = drained(&mut self.drain) => "shutting down",
                () = idle_for(streams.as_ref(), self.idle_timeout) => "idle HTTP/2 connection",
            };
            tracing::debug!(peer = %conn.peer, reason = close, "closing the connection gracefully");
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await, conn);
        })
        .await;
    }
}

/// Resolves once an HTTP/2 connection has had no open stream for `timeout`; never for HTTP/1,
/// whose idle connections the header timer closes (see `timer`).
async fn idle_for(streams: Option<&Streams>, timeout: Duration) {
    match streams {
        Some(streams) => streams.idle(timeout).await,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown has begun. The watch guard is dropped here, before anything awaits.
async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|draining| *draining).await.map(|_| ());
}

fn log_connection_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>, conn: Connection) {
    if let Err(e) = result {
        // Clients that vanish or dawdle are routine; nothing here is the gateway's fault.
        tracing::debug!(peer = %conn.peer, error = %e, "connection ended with error");
    }
}
