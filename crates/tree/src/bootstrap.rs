//! The Gateway Bootstrap (docs/DECISIONS.md §2 B): a gateway's DM account as a TNDS document,
//! with the lapse interval it asks for. Written and read through a scratch tree, so the
//! DMAcc mapping is the one of `dmacc.rs`.

use gwmo_proto::tnds::{self, TndsError};

use crate::TreeError;
use crate::dmacc::{DMACC, DmAccount, dm_accounts, write_dm_account};
use crate::node::Format;
use crate::provenance::{Origin, Trust};
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
        Origin::LocalBootstrap.as_str(),
        Format::Chr,
    )?;
    scratch.set_leaf(
        &format!("{base}/Ext/GwBoot/Trust"),
        Trust::Restricted.as_str(),
        Format::Chr,
    )?;
    let mut node = scratch
        .subtree_tnds(&base)
        .ok_or_else(|| TreeError::NotFound(base.clone()))?;
    node.path = Some(DMACC.to_owned());
    Ok(tnds::to_xml(&[node]))
}

/// What a device posts to a Local DM Bootstrap Server (`/bootstrap`, JSON). Where the
/// server knows the device's USERPIN, the request proves the device knows it too: the
/// server answers a first request with a single-use `challenge`, and the device posts
/// again with `mac` = HMAC-SHA1 over [`BootstrapRequest::signed_text`] keyed with its
/// USERPIN (the DM Security construction of the document MAC, over the request).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct BootstrapRequest {
    pub dev_id: String,
    /// The longest lapse interval the device will apply: the server issues no longer,
    /// so both sides count the same interval.
    pub max_lapse_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl BootstrapRequest {
    /// What the MAC covers: every field the server acts on, and its challenge.
    pub fn signed_text(&self) -> String {
        format!(
            "{}\n{}\n{}",
            self.dev_id,
            self.max_lapse_secs,
            self.challenge.as_deref().unwrap_or_default()
        )
    }

    /// This request answering `challenge`, signed with `userpin`.
    pub fn answer(&self, challenge: &str, userpin: &str) -> BootstrapRequest {
        let mut answer = BootstrapRequest {
            challenge: Some(challenge.to_owned()),
            mac: None,
            ..self.clone()
        };
        answer.mac = Some(gwmo_proto::auth::bootstrap_mac(
            userpin.as_bytes(),
            answer.signed_text().as_bytes(),
        ));
        answer
    }

    /// Whether the request carries a MAC made with `userpin`.
    pub fn proves(&self, userpin: &str) -> bool {
        self.mac.as_deref().is_some_and(|mac| {
            gwmo_proto::auth::verify_bootstrap_mac(
                userpin.as_bytes(),
                self.signed_text().as_bytes(),
                mac,
            )
            .is_ok()
        })
    }
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
    fn a_request_proves_the_userpin_only_with_its_own_fields_and_challenge() {
        let request = BootstrapRequest {
            dev_id: "IMEI:1".into(),
            max_lapse_secs: 600,
            ..BootstrapRequest::default()
        };
        let answer = request.answer("c1", "4711");
        assert!(answer.proves("4711"));
        assert!(!answer.proves("4712"));
        assert!(!request.proves("4711"), "no MAC proves nothing");
        for tampered in [
            BootstrapRequest {
                dev_id: "IMEI:2".into(),
                ..answer.clone()
            },
            BootstrapRequest {
                max_lapse_secs: 86_400,
                ..answer.clone()
            },
            BootstrapRequest {
                challenge: Some("c2".into()),
                ..answer.clone()
            },
        ] {
            assert!(!tampered.proves("4711"), "{tampered:?}");
        }
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
