//! The gateway's configuration (`gateway.toml`): its identity toward end devices, its
//! account with the DM Server, where it listens, and which bootstrapping approaches of
//! the seed's section 8.x it supports.

use std::net::SocketAddr;
use std::path::PathBuf;

use gwmo_device::settings::FactoryAccount;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// The gateway's ServerID toward end devices (their DMAcc names it).
    pub gateway_id: String,
    /// The gateway's DevId as a client of the DM Server.
    pub dev_id: String,
    /// The gateway's own DM tree and its end-device store live here.
    pub state_dir: PathBuf,
    /// Where end devices post their DM messages.
    pub listen: SocketAddr,
    /// The URL end devices use; defaults to `https://<listen>/dm` (`http` with plain
    /// HTTP).
    pub public_url: Option<String>,
    /// Where the DM Server's package-0 notifications reach the gateway.
    pub notify_listen: Option<SocketAddr>,
    /// Poll the DM Server this often when no notification comes (0: never).
    pub poll_secs: u64,
    /// Bearer token of the gateway's admin API (its end devices, their commands).
    pub admin_token: Option<String>,
    /// Where to write the address the end-device listener bound (for port 0).
    pub address_file: Option<PathBuf>,
    /// Which bootstrapping approaches the gateway takes part in.
    pub approaches: Approaches,
    /// Where the embedded Local DM Bootstrap Server listens (approaches.local).
    pub bootstrap_listen: SocketAddr,
    /// The lapse interval its Gateway Bootstraps ask for.
    pub bootstrap_lapse_secs: u64,
    /// Where to write the address the bootstrap listener bound (for port 0).
    pub bootstrap_address_file: Option<PathBuf>,
    /// USERPIN of each device (by DevId): its bootstrap request must prove it, and its
    /// Gateway Bootstrap carries a MAC made with it.
    pub userpins: std::collections::BTreeMap<String, String>,
    /// Whether a device without a USERPIN here gets an unsigned Gateway Bootstrap
    /// (off by default: the bootstrap server cannot tell such a device from a stranger).
    pub bootstrap_issue_unsigned: bool,
    /// Bootstrap requests per second its bootstrap server answers (bursts of twice).
    pub bootstrap_requests_per_sec: u32,
    /// Advertise the gateway with DNS-SD (`_omadm-gw._tcp`) on this network interface
    /// only (for example `eth1`); none: no advertisement.
    pub dns_sd_interface: Option<String>,
    /// The most the images the gateway keeps for its end devices (firmware updates
    /// fanned out to them) may take, in MiB; older ones unused are evicted first.
    pub image_store_mib: u64,
    /// The gateway's account with the DM Server.
    pub upstream: Option<FactoryAccount>,
    /// The certificate of every listener of the gateway (end devices, package 0,
    /// bootstrap), the CA its DM Server's and end devices' certificates are checked
    /// with, or plain HTTP.
    pub tls: gwmo_net::TlsSettings,
}

/// The bootstrapping approaches of the seed (8.x.1 and 8.x.2). A gateway MUST
/// support at least one and MAY support both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Approaches {
    /// DM Server Assisted Gateway Bootstrapping (figures x and y): the DM Server
    /// bootstraps devices that report this gateway to it.
    pub server_assisted: bool,
    /// Local DM Bootstrap Server Assisted Gateway Bootstrapping (figure z): the
    /// gateway's own bootstrap server, on `bootstrap_listen`.
    pub local: bool,
}

impl Default for Approaches {
    fn default() -> Self {
        Approaches {
            server_assisted: true,
            local: false,
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            gateway_id: "gwmo-gw".into(),
            dev_id: "GW:gwmo-gw".into(),
            state_dir: PathBuf::from("gwmo-gateway-state"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            public_url: None,
            notify_listen: None,
            poll_secs: 0,
            admin_token: None,
            address_file: None,
            approaches: Approaches::default(),
            dns_sd_interface: None,
            bootstrap_listen: SocketAddr::from(([127, 0, 0, 1], 8091)),
            bootstrap_lapse_secs: 3600,
            bootstrap_address_file: None,
            userpins: std::collections::BTreeMap::new(),
            bootstrap_issue_unsigned: false,
            bootstrap_requests_per_sec: 100,
            image_store_mib: 4096,
            upstream: None,
            tls: gwmo_net::TlsSettings::default(),
        }
    }
}

/// Why a gateway configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "a DM Gateway must support at least one bootstrapping approach: set approaches.server_assisted or approaches.local to true"
    )]
    NoApproach,
    #[error("the gateway has no account with a DM Server: add an [upstream] section")]
    NoUpstream,
    #[error(transparent)]
    AdminToken(#[from] gwmo_server::AdminTokenError),
}

impl GatewaySettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        gwmo_server::check_admin_token(self.admin_token.as_deref())?;
        match self.approaches {
            Approaches {
                server_assisted: false,
                local: false,
            } => Err(SettingsError::NoApproach),
            _ if self.upstream.is_none() => Err(SettingsError::NoUpstream),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_upstream() -> GatewaySettings {
        toml::from_str(
            "[upstream]\nserver_id = \"dms\"\nserver_url = \"http://dms/dm\"\nclient_secret = \"c\"\nserver_secret = \"s\"\n",
        )
        .unwrap()
    }

    #[test]
    fn req_8x_a_gateway_with_neither_approach_refuses_to_start() {
        let mut settings = with_upstream();
        settings.approaches = Approaches {
            server_assisted: false,
            local: false,
        };
        assert_eq!(settings.validate(), Err(SettingsError::NoApproach));
        assert!(
            SettingsError::NoApproach
                .to_string()
                .contains("at least one")
        );
    }

    #[test]
    fn server_assisted_alone_is_enough() {
        assert_eq!(with_upstream().validate(), Ok(()));
        assert_eq!(
            GatewaySettings::default().validate(),
            Err(SettingsError::NoUpstream)
        );
    }

    #[test]
    fn an_empty_admin_token_stops_the_gateway_before_anything_else() {
        let mut settings = with_upstream();
        settings.admin_token = Some(String::new());
        assert_eq!(
            settings.validate(),
            Err(SettingsError::AdminToken(
                gwmo_server::AdminTokenError::TooShort(0)
            ))
        );
        settings.admin_token = Some("a-long-enough-token".into());
        assert_eq!(settings.validate(), Ok(()));
    }
}
