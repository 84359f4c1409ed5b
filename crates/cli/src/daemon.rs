//! What every daemon command shares: when to stop (the signal `gwmo_wiring` has for
//! every program that runs roles), and where to say its address.

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
