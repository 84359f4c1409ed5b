//! What changed between two versions of a tree, as a few path-level changes: what a
//! device's state journal appends after a session instead of writing the whole tree
//! again, and replays on the last whole copy when it starts.
//!
//! A change either puts a whole subtree at a path or removes the subtree at a path
//! (or replaces the account records). Each one says what a path holds afterwards,
//! whatever it held before, so replaying changes a copy already has leaves the copy as
//! it is: a journal left behind beside a newer whole copy does no harm.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node::{Content, Node};
use crate::registry::Registry;
use crate::tree::Tree;

/// One change to a tree, stored as a line of JSON in a device's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeChange(Change);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Change {
    /// The subtree at `path` (node names from the root) is `node` now. Missing
    /// parents are made as plain interior nodes.
    Put { path: Vec<String>, node: Node },
    /// Nothing is at `path` any more.
    Remove { path: Vec<String> },
    /// The account records (`registry.rs`) are these now.
    Registry(Registry),
}

impl Tree {
    /// The changes that turn `before` into this tree. Subtrees whose own properties
    /// and leaves are unchanged are walked, not copied: a session that changed one
    /// account of a gateway with thousands of end devices gives a change or two.
    pub fn changes_since(&self, before: &Tree) -> Vec<TreeChange> {
        let mut changes = Vec::new();
        let mut path = Vec::new();
        node_changes(&mut path, &before.root, &self.root, &mut changes);
        if self.registry != before.registry {
            changes.push(TreeChange(Change::Registry(self.registry.clone())));
        }
        changes
    }

    /// Makes `change` here.
    pub fn apply(&mut self, change: TreeChange) {
        match change.0 {
            Change::Put { path, node } => match path.split_last() {
                None => self.root = node,
                Some((name, parents)) => {
                    if let Some(children) = interior_at(&mut self.root, parents) {
                        children.insert(name.clone(), node);
                    }
                }
            },
            Change::Remove { path } => {
                if let Some((name, parents)) = path.split_last()
                    && let Some(children) = interior_at(&mut self.root, parents)
                {
                    children.remove(name);
                }
            }
            Change::Registry(registry) => self.registry = registry,
        }
    }
}

/// The children of the interior node at `path`, made (as plain interiors) where
/// missing; `None` where a leaf stands in the way (no change of a journal written
/// from a tree puts one there).
fn interior_at<'t>(
    mut node: &'t mut Node,
    path: &[String],
) -> Option<&'t mut BTreeMap<String, Node>> {
    for name in path {
        node = node
            .children_mut()?
            .entry(name.clone())
            .or_insert_with(Node::interior);
    }
    node.children_mut()
}

/// The changes under `path` (borrowed: nothing is copied for a node that did not
/// change).
fn node_changes<'t>(
    path: &mut Vec<&'t str>,
    before: &Node,
    after: &'t Node,
    out: &mut Vec<TreeChange>,
) {
    let (Content::Interior(old), Content::Interior(new)) = (&before.content, &after.content) else {
        if before != after {
            out.push(put(path, after));
        }
        return;
    };
    if !same_properties(before, after) {
        out.push(put(path, after));
        return;
    }
    // Both sides in name order: one pass over the two, no lookups.
    let mut old = old.iter().peekable();
    for (name, child) in new {
        path.push(name);
        while let Some((removed, _)) = old.next_if(|(old_name, _)| *old_name < name) {
            out.push(remove(&path[..path.len() - 1], removed));
        }
        match old.next_if(|(old_name, _)| *old_name == name) {
            Some((_, old_child)) => node_changes(path, old_child, child, out),
            None => out.push(put(path, child)),
        }
        path.pop();
    }
    for (removed, _) in old {
        out.push(remove(path, removed));
    }
}

fn put(path: &[&str], node: &Node) -> TreeChange {
    TreeChange(Change::Put {
        path: owned(path).collect(),
        node: node.clone(),
    })
}

