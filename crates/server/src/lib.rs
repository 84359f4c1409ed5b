//! The DM Server: an HTTP service holding DM sessions with devices, an SQLite store
//! of devices, their credentials and DevInfo, a queue of management commands with
//! their outcomes, package-0 notifications, and the admin API.

// Layers, each using only those above it (checked by cli/tests/module_layers.rs):
// 1. the store, command specs, settings, secrets, counters, the throttle;
mod command;
mod metrics;
mod operators;
mod secrets;
mod settings;
mod store;
mod throttle;
// 2. the domain's rules on commands: gateway bootstraps, campaigns, fan-outs;
mod bootstrap;
mod campaign;
mod fanout;
mod firmware;
// 3. DM sessions;
mod dm;
// 4. what handlers share, package 0, readiness;
mod notify;
mod ready;
mod state;
// 5. the admin API, a device's reported tree, the embedding interface;
mod admin;
mod devtree;
mod embed;
// 6. HTTP.
mod http;

pub use admin::accounts::{AccountError, OperatorAccounts};
pub use command::CommandSpec;
pub use embed::{
    CommandOutcome, EmbedError, EndDevice, EndDeviceChanges, EndDevices, FirmwareProgress,
    NewEndDevice, NewImage, StoredImage,
};
pub use http::Server;
pub use metrics::{ExtraMetrics, MetricKind, write_metric};
pub use operators::Role;
pub use secrets::random_secret;
pub use settings::{AdminTokenError, MIN_ADMIN_TOKEN_LEN, ServerSettings, check_admin_token};
pub use store::{CommandState, StoreError, is_shared};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] gwmo_net::TlsError),
    #[error(transparent)]
    AdminToken(#[from] settings::AdminTokenError),
}
