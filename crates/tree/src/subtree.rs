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

    /// The subtree at `segments` as `server` may see it: every node it may not Get is
    /// left out, with everything below it.
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
    let name = path.last().copied().unwrap_or(".").to_owned();
    match &node.content {
        Content::Leaf(value) => TndsNode {
            name,
            format: Some(node.format.as_str().to_owned()),
            mime: node.mime.clone(),
            value: Some(value.clone()),
            ..TndsNode::default()
        },
        Content::Interior(children) => {
            let mut nodes = Vec::new();
            for (child, node) in children {
                path.push(child);
                if visible(path) {
                    nodes.push(to_tnds(node, path, visible));
                }
                path.pop();
            }
            TndsNode {
                name,
                format: Some("node".into()),
                children: nodes,
                ..TndsNode::default()
            }
        }
    }
}
