//! The floor for `scripts/bench-proxy.sh` (`BARE=1`): a bare hyper HTTP/1 reverse proxy with
//! nothing of the gateway's (no auth, no header rewrite, no timeouts, no logs), one upstream
//! connection per client connection, on tokio's single-threaded runtime with mimalloc, as the
//! gateway runs when pinned to one CPU. The distance from this to persona-gate is what the
//! gateway's own per-request work costs; the distance from this to nginx is hyper's and tokio's.
//! Not part of the gateway.
//!
//! Usage: `bare_proxy <LISTEN ADDR> <UPSTREAM ADDR>`, e.g. `bare_proxy 127.0.0.1:8081 127.0.0.1:8080`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = BoxBody<Bytes, hyper::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [listen, upstream] => listen
            .parse::<SocketAddr>()
            .ok()
            .zip(upstream.parse::<SocketAddr>().ok()),
        _ => None,
    };
    let Some((listen, upstream)) = parsed else {
        eprintln!("usage: bare_proxy <LISTEN ADDR> <UPSTREAM ADDR>");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bare_proxy: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listen, upstream)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare_proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = proxy_connection(client, upstream).await {
                eprintln!("bare_proxy: connection: {e}");
            }
        });
    }
}

async fn proxy_connection(client: TcpStream, upstream: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    client.set_nodelay(true)?;
    let app = TcpStream::connect(upstream).await?;
    app.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(app)).await?;
    tokio::spawn(connection);
    let sender = Arc::new(Mutex::new(sender));
    let service = service_fn(move |req| forward(sender.clone(), req));
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await?;
    Ok(())
}

async fn forward(
    sender: Arc<Mutex<SendRequest<Incoming>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut sender = sender.lock().await;
    let answer = match sender.ready().await {
        Ok(()) => sender.send_request(req).await,
        Err(e) => Err(e),
    };
    Ok(match answer {
        Ok(response) => response.map(BodyExt::boxed),
        Err(_) => {
            let mut bad_gateway = Response::new(Empty::new().map_err(|never| match never {}).boxed());
            *bad_gateway.status_mut() = StatusCode::BAD_GATEWAY;
            bad_gateway
        }
    })
}
