//! The DM Gateway: a DM client of the DM Server, whose GwMO objects (Gateway Config,
//! Device Inventory, Fanout) live in its own tree, and a DM server for the End Devices
//! behind it. Server assisted gateway bootstrapping (seed 8.x.1) and its own Local DM
//! Bootstrap Server (8.x.2) fill its inventory.
//!
//! Layers: `inventory` reads and writes the GwMO objects of a tree; `reconcile` decides
//! (pure: tree, store and time in, actions out); `driver` performs the decisions;
//! `gateway` wires the roles together and runs the loop.

mod driver;
mod gateway;
mod images;
mod inventory;
mod known;
mod metrics;
mod reconcile;
mod report_retry;
pub mod settings;

pub use driver::gwmo_alert_item;
pub use gateway::Gateway;
pub use inventory::{EntryState, InventoryEntry, entries as inventory};
pub use settings::GatewaySettings;

/// Why the gateway could not start, or a sync did not finish.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Settings(#[from] settings::SettingsError),
    #[error("toward the DM Server: {0}")]
    Upstream(#[from] gwmo_device::DeviceError),
    #[error("toward end devices: {0}")]
    Downstream(#[from] gwmo_server::ServerError),
    #[error("{0}")]
    Discovery(String),
    #[error("local bootstrap server: {0}")]
    Bootstrap(String),
    #[error("{0}")]
    EndDevices(#[from] gwmo_server::EmbedError),
    #[error("the DM Server aborted the session that carried a report")]
    ReportAborted,
    #[error("reports wait out the pause after the last one the DM Server did not take")]
    ReportsWaiting,
}
