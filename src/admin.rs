//! The admin listener: `GET /metrics` (Prometheus text format) and `POST /admin/reload`. It is a
//! separate socket from the traffic listeners, never proxied and never rate-limited, so an
//! overloaded gateway can still be observed and reconfigured.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::body::{Body, full, json_response};
use crate::reload::{Live, ReloadError};

/// Serves until `shutdown` resolves, and keeps the metrics recorder (which exists only with this
/// listener) from hoarding samples between scrapes.
pub fn spawn(listener: TcpListener, live: Arc<Live>, shutdown: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let upkeep = crate::metrics::upkeep();
        tokio::pin!(upkeep);
        loop {
            let (io, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        continue;
                    }
                },
                () = &mut upkeep => continue,
                () = &mut shutdown => break,
            };
            let live = live.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let live = live.clone();
                    async move { Ok::<_, Infallible>(handle(&live, req, peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), service)
                    .await;
            });
        }
    });
}

async fn handle(live: &Live, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => metrics(),
        (&Method::POST, "/admin/reload") => {
            tracing::info!(%peer, "reload requested on the admin listener");
            reload(live).await
        }
        (_, "/metrics" | "/admin/reload") => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": { "code": "method_not_allowed" } }),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &json!({ "error": { "code": "not_found" } })),
    }
}

fn metrics() -> Response<Body> {
    let mut response = Response::new(full(crate::metrics::render()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// 200 with what needs a restart, or 422 with every problem; the old config keeps serving.
async fn reload(live: &Live) -> Response<Body> {
    match live.reload().await {
        Ok(done) => json_response(
            StatusCode::OK,
            &json!({ "status": "reloaded", "restart_needed": done.restart_needed }),
        ),
        Err(ReloadError::Config(e)) => {
            let problems = e.problems();
            for problem in &problems {
                tracing::error!(%problem, "config reload refused; the running config stays");
            }
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "error": { "code": "config_invalid", "message": "the new config is invalid; nothing changed", "problems": problems } }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload failed; the running config stays");
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "error": { "code": "config_unusable", "message": e.to_string() } }),
            )
        }
    }
}
