//! What the gateway's syncs know, kept between syncs and brought up to date from what
//! changed: of the end-device store, the devices served and which probes they answered
//! ([`EndDeviceChanges`]); of the tree, the Device Inventory and fan-outs as parsed at
//! a revision (the agent's tree revision moves whenever it may have changed), and the
//! records the syncs write themselves. A sync then reads from the store only the
//! devices that held sessions since the last one, and parses the tree only when
//! something else changed it, so its cost follows what changed, not the size of the
//! inventory. Pure: the driver does the reading.

use std::collections::{HashMap, HashSet};

use gwmo_server::{CommandOutcome, CommandState, EndDevice, EndDeviceChanges};

use gwmo_tree::gwmo::{INVENTORY, entry};

use crate::inventory::{FanoutEntry, InventoryEntry};

/// Which devices changed in one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Everything was read again.
    All,
    Devices(HashSet<String>),
}

impl Changed {
    fn includes(&self, dev_id: &str) -> bool {
        match self {
            Changed::All => true,
            Changed::Devices(devices) => devices.contains(dev_id),
        }
    }
}

/// The end-device store as the syncs know it.
#[derive(Debug, Default)]
pub struct Known {
    /// The devices served, by DevId.
    pub end_devices: HashMap<String, EndDevice>,
    /// The probes (command ids) the devices answered: an answer stays.
    pub answered_probes: HashSet<i64>,
    /// Probes asked about and not answered then: asked again once their device changed.
    unanswered_probes: HashSet<i64>,
    inventory: InventoryView,
}

/// The tree's Device Inventory and fan-outs as parsed at one revision of it (none
/// before the first parse).
#[derive(Debug, Default)]
pub struct InventoryView {
    pub revision: Option<u64>,
    pub entries: Vec<InventoryEntry>,
    pub fanouts: Vec<FanoutEntry>,
}

impl Known {
    /// Takes in what changed in the store; returns which devices that was.
    pub fn update(&mut self, changes: EndDeviceChanges) -> Changed {
        match changes {
            EndDeviceChanges::All(devices) => {
                self.end_devices = devices
                    .into_iter()
                    .map(|device| (device.dev_id.clone(), device))
                    .collect();
                Changed::All
            }
            EndDeviceChanges::Some { served, gone } => {
                let mut changed: HashSet<String> = gone.iter().cloned().collect();
                for dev_id in gone {
                    self.end_devices.remove(&dev_id);
                }
                for device in served {
                    changed.insert(device.dev_id.clone());
                    self.end_devices.insert(device.dev_id.clone(), device);
                }
                Changed::Devices(changed)
            }
        }
    }

    /// The revision of the tree the inventory was parsed at, if it was.
    pub fn inventory_revision(&self) -> Option<u64> {
        self.inventory.revision
    }

    /// The inventory as parsed again.
    pub fn set_inventory(&mut self, view: InventoryView) {
        self.inventory = view;
    }

    /// The inventory as last parsed (or as the syncs' own records changed it since).
    pub fn inventory(&self) -> &InventoryView {
        &self.inventory
    }

    /// A sync wrote `leaves` (the State and LastSession records), taking the tree from
    /// revision `from` to `to`: if the inventory was parsed at `from`, the records are
    /// written into it too and it stands for `to`, so that it is not parsed again.
    /// Any other leaf leaves it at `from`, to be parsed at the next sync.
    pub fn recorded(&mut self, leaves: &[(String, String)], from: u64, to: u64) {
        let view = &mut self.inventory;
        if view.revision != Some(from) {
            return;
        }
        let mut all_written = true;
        for (path, value) in leaves {
            let written = path
                .strip_prefix(INVENTORY)
                .and_then(|rest| rest.strip_prefix('/')?.split_once('/'))
                .and_then(|(node, leaf)| {
                    let entry = view.entries.iter_mut().find(|e| e.node == node)?;
                    let field = match leaf {
                        entry::STATE => &mut entry.recorded_state,
                        entry::LAST_SESSION => &mut entry.recorded_last_session,
                        _ => return None,
                    };
                    *field = Some(value.clone());
                    Some(())
                });
            all_written &= written.is_some();
        }
        if all_written {
            view.revision = Some(to);
        }
    }

    /// The probes of the inventory's entries whose outcome is to be read: those never
    /// asked about, and those not answered when asked whose device changed since.
    /// Forgets the probes no entry carries any more.
    pub fn probes_to_ask(&mut self, changed: &Changed) -> Vec<i64> {
        let entries = &self.inventory.entries;
        let carried: HashSet<i64> = entries.iter().filter_map(|e| e.probe).collect();
        self.answered_probes.retain(|probe| carried.contains(probe));
        self.unanswered_probes
            .retain(|probe| carried.contains(probe));
        entries
            .iter()
            .filter_map(|entry| Some((entry.probe?, entry)))
            .filter(|(probe, entry)| {
                !self.answered_probes.contains(probe)
                    && (!self.unanswered_probes.contains(probe) || changed.includes(&entry.dev_id))
            })
            .map(|(probe, _)| probe)
            .collect()
    }

