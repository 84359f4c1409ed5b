//! Wiring gwmo's roles together in one program, for the three programs that run
//! several: `gwmo demo`, `gwmo sim` and the scenario tests. Each had its own admin API
//! client, its own way of starting a gateway and of stopping what it started; this is
//! the one of each.
//!
//! - [`AdminClient`]: the admin API of a server or gateway.
//! - [`enrollment_account`]: the factory account an enrollment describes.
//! - [`start_gateway`]: a gateway in this process, enrolled and registered with its
//!   server, running until stopped.
//! - [`Running`]: a task that runs until told to stop.
//! - [`poll`]: waiting for a condition with a deadline; [`shutdown_signal`]: Ctrl-C or
//!   SIGTERM.

mod admin;
mod gateway;
mod run;

pub use admin::AdminClient;
pub use gateway::{GatewayPlan, StartedGateway, enrollment_account, start_gateway};
pub use run::{Running, poll, shutdown_signal};

/// Why wiring failed.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("{0}")]
    Net(#[from] gwmo_net::NetError),
    #[error("{path}: HTTP {status} {body}")]
    Api {
        path: String,
        status: u16,
        body: serde_json::Value,
    },
    #[error("the enrollment has no {0}: {1}")]
    Enrollment(&'static str, serde_json::Value),
    #[error("gateway {0}: {1}")]
    Gateway(String, String),
    #[error("timed out after {1:?} waiting for {0}")]
    Timeout(String, std::time::Duration),
}
