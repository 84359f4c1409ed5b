//! What every daemon command shares: when to stop, and where to say its address.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

/// Writes the address a daemon listens on to `path`, whole or not at all: a script
/// that started it with port 0 reads it there.
pub fn write_address_file(path: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    gwmo_device::write_atomically(path, addr.to_string().as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
