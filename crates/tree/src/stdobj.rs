//! The standard objects every device carries: ./DevInfo, ./DevDetail and ./DMAcc,
//! with the ACLs a fresh device starts with.

use gwmo_proto::{Data, Item, Location, Meta};

use crate::acl::{Acl, Op};
use crate::node::{Content, Format, Node};
use crate::tree::Tree;
use crate::uri::{MAX_DEPTH, MAX_SEGMENT_LEN, MAX_URI_LEN, join};

/// What a device says about itself in ./DevInfo and ./DevDetail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub dev_id: String,
    pub manufacturer: String,
    pub model: String,
    pub language: String,
    pub dev_type: String,
    pub oem: String,
    pub firmware_version: String,
    pub software_version: String,
    pub hardware_version: String,
}

impl Default for DeviceInfo {
    fn default() -> Self {
        DeviceInfo {
            dev_id: String::new(),
            manufacturer: "gwmo".into(),
            model: "gwmo-device".into(),
            language: "en-US".into(),
            dev_type: "gateway-managed".into(),
            oem: "gwmo".into(),
            firmware_version: "1.0".into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            hardware_version: "1.0".into(),
        }
    }
}

impl Tree {
    /// A new device's tree: DevInfo and DevDetail readable by every server and
    /// deletable by none, an empty ./DMAcc that servers may read the names of.
    pub fn new_device(info: &DeviceInfo) -> Tree {
        let mut tree = Tree::default();
        let leaves: [(&str, &str, Format); 14] = [
            ("./DevInfo/DevId", &info.dev_id, Format::Chr),
            ("./DevInfo/Man", &info.manufacturer, Format::Chr),
            ("./DevInfo/Mod", &info.model, Format::Chr),
            ("./DevInfo/DmV", "1.2", Format::Chr),
            ("./DevInfo/Lang", &info.language, Format::Chr),
            ("./DevDetail/DevTyp", &info.dev_type, Format::Chr),
            ("./DevDetail/OEM", &info.oem, Format::Chr),
            ("./DevDetail/FwV", &info.firmware_version, Format::Chr),
            ("./DevDetail/SwV", &info.software_version, Format::Chr),
            ("./DevDetail/HwV", &info.hardware_version, Format::Chr),
            ("./DevDetail/LrgObj", "false", Format::Bool),
            (
                "./DevDetail/URI/MaxDepth",
                &MAX_DEPTH.to_string(),
                Format::Int,
            ),
            (
                "./DevDetail/URI/MaxTotLen",
                &MAX_URI_LEN.to_string(),
                Format::Int,
            ),
            (
                "./DevDetail/URI/MaxSegLen",
                &MAX_SEGMENT_LEN.to_string(),
                Format::Int,
            ),
        ];
        for (uri, value, format) in leaves {
            // Fixed URIs under an interior root: these writes cannot fail.
            let _ = tree.set_leaf(uri, value, format);
        }
        let _ = tree.ensure_interior("./DevInfo/Ext");
        let _ = tree.ensure_interior("./DMAcc");
        for (uri, permanent_children) in [
            ("./DevInfo", true),
            ("./DevDetail", true),
            ("./DMAcc", false),
        ] {
            if let Some(node) = tree.node_at_mut(&[&uri[2..]]) {
                node.acl = Some(Acl::granting("*", &[Op::Get]));
                mark_permanent(node, permanent_children);
            }
        }
        tree
    }

    /// The ./DevInfo leaves as package 1 reports them: one Item each, Source = URI.
    pub fn devinfo_items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        if let Some(node) = self.node_at(&["DevInfo"]) {
            collect_leaves(node, &mut vec!["DevInfo"], &mut items);
        }
        items
    }
}

fn mark_permanent(node: &mut Node, with_children: bool) {
    node.permanent = true;
    if let (true, Content::Interior(children)) = (with_children, &mut node.content) {
        for child in children.values_mut() {
            mark_permanent(child, true);
        }
    }
}

fn collect_leaves<'a>(node: &'a Node, path: &mut Vec<&'a str>, items: &mut Vec<Item>) {
    match &node.content {
        Content::Leaf(value) => items.push(Item {
            source: Some(Location::new(join(path))),
            meta: (node.format != Format::Chr).then(|| {
                Box::new(Meta {
                    format: Some(node.format.as_str().into()),
                    ..Meta::default()
                })
            }),
            data: Some(Data::Text(value.clone())),
            ..Item::default()
        }),
        Content::Interior(children) => {
            for (name, child) in children {
                path.push(name);
                collect_leaves(child, path, items);
                path.pop();
            }
        }
    }
}
