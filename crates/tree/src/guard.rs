//! Every server command that could touch the accounts is judged by what it did, not by
//! the path it named (seed 8.x.2, docs/DECISIONS.md §3): the device notes what the writer may
//! not change, runs the command, compares, and puts everything back if a rule broke.
//!
//! The rules, for every writer:
//! - the provenance mirror of an account (and `Ext` above it) changes only through the
//!   device (`gwboot.rs`), or goes with the whole account; a new account comes
//!   without one;
//! - no two accounts share a ServerID.
//!
//! And for a writer that is not fully trusted (`Standing::Restricted`): it changes
//! only its own account and the accounts it made, never its own ServerID, nor
//! `./DMAcc` itself or the root's ACL; an account the device has no record of
//! changes nothing under ./DMAcc. Neither changes anything under `./FUMO` (the
//! firmware: `fumo.rs`), nor starts a firmware operation, whatever an ACL says.
//!
//! Afterwards the registry follows the tree: removed accounts are marked removed,
//! new ones are recorded as coming from the writer.

use std::collections::BTreeSet;

use crate::acl::Acl;
use crate::dmacc::{DMACC, DMACC_NODE, account_server_ids};
use crate::gwboot::MIRROR;
use crate::node::Node;
use crate::provenance::{Origin, Trust};
use crate::registry::{AccountId, Record, Registry, Standing};
use crate::tree::Tree;

/// What a command's effect is compared with, and what it is undone to.
pub(crate) struct Guard {
    writer: Option<AccountId>,
    standing: Standing,
    root_acl: Option<Acl>,
    root_title: Option<String>,
    dmacc: Option<Node>,
    registry: Registry,
    /// Accounts the writer may not change.
    protected: Vec<String>,
    /// The writer's own account and its ServerID, when it may not change that.
    own_server_id: Option<(String, Option<String>)>,
    shared_server_ids: BTreeSet<String>,
    /// `./FUMO` as it was.
    firmware: Option<Node>,
}

/// Whether a command at `segments` can reach the accounts: the root (its ACL is
/// inherited by ./DMAcc), ./DMAcc and everything below it.
pub(crate) fn reaches_accounts(segments: &[&str]) -> bool {
    segments.first().is_none_or(|top| *top == DMACC_NODE)
}

/// The node that holds the firmware update objects.
const FIRMWARE_NODE: &str = "FUMO";

/// Whether a command at `segments` can reach what the guard keeps: the accounts, or
/// the firmware update objects.
pub(crate) fn reaches_guarded(segments: &[&str]) -> bool {
    reaches_accounts(segments) || segments.first() == Some(&FIRMWARE_NODE)
}

impl Tree {
    pub(crate) fn guard(&self, server: &str) -> Guard {
        let (writer, standing) = self.standing_of(server);
        let dmacc = self.node_at(&[DMACC_NODE]).cloned();
        let children: Vec<String> = dmacc
            .as_ref()
            .and_then(Node::children)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        let own = |name: &String| {
            let record = self.registry.at_node(name);
            match (writer, record) {
                (Some(writer), Some(record)) => self.registry.descends_from(record.id, writer),
                _ => false,
            }
        };
        let protected = match standing {
            Standing::Trusted { .. } => Vec::new(),
            Standing::Restricted | Standing::Untrusted => {
                children.iter().filter(|name| !own(name)).cloned().collect()
            }
        };
        let own_server_id = match standing {
            Standing::Trusted { .. } => None,
            _ => writer
                .and_then(|w| self.registry.get(w))
                .and_then(|r| r.node.clone())
                .map(|node| {
                    let id = self
                        .value(&format!("{DMACC}/{node}/ServerID"))
                        .map(str::to_owned);
                    (node, id)
                }),
        };
        Guard {
            writer,
            standing,
            root_acl: self.root.acl.clone(),
            root_title: self.root.title.clone(),
            dmacc,
            registry: self.registry.clone(),
            protected,
            own_server_id,
            shared_server_ids: shared_server_ids(self),
            firmware: self.node_at(&[FIRMWARE_NODE]).cloned(),
        }
    }

    /// After a command ran under `guard`: keeps its effect and brings the registry up to
    /// date, or undoes it and says it was not permitted.
    pub(crate) fn settle(&mut self, guard: Guard) -> Result<(), ()> {
        if self.breaks_a_rule(&guard) {
            self.root.acl = guard.root_acl;
            self.root.title = guard.root_title;
            if let Some(children) = self.root.children_mut() {
                for (name, node) in [(DMACC_NODE, guard.dmacc), (FIRMWARE_NODE, guard.firmware)] {
                    match node {
                        Some(node) => children.insert(name.to_owned(), node),
                        None => children.remove(name),
                    };
                }
            }
            self.registry = guard.registry;
            return Err(());
        }
        self.reconcile(guard.writer, guard.standing);
        Ok(())
    }

