//! TNDS (DM Tree and Description Serialization 1.2) documents: a DM subtree in its
//! run-time form (`<MgmtTree>` with nested `<Node>`s), as a Gateway Bootstrap carries
//! it. Reading is bounded in depth and size; a truncated or malformed document is an
//! error, never a partial tree.

use quick_xml::Reader;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;

/// Deepest node nesting accepted.
pub const MAX_DEPTH: usize = 32;
/// Most nodes accepted in one document.
pub const MAX_NODES: usize = 4096;

/// One node: its name, its path (top-level nodes only), Format, Type, value, children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TndsNode {
    pub name: String,
    pub path: Option<String>,
    pub format: Option<String>,
    pub mime: Option<String>,
    pub value: Option<String>,
    pub children: Vec<TndsNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TndsError {
    #[error("malformed TNDS near byte {0}: {1}")]
    Syntax(u64, String),
    #[error("the TNDS document ends before it is complete")]
    Truncated,
    #[error("the root element is not <MgmtTree>")]
    NotMgmtTree,
    #[error("a <Node> has no <NodeName>")]
    NoName,
    #[error("nodes nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_NODES} nodes")]
    TooMany,
}

/// Writes nodes as a TNDS document.
pub fn to_xml(nodes: &[TndsNode]) -> String {
    let mut out = String::from("<MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD>");
    for node in nodes {
        write_node(&mut out, node);
    }
    out.push_str("</MgmtTree>");
    out
}

fn write_node(out: &mut String, node: &TndsNode) {
    out.push_str("<Node><NodeName>");
    out.push_str(&escape(node.name.as_str()));
    out.push_str("</NodeName>");
    if let Some(path) = &node.path {
        out.push_str("<Path>");
        out.push_str(&escape(path.as_str()));
        out.push_str("</Path>");
    }
    out.push_str("<RTProperties>");
    let format =
        node.format
            .as_deref()
            .unwrap_or(if node.value.is_some() { "chr" } else { "node" });
    out.push_str(&format!("<Format><{format}/></Format>"));
    if let Some(mime) = &node.mime {
        out.push_str("<Type><MIME>");
        out.push_str(&escape(mime.as_str()));
        out.push_str("</MIME></Type>");
    }
    out.push_str("</RTProperties>");
    if let Some(value) = &node.value {
        out.push_str("<Value>");
        out.push_str(&escape(value.as_str()));
        out.push_str("</Value>");
    }
    for child in &node.children {
        write_node(out, child);
    }
    out.push_str("</Node>");
}

/// Reads a TNDS document: its top-level nodes.
pub fn parse(xml: &str) -> Result<Vec<TndsNode>, TndsError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<TndsNode> = Vec::new();
    let mut top = Vec::new();
    let mut field: Option<String> = None;
    let mut text = String::new();
    let mut in_format = false;
    let mut count = 0;
    let mut seen_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| TndsError::Syntax(reader.error_position(), e.to_string()))?;
        match event {
            Event::Start(e) | Event::Empty(e) if !seen_root => {
                if e.local_name().as_ref() != "MgmtTree" {
                    return Err(TndsError::NotMgmtTree);
                }
                seen_root = true;
            }
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_owned();
                match name.as_str() {
                    "Node" => {
                        count += 1;
                        if count > MAX_NODES {
                            return Err(TndsError::TooMany);
                        }
                        if stack.len() >= MAX_DEPTH {
                            return Err(TndsError::TooDeep);
                        }
                        stack.push(TndsNode::default());
                    }
                    "Format" => in_format = true,
                    _ => {
                        field = Some(name);
                        text.clear();
                    }
                }
            }
            Event::Empty(e) => {
                if in_format && let Some(node) = stack.last_mut() {
                    node.format = Some(e.local_name().as_ref().to_owned());
                }
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(c) => text.push_str(&c.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => resolve_predefined_entity(&r.xml10_content())
                        .ok_or_else(|| {
                            TndsError::Syntax(reader.error_position(), "unknown entity".into())
                        })?
                        .to_owned(),
                };
                text.push_str(&resolved);
            }
            Event::End(e) => {
                let name = e.local_name().as_ref().to_owned();
                match name.as_str() {
                    "Node" => {
                        let node = stack.pop().ok_or(TndsError::NoName)?;
                        if node.name.is_empty() {
                            return Err(TndsError::NoName);
                        }
                        match stack.last_mut() {
                            Some(parent) => parent.children.push(node),
                            None => top.push(node),
                        }
                    }
                    "Format" => in_format = false,
                    "MgmtTree" => return Ok(top),
                    _ => {
                        if let (Some(node), Some(field)) = (stack.last_mut(), field.take()) {
                            let value = text.trim().to_owned();
                            match field.as_str() {
                                "NodeName" => node.name = value,
                                "Path" => node.path = Some(value),
                                "Value" => node.value = Some(text.clone()),
                                "MIME" | "DDFName" => node.mime = Some(value),
                                _ => {}
                            }
                        }
                        text.clear();
                    }
                }
            }
            Event::Eof => return Err(TndsError::Truncated),
            _ => {}
        }
    }
}

