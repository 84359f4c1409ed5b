//! Nodes of the DM tree and their run-time properties (ACL, Format, Type, Title).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::acl::Acl;

/// The DM formats of a node's value (`Format` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    B64,
    Bin,
    Bool,
    #[default]
    Chr,
    Int,
    Node,
    Null,
    Xml,
    Date,
    Time,
    Float,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::B64 => "b64",
            Format::Bin => "bin",
            Format::Bool => "bool",
            Format::Chr => "chr",
            Format::Int => "int",
            Format::Node => "node",
            Format::Null => "null",
            Format::Xml => "xml",
            Format::Date => "date",
            Format::Time => "time",
            Format::Float => "float",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        use Format::*;
        [B64, Bin, Bool, Chr, Int, Node, Null, Xml, Date, Time, Float]
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// A leaf's value or an interior node's children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    Leaf(String),
    Interior(BTreeMap<String, Node>),
}

/// One node with its properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
    #[serde(default)]
    pub format: Format,
    /// The `Type` property: a MIME type for leaves, a DDF name for interior nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Servers may not delete it (standard objects).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permanent: bool,
    pub content: Content,
}

impl Node {
    pub fn interior() -> Node {
        Node {
            acl: None,
            format: Format::Node,
            mime: None,
            title: None,
            permanent: false,
            content: Content::Interior(BTreeMap::new()),
        }
    }

    pub fn leaf(value: &str, format: Format) -> Node {
        Node {
            acl: None,
            format,
            mime: None,
            title: None,
            permanent: false,
            content: Content::Leaf(value.to_owned()),
        }
    }

    pub fn is_interior(&self) -> bool {
        matches!(self.content, Content::Interior(_))
    }

    pub fn children(&self) -> Option<&BTreeMap<String, Node>> {
        match &self.content {
            Content::Interior(children) => Some(children),
            Content::Leaf(_) => None,
        }
    }

    pub fn children_mut(&mut self) -> Option<&mut BTreeMap<String, Node>> {
        match &mut self.content {
            Content::Interior(children) => Some(children),
            Content::Leaf(_) => None,
        }
    }

    pub fn value(&self) -> Option<&str> {
        match &self.content {
            Content::Leaf(value) => Some(value),
            Content::Interior(_) => None,
        }
    }

    /// The `Size` property: bytes of a leaf's value.
    pub fn size(&self) -> Option<usize> {
        self.value().map(str::len)
    }
}
