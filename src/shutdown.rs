//! The process-level shutdown signal: SIGTERM (what orchestrators send) or SIGINT (Ctrl-C) both
//! start a graceful drain; the server decides how long the drain may take.

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler we still honour Ctrl-C below.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM received, draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, draining"),
    }
}
