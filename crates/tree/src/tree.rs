//! The DM tree of one device: walking it by URI, the device's own (privileged)
//! writes, and the one place every server's permission is decided.

use serde::{Deserialize, Serialize};

use crate::TreeError;
use crate::acl::{Acl, Op};
use crate::node::{Content, Format, Node};
use crate::registry::Registry;
use crate::uri::{Uri, join};

/// An Exec a server asked for and the tree accepted, for the device to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub server_id: String,
    pub uri: String,
    pub data: Option<String>,
    pub correlator: Option<String>,
}

/// A device's whole DM tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub(crate) root: Node,
    /// Where each account came from: the device's own record (`registry.rs`).
    #[serde(default)]
    pub(crate) registry: Registry,
    #[serde(skip)]
    pub(crate) exec_requests: Vec<ExecRequest>,
}

impl Default for Tree {
    fn default() -> Self {
        let mut root = Node::interior();
        root.acl = Some(Acl::granting("*", &[Op::Get]));
        root.permanent = true;
        Tree {
            root,
            registry: Registry::default(),
            exec_requests: Vec::new(),
        }
    }
}

impl Tree {
    pub(crate) fn node_at(&self, segments: &[&str]) -> Option<&Node> {
        segments
            .iter()
            .try_fold(&self.root, |node, name| node.children()?.get(*name))
    }

    pub(crate) fn node_at_mut(&mut self, segments: &[&str]) -> Option<&mut Node> {
        segments.iter().try_fold(&mut self.root, |node, name| {
            node.children_mut()?.get_mut(*name)
        })
    }

    fn node(&self, uri: &str) -> Option<&Node> {
        self.node_at(&Uri::parse(uri).ok()?.segments)
    }

    /// A leaf's value.
    pub fn value(&self, uri: &str) -> Option<&str> {
        self.node(uri)?.value()
    }

    /// An interior node's child names, in order.
    pub fn children(&self, uri: &str) -> Option<Vec<&str>> {
        Some(
            self.node(uri)?
                .children()?
                .keys()
                .map(String::as_str)
                .collect(),
        )
    }

    /// The leaves directly under each child of interior node `uri`, child by child, in
    /// order: what reading each leaf by its URI finds, in one walk instead of one per
    /// leaf (a gateway reads its whole Device Inventory this way at every sync).
    pub fn leaves_by_child(&self, uri: &str) -> Vec<(&str, Vec<(&str, &str)>)> {
        let Some(children) = self.node(uri).and_then(Node::children) else {
            return Vec::new();
        };
        children
            .iter()
            .map(|(name, child)| {
                let leaves = child
                    .children()
                    .into_iter()
                    .flatten()
                    .filter_map(|(leaf, node)| Some((leaf.as_str(), node.value()?)))
                    .collect();
                (name.as_str(), leaves)
            })
            .collect()
    }

    pub fn format(&self, uri: &str) -> Option<Format> {
        Some(self.node(uri)?.format)
    }

    /// The node's own ACL (None: it inherits its parent's).
    pub fn acl(&self, uri: &str) -> Option<&Acl> {
        self.node(uri)?.acl.as_ref()
    }

    pub fn exists(&self, uri: &str) -> bool {
        self.node(uri).is_some()
    }

    /// Creates the interior nodes of `segments` that are missing (with no ACL).
    pub(crate) fn make_interiors(&mut self, segments: &[&str]) -> Result<&mut Node, TreeError> {
        let mut node = &mut self.root;
        for (depth, name) in segments.iter().enumerate() {
            let children = node
                .children_mut()
                .ok_or_else(|| TreeError::NotInterior(join(&segments[..depth])))?;
            node = children
                .entry((*name).to_owned())
                .or_insert_with(Node::interior);
        }
        if node.is_interior() {
            Ok(node)
        } else {
            Err(TreeError::NotInterior(join(segments)))
        }
    }

    /// The device writes an interior node (and its missing parents).
    pub fn ensure_interior(&mut self, uri: &str) -> Result<(), TreeError> {
        let uri = Uri::parse(uri)?;
        self.make_interiors(&uri.segments).map(|_| ())
    }

    /// The device writes a leaf (creating missing interior parents).
    pub fn set_leaf(&mut self, uri: &str, value: &str, format: Format) -> Result<(), TreeError> {
        let parsed = Uri::parse(uri)?;
        let (name, parent) = parsed
            .segments
            .split_last()
            .ok_or_else(|| TreeError::NotLeaf(uri.to_owned()))?;
        let parent = self.make_interiors(parent)?;
        let children = parent
            .children_mut()
            .ok_or_else(|| TreeError::NotInterior(uri.to_owned()))?;
        match children.get_mut(*name) {
            Some(node) if node.is_interior() => return Err(TreeError::NotLeaf(uri.to_owned())),
            Some(node) => {
                node.content = Content::Leaf(value.to_owned());
                node.format = format;
            }
            None => {
                children.insert((*name).to_owned(), Node::leaf(value, format));
            }
        }
        Ok(())
    }

