//! A subtree as a TNDS node: what a Gateway Bootstrap carries, and what a server
//! reads with `Get <uri>?list=TNDS` (only the nodes that server may Get: another
//! server's account, secrets included, stays out).

use gwmo_proto::tnds::TndsNode;

use crate::acl::Op;
use crate::node::{Content, Node};
use crate::tree::Tree;

impl Tree {
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