/// The leaves of nodes as (URI, value, Format), paths resolved from the top-level
/// nodes' `<Path>` (or `base` when absent).
pub fn leaves(nodes: &[TndsNode], base: &str) -> Vec<(String, String, String)> {
    fn walk(node: &TndsNode, parent: &str, out: &mut Vec<(String, String, String)>) {
        let uri = format!("{parent}/{}", node.name);
        if let Some(value) = &node.value {
            out.push((
                uri.clone(),
                value.clone(),
                node.format.clone().unwrap_or_else(|| "chr".into()),
            ));
        }
        for child in &node.children {
            walk(child, &uri, out);
        }
    }
    let mut out = Vec::new();
    for node in nodes {
        let parent = node.path.as_deref().unwrap_or(base).trim_end_matches('/');
        walk(node, parent, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(name: &str, value: &str) -> TndsNode {
        TndsNode {
            name: name.into(),
            value: Some(value.into()),
            ..TndsNode::default()
        }
    }

    fn account() -> Vec<TndsNode> {
        vec![TndsNode {
            name: "gw-l".into(),
            path: Some("./DMAcc".into()),
            children: vec![
                leaf("ServerID", "gw-l"),
                TndsNode {
                    name: "AppAddr".into(),
                    children: vec![TndsNode {
                        name: "1".into(),
                        children: vec![leaf("Addr", "http://gw/dm?a=1&b=<2>")],
                        ..TndsNode::default()
                    }],
                    ..TndsNode::default()
                },
            ],
            ..TndsNode::default()
        }]
    }

    #[test]
    fn a_document_reads_back_as_written() {
        let xml = to_xml(&account());
        let mut read = parse(&xml).unwrap();
        assert_eq!(read[0].children[0].format.as_deref(), Some("chr"));
        assert_eq!(read[0].format.as_deref(), Some("node"));
        // Formats are made explicit on the way out; compare the rest.
        fn clear(n: &mut TndsNode) {
            n.format = None;
            n.children.iter_mut().for_each(clear);
        }
        read.iter_mut().for_each(clear);
        assert_eq!(read, account());
        assert_eq!(
            leaves(&read, "."),
            vec![
                ("./DMAcc/gw-l/ServerID".into(), "gw-l".into(), "chr".into()),
                (
                    "./DMAcc/gw-l/AppAddr/1/Addr".into(),
                    "http://gw/dm?a=1&b=<2>".into(),
                    "chr".into()
                ),
            ]
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let xml = to_xml(&account());
        for end in 0..xml.len() {
            assert!(parse(&xml[..end]).is_err(), "accepted {end} bytes");
        }
    }

    #[test]
    fn hostile_documents_are_refused() {
        assert_eq!(parse("<html/>"), Err(TndsError::NotMgmtTree));
        assert_eq!(
            parse("<MgmtTree><Node><Value>x</Value></Node></MgmtTree>"),
            Err(TndsError::NoName)
        );
        let deep = format!(
            "<MgmtTree>{}",
            "<Node><NodeName>a</NodeName>".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(parse(&deep), Err(TndsError::TooDeep));
        let many = format!(
            "<MgmtTree>{}</MgmtTree>",
            "<Node><NodeName>a</NodeName></Node>".repeat(MAX_NODES + 1)
        );
        assert_eq!(parse(&many), Err(TndsError::TooMany));
    }
}