    /// The device removes a node and everything below it.
    pub fn remove(&mut self, uri: &str) -> Result<(), TreeError> {
        let parsed = Uri::parse(uri)?;
        let (name, parent) = parsed.segments.split_last().ok_or(TreeError::Permanent)?;
        self.node_at_mut(parent)
            .and_then(Node::children_mut)
            .and_then(|children| children.remove(*name))
            .map(|_| ())
            .ok_or_else(|| TreeError::NotFound(uri.to_owned()))
    }

    pub fn set_acl(&mut self, uri: &str, acl: Acl) -> Result<(), TreeError> {
        self.node_mut(uri)?.acl = Some(acl);
        Ok(())
    }

    /// Sets a node's Type property (the management object identifier of an object's
    /// root node).
    pub fn set_node_type(&mut self, uri: &str, mime: &str) -> Result<(), TreeError> {
        self.node_mut(uri)?.mime = Some(mime.to_owned());
        Ok(())
    }

    fn node_mut(&mut self, uri: &str) -> Result<&mut Node, TreeError> {
        let parsed = Uri::parse(uri)?;
        self.node_at_mut(&parsed.segments)
            .ok_or_else(|| TreeError::NotFound(uri.to_owned()))
    }

    /// The ACL in force at a node: its own, or its nearest ancestor's.
    pub(crate) fn effective_acl(&self, segments: &[&str]) -> Option<&Acl> {
        let mut node = &self.root;
        let mut acl = node.acl.as_ref();
        for name in segments {
            match node.children().and_then(|c| c.get(*name)) {
                Some(child) => {
                    node = child;
                    acl = node.acl.as_ref().or(acl);
                }
                None => break,
            }
        }
        acl
    }

    /// The one place a server's right to do `op` at a node is decided. Every command
    /// a server sends goes through here; the gateway trust rules extend it.
    pub(crate) fn permits(&self, server_id: &str, op: Op, segments: &[&str]) -> bool {
        let Some(acl) = self.effective_acl(segments) else {
            return false;
        };
        acl.allows(op, server_id)
            || self
                .delegate(server_id)
                .is_some_and(|parent| acl.allows(op, &parent))
    }

    /// Exec requests accepted since the last call.
    pub fn take_exec_requests(&mut self) -> Vec<ExecRequest> {
        std::mem::take(&mut self.exec_requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_writes_create_parents_and_read_back() {
        let mut tree = Tree::default();
        tree.set_leaf("./A/B/C", "1", Format::Int).unwrap();
        assert_eq!(tree.value("./A/B/C"), Some("1"));
        assert_eq!(tree.children("./A"), Some(vec!["B"]));
        assert_eq!(tree.format("./A/B/C"), Some(Format::Int));
        assert!(matches!(
            tree.set_leaf("./A/B", "x", Format::Chr),
            Err(TreeError::NotLeaf(_))
        ));
        assert!(matches!(
            tree.set_leaf("./A/B/C/D", "x", Format::Chr),
            Err(TreeError::NotInterior(_))
        ));
        tree.set_leaf("./A/D/E", "2", Format::Int).unwrap();
        tree.ensure_interior("./A/D/F").unwrap();
        assert_eq!(
            tree.leaves_by_child("./A"),
            vec![("B", vec![("C", "1")]), ("D", vec![("E", "2")])]
        );
        assert!(tree.leaves_by_child("./A/B/C").is_empty());
        assert!(tree.leaves_by_child("./Nowhere").is_empty());
        tree.remove("./A/B").unwrap();
        assert!(!tree.exists("./A/B/C"));
        assert!(matches!(tree.remove("./A/B"), Err(TreeError::NotFound(_))));
    }

    #[test]
    fn acls_are_inherited_from_the_nearest_ancestor() {
        let mut tree = Tree::default();
        tree.set_leaf("./A/B", "v", Format::Chr).unwrap();
        assert!(tree.permits("s1", Op::Get, &["A", "B"]));
        assert!(!tree.permits("s1", Op::Replace, &["A", "B"]));
        tree.set_acl("./A", Acl::parse("Replace=s1").unwrap())
            .unwrap();
        assert!(tree.permits("s1", Op::Replace, &["A", "B"]));
        assert!(!tree.permits("s2", Op::Replace, &["A", "B"]));
        assert!(
            !tree.permits("s1", Op::Get, &["A", "B"]),
            "the child inherits A's ACL, not the root's"
        );
    }

    #[test]
    fn serde_round_trip_keeps_the_tree() {
        let mut tree = Tree::default();
        tree.set_leaf("./A/B", "v", Format::Chr).unwrap();
        tree.set_acl("./A", Acl::parse("Get=*&Add=s").unwrap())
            .unwrap();
        let json = serde_json::to_string(&tree).unwrap();
        assert_eq!(serde_json::from_str::<Tree>(&json).unwrap(), tree);
    }
}
