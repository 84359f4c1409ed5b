//! The End Device agent: a persistent DM tree, management sessions over HTTP with
//! every server it has an account for, and a package-0 listener for sessions the
//! server asks for.

pub mod agent;
pub mod backoff;
pub mod firmware;
pub mod local;
pub mod notify;
mod pacing;
pub mod provision;
mod revised;
pub mod settings;
pub mod state;
mod updater;

pub use agent::{Agent, SessionEnd, SessionReport, TreeExecutor};
pub use settings::DeviceSettings;
pub use state::{StateDir, write_atomically};

/// Why the device could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("state {0}: {1}")]
    State(std::path::PathBuf, String),
    #[error("DM tree: {0}")]
    Tree(#[from] gwmo_tree::TreeError),
    #[error("no DM account for server {0:?}")]
    NoAccount(String),
    #[error("the account of {0:?} has no {1}")]
    BadAccount(String, String),
    #[error("{0}")]
    Net(#[from] gwmo_net::NetError),
    #[error("TLS: {0}")]
    Tls(#[from] gwmo_net::TlsError),
    #[error("the server answered HTTP {0}: {1}")]
    Refused(u16, String),
    #[error("session: {0}")]
    Session(#[from] gwmo_session::SessionError),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, String),
    #[error("local bootstrap refused: {0}")]
    Bootstrap(String),
    #[error("configuration: {0}")]
    Settings(&'static str),
    #[error(
        "the state in {dir} is device {stored:?}'s, not {configured:?}'s: give each device its own state_dir (the default holds {{dev_id}}), or start it afresh with --reset-state"
    )]
    StateOfAnother {
        dir: std::path::PathBuf,
        stored: String,
        configured: String,
    },
}
