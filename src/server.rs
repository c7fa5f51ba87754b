//! Listeners and connections: accepts TCP (and TLS), bounds how many connections are open, serves
//! HTTP/1.1 or HTTP/2 on each (told apart by the connection's first bytes), and drains them on
//! shutdown.
//! What happens to a request once it is parsed is `gateway`'s business, not this module's.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::LimitsConfig;
use arc_swap::ArcSwap;

use crate::connection::Connection;
use crate::gateway::Gateway;
use crate::idle::{self, Streams};
use crate::metrics::ConnectionGauge;
use crate::sniff::{self, Protocol, Replay};
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
    let protocols = Arc::new(Protocols::new(&limits));
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
        let conn = Connection::new(peer, tls.is_some());
        let task = ConnTask {
            gateway: gateway.clone(),
            protocols: protocols.clone(),
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

/// Each protocol's settings, shared by every connection.
struct Protocols {
    /// A template: each connection clones it and adds its own timer (see `ConnTask::serve_http1`).
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &LimitsConfig) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            // hyper starts this timer whenever it waits for a request head, including the next
            // one on a kept-alive connection, where `HeaderTimer` makes the quiet before it
            // `idle_timeout`. A connection's first bytes are waited for in `ConnTask::serve`.
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            // Copy a response's head and body into one buffer and write it with one `write`:
            // most responses are small, and hyper's queue of buffers for `writev` costs more to
            // keep than copying them. Large bodies are still written a buffer at a time.
            .writev(false);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(limits.idle_timeout / 2))
            .keep_alive_timeout(limits.idle_timeout / 2);
        Self { http1, http2 }
    }
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

