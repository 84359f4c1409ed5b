//! The Gateway Bootstrap (DESIGN.md §2 B): a gateway's DM account as a TNDS document,
//! with the lapse interval it asks for. Written and read through a scratch tree, so the
//! DMAcc mapping is the one of `dmacc.rs`.

use gwmo_proto::tnds::{self, TndsError};

use crate::TreeError;
use crate::dmacc::{DMACC, DmAccount, dm_accounts, write_dm_account};
use crate::node::Format;
use crate::tree::Tree;
use crate::uri::segment_for;

/// Leaf (under the account) carrying the lapse interval the bootstrap asks for.
const LAPSE_SECS: &str = "Ext/GwBoot/LapseSecs";

/// A Gateway Bootstrap as the device reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayBootstrap {
    pub account: DmAccount,
    /// Seconds within which a management session must follow (none: the device's maximum).
    pub lapse_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Tnds(#[from] TndsError),
    #[error("{0}")]
    Tree(#[from] TreeError),
    #[error("the document holds {0} DM accounts, not one")]
    Accounts(usize),
}

/// The TNDS document of a Gateway Bootstrap.
pub fn bootstrap_document(account: &DmAccount, lapse_secs: u64) -> Result<String, TreeError> {
    let name = segment_for(&account.server_id);
    let mut scratch = Tree::default();
    write_dm_account(&mut scratch, &name, account)?;
    let base = format!("{DMACC}/{name}");
    scratch.set_leaf(
        &format!("{base}/{LAPSE_SECS}"),
        &lapse_secs.to_string(),
        Format::Int,
    )?;
    // Informative: the device writes the provenance of what it accepts itself.
    scratch.set_leaf(
        &format!("{base}/Ext/GwBoot/Origin"),
        "local-bootstrap",
        Format::Chr,
    )?;
    scratch.set_leaf(
        &format!("{base}/Ext/GwBoot/Trust"),
        "restricted",
        Format::Chr,
    )?;
    let mut node = scratch
        .subtree_tnds(&base)
        .ok_or_else(|| TreeError::NotFound(base.clone()))?;
    node.path = Some(DMACC.to_owned());
    Ok(tnds::to_xml(&[node]))
}

/// Reads a Gateway Bootstrap: exactly one DM account under ./DMAcc.
pub fn read_bootstrap(xml: &str) -> Result<GatewayBootstrap, BootstrapError> {
    let scratch = Tree::from_tnds(xml, DMACC).map_err(|error| match error {
        crate::subtree::TndsTreeError::Tnds(e) => BootstrapError::Tnds(e),
        crate::subtree::TndsTreeError::Tree(e) => BootstrapError::Tree(e),
    })?;
    let mut accounts = dm_accounts(&scratch);
    if accounts.len() != 1 {
        return Err(BootstrapError::Accounts(accounts.len()));
    }
    let (name, account) = accounts.remove(0);
    let lapse_secs = scratch
        .value(&format!("{DMACC}/{name}/{LAPSE_SECS}"))
        .and_then(|v| v.parse().ok());
    Ok(GatewayBootstrap {
        account,
        lapse_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwmo_proto::auth::AuthType;

    fn account() -> DmAccount {
        DmAccount::new(
            "gw-l",
            "http://10.0.0.1/dm",
            AuthType::Md5,
            "IMEI:1",
            "c&<",
            "gw-l",
            "s",
        )
    }

    #[test]
    fn a_bootstrap_reads_back_as_written() {
        let xml = bootstrap_document(&account(), 600).unwrap();
        assert!(xml.starts_with("<MgmtTree"));
        let read = read_bootstrap(&xml).unwrap();
        assert_eq!(read.account, account());
        assert_eq!(read.lapse_secs, Some(600));
    }

    #[test]
    fn a_truncated_or_empty_bootstrap_is_refused() {
        let xml = bootstrap_document(&account(), 600).unwrap();
        assert!(read_bootstrap(&xml[..xml.len() / 2]).is_err());
        let empty = tnds::to_xml(&[]);
        assert!(matches!(
            read_bootstrap(&empty),
            Err(BootstrapError::Accounts(0))
        ));
    }
}
