//! A subtree as a TNDS node: what a Gateway Bootstrap carries, and what a server
//! reads with `Get <uri>?list=TNDS` (only the nodes that server may Get: another
//! server's account, secrets included, stays out).

use gwmo_proto::tnds::{self, TndsError, TndsNode};

use crate::TreeError;
use crate::acl::Op;
use crate::node::{Content, Format, Node};
use crate::tree::Tree;

/// Why a TNDS document does not make a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TndsTreeError {
    #[error("{0}")]
    Tnds(#[from] TndsError),
    #[error("{0}")]
    Tree(#[from] TreeError),
}

impl Tree {
    /// A scratch tree holding a TNDS document whose top nodes hang under `base` (unless
    /// they name their own Path): its leaves with their values and formats, interior
    /// nodes where the paths need them. For reading a document with the tree's own
    /// readers (accounts, provenance).
    pub fn from_tnds(xml: &str, base: &str) -> Result<Tree, TndsTreeError> {
        let mut scratch = Tree::default();
        for (uri, value, format) in tnds::leaves(&tnds::parse(xml)?, base) {
            scratch.set_leaf(&uri, &value, Format::parse(&format).unwrap_or_default())?;
        }
        Ok(scratch)
    }

    /// A subtree as a TNDS node (values, formats and children; no ACLs).
    pub fn subtree_tnds(&self, uri: &str) -> Option<TndsNode> {
        let parsed = crate::uri::Uri::parse(uri).ok()?;
        let node = self.node_at(&parsed.segments)?;
        let mut path = parsed.segments.clone();
        Some(to_tnds(node, &mut path, &|_| true))
    }

    /// The subtree at `segments` as `server` may see it: a leaf it may not Get is left
    /// out; an interior node it may not Get appears only by name, and only when
    /// something below it is visible (a gateway's account whose provenance every
    /// server may read, say).
    pub(crate) fn visible_tnds(&self, server: &str, segments: &[&str]) -> Option<TndsNode> {
        let node = self.node_at(segments)?;
        let mut path = segments.to_vec();
        Some(to_tnds(node, &mut path, &|path| {
            self.permits(server, Op::Get, path)
        }))
    }
}

fn to_tnds<'t>(
    node: &'t Node,
    path: &mut Vec<&'t str>,
    visible: &dyn Fn(&[&str]) -> bool,
) -> TndsNode {
    visible_part(node, path, visible, true).unwrap_or_default()
}

/// The node as far as `visible` lets it be seen (`None`: nothing of it).
fn visible_part<'t>(
    node: &'t Node,
    path: &mut Vec<&'t str>,
    visible: &dyn Fn(&[&str]) -> bool,
    seen: bool,
) -> Option<TndsNode> {
    let name = path.last().copied().unwrap_or(".").to_owned();
    match &node.content {
        Content::Leaf(_) if !seen => None,
        Content::Interior(children) if !seen => {
            let nodes = visible_children(children, path, visible);
            (!nodes.is_empty()).then(|| TndsNode {
                name,
                format: Some("node".into()),
                children: nodes,
                ..TndsNode::default()
            })
        }
        Content::Leaf(value) => Some(TndsNode {
            name,
            format: Some(node.format.as_str().to_owned()),
            mime: node.mime.clone(),
            value: Some(value.clone()),
            ..TndsNode::default()
        }),
        Content::Interior(children) => Some(TndsNode {
            name,
            format: Some("node".into()),
            children: visible_children(children, path, visible),
            ..TndsNode::default()
        }),
    }
}

fn visible_children<'t>(
    children: &'t std::collections::BTreeMap<String, Node>,
    path: &mut Vec<&'t str>,
    visible: &dyn Fn(&[&str]) -> bool,
) -> Vec<TndsNode> {
    let mut nodes = Vec::new();
    for (child, node) in children {
        path.push(child);
        let seen = visible(path);
        nodes.extend(visible_part(node, path, visible, seen));
        path.pop();
    }
    nodes
}