/// Everything one connection's task owns; dropping it releases the connection slot and tells the
/// drain that this connection is gone.
struct ConnTask {
    gateway: Arc<ArcSwap<Gateway>>,
    protocols: Arc<Protocols>,
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
    /// The task is allocated for the largest state of this future, and an idle HTTP/1 connection
    /// keeps that allocation: so the larger states (a TLS session, hyper's HTTP/2 connection) are
    /// boxed, and a plain idle connection's task holds about its socket (see `timer`).
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>, conn: Connection) {
        match tls {
            None => self.serve(stream, conn).await,
            Some(acceptor) => Box::pin(self.serve_tls(acceptor, stream, conn)).await,
        }
    }

    async fn serve_tls(self, acceptor: TlsAcceptor, stream: TcpStream, conn: Connection) {
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.serve(stream, conn).await,
            Ok(Err(e)) => tracing::debug!(peer = %conn.peer, error = %e, "tls handshake failed"),
            Err(_) => tracing::debug!(peer = %conn.peer, "tls handshake timed out"),
        }
    }

    /// Waits up to `header_read_timeout` for the client's first bytes, which tell HTTP/2 from
    /// HTTP/1, before handing the connection to hyper: a client that connects and stays silent
    /// would otherwise hold a `max_connections` slot forever.
    async fn serve<I>(mut self, io: I, conn: Connection)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let sniffed = tokio::select! {
            first = tokio::time::timeout(self.header_read_timeout, sniff::sniff(io)) => match first {
                Ok(Ok(Some(sniffed))) => sniffed,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => return tracing::debug!(peer = %conn.peer, error = %e, "connection failed before a request"),
                Err(_) => return tracing::debug!(peer = %conn.peer, "no request within header_read_timeout"),
            },
            () = drained(&mut self.drain) => return,
        };
        match sniffed {
            (Protocol::Http1, io) => self.serve_http1(io, conn).await,
            (Protocol::Http2, io) => Box::pin(self.serve_http2(io, conn)).await,
        }
    }

    /// hyper runs HTTP/1 requests one at a time inside the connection's future, so they can share
    /// what the connection keeps for them. A kept-alive connection quiet for `header_read_timeout`
    /// is released by hyper (see `timer`): it then waits here with nothing but its socket for the
    /// rest of `idle_timeout`, and its next bytes start hyper on it afresh.
    async fn serve_http1<I>(mut self, mut io: Replay<I>, conn: Connection)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let quiet = self.idle_timeout.saturating_sub(self.header_read_timeout);
        loop {
            // Boxed: hyper's state takes room in the connection's task only while hyper serves.
            let Some(released) = Box::pin(self.serve_http1_until_quiet(io, conn.clone())).await else {
                return;
            };
            io = released;
            let next = tokio::select! {
                // `None`: the idle timeout or the drain.
                next = tokio::time::timeout(quiet, io.refill()) => next.ok(),
                () = drained(&mut self.drain) => None,
            };
            match next {
                Some(Ok(true)) => {}
                Some(Ok(false)) => return,
                Some(Err(e)) => return tracing::debug!(peer = %conn.peer, error = %e, "idle connection failed"),
                None => {
                    // Closed as hyper would have: a TLS client gets its close_notify.
                    let closing = tokio::io::AsyncWriteExt::shutdown(&mut io);
                    let _ = tokio::time::timeout(self.header_read_timeout, closing).await;
                    return tracing::debug!(peer = %conn.peer, "closing an idle connection");
                }
            }
        }
    }

    /// Serves the connection with hyper until it ends, or until hyper releases it while idle (see
    /// `timer`): then the connection comes back, open.
    async fn serve_http1_until_quiet<I>(&mut self, io: Replay<I>, conn: Connection) -> Option<Replay<I>>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // Idle keep-alive connections get `idle_timeout`, heads `header_read_timeout`.
        let timer = HeaderTimer::new(self.header_read_timeout, self.idle_timeout);
        let (io, parked) = timer.count_reads(io);
        let gateway = self.gateway.clone();
        // The pipeline current when a request arrives serves it to the end, reload or not.
        let peer = conn.peer;
        let service = service_fn(move |req| gateway.load_full().handle(req, conn.clone()));
        let mut http1 = self.protocols.http1.clone();
        http1.timer(timer);
        let connection = http1.serve_connection(TokioIo::new(io), service).with_upgrades();
        // The header timer closes or releases idle HTTP/1 connections.
        let idle = std::future::pending();
        let connection = self.drive(connection, http1::UpgradeableConnection::graceful_shutdown, idle, peer);
        // Its requests get an upstream connection of the connection's own (see `proxy`), which a
        // release closes with the rest of hyper's state.
        crate::proxy::with_dedicated_upstream(connection).await;
        parked.take()
    }

    /// HTTP/2 connections count their streams, for their idle timeout (see `idle`).
    async fn serve_http2<I>(mut self, io: Replay<I>, conn: Connection)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let streams = Streams::default();
        let gateway = self.gateway.clone();
        let counted = streams.clone();
        let peer = conn.peer;
        let service = service_fn(move |req| {
            let handled = gateway.load_full().handle(req, conn.clone());
            let stream = counted.open();
            // Each stream runs in a task of its own, and its request takes the pool (see `proxy`).
            let handled = crate::proxy::without_dedicated_upstream(handled);
            // Boxed: tokio moves a stream's task future whole as it spawns, runs and ends it, and
            // with the request's future inline those copies were 47% of an HTTP/2 request's
            // instructions (callgrind, h2load).
            Box::pin(async move {
                let response = handled.await;
                response.map(|response| response.map(|body| idle::guarded(body, stream)))
            })
        });
        // Its reads are paid for by the byte, so a flood of small frames cannot hold the runtime.
        let connection = self
            .protocols
            .http2
            .serve_connection(TokioIo::new(crate::fair::Fair::new(io)), service);
        let idle = streams.idle(self.idle_timeout);
        self.drive(connection, http2::Connection::graceful_shutdown, idle, peer)
            .await;
    }

    /// Runs the connection to its end; once shutdown begins or the connection has idled, asks it
    /// to finish what is in flight and close.
    async fn drive<C>(
        &mut self,
        connection: C,
        graceful_shutdown: fn(Pin<&mut C>),
        idle: impl Future<Output = ()>,
        peer: SocketAddr,
    ) where
        C: Future<Output = hyper::Result<()>>,
    {
        tokio::pin!(connection);
        let close = tokio::select! {
            // In order: the connection is polled at every wake-up, the rest seldom matter.
            biased;
            result = connection.as_mut() => return log_connection_end(result, peer),
            () = drained(&mut self.drain) => "shutting down",
            () = idle => "idle HTTP/2 connection",
        };
        tracing::debug!(%peer, reason = close, "closing the connection gracefully");
        graceful_shutdown(connection.as_mut());
        log_connection_end(connection.await, peer);
    }
}

/// Resolves once shutdown has begun (or the server is gone).
async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|draining| *draining).await;
}

fn log_connection_end(result: hyper::Result<()>, peer: SocketAddr) {
    if let Err(e) = result {
        // Clients that vanish or dawdle are routine; nothing here is the gateway's fault.
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn output_size<F, A, B, C, D, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C, D) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every connection's task is allocated at this size for its whole life, idle or not, so it is
    /// most of what 10,000 idle connections cost once `timer` has released hyper's buffers (it was
    /// 10,800 bytes before the TLS and HTTP/2 states were boxed). A change that makes it grow
    /// should be one that was meant to.
    #[test]
    fn the_connection_task_stays_small() {
        const PINNED: usize = 1488;
        let size = output_size(ConnTask::run);
        assert!(
            size <= PINNED,
            "ConnTask::run's future grew from {PINNED} to {size} bytes: box the new state, or pin the new size if it is meant"
        );
    }
}
