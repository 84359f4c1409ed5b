//! The device's own account writes, each recorded with its provenance: factory
//! accounts from its configuration, and a Gateway Bootstrap from a local bootstrap
//! server. A new account always takes a node of its own and never a ServerID the
//! device already has.

use crate::TreeError;
use crate::acl::{Acl, Op};
use crate::dmacc::account_of;
use crate::dmacc::{DMACC, DmAccount, account_server_ids, write_dm_account};
use crate::provenance::{Origin, Trust};
use crate::registry::{AccountId, LapseBudget, Record};
use crate::tree::Tree;
use crate::uri::segment_for;

impl Tree {
    /// Adds an account the device came with (its configuration): fully trusted.
    /// Returns its node name.
    pub fn add_factory_account(&mut self, account: &DmAccount) -> Result<String, TreeError> {
        self.add_recorded(account, Origin::Factory, Trust::Full, None)
    }

    /// Records as factory the account of `server_id` that the device's configuration
    /// names but its record does not know (a tree written before records existed).
    /// Returns whether it did.
    pub fn adopt_factory_account(&mut self, server_id: &str) -> bool {
        let Some(node) = account_of(self, server_id) else {
            return false;
        };
        if self.registry.at_node(&node).is_some() {
            return false;
        }
        self.registry.insert(Record {
            id: AccountId(0),
            node: Some(node),
            server_id: server_id.to_owned(),
            origin: Origin::Factory,
            parent: None,
            trust: Trust::Full,
            lapse: None,
            created: Vec::new(),
        });
        self.refresh_mirrors();
        true
    }

    /// Applies a checked Gateway Bootstrap: the gateway's account, restricted, lapsing
    /// `lapse_secs` after `now_unix` unless confirmed, with the right to bootstrap the
    /// device to other servers (Add on ./DMAcc). Returns its node name.
    pub fn apply_gateway_bootstrap(
        &mut self,
        account: &DmAccount,
        now_unix: i64,
        lapse_secs: u64,
    ) -> Result<String, TreeError> {
        let lapse = LapseBudget {
            deadline_unix: now_unix.saturating_add(i64::try_from(lapse_secs).unwrap_or(i64::MAX)),
            remaining_ms: lapse_secs.saturating_mul(1000),
        };
        let node = self.add_recorded(
            account,
            Origin::LocalBootstrap,
            Trust::Restricted,
            Some(lapse),
        )?;
        if self.registry.checkpoint_unix.is_none() {
            self.registry.checkpoint_unix = Some(now_unix);
        }
        let mut acl = self
            .acl(DMACC)
            .cloned()
            .unwrap_or_else(|| Acl::granting("*", &[Op::Get]));
        acl.grant(Op::Add, &account.server_id);
        self.set_acl(DMACC, acl)?;
        Ok(node)
    }

    fn add_recorded(
        &mut self,
        account: &DmAccount,
        origin: Origin,
        trust: Trust,
        lapse: Option<LapseBudget>,
    ) -> Result<String, TreeError> {
        if account_server_ids(self)
            .iter()
            .any(|(_, server_id)| *server_id == account.server_id)
        {
            return Err(TreeError::ServerIdTaken(account.server_id.clone()));
        }
        let node = self.fresh_account_node(&account.server_id);
        write_dm_account(self, &node, account)?;
        self.registry.insert(Record {
            id: AccountId(0),
            node: Some(node.clone()),
            server_id: account.server_id.clone(),
            origin,
            parent: None,
            trust,
            lapse,
            created: Vec::new(),
        });
        self.refresh_mirrors();
        Ok(node)
    }

    /// A node name for a new account of `server_id`: its ServerID made a valid URI
    /// segment (so a server can address its own account), with a suffix where that
    /// name is taken.
    fn fresh_account_node(&self, server_id: &str) -> String {
        let base = segment_for(server_id);
        let taken = |name: &str| self.exists(&format!("{DMACC}/{name}"));
        let mut suffix = 1;
        let mut name = base.clone();
        while taken(&name) {
            suffix += 1;
            name = format!("{base}_{suffix}");
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdobj::DeviceInfo;
    use gwmo_proto::auth::AuthType;

    fn account(server_id: &str) -> DmAccount {
        DmAccount::new(
            server_id,
            "http://x/dm",
            AuthType::Md5,
            "d",
            "c",
            server_id,
            "s",
        )
    }

    #[test]
    fn two_server_ids_with_one_node_name_get_two_nodes() {
        let mut tree = Tree::new_device(&DeviceInfo::default());
        let factory = tree.add_factory_account(&account("dms.example")).unwrap();
        let gateway = tree
            .apply_gateway_bootstrap(&account("dms_example"), 0, 60)
            .unwrap();
        assert_eq!(
            (factory.as_str(), gateway.as_str()),
            ("dms_example", "dms_example_2")
        );
        assert_eq!(
            tree.value("./DMAcc/dms_example/ServerID"),
            Some("dms.example"),
            "the factory account was overwritten"
        );
    }

    #[test]
    fn a_server_id_the_device_has_is_never_added_again() {
        let mut tree = Tree::new_device(&DeviceInfo::default());
        tree.add_factory_account(&account("dms")).unwrap();
        let before = tree.clone();
        assert_eq!(
            tree.apply_gateway_bootstrap(&account("dms"), 0, 60),
            Err(TreeError::ServerIdTaken("dms".into()))
        );
        assert_eq!(tree, before);
    }
}
