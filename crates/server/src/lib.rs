//! The DM Server: an HTTP service holding DM sessions with devices, an SQLite store
//! of devices, their credentials and DevInfo, a queue of management commands with
//! their outcomes, package-0 notifications, and the admin API.

pub mod admin;
pub mod bootstrap;
pub mod command;
pub mod devtree;
pub mod dm;
pub mod fanout;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod secrets;
pub mod settings;
pub mod state;
pub mod store;
pub mod throttle;

pub use http::Server;
pub use settings::ServerSettings;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] gwmo_net::TlsError),
}