fn remove(parent: &[&str], name: &str) -> TreeChange {
    TreeChange(Change::Remove {
        path: owned(parent).chain([name.to_owned()]).collect(),
    })
}

fn owned<'p>(path: &'p [&str]) -> impl Iterator<Item = String> + 'p {
    path.iter().map(|name| (*name).to_owned())
}

/// Everything of a node but its children.
fn same_properties(a: &Node, b: &Node) -> bool {
    a.acl == b.acl
        && a.format == b.format
        && a.mime == b.mime
        && a.title == b.title
        && a.permanent == b.permanent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Acl, Op};
    use crate::node::Format;
    use proptest::prelude::*;

    /// A device's own edits: what sessions and the device do to a tree, by URI.
    #[derive(Debug, Clone)]
    enum Edit {
        Leaf(usize, String),
        Interior(usize),
        Remove(usize),
        Acl(usize),
    }

    const URIS: &[&str] = &[
        "./A",
        "./A/B",
        "./A/B/C",
        "./A/D",
        "./E",
        "./E/F",
        "./GwMO/Inventory/dev1/Name",
        "./GwMO/Inventory/dev2/Name",
    ];

    fn edit() -> impl Strategy<Value = Edit> {
        let uri = 0..URIS.len();
        prop_oneof![
            (uri.clone(), "[a-z]{0,4}").prop_map(|(u, v)| Edit::Leaf(u, v)),
            uri.clone().prop_map(Edit::Interior),
            uri.clone().prop_map(Edit::Remove),
            uri.prop_map(Edit::Acl),
        ]
    }

    fn make(tree: &mut Tree, edit: &Edit) {
        // An edit the tree refuses (a leaf where an interior must be, say) leaves it
        // as it was: nothing to check here.
        let _ = match edit {
            Edit::Leaf(u, value) => tree.set_leaf(URIS[*u], value, Format::Chr),
            Edit::Interior(u) => tree.ensure_interior(URIS[*u]),
            Edit::Remove(u) => tree.remove(URIS[*u]),
            Edit::Acl(u) => tree.set_acl(URIS[*u], Acl::granting("srv", &[Op::Get])),
        };
    }

    proptest! {
        /// Replaying the changes of each step on the tree before it gives the tree
        /// after it; and replaying them all again on the last tree (a journal left
        /// beside a newer whole copy) changes nothing.
        #[test]
        fn changes_replayed_give_the_tree_they_came_from(
            steps in proptest::collection::vec(proptest::collection::vec(edit(), 1..4), 1..12)
        ) {
            let mut tree = Tree::default();
            let mut replayed = tree.clone();
            let mut journal = Vec::new();
            for step in &steps {
                let before = tree.clone();
                for edit in step {
                    make(&mut tree, edit);
                }
                let changes = tree.changes_since(&before);
                prop_assert_eq!(changes.is_empty(), tree == before);
                for change in changes {
                    let line = serde_json::to_string(&change).unwrap();
                    journal.push(line.clone());
                    replayed.apply(serde_json::from_str(&line).unwrap());
                }
                prop_assert_eq!(&replayed, &tree);
            }
            for line in &journal {
                replayed.apply(serde_json::from_str(line).unwrap());
            }
            prop_assert_eq!(&replayed, &tree);
        }
    }

    #[test]
    fn a_leaf_changed_under_a_large_subtree_is_one_change_of_that_leaf() {
        let mut tree = Tree::default();
        for device in 0..1000 {
            tree.set_leaf(
                &format!("./GwMO/Inventory/dev{device}/Name"),
                "x",
                Format::Chr,
            )
            .unwrap();
        }
        let before = tree.clone();
        tree.set_leaf("./GwMO/Inventory/dev7/Name", "y", Format::Chr)
            .unwrap();
        let changes = tree.changes_since(&before);
        assert_eq!(changes.len(), 1);
        let line = serde_json::to_string(&changes[0]).unwrap();
        assert!(line.len() < 200, "{line}");
        assert!(line.contains("dev7"), "{line}");
    }
}
