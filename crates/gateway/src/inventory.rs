//! The GwMO objects in the gateway's own tree, read and written: its Config, the Device
//! Inventory entries (what the DM Server or the local bootstrap server wrote, and the
//! gateway's own record beside it) and the fan-outs. Pure: the tree comes in, values
//! or leaves to write go out.

use std::collections::HashMap;

use gwmo_tree::gwmo::{CONFIG, FANOUT, GWMO, INVENTORY, entry, fanout};
use gwmo_tree::{Acl, Format, Origin, Tree, TreeError, Trust};

use crate::settings::GatewaySettings;

/// The credentials an entry carries until its bootstrap lapses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCredentials {
    pub client_name: String,
    pub client_secret: String,
    pub server_secret: String,
}

/// One entry of the Device Inventory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InventoryEntry {
    /// The entry's node name under the inventory.
    pub node: String,
    pub dev_id: String,
    pub notify_url: Option<String>,
    /// None once a lapse wiped them (or if the writer left them out).
    pub credentials: Option<EntryCredentials>,
    /// None if the writer named no origin this gateway knows: served as server assisted.
    pub origin: Option<Origin>,
    /// A local bootstrap's start and interval (seconds).
    pub issued_at: Option<i64>,
    pub lapse_secs: Option<i64>,
    pub attached: bool,
    pub lapsed: bool,
    pub probe: Option<i64>,
    /// The State and LastSession leaves as the gateway last wrote them.
    pub recorded_state: Option<String>,
    pub recorded_last_session: Option<String>,
}

impl InventoryEntry {
    /// Whether a local bootstrap server (the gateway's own or a standalone one) made it.
    pub fn is_local(&self) -> bool {
        self.origin == Some(Origin::LocalBootstrap)
    }

    /// The entry's node path.
    pub fn path(&self) -> String {
        format!("{INVENTORY}/{}", self.node)
    }

    /// The path of one of its leaves.
    pub fn leaf(&self, name: &str) -> String {
        format!("{INVENTORY}/{}/{name}", self.node)
    }
}

/// Where an end device stands with the gateway, as its inventory entry's State says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Its approach is off on this gateway: it is not served.
    Refused,
    /// Served, and not yet heard from (a local bootstrap: its probe not answered yet).
    Enrolled,
    /// It held a session with the gateway (a local bootstrap: it confirmed it).
    Active,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Refused => "refused",
            EntryState::Enrolled => "enrolled",
            EntryState::Active => "active",
        }
    }
}

/// Where a fan-out stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutStatus {
    /// Handed over, not started.
    New,
    /// Its commands are (or are being) queued and awaited.
    Running,
    /// Its results wait for a session to carry them to the DM Server.
    Done,
}

impl FanoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FanoutStatus::New => "",
            FanoutStatus::Running => "running",
            FanoutStatus::Done => "done",
        }
    }

    fn parse(text: &str) -> Option<FanoutStatus> {
        [FanoutStatus::New, FanoutStatus::Running, FanoutStatus::Done]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// One fan-out the DM Server handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutEntry {
    pub id: String,
    pub status: FanoutStatus,
    /// DevIds, or `*` for every end device.
    pub targets: Vec<String>,
    /// The command spec (JSON) for each target.
    pub command: String,
    /// The command already queued for each target (a resumed fan-out queues no other).
    pub queued: HashMap<String, i64>,
    pub results: String,
}

impl FanoutEntry {
    pub fn leaf(&self, name: &str) -> String {
        format!("{FANOUT}/{}/{name}", self.id)
    }
}

