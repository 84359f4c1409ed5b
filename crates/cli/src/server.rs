//! `gwmo server`: the DM Server daemon.

use anyhow::Context;
use clap::Args;
use gwmo_server::{Server, ServerSettings};

use crate::ConfigArgs;

#[derive(Args, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut settings: ServerSettings = crate::config::load(args.config.config.as_deref())?;
    settings.tls.plain_http |= args.config.plain_http;
    if args.config.print_config {
        return crate::config::print(&settings);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let address_file = settings.address_file.clone();
        let server = Server::bind(settings).await?;
        if let (Some(path), Some(addr)) = (address_file, server.local_addr()) {
            crate::device::write_atomically(&path, addr.to_string().as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        server.run(shutdown_signal()).await?;
        Ok(())
    })
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
