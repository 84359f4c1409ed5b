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
        return crate::config::print(&settings, "ServerSettings", args.config.all);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let address_file = settings.address_file.clone();
        let server = Server::bind(settings).await?;
        if let (Some(path), Some(addr)) = (address_file, server.local_addr()) {
            crate::daemon::write_address_file(&path, addr)?;
        }
        crate::daemon::reload_on_hangup(args.config.config.clone());
        crate::daemon::notify_ready();
        server.run(crate::daemon::shutdown_signal()).await?;
        Ok(())
    })
}
