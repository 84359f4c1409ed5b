//! What an Atomic puts back when one of its members fails. Members that change only
//! their own targets (Add, Replace, Delete, Copy of plain URIs outside the accounts,
//! and Exec, which only records a request) keep a copy of each target as it was, or
//! the first node on its way that did not exist; anything else (a property, a query,
//! the accounts or the root, a container) keeps the whole tree, as before. The copy of
//! a gateway's whole tree, Device Inventory and all, was taken for every entry a DM
//! Server added in an Atomic.

use gwmo_proto::Command;

use crate::guard::reaches_accounts;
use crate::node::Node;
use crate::registry::Registry;
use crate::tree::Tree;
use crate::uri::Uri;

/// The tree as it was before an Atomic, as far as the Atomic can change it.
pub(crate) struct UndoPoint {
    saved: Saved,
    /// The account records: a member's creation is noted there.
    registry: Registry,
    exec_requests: usize,
}

enum Saved {
    Whole(Node),
    /// Each target's path with the node there (`None`: nothing was there, from this
    /// node down: it goes).
    Targets(Vec<(Vec<String>, Option<Node>)>),
}

impl Tree {
    /// What to put back if `members` (an Atomic's) fail part way.
    pub(crate) fn undo_point(&self, members: &[Command]) -> UndoPoint {
        let saved = match self.saved_targets(members) {
            Some(targets) => Saved::Targets(targets),
            None => Saved::Whole(self.root.clone()),
        };
        UndoPoint {
            saved,
            registry: self.registry.clone(),
            exec_requests: self.exec_requests.len(),
        }
    }

    /// Puts the tree back as it was at `point`.
    pub(crate) fn undo(&mut self, point: UndoPoint) {
        match point.saved {
            Saved::Whole(root) => self.root = root,
            Saved::Targets(mut targets) => {
                // What was not there goes first; then what was there comes back,
                // ancestors before what lies below them.
                for (path, _) in targets.iter().filter(|(_, node)| node.is_none()) {
                    self.take_out(path);
                }
                targets.sort_by_key(|(path, _)| path.len());
                for (path, node) in targets {
                    if let Some(node) = node {
                        self.put_back(&path, node);
                    }
                }
            }
        }
        self.registry = point.registry;
        self.exec_requests.truncate(point.exec_requests);
    }

    /// The targets of members that change only them, each as it is now; none if a
    /// member may change more.
    fn saved_targets(&self, members: &[Command]) -> Option<Vec<(Vec<String>, Option<Node>)>> {
        let mut saved = Vec::new();
        for member in members {
            let items = match member {
                Command::Add(c) | Command::Replace(c) | Command::Delete(c) | Command::Copy(c) => {
                    &c.items
                }
                // It only records a request, which the undo drops.
                Command::Exec(_) => continue,
                _ => return None,
            };
            for item in items {
                let uri = Uri::parse(item.target.as_ref()?.uri.as_str()).ok()?;
                if uri.query.is_some() || reaches_accounts(&uri.segments) {
                    return None;
                }
                let depth = (1..=uri.segments.len())
                    .find(|&depth| self.node_at(&uri.segments[..depth]).is_none());
                let (path, node) = match depth {
                    Some(missing) => (&uri.segments[..missing], None),
                    None => (
                        &uri.segments[..],
                        Some(self.node_at(&uri.segments)?.clone()),
                    ),
                };
                saved.push((path.iter().map(|s| (*s).to_owned()).collect(), node));
            }
        }
        Some(saved)
    }

    fn take_out(&mut self, path: &[String]) {
        let Some((name, parent)) = path.split_last() else {
            return;
        };
        let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
        if let Some(children) = self.node_at_mut(&parent).and_then(Node::children_mut) {
            children.remove(name);
        }
    }

    fn put_back(&mut self, path: &[String], node: Node) {
        let Some((name, parent)) = path.split_last() else {
            return;
        };
        let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
        // The parent was there before the Atomic, and only targets change: it is still
        // there, or was put back before (shorter paths first).
        if let Some(children) = self.node_at_mut(&parent).and_then(Node::children_mut) {
            children.insert(name.clone(), node);
        }
    }
}

#[cfg(test)]
mod tests {
    use gwmo_proto::{Item, ItemCommand, Location};

    use super::*;

    fn add(target: &str) -> Command {
        Command::Add(ItemCommand {
            cmd_id: 1,
            meta: None,
            items: vec![Item {
                target: Some(Location::new(target)),
                ..Item::default()
            }],
        })
    }

    #[test]
    fn adds_outside_the_accounts_keep_only_their_targets_and_the_rest_keeps_everything() {
        let mut tree = Tree::default();
        tree.ensure_interior("./GwMO/DeviceInventory/A").unwrap();
        let point = tree.undo_point(&[add("./GwMO/DeviceInventory/B/DevID")]);
        let Saved::Targets(targets) = &point.saved else {
            panic!("the whole tree was kept")
        };
        assert_eq!(
            targets,
            &vec![(
                vec!["GwMO".into(), "DeviceInventory".into(), "B".into()],
                None
            )]
        );
        for whole in [add("./DMAcc/X"), add("."), add("./GwMO?list=Struct")] {
            assert!(matches!(tree.undo_point(&[whole]).saved, Saved::Whole(_)));
        }
    }
}