/// Every Device Inventory entry that names a DevId.
pub fn entries(tree: &Tree) -> Vec<InventoryEntry> {
    tree.leaves_by_child(INVENTORY)
        .into_iter()
        .filter_map(|(node, leaves)| {
            let leaf = |name: &str| find_leaf(&leaves, name).map(str::to_owned);
            let number = |name: &str| leaf(name).and_then(|v| v.parse::<i64>().ok());
            let credentials = match (leaf(entry::CLIENT_SECRET), leaf(entry::SERVER_SECRET)) {
                (Some(client_secret), Some(server_secret)) => Some(EntryCredentials {
                    client_name: leaf(entry::CLIENT_NAME).unwrap_or_default(),
                    client_secret,
                    server_secret,
                }),
                _ => None,
            };
            Some(InventoryEntry {
                node: node.to_owned(),
                dev_id: leaf(entry::DEV_ID).filter(|d| !d.is_empty())?,
                notify_url: leaf(entry::NOTIFY_URL).filter(|u| !u.is_empty()),
                credentials,
                origin: leaf(entry::ORIGIN).and_then(|o| Origin::parse(&o)),
                issued_at: number(entry::ISSUED_AT),
                lapse_secs: number(entry::LAPSE_SECS),
                attached: leaf(entry::ATTACHED).as_deref() == Some("true"),
                lapsed: leaf(entry::LAPSED).as_deref() == Some("true"),
                probe: number(entry::PROBE),
                recorded_state: leaf(entry::STATE),
                recorded_last_session: leaf(entry::LAST_SESSION),
            })
        })
        .collect()
}

/// Every fan-out handed over (one whose Status this gateway does not know is left
/// alone).
pub fn fanouts(tree: &Tree) -> Vec<FanoutEntry> {
    tree.leaves_by_child(FANOUT)
        .into_iter()
        .filter_map(|(id, leaves)| {
            let leaf = |name: &str| find_leaf(&leaves, name).unwrap_or("").to_owned();
            Some(FanoutEntry {
                id: id.to_owned(),
                status: FanoutStatus::parse(&leaf(fanout::STATUS))?,
                targets: leaf(fanout::TARGETS)
                    .split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect(),
                command: leaf(fanout::COMMAND),
                queued: parse_queued(&leaf(fanout::QUEUED)),
                results: leaf(fanout::RESULTS),
            })
        })
        .collect()
}

/// The value of leaf `name` among an entry's leaves.
fn find_leaf<'t>(leaves: &[(&str, &'t str)], name: &str) -> Option<&'t str> {
    leaves
        .iter()
        .find_map(|(leaf, value)| (*leaf == name).then_some(*value))
}

/// A fan-out's Queued leaf: `DevId=command` pairs separated by spaces, sorted.
pub fn format_queued(queued: &HashMap<String, i64>) -> String {
    let mut pairs: Vec<String> = queued
        .iter()
        .map(|(dev_id, command)| format!("{dev_id}={command}"))
        .collect();
    pairs.sort();
    pairs.join(" ")
}

/// The pairs of a Queued leaf that read back (one that does not is queued again).
fn parse_queued(text: &str) -> HashMap<String, i64> {
    text.split_whitespace()
        .filter_map(|pair| {
            let (dev_id, command) = pair.rsplit_once('=')?;
            Some((dev_id.to_owned(), command.parse().ok()?))
        })
        .collect()
}

/// What the embedded Local DM Bootstrap Server issued a device: its credentials and
/// interval, as an inventory entry of origin local-bootstrap.
pub struct LocalBootstrap<'a> {
    pub dev_id: &'a str,
    pub client_secret: &'a str,
    pub server_secret: &'a str,
    pub issued_at: i64,
    pub lapse_secs: u64,
}

impl LocalBootstrap<'_> {
    /// The entry's node.
    pub fn path(&self) -> String {
        format!("{INVENTORY}/{}", gwmo_tree::segment_for(self.dev_id))
    }

    /// The entry's leaves, restricted (until a trusted server validates the gateway on
    /// the device) and not yet reported.
    pub fn leaves(&self) -> Vec<(String, String)> {
        let lapse_at = self
            .issued_at
            .saturating_add(i64::try_from(self.lapse_secs).unwrap_or(i64::MAX));
        let base = self.path();
        [
            (entry::DEV_ID, self.dev_id.to_owned()),
            (entry::CLIENT_NAME, self.dev_id.to_owned()),
            (entry::CLIENT_SECRET, self.client_secret.to_owned()),
            (entry::SERVER_SECRET, self.server_secret.to_owned()),
            (entry::ORIGIN, Origin::LocalBootstrap.as_str().to_owned()),
            (entry::TRUST, Trust::Restricted.as_str().to_owned()),
            (entry::ATTACHED, "false".to_owned()),
            (entry::ISSUED_AT, self.issued_at.to_string()),
            (entry::LAPSE_SECS, self.lapse_secs.to_string()),
            (entry::LAPSE_AT, gwmo_tree::rfc3339(lapse_at)),
        ]
        .into_iter()
        .map(|(leaf, value)| (format!("{base}/{leaf}"), value))
        .collect()
    }
}

