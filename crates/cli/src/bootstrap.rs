//! `gwmo bootstrap`: a standalone Local DM Bootstrap Server; the gateway learns the
//! credentials it issues through the gateway's enrollment endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use gwmo_bootstrap::{BootstrapSettings, remote_enroller};
use serde::{Deserialize, Serialize};

use crate::ConfigArgs;

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// `bootstrap.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneSettings {
    /// Where devices post their DevId (`/bootstrap`); defaults to 127.0.0.1:8092.
    pub listen: Option<SocketAddr>,
    /// Where to write the address bound (for port 0).
    pub address_file: Option<PathBuf>,
    /// The gateway's enrollment endpoint (`https://<gateway bootstrap listener>/bootstrap/enrollments`).
    pub gateway_enrollments_url: String,
    /// The gateway's admin token.
    pub gateway_token: String,
    /// Advertise `_omadm-bs._tcp` on this interface only.
    pub dns_sd_interface: Option<String>,
    /// What is issued, and to whom: `[bootstrap]` gateway_id, gateway_url, lapse_secs,
    /// issue_unsigned, requests_per_sec, `[bootstrap.userpins]`.
    pub bootstrap: BootstrapSettings,
    /// The listener's certificate, the CA the gateway's certificate is checked with,
    /// or plain HTTP.
    pub tls: gwmo_net::TlsSettings,
}

pub fn run(args: BootstrapArgs) -> anyhow::Result<()> {
    let mut settings: StandaloneSettings = crate::config::load(args.config.config.as_deref())?;
    settings.tls.plain_http |= args.config.plain_http;
    if args.config.print_config {
        return crate::config::print(&settings, "StandaloneSettings", args.config.all);
    }
    if settings.gateway_enrollments_url.is_empty() || settings.gateway_token.is_empty() {
        bail!(
            "set gateway_enrollments_url and gateway_token: the gateway must learn the credentials this server issues"
        );
    }
    let listen = settings
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8092)));
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let tls = settings.tls.acceptor("local bootstrap server")?;
    let client_tls = settings.tls.client()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let bound = listener.local_addr().context("no local address")?;
        if let Some(path) = &settings.address_file {
            crate::daemon::write_address_file(path, bound)?;
        }
        let _advertisement = match &settings.dns_sd_interface {
            Some(interface) => Some(gwmo_discovery::advertise(
                gwmo_discovery::BOOTSTRAP_SERVICE,
                interface,
                &settings.bootstrap.gateway_id,
                bound.ip(),
                bound.port(),
            )?),
            None => None,
        };
        let enroller = remote_enroller(
            settings.gateway_enrollments_url.clone(),
            settings.gateway_token.clone(),
            &client_tls,
        );
        tracing::info!(address = %bound, gateway = %settings.bootstrap.gateway_id, "local bootstrap server listening");
        crate::daemon::reload_on_hangup(args.config.config.clone());
        crate::daemon::notify_ready();
        gwmo_net::serve(
            listener,
            tls,
            gwmo_bootstrap::router(settings.bootstrap, enroller),
            gwmo_net::ServeLimits::default(),
            crate::daemon::shutdown_signal(),
        )
        .await;
        Ok(())
    })
}
