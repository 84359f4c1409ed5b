//! `gwmo gateway`: the DM Gateway daemon.

use anyhow::Context;
use clap::Args;
use gwmo_gateway::{Gateway, GatewaySettings};

use crate::ConfigArgs;

#[derive(Args, Debug)]
pub struct GatewayArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let mut settings: GatewaySettings = crate::config::load(args.config.config.as_deref())?;
    settings.tls.plain_http |= args.config.plain_http;
    if args.config.print_config {
        return crate::config::print(&settings, "GatewaySettings", args.config.all);
    }
    settings.validate()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let address_file = settings.address_file.clone();
        let bootstrap_address_file = settings.bootstrap_address_file.clone();
        let gateway = Gateway::start(settings).await?;
        if let (Some(path), Some(addr)) = (address_file, gateway.local_addr()) {
            crate::daemon::write_address_file(&path, addr)?;
        }
        if let (Some(path), Some(addr)) = (bootstrap_address_file, gateway.bootstrap_addr()) {
            crate::daemon::write_address_file(&path, addr)?;
        }
        crate::daemon::reload_on_hangup(args.config.config.clone());
        crate::daemon::notify_ready();
        gateway.run(crate::daemon::shutdown_signal()).await?;
        Ok(())
    })
}