    /// Takes in the outcomes read for the probes `asked`.
    pub fn probes_asked(&mut self, asked: &[i64], outcomes: &HashMap<i64, CommandOutcome>) {
        for &probe in asked {
            let answered = outcomes
                .get(&probe)
                .is_some_and(|outcome| outcome.state == CommandState::Done);
            match answered {
                true => {
                    self.unanswered_probes.remove(&probe);
                    self.answered_probes.insert(probe)
                }
                false => self.unanswered_probes.insert(probe),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(dev_id: &str, sessions: i64) -> EndDevice {
        EndDevice {
            dev_id: dev_id.to_owned(),
            sessions,
            ..EndDevice::default()
        }
    }

    fn entry(dev_id: &str, probe: i64) -> InventoryEntry {
        InventoryEntry {
            dev_id: dev_id.to_owned(),
            probe: Some(probe),
            ..InventoryEntry::default()
        }
    }

    fn outcome(state: CommandState) -> CommandOutcome {
        CommandOutcome {
            state,
            status: None,
            results: None,
        }
    }

    fn view(entries: Vec<InventoryEntry>) -> InventoryView {
        InventoryView {
            revision: Some(1),
            entries,
            fanouts: Vec::new(),
        }
    }

    fn changed(dev_ids: &[&str]) -> Changed {
        Changed::Devices(dev_ids.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn a_partial_change_replaces_and_removes_only_the_devices_it_names() {
        let mut known = Known::default();
        known.update(EndDeviceChanges::All(vec![device("A", 0), device("B", 0)]));
        let seen = known.update(EndDeviceChanges::Some {
            served: vec![device("A", 1), device("C", 0)],
            gone: vec!["B".into()],
        });
        assert_eq!(seen, changed(&["A", "B", "C"]));
        let mut served: Vec<_> = known.end_devices.values().cloned().collect();
        served.sort_by(|a, b| a.dev_id.cmp(&b.dev_id));
        assert_eq!(served, vec![device("A", 1), device("C", 0)]);
        // Everything read again replaces what was kept, even what the change left out.
        known.update(EndDeviceChanges::All(vec![device("D", 0)]));
        assert_eq!(known.end_devices.keys().collect::<Vec<_>>(), vec!["D"]);
    }

    #[test]
    fn an_unanswered_probe_is_asked_again_only_once_its_device_changed() {
        let mut known = Known::default();
        known.set_inventory(view(vec![entry("A", 1), entry("B", 2)]));
        assert_eq!(known.probes_to_ask(&changed(&[])), vec![1, 2]);
        let outcomes = HashMap::from([
            (1, outcome(CommandState::Sent)),
            (2, outcome(CommandState::Done)),
        ]);
        known.probes_asked(&[1, 2], &outcomes);
        assert!(known.answered_probes.contains(&2));
        assert!(known.probes_to_ask(&changed(&["B"])).is_empty());
        assert_eq!(known.probes_to_ask(&changed(&["A"])), vec![1]);
        assert_eq!(known.probes_to_ask(&Changed::All), vec![1]);
        known.probes_asked(&[1], &HashMap::from([(1, outcome(CommandState::Done))]));
        assert!(known.probes_to_ask(&Changed::All).is_empty());
    }

    #[test]
    fn probes_no_entry_carries_are_forgotten() {
        let mut known = Known::default();
        known.probes_asked(&[7, 8], &HashMap::from([(7, outcome(CommandState::Done))]));
        known.set_inventory(view(vec![entry("A", 9)]));
        known.probes_to_ask(&changed(&[]));
        assert!(known.answered_probes.is_empty());
        assert!(known.unanswered_probes.is_empty());
    }

    #[test]
    fn the_syncs_own_records_are_written_into_the_inventory_parsed_at_the_revision_before() {
        let mut known = Known::default();
        let mut first = entry("A", 1);
        first.node = "a".into();
        known.set_inventory(view(vec![first]));
        let leaf = |name: &str| format!("{INVENTORY}/a/{name}");
        let records = [
            (leaf(entry::STATE), "active".to_owned()),
            (leaf(entry::LAST_SESSION), "99".to_owned()),
        ];
        known.recorded(&records, 1, 2);
        assert_eq!(known.inventory_revision(), Some(2));
        let written = &known.inventory().entries[0];
        assert_eq!(written.recorded_state.as_deref(), Some("active"));
        assert_eq!(written.recorded_last_session.as_deref(), Some("99"));
        // Parsed at another revision: something else changed the tree, parse it again.
        known.recorded(&records, 1, 3);
        assert_eq!(known.inventory_revision(), Some(2));
        // A leaf it does not keep: parse it again.
        known.recorded(&[(leaf(entry::ATTACHED), "true".to_owned())], 2, 3);
        assert_eq!(known.inventory_revision(), Some(2));
        known.recorded(&[(leaf("Unknown"), "x".to_owned())], 2, 3);
        assert_eq!(known.inventory_revision(), Some(2));
        known.recorded(
            &[(format!("{INVENTORY}/b/{}", entry::STATE), "x".to_owned())],
            2,
            3,
        );
        assert_eq!(known.inventory_revision(), Some(2), "no entry b");
    }
}
