//! DNS-SD over mDNS, confined to one network interface: gateways advertise
//! `_omadm-gw._tcp` (and local bootstrap servers `_omadm-bs._tcp`) with their ServerID
//! in TXT, end devices browse for them. Every daemon first disables all interfaces and
//! enables only the configured one, so mDNS stays on the network the operator chose.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tracing::debug;

/// DM Gateways (docs/DECISIONS.md §3).
pub const GATEWAY_SERVICE: &str = "_omadm-gw._tcp.local.";
/// Local DM Bootstrap Servers (docs/DECISIONS.md §2 B).
pub const BOOTSTRAP_SERVICE: &str = "_omadm-bs._tcp.local.";
/// The TXT key holding the advertiser's ServerID.
pub const SERVER_ID_KEY: &str = "serverid";

#[derive(Debug, thiserror::Error)]
#[error("DNS-SD on {interface}: {reason}")]
pub struct DiscoveryError {
    interface: String,
    reason: String,
}

fn daemon(interface: &str) -> Result<ServiceDaemon, DiscoveryError> {
    let fail = |e: mdns_sd::Error| DiscoveryError {
        interface: interface.to_owned(),
        reason: e.to_string(),
    };
    let daemon = ServiceDaemon::new().map_err(fail)?;
    daemon.disable_interface(IfKind::All).map_err(fail)?;
    daemon
        .enable_interface(IfKind::Name(interface.to_owned()))
        .map_err(fail)?;
    Ok(daemon)
}

/// Moves the calling thread (and every thread and process it starts afterwards) into a
/// fresh network namespace whose only interface, loopback, carries multicast: real
/// mDNS for tests, with nothing able to leave the machine. Needs root (CAP_SYS_ADMIN)
/// and iproute2.
#[cfg(feature = "testing")]
#[expect(
    unsafe_code,
    reason = "unshare(2) has no safe wrapper among the crates this workspace uses"
)]
pub fn private_network() -> Result<(), String> {
    // SAFETY: unshare changes only this thread's namespace; no memory is involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "set", "lo", "multicast", "on"],
        &["route", "add", "224.0.0.0/4", "dev", "lo"],
    ] {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .map_err(|e| format!("ip: {e}"))?;
        if !status.success() {
            return Err(format!("ip {} failed", args.join(" ")));
        }
    }
    Ok(())
}

/// A service being advertised; withdrawn when dropped.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        // Best effort: a goodbye packet, then the daemon thread ends.
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// Advertises `server_id` as an instance of `service` at `address:port`.
pub fn advertise(
    service: &str,
    interface: &str,
    server_id: &str,
    address: IpAddr,
    port: u16,
) -> Result<Advertisement, DiscoveryError> {
    let daemon = daemon(interface)?;
    let host: String = server_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let properties = [(SERVER_ID_KEY, server_id)];
    let info = ServiceInfo::new(
        service,
        server_id,
        &format!("{host}.local."),
        address,
        port,
        &properties[..],
    )
    .map_err(|e| DiscoveryError {
        interface: interface.to_owned(),
        reason: e.to_string(),
    })?;
    let fullname = info.get_fullname().to_owned();
    daemon.register(info).map_err(|e| DiscoveryError {
        interface: interface.to_owned(),
        reason: e.to_string(),
    })?;
    debug!(service, server_id, interface, "advertising");
    Ok(Advertisement { daemon, fullname })
}

/// An advertised service that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub server_id: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
}

/// Browses `service` on `interface` for `wait`; returns what was resolved, by ServerID.
pub fn browse(
    service: &str,
    interface: &str,
    wait: Duration,
) -> Result<Vec<Found>, DiscoveryError> {
    let daemon = daemon(interface)?;
    let events = daemon.browse(service).map_err(|e| DiscoveryError {
        interface: interface.to_owned(),
        reason: e.to_string(),
    })?;
    let deadline = Instant::now() + wait;
    let mut found = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(service)) => {
                if let Some(server_id) = service.get_property_val_str(SERVER_ID_KEY) {
                    found.insert(
                        server_id.to_owned(),
                        Found {
                            server_id: server_id.to_owned(),
                            port: service.get_port(),
                            addresses: service
                                .get_addresses()
                                .iter()
                                .map(|a| a.to_ip_addr())
                                .collect(),
                        },
                    );
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    Ok(found.into_values().collect())
}
