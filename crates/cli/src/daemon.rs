//! What every daemon command shares: when to stop (the signal `gwmo_wiring` has for
//! every program that runs roles), where to say its address, telling systemd it is
//! ready, and reloading certificates on SIGHUP.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

/// Writes the address a daemon listens on to `path`, whole or not at all: a script
/// that started it with port 0 reads it there.
pub fn write_address_file(path: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    gwmo_device::write_atomically(path, addr.to_string().as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

pub use gwmo_wiring::shutdown_signal;

/// Tells the service manager that the daemon serves (`READY=1` to `$NOTIFY_SOCKET`, the
/// sd_notify protocol of a `Type=notify` systemd unit); nothing when not under one. A
/// failure is logged, not fatal: the daemon serves either way.
pub fn notify_ready() {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = send_ready(&socket) {
        tracing::warn!(%error, "could not tell the service manager that this daemon is ready");
    }
}

fn send_ready(socket: &std::ffi::OsStr) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = socket.as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        // An abstract socket (Linux): the name after the '@'.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(Path::new(socket))?,
    };
    UnixDatagram::unbound()?.send_to_addr(b"READY=1", &address)?;
    Ok(())
}

/// On SIGHUP, instead of the signal's default of ending the process: reads the log
/// filter of the configuration file `config` again, and every certificate this process
/// presents (after a renewal). Returns at once; the task runs for as long as the
/// runtime does.
pub fn reload_on_hangup(config: Option<std::path::PathBuf>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: certificates reload only with a restart");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match crate::config::log_filter(config.as_deref()) {
                Ok(filter) => crate::logging::apply_configured(filter.as_deref()),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "SIGHUP: the configuration's log filter could not be read; the one in force stays")
                }
            }
            match gwmo_net::reload_certificates() {
                Ok(reloaded) => tracing::info!(reloaded, "SIGHUP: certificates read again"),
                Err(error) => {
                    tracing::warn!(%error, "SIGHUP: a certificate could not be read again; the one before stays")
                }
            }
        }
    });
}
