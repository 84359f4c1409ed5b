//! The OMA DM tree of a device: nodes with their properties, ACLs with inheritance,
//! the standard objects (DevInfo, DevDetail, DMAcc), and the execution of server
//! commands with DM 1.2 statuses. Pure: no I/O, no clock; serde for persistence.

mod accounts;
mod acl;
mod bootstrap;
mod changes;
mod dmacc;
mod exec;
pub mod fumo;
mod guard;
mod gwboot;
pub mod gwmo;
mod lapse;
mod node;
mod provenance;
mod registry;
mod stdobj;
mod subtree;
mod tree;
mod undo;
mod uri;

pub use acl::{Acl, Op};
pub use bootstrap::{
    BootstrapError, BootstrapRequest, GatewayBootstrap, bootstrap_document, read_bootstrap,
};
pub use changes::TreeChange;
pub use dmacc::{
    AppAuth, AuthLevel, DMACC, DmAccount, account_for, account_of, dm_accounts, set_account_nonce,
    write_dm_account,
};
pub use gwboot::{Provenance, mirrored_provenance, rfc3339};
pub use lapse::Elapsed;
pub use node::{Content, Format, Node};
pub use provenance::{Origin, Trust};
pub use stdobj::DeviceInfo;
pub use subtree::TndsTreeError;
pub use tree::{ExecRequest, Tree};
pub use uri::{MAX_DEPTH, MAX_SEGMENT_LEN, MAX_URI_LEN, Query, Uri, segment_for};

/// Why the device's own change to its tree failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("URI of {0} bytes is beyond the device's limits")]
    UriTooLong(usize),
    #[error("malformed URI {0:?}")]
    BadUri(String),
    #[error("no node at {0}")]
    NotFound(String),
    #[error("{0} is a leaf, not an interior node")]
    NotInterior(String),
    #[error("{0} is an interior node, not a leaf")]
    NotLeaf(String),
    #[error("malformed ACL {0:?}")]
    BadAcl(String),
    #[error("the root cannot be removed")]
    Permanent,
    #[error("the device already has an account for server {0:?}")]
    ServerIdTaken(String),
}