/// The GwMO objects of a new gateway: its Config, an empty Device Inventory, both
/// managed by the DM Server `dms` alone.
pub fn write_gwmo(
    tree: &mut Tree,
    settings: &GatewaySettings,
    dms: &str,
    dm_url: &str,
) -> Result<(), TreeError> {
    tree.ensure_interior(INVENTORY)?;
    tree.set_leaf(
        &format!("{CONFIG}/GatewayID"),
        &settings.gateway_id,
        Format::Chr,
    )?;
    tree.set_leaf(&format!("{CONFIG}/DMURL"), dm_url, Format::Chr)?;
    let approaches = [
        (
            Origin::ServerAssisted.as_str(),
            settings.approaches.server_assisted,
        ),
        ("local", settings.approaches.local),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| *name)
    .collect::<Vec<_>>()
    .join(",");
    tree.set_leaf(&format!("{CONFIG}/Approaches"), &approaches, Format::Chr)?;
    tree.set_acl(
        GWMO,
        Acl::parse(&format!(
            "Get=*&Add={dms}&Replace={dms}&Delete={dms}&Exec={dms}"
        ))?,
    )
}

/// Writes each `(path, value)` leaf as text.
pub fn set_leaves(tree: &mut Tree, leaves: &[(String, String)]) -> Result<(), TreeError> {
    leaves
        .iter()
        .try_for_each(|(path, value)| tree.set_leaf(path, value, Format::Chr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwmo_proto::{CmdIds, Command, Data, Item, ItemCommand, Location};

    #[test]
    fn the_dm_server_writes_the_inventory_and_no_one_else_does() {
        let mut tree = Tree::default();
        write_gwmo(
            &mut tree,
            &GatewaySettings::default(),
            "dms",
            "http://gw/dm",
        )
        .unwrap();
        let add = |target: &str, value: &str| {
            Command::Add(ItemCommand {
                cmd_id: 1,
                meta: None,
                items: vec![Item {
                    target: Some(Location::new(format!("{INVENTORY}/ED1/{target}"))),
                    data: Some(Data::Text(value.into())),
                    ..Item::default()
                }],
            })
        };
        for (leaf, value) in [
            ("DevId", "IMEI:1"),
            ("ClientSecret", "c"),
            ("ServerSecret", "s"),
            ("Origin", "server-assisted"),
        ] {
            let replies = tree.execute("dms", 1, &add(leaf, value), &mut CmdIds::new());
            assert!(
                matches!(&replies[0], Command::Status(s) if s.code == 200),
                "{replies:?}"
            );
        }
        let refused = tree.execute("intruder", 1, &add("Other", "x"), &mut CmdIds::new());
        assert!(matches!(&refused[0], Command::Status(s) if s.code == 425));
        let entries = entries(&tree);
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].dev_id.as_str(), entries[0].origin),
            ("IMEI:1", Some(Origin::ServerAssisted))
        );
        assert_eq!(
            tree.value("./GwMO/Config/Approaches"),
            Some("server-assisted")
        );
    }

    #[test]
    fn a_local_bootstrap_reads_back_as_the_entry_it_wrote() {
        let mut tree = Tree::default();
        let issued = LocalBootstrap {
            dev_id: "IMEI:2",
            client_secret: "c",
            server_secret: "s",
            issued_at: 1_000,
            lapse_secs: 60,
        };
        set_leaves(&mut tree, &issued.leaves()).unwrap();
        let read = &entries(&tree)[0];
        assert_eq!(read.path(), issued.path());
        assert!(read.is_local() && !read.attached && !read.lapsed);
        assert_eq!((read.issued_at, read.lapse_secs), (Some(1_000), Some(60)));
        assert_eq!(
            read.credentials.as_ref().map(|c| c.client_name.as_str()),
            Some("IMEI:2")
        );
    }

    #[test]
    fn a_fanouts_queued_commands_read_back() {
        let queued = HashMap::from([("IMEI:1".to_owned(), 7), ("IMEI:2".to_owned(), 9)]);
        let text = format_queued(&queued);
        assert_eq!(text, "IMEI:1=7 IMEI:2=9");
        assert_eq!(parse_queued(&text), queued);
        assert_eq!(parse_queued("IMEI:1=x broken IMEI:3=4").len(), 1);
    }
}