    fn breaks_a_rule(&self, guard: &Guard) -> bool {
        let trusted = matches!(guard.standing, Standing::Trusted { .. });
        if !trusted && self.node_at(&[FIRMWARE_NODE]) != guard.firmware.as_ref() {
            return true;
        }
        let before = guard.dmacc.as_ref().and_then(Node::children);
        let after = self.node_at(&[DMACC_NODE]).and_then(Node::children);
        let (Some(before), Some(after)) = (before, after) else {
            // ./DMAcc itself came or went.
            return guard.dmacc.is_some() || self.node_at(&[DMACC_NODE]).is_some();
        };
        let mirror = |account: &Node| -> Option<Node> {
            account
                .children()?
                .get(MIRROR[0])?
                .children()?
                .get(MIRROR[1])
                .cloned()
        };
        let mirror_touched = after.iter().any(|(name, account)| match before.get(name) {
            Some(old) => mirror(old) != mirror(account),
            None => mirror(account).is_some(),
        });
        let server_ids_shared = !shared_server_ids(self).is_subset(&guard.shared_server_ids);
        if mirror_touched || server_ids_shared {
            return true;
        }
        if trusted {
            return false;
        }
        let dmacc_before = guard.dmacc.as_ref();
        let dmacc_after = self.node_at(&[DMACC_NODE]);
        let own_properties_changed = dmacc_before.map(properties) != dmacc_after.map(properties)
            || guard.root_acl != self.root.acl;
        let protected_changed = guard
            .protected
            .iter()
            .any(|name| before.get(name) != after.get(name));
        let renamed_itself = guard.own_server_id.as_ref().is_some_and(|(node, id)| {
            after.contains_key(node)
                && self.value(&format!("{DMACC}/{node}/ServerID")) != id.as_deref()
        });
        let created_untrusted = guard.standing == Standing::Untrusted
            && after.keys().any(|name| !before.contains_key(name));
        own_properties_changed || protected_changed || renamed_itself || created_untrusted
    }

    /// The registry follows the accounts: removed ones are marked so, new ones are
    /// recorded as made by `writer`.
    fn reconcile(&mut self, writer: Option<AccountId>, standing: Standing) {
        let accounts = self
            .node_at(&[DMACC_NODE])
            .and_then(Node::children)
            .map(|c| c.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let server_ids: Vec<(String, String)> = account_server_ids(self)
            .into_iter()
            .map(|(name, server_id)| (name.to_owned(), server_id.to_owned()))
            .collect();
        let server_id_of = |name: &str| {
            server_ids
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| id.clone())
        };
        for record in &mut self.registry.records {
            let Some(node) = &record.node else { continue };
            if accounts.contains(node) {
                if let Some(id) = server_id_of(node) {
                    record.server_id = id;
                }
            } else {
                record.node = None;
            }
        }
        let (origin, trust) = match standing {
            Standing::Trusted {
                validator: true, ..
            } => (Origin::Server, Trust::Full),
            Standing::Trusted { .. } => (Origin::ViaGateway, Trust::Full),
            Standing::Restricted | Standing::Untrusted => (Origin::ViaGateway, Trust::Restricted),
        };
        for name in accounts {
            if self.registry.at_node(&name).is_some() {
                continue;
            }
            self.registry.insert(Record {
                id: AccountId(0),
                server_id: server_id_of(&name).unwrap_or_default(),
                node: Some(name),
                origin,
                parent: writer,
                trust,
                lapse: None,
                created: Vec::new(),
            });
        }
        self.registry.forget_removed();
        self.refresh_mirrors();
    }

    /// Whether `server` may have the device execute the node at `segments`: what
    /// the device would do is an effect no comparison can undo, so a writer that is
    /// not fully trusted executes nothing in the accounts but its own and those it made.
    pub(crate) fn may_exec(&self, server: &str, segments: &[&str]) -> bool {
        // The firmware: only a fully trusted writer executes anything there.
        if segments.first() == Some(&FIRMWARE_NODE) {
            return matches!(self.standing_of(server).1, Standing::Trusted { .. });
        }
        if !reaches_accounts(segments) {
            return true;
        }
        match self.standing_of(server) {
            (_, Standing::Trusted { .. }) => true,
            (Some(writer), Standing::Restricted) => match segments {
                [_, account, ..] => self
                    .registry
                    .at_node(account)
                    .is_some_and(|r| self.registry.descends_from(r.id, writer)),
                _ => false,
            },
            _ => false,
        }
    }

    /// A restricted writer created `path` outside ./DMAcc: it goes when its bootstrap
    /// lapses.
    pub(crate) fn record_creation(&mut self, server: &str, path: String) {
        let (Some(writer), Standing::Restricted) = self.standing_of(server) else {
            return;
        };
        if let Some(record) = self.registry.get_mut(writer) {
            record.created.push(path);
        }
    }
}

/// A node's own properties, without its children.
fn properties(
    node: &Node,
) -> (
    Option<&Acl>,
    crate::node::Format,
    Option<&str>,
    Option<&str>,
    bool,
) {
    (
        node.acl.as_ref(),
        node.format,
        node.mime.as_deref(),
        node.title.as_deref(),
        node.permanent,
    )
}

/// The ServerIDs more than one account carries.
fn shared_server_ids(tree: &Tree) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut shared = BTreeSet::new();
    for (_, server_id) in account_server_ids(tree) {
        if !seen.insert(server_id) {
            shared.insert(server_id.to_owned());
        }
    }
    shared
}
