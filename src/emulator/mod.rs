//! A local stand-in for Persona's API (placeholder; lands with the emulator change).

use std::net::SocketAddr;

/// Serves the emulator on `listen` until `shutdown` resolves.
///
/// # Errors
/// The listener cannot bind.
pub async fn run_standalone(
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let _ = listen;
    shutdown.await;
    Ok(())
}
