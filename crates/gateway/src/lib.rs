//! The DM Gateway: a DM client of the DM Server, whose GwMO objects (Gateway Config,
//! Device Inventory) live in its own tree, and a DM server for the End Devices behind
//! it. Server assisted gateway bootstrapping (seed 8.x.1) fills its inventory.

pub mod gateway;
pub mod settings;

pub use gateway::{Gateway, GatewayError};
pub use settings::GatewaySettings;
